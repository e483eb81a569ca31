#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/engine_core.h"
#include "engine/engine_factory.h"
#include "kv_events/kv_events_config.h"

namespace pagoda::server {

// Everything pagodad is configured with (the flags in server/server_flags.h map onto it).
struct ServerOptions {
  // pagodad's defaults: those of EngineConfig, except that a step with running decodes takes
  // prefill chunks of at most one decode step's time (--step-time-ratio 2).
  engine::EngineConfig engine = {.step_time_ratio = 2};
  // The gRPC listening address. Port 0: the kernel picks one (PagodaServer::port()).
  std::string host = "127.0.0.1";
  int port = 50051;
  // The Prometheus /metrics port, on `host`. 0: the kernel picks one; unset: no metrics server.
  std::optional<int> metrics_port = 9400;
  // The OpenAI-compatible HTTP API (and /metrics again), on `host`. 0: the kernel picks one;
  // unset: none.
  std::optional<int> http_port = 8000;
  // The chat template of /v1/chat/completions: a file, or the template itself (a value with
  // "{{" or "{%"). Unset: the model's (chat_template.jinja or tokenizer_config.json).
  std::optional<std::string> chat_template;
  // KV-cache events for cache-aware routers (--kv-events-config, docs/kv_events.md). Default:
  // off (nothing is recorded).
  kv_events::KvEventsConfig kv_events;
  // --metrics-compat vllm: /metrics also carries vLLM's names for the gauges an endpoint
  // picker reads (server/prometheus_metrics.h).
  bool metrics_compat_vllm = false;
  // --debug-endpoints: GET /debug/kv_cache_blocks on the HTTP port (openai/openai_service.h).
  bool debug_endpoints = false;
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
  // One more bearer token, given on the command line (--api-key, vLLM's flag).
  std::optional<std::string> api_key;
  // What one client can make the gRPC server hold (docs/operations.md, "Limits").
  struct GrpcLimits {
    // HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: open calls per connection.
    int max_concurrent_streams = 1024;
    // A grpc::ResourceQuota over gRPC's own memory (its transport buffers): under pressure
    // gRPC shrinks them rather than grow. On gRPC 1.51 it does not cover the calls a rapid
    // reset queues (docs/operations.md, "Limits").
    int64_t memory_bytes = int64_t{256} << 20;
    // A connection with no open call for this long is closed with GOAWAY (clients reconnect).
    absl::Duration max_connection_idle = absl::Minutes(10);
    // A connection older than this is closed with GOAWAY once its calls end (or after the
    // grace period). Infinite: never.
    absl::Duration max_connection_age = absl::InfiniteDuration();
    absl::Duration max_connection_age_grace = absl::Seconds(30);
  };
  GrpcLimits grpc_limits;
  // The `pagoda-retry-after-ms` hint sent with QUEUE_FULL.
  absl::Duration queue_full_retry_after = absl::Seconds(1);
  // Builds the engine core from `engine`. Unset: engine::CreateEngineCore (the real model).
  // Tests inject a fake model here; pagodad never sets it.
  std::function<absl::StatusOr<std::unique_ptr<engine::EngineCore>>(const engine::EngineConfig&)>
      engine_core_factory;
};

}  // namespace pagoda::server
