#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "block_manager/kv_cache_stats.h"
#include "common/ids.h"
#include "engine/engine_core.h"
#include "engine/engine_metrics.h"
#include "engine/engine_request.h"

namespace pagoda::engine {

struct EngineOptions {
  // Requests accepted but not yet running (in the inbox or the scheduler's waiting queue) at
  // most; Submit() beyond it fails with ResourceExhausted. 0 = unbounded.
  int max_waiting_requests = 1024;
  // Not owned; may be null. Called on the engine thread.
  MetricsObserver* metrics_observer = nullptr;
};

// The engine thread around an EngineCore (ARCHITECTURE.md "Threads"): callers on any thread
// submit and abort through a mutex-guarded inbox; the engine thread drains it at the start of
// every step, then steps while there is work and sleeps when idle. Outputs reach the callers'
// sinks on the engine thread.
//
// Thread-safe: every method may be called from any thread, except that the destructor must not
// run on the engine thread (i.e. not from a sink).
class Engine {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> Create(std::unique_ptr<EngineCore> core,
                                                        const EngineOptions& options);
  // Aborts what is left (sinks get FinishReason::kAbort) and joins the engine thread.
  ~Engine();

  const EngineInfo& info() const { return info_; }
  // Null without a tokenizer. Immutable; usable from any thread for as long as the Engine lives.
  const tokenizer::Tokenizer* tokenizer() const { return tokenizer_; }

  // Validates and queues a request, returning its engine id. Errors (the sink is not called):
  // those of ValidateEngineRequest (engine/request_validation.h); ResourceExhausted with
  // ErrorReason kQueueFull when max_waiting_requests are waiting; Unavailable with kDraining
  // while draining; Internal with kEngineFailure after a failure.
  absl::StatusOr<RequestId> Submit(EngineRequest request, std::shared_ptr<RequestSink> sink);

  // Asks the engine thread to abort `id`; it frees the blocks in its next step. No-op for an
  // unknown or finished id.
  void Abort(RequestId id);

  // From now on Submit() fails with Unavailable; queued and running requests go on.
  void StartDrain();
  bool draining() const;
  // Blocks until no request is queued or running, or `timeout` passes; true when idle.
  bool WaitUntilIdle(absl::Duration timeout);
  // Aborts every queued and running request (each sink gets OnComplete with kAbort).
  void AbortAll();

  EngineSnapshot Snapshot() const;

 private:
  Engine(std::unique_ptr<EngineCore> core, const EngineOptions& options);
  void Loop();

  struct Submission {
    RequestId id;
    EngineRequest request;
    std::shared_ptr<RequestSink> sink;
  };

  const EngineOptions options_;
  std::unique_ptr<EngineCore> core_;  // used by the engine thread only after Create
  const EngineInfo info_;
  const tokenizer::Tokenizer* const tokenizer_;
  std::atomic<uint64_t> next_id_{1};

  mutable absl::Mutex mu_;
  std::vector<Submission> inbox_ ABSL_GUARDED_BY(mu_);
  std::vector<RequestId> aborts_ ABSL_GUARDED_BY(mu_);
  bool abort_all_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  // Requests in the core (queued or running), as of the end of the last step, plus the inbox.
  int num_in_core_ ABSL_GUARDED_BY(mu_) = 0;
  EngineSnapshot snapshot_ ABSL_GUARDED_BY(mu_);

  std::thread thread_;
};

}  // namespace pagoda::engine
