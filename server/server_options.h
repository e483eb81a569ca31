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
  // The `pagoda-retry-after-ms` hint sent with QUEUE_FULL.
  absl::Duration queue_full_retry_after = absl::Seconds(1);
  // Builds the engine core from `engine`. Unset: engine::CreateEngineCore (the real model).
  // Tests inject a fake model here; pagodad never sets it.
  std::function<absl::StatusOr<std::unique_ptr<engine::EngineCore>>(const engine::EngineConfig&)>
      engine_core_factory;
};

}  // namespace pagoda::server
