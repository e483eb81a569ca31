#pragma once

// The OpenAI-compatible HTTP API (docs/openai_api.md) over the engine: a second front end
// beside gRPC, with the same validation (the engine's) and the same engine. It is the handler of
// an http::HttpServer.
//
// Routes: GET /health, /version, /metrics, /v1/models; POST /v1/completions and
// /v1/chat/completions (whole or streamed as server-sent events), /v1/completions/render and
// /v1/chat/completions/render (the prompt's token ids, for cache-aware routers), /tokenize
// (`prompt` or `messages`), /detokenize. A client that goes away, streaming or not, aborts its
// requests at once (their KV blocks go back to the pool in the engine's next step).
//
// Threads: Handle runs on the HTTP server's threads and never blocks on the engine; outputs
// reach the responders from the engine thread. Every method is thread-safe. The engine passed
// to SetEngine must outlive every request of this service: stop the HTTP server first.

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "chat_template/chat_template.h"
#include "engine/engine.h"
#include "http/http_server.h"
#include "openai/chat_request.h"

namespace pagoda::openai {

class OpenAiService {
 public:
  struct Options {
    std::string version;                  // GET /version
    absl::Time start_time = absl::Now();  // the model's "created" in /v1/models
    absl::Duration queue_full_retry_after = absl::Seconds(1);  // Retry-After of a 429
    // Checks the value of the Authorization header (null when absent): OK or Unauthenticated.
    // Unset: no authentication. Guards /v1/*, /tokenize and /detokenize, not /health,
    // /version or /metrics. Thread-safe.
    std::function<absl::Status(const std::string* authorization)> authenticate;
    // The Prometheus page of GET /metrics. Unset: 404. Thread-safe.
    std::function<std::string()> render_metrics;
    // Each request refused before the engine took it (validation, authentication, a full
    // queue), with its status. May be unset. Must not block.
    std::function<void(const absl::Status&)> on_refused;
    // A request ended with an engine failure. May be unset. Must not block.
    std::function<void()> on_engine_failure;
    // One log line. May be unset.
    std::function<void(absl::string_view)> log;
    // Requests with a body over kLargeBodyBytes being parsed (JSON and tokenization run on the
    // HTTP server's threads) at most; more get 429 at once. Keep it below the HTTP server's
    // thread count, so that health checks and small requests always find a thread. 0: no limit.
    int max_large_requests = 0;
    // GET /debug/kv_cache_blocks (--debug-endpoints): every block holding prefix-cache
    // content, as the KV-event consistency test compares it. Off: 404.
    bool debug_endpoints = false;
  };

  static constexpr size_t kLargeBodyBytes = 64 << 10;

  explicit OpenAiService(Options options);
  ~OpenAiService();

  // Makes the loaded engine available, with the model's chat templates (null or empty: chat
  // requests get a 400 that says so); until then every engine route answers 503.
  void SetEngine(engine::Engine* engine,
                 std::shared_ptr<const chat_template::ChatTemplates> templates = nullptr);
  // From now on new requests get 503 and /health answers 503. Requests already taken go on.
  void StartDrain();

  // The http::Handler of the API.
  void Handle(const http::Request& request, std::shared_ptr<http::Responder> responder);

 private:
  class CompletionCall;

  // The routes, one each (Handle has checked the method and the token).
  void Health(const http::Request& request, std::shared_ptr<http::Responder> responder);
  void Version(const http::Request& request, std::shared_ptr<http::Responder> responder);
  void Metrics(const http::Request& request, std::shared_ptr<http::Responder> responder);
  void KvCacheBlocks(const http::Request& request, std::shared_ptr<http::Responder> responder);
  void Models(const http::Request& request, std::shared_ptr<http::Responder> responder);
  void Completions(const http::Request& request, std::shared_ptr<http::Responder> responder);
  void ChatCompletions(const http::Request& request, std::shared_ptr<http::Responder> responder);
  void CompletionsRender(const http::Request& request, std::shared_ptr<http::Responder> responder);
  void ChatCompletionsRender(const http::Request& request,
                             std::shared_ptr<http::Responder> responder);
  void Tokenize(const http::Request& request, std::shared_ptr<http::Responder> responder);
  static ChatContext ChatContextOf(const engine::Engine& engine,
                                   const chat_template::ChatTemplates* templates, absl::Time now);
  std::shared_ptr<const chat_template::ChatTemplates> ChatTemplates() const;
  void Detokenize(const http::Request& request, std::shared_ptr<http::Responder> responder);
  // The engine once loaded and while not draining, else Unavailable.
  absl::StatusOr<engine::Engine*> ServingEngine() const;
  // Sends the error response of `status` and reports the refusal.
  void Refuse(const absl::Status& status, http::Responder& responder);
  // Logs each unknown field name once (the first 256 names).
  void LogUnknownFields(const std::vector<std::string>& names);

  const Options options_;
  std::atomic<engine::Engine*> engine_{nullptr};
  std::atomic<bool> draining_{false};
  std::atomic<int> large_requests_{0};
  mutable absl::Mutex templates_mu_;
  std::shared_ptr<const chat_template::ChatTemplates> templates_ ABSL_GUARDED_BY(templates_mu_);
  absl::Mutex log_mu_;
  absl::flat_hash_set<std::string> logged_fields_ ABSL_GUARDED_BY(log_mu_);
};

}  // namespace pagoda::openai
