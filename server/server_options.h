#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/engine_core.h"
#include "engine/engine_factory.h"

namespace pagoda::server {

// Everything pagodad is configured with (the flags in server/server_flags.h map onto it).
struct ServerOptions {
  engine::EngineConfig engine;
  // The gRPC listening address. Port 0: the kernel picks one (PagodaServer::port()).
  std::string host = "127.0.0.1";
  int port = 50051;
  // The Prometheus /metrics port, on `host`. 0: the kernel picks one; unset: no metrics server.
  std::optional<int> metrics_port = 9400;
  // On shutdown, how long running requests may take to finish before they are aborted.
  absl::Duration drain_timeout = absl::Seconds(30);
  // TLS on the gRPC port (docs/operations.md, "TLS and authentication"): PEM files, read at
  // Start. Both certificate and key, or neither (plaintext); a client CA makes clients present
  // a certificate it signed (mTLS), and needs the certificate and key.
  std::optional<std::string> tls_cert_file;
  std::optional<std::string> tls_key_file;
  std::optional<std::string> tls_client_ca_file;
  // Bearer tokens, one per line (server/authenticator.h), read at Start. Set: every
  // pagoda.v1.TextGeneration RPC needs `authorization: Bearer <token>`; health and reflection
  // do not.
  std::optional<std::string> auth_token_file;
  // The `pagoda-retry-after-ms` hint sent with QUEUE_FULL.
  absl::Duration queue_full_retry_after = absl::Seconds(1);
  // Builds the engine core from `engine`. Unset: engine::CreateEngineCore (the real model).
  // Tests inject a fake model here; pagodad never sets it.
  std::function<absl::StatusOr<std::unique_ptr<engine::EngineCore>>(const engine::EngineConfig&)>
      engine_core_factory;
};

}  // namespace pagoda::server
