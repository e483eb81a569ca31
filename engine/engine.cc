#include "engine/engine.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/check.h"
#include "common/status_macros.h"
#include "engine/error_reason.h"

namespace pagoda::engine {
namespace {

constexpr absl::Duration kKvResyncRetry = absl::Milliseconds(20);

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(std::unique_ptr<EngineCore> core,
                                                       const EngineOptions& options) {
  PAGODA_CHECK(core != nullptr);
  if (options.max_waiting_requests < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_waiting_requests must be >= 0, got ", options.max_waiting_requests));
  }
  std::unique_ptr<Engine> engine(new Engine(std::move(core), options));
  engine->thread_ = std::thread([raw = engine.get()] { raw->Loop(); });
  return engine;
}

Engine::Engine(std::unique_ptr<EngineCore> core, const EngineOptions& options)
    : options_(options),
      core_(std::move(core)),
      info_(core_->info()),
      tokenizer_(core_->tokenizer()) {
  core_->set_metrics_observer(options.metrics_observer);
  core_->set_kv_event_sink(options.kv_event_sink);
  core_->set_load_notifier([this] {
    absl::MutexLock lock(&mu_);
    load_done_ = true;
  });
  snapshot_.kv = core_->kv_stats();
}

Engine::~Engine() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
  // Before mu_ goes: the core's I/O threads call back into it until they are joined.
  core_.reset();
}

absl::StatusOr<RequestId> Engine::Submit(EngineRequest request, std::shared_ptr<RequestSink> sink) {
  std::vector<std::pair<EngineRequest, std::shared_ptr<RequestSink>>> one;
  one.emplace_back(std::move(request), std::move(sink));
  PAGODA_ASSIGN_OR_RETURN(std::vector<RequestId> ids, SubmitAll(std::move(one)));
  return ids[0];
}

absl::StatusOr<std::vector<RequestId>> Engine::SubmitAll(
    std::vector<std::pair<EngineRequest, std::shared_ptr<RequestSink>>> requests) {
  // The one validation of a request (engine/request_validation.h). It reads only immutable
  // engine state, so it runs on the caller's thread and the engine thread never sees an
  // invalid request.
  for (const auto& [request, sink] : requests) {
    PAGODA_CHECK(sink != nullptr);
    if (absl::Status status = core_->ValidateRequest(request); !status.ok()) return status;
  }
  absl::MutexLock lock(&mu_);
  if (!snapshot_.healthy) {
    return WithErrorReason(
        absl::InternalError("engine failure: the engine failed and serves no more requests"),
        ErrorReason::kEngineFailure);
  }
  if (draining_ || stop_) {
    return WithErrorReason(absl::UnavailableError("the server is draining"),
                           ErrorReason::kDraining);
  }
  const int num_waiting = snapshot_.num_waiting + static_cast<int>(inbox_.size());
  const int num_new = static_cast<int>(requests.size());
  if (options_.max_waiting_requests > 0 &&
      num_waiting + num_new > std::max(options_.max_waiting_requests, num_new)) {
    return WithErrorReason(
        absl::ResourceExhaustedError(absl::StrCat("the waiting queue is full (",
                                                  options_.max_waiting_requests, " requests)")),
        ErrorReason::kQueueFull);
  }
  std::vector<RequestId> ids;
  for (auto& [request, sink] : requests) {
    const RequestId id(next_id_.fetch_add(1, std::memory_order_relaxed));
    inbox_.push_back({id, std::move(request), std::move(sink)});
    ids.push_back(id);
  }
  return ids;
}

void Engine::Abort(RequestId id) {
  absl::MutexLock lock(&mu_);
  aborts_.push_back(id);
}

void Engine::StartDrain() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
}

bool Engine::draining() const {
  absl::MutexLock lock(&mu_);
  return draining_;
}

bool Engine::WaitUntilIdle(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return inbox_.empty() && num_in_core_ == 0;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
}

void Engine::AbortAll() {
  absl::MutexLock lock(&mu_);
  abort_all_ = true;
}

EngineSnapshot Engine::Snapshot() const {
  absl::MutexLock lock(&mu_);
  EngineSnapshot snapshot = snapshot_;
  snapshot.num_waiting += static_cast<int>(inbox_.size());
  return snapshot;
}

absl::StatusOr<KvCacheDump> Engine::DumpKvCache(absl::Duration timeout) {
  struct Pending {
    absl::Notification done;
    KvCacheDump dump;
  };
  auto pending = std::make_shared<Pending>();
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return absl::UnavailableError("the engine is stopping");
    tasks_.push_back([pending](EngineCore& core) {
      pending->dump.num_requests = core.num_running() + core.num_waiting();
      pending->dump.blocks = core.ListCachedBlocks();
      pending->done.Notify();
    });
  }
  if (!pending->done.WaitForNotificationWithTimeout(timeout)) {
    return absl::DeadlineExceededError("the engine thread did not answer in time");
  }
  return std::move(pending->dump);
}

void Engine::Loop() {
  bool failed = false;
  while (true) {
    std::vector<Submission> submissions;
    std::vector<RequestId> aborts;
    std::vector<std::function<void(EngineCore&)>> tasks;
    bool abort_all = false;
    bool stop = false;
    {
      absl::MutexLock lock(&mu_);
      // Sleep only when the core has nothing to do.
      // Requests that only wait for their KV blocks to load leave the core idle until a load
      // finishes.
      const bool busy = core_->has_work();
      const auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || abort_all_ || !inbox_.empty() || !aborts_.empty() || !tasks_.empty() ||
               load_done_;
      };
      if (!busy && core_->kv_resync_pending()) {
        // A dropped KV-event batch waits for room in the publisher's queue: retry soon.
        mu_.AwaitWithTimeout(absl::Condition(&wake), kKvResyncRetry);
      } else if (!busy) {
        mu_.Await(absl::Condition(&wake));
      }
      load_done_ = false;
      submissions.swap(inbox_);
      aborts.swap(aborts_);
      tasks.swap(tasks_);
      std::swap(abort_all, abort_all_);
      stop = stop_;
      // Until the step ends, the inbox's requests count as in the core, and as waiting (so
      // Submit's queue bound and Snapshot() see them).
      num_in_core_ += static_cast<int>(submissions.size());
      snapshot_.num_waiting += static_cast<int>(submissions.size());
    }
    for (Submission& s : submissions) {
      if (failed) {
        s.sink->OnComplete({.status = absl::UnavailableError("the engine failed")});
        continue;
      }
      if (absl::Status status = core_->AddRequest(s.id, std::move(s.request), s.sink);
          !status.ok()) {
        s.sink->OnComplete({.status = std::move(status)});
      }
    }
    for (const RequestId id : aborts) core_->Abort(id);
    if (abort_all || stop) core_->AbortAll();
    for (const auto& task : tasks) task(*core_);

    // Also without requests: the step then reports requests aborted above.
    const bool stepped = !failed && core_->has_work();
    if (!failed) {
      if (absl::Status status = core_->Step(); !status.ok()) failed = true;
    }

    absl::MutexLock lock(&mu_);
    snapshot_.num_running = core_->num_running();
    snapshot_.num_waiting = core_->num_waiting();
    snapshot_.num_preemptions = core_->num_preemptions();
    snapshot_.kv = core_->kv_stats();
    snapshot_.healthy = !failed;
    if (stepped) ++snapshot_.num_steps;
    num_in_core_ = core_->num_running() + core_->num_waiting();
    if (stop) break;
  }
}

}  // namespace pagoda::engine
