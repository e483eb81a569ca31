#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "block_manager/kv_cache_events.h"
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
  // Not owned; may be null (no KV events: nothing is recorded). Gets each step's prefix-cache
  // changes on the engine thread (EngineCore::set_kv_event_sink); must outlive the Engine.
  block_manager::KvEventSink* kv_event_sink = nullptr;
};

// The prefix cache's contents at one moment between two steps (Engine::DumpKvCache).
struct KvCacheDump {
  int num_requests = 0;  // queued or running in the core at that moment
  std::vector<block_manager::CachedBlockInfo> blocks;  // parents first
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

  // Submits several requests together (the n choices or prompts of one API call): each is
  // validated, then all are queued under one lock, so the engine thread takes them into the
  // same step and their batching, hence their numerics, does not depend on thread timing. All
  // or none: the errors are Submit's, and when the waiting queue cannot take them all none is
  // queued. Returns their ids in order.
  absl::StatusOr<std::vector<RequestId>> SubmitAll(
      std::vector<std::pair<EngineRequest, std::shared_ptr<RequestSink>>> requests);

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

  // Every block holding prefix-cache content, read on the engine thread between two steps (for
  // debugging and the KV-event consistency test). O(num_blocks). DeadlineExceeded when the
  // engine thread did not answer within `timeout`; Unavailable once the engine is stopping.
  absl::StatusOr<KvCacheDump> DumpKvCache(absl::Duration timeout);

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
  // Run on the engine thread between two steps.
  std::vector<std::function<void(EngineCore&)>> tasks_ ABSL_GUARDED_BY(mu_);
  bool abort_all_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool load_done_ ABSL_GUARDED_BY(mu_) = false;  // a KV load finished (the core has work)
  // Requests in the core (queued or running), as of the end of the last step, plus the inbox.
  int num_in_core_ ABSL_GUARDED_BY(mu_) = 0;
  EngineSnapshot snapshot_ ABSL_GUARDED_BY(mu_);

  std::thread thread_;
};

}  // namespace pagoda::engine
