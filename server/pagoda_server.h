#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/engine.h"
#include "server/server_options.h"
#include "server/tls_files.h"

namespace pagoda::kv_events {
class ZmqEventPublisher;
}  // namespace pagoda::kv_events

namespace grpc {
class Server;
}  // namespace grpc

namespace pagoda::http {
class HttpServer;
}  // namespace pagoda::http
namespace pagoda::openai {
class OpenAiService;
}  // namespace pagoda::openai

namespace pagoda::server {

class Authenticator;
class MetricsHttpServer;
class PrometheusMetrics;
class TextGenerationService;

// pagodad without main(): the gRPC server (pagoda.v1.TextGeneration, grpc.health.v1 and
// reflection), the engine and the Prometheus endpoint, with their start-up and shutdown order.
// Keeps gRPC headers out of its includers.
//
// Life cycle: Start (listening, health NOT_SERVING) -> LoadEngine (health SERVING) ->
// StartDrain (optional; health NOT_SERVING, new Generate calls UNAVAILABLE) -> Shutdown
// (drain, abort leftovers, stop). Health is reported for "" and "pagoda.v1.TextGeneration";
// after an engine failure both turn NOT_SERVING for good.
//
// Thread-safe. Start, LoadEngine and Shutdown block and must not run on a gRPC or engine
// thread; the others return at once.
class PagodaServer {
 public:
  // Reads the TLS and token files, binds the gRPC port (TLS when configured) and the metrics
  // port (if any, always plain HTTP) and starts serving; the engine is not loaded yet. Errors:
  // InvalidArgument naming the flag of an unreadable or invalid TLS or token file; Unavailable
  // when an address cannot be bound. Logs a warning when the gRPC port is reachable from the
  // network with neither TLS nor a token.
  static absl::StatusOr<std::unique_ptr<PagodaServer>> Start(const ServerOptions& options);
  // Shutdown(), then releases everything.
  ~PagodaServer();

  PagodaServer(const PagodaServer&) = delete;
  PagodaServer& operator=(const PagodaServer&) = delete;

  // Loads the model and starts the engine, logs what was loaded, and turns health SERVING.
  // Call once. Errors name the offending flag (engine/engine_factory.h).
  absl::Status LoadEngine();

  // The bound ports.
  int port() const { return port_; }
  std::optional<int> metrics_port() const { return metrics_port_; }
  std::optional<int> http_port() const { return http_port_; }
  // "host:port" of the gRPC server, for clients.
  std::string address() const;

  // Health NOT_SERVING; Generate fails with UNAVAILABLE (DRAINING) from now on; accepted
  // requests go on. Idempotent.
  void StartDrain();

  // StartDrain(), then waits up to the drain timeout for accepted requests to finish, aborts
  // the others (their streams end with Complete{FINISH_REASON_ABORT}), stops the gRPC server
  // (calls still open after a 5 s grace are cancelled) and the engine. Idempotent.
  void Shutdown();

  // The metrics page (Prometheus text format), its gauges taken from the engine's snapshot
  // now; empty before LoadEngine.
  std::string RenderMetrics();
  // The engine, or null before LoadEngine and after Shutdown. For tests.
  engine::Engine* engine() const;
  // Unfinished Generate requests the service knows. For tests.
  int num_unfinished_requests() const;

 private:
  explicit PagodaServer(const ServerOptions& options);
  void SetServing(bool serving);
  // Creates the OpenAI service and, with --http-port, its HTTP server.
  // `tls`: the TLS flags' files, when given (the HTTP port then speaks TLS as gRPC's does).
  absl::Status StartOpenAiApi(const std::optional<TlsFiles>& tls);
  // With --metrics-port, the /metrics server.
  absl::Status StartMetricsEndpoint();
  // The KV-event publisher of --kv-events-config, if on.
  absl::Status StartKvEvents(const engine::EngineInfo& info);
  // Health NOT_SERVING for good, logged. Any thread.
  void ReportEngineFailure();

  const ServerOptions options_;
  int port_ = 0;
  std::optional<int> metrics_port_;
  std::optional<int> http_port_;

  // Destroyed in reverse order: the HTTP endpoints first, the services after the engine (the
  // engine reports finished requests to them), then the authenticator the services use.
  std::unique_ptr<const Authenticator> authenticator_;  // null: no --auth-token-file
  std::unique_ptr<TextGenerationService> service_;
  std::unique_ptr<openai::OpenAiService> openai_service_;
  std::unique_ptr<PrometheusMetrics> metrics_;
  // Set by LoadEngine with --kv-events-config, before the engine that publishes to it, which
  // it outlives; kept until destruction (it flushes then).
  std::unique_ptr<kv_events::ZmqEventPublisher> kv_event_publisher_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<MetricsHttpServer> metrics_http_;
  std::unique_ptr<http::HttpServer> openai_http_;  // stopped before the engine goes

  // Read by the metrics endpoint's thread; set once by LoadEngine.
  std::atomic<PrometheusMetrics*> loaded_metrics_{nullptr};
  std::atomic<engine::Engine*> loaded_engine_{nullptr};
  std::atomic<bool> engine_failed_{false};
  // One scrape at a time sets the gauges and renders.
  absl::Mutex render_mu_;

  absl::Mutex shutdown_mu_;  // serializes Shutdown
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

}  // namespace pagoda::server
