#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "block_manager/block_hash.h"
#include "block_manager/kv_cache_manager.h"
#include "common/ids.h"
#include "scheduler/allocation_policy.h"
#include "scheduler/growth_reserve.h"
#include "scheduler/request.h"
#include "scheduler/step_plan.h"
#include "scheduler/step_time_budget.h"

namespace pagoda::scheduler {

// The order in which waiting requests are admitted.
enum class QueuePolicy {
  kFcfs,      // arrival order; a preempted request goes back to the head
  kPriority,  // lowest Request::priority() first, ties in arrival order
};

// Which running request gives up its blocks when a running request cannot grow.
enum class PreemptionPolicy {
  kLastAdmitted,   // the most recently admitted (vLLM's FCFS choice)
  kLeastComputed,  // the one with the fewest computed tokens: the least work to redo
                   // (vLLM RFC #54644); ties go to the most recently admitted
};

struct SchedulerOptions {
  int max_num_seqs = 256;             // running requests at most, > 0
  int max_num_batched_tokens = 2048;  // token budget of one step, > 0
  int max_model_len = 2048;           // prompt plus output tokens at most, > 0
  // Requests may grow past max_model_len (prompts may not): StreamingLLM, where the KV-cache
  // window bounds a request's memory whatever its length.
  bool unbounded_length = false;
  // When > 0, no request gets more than this many tokens in one step, so that several long
  // prompts share the budget instead of one taking it all (vLLM's
  // long_prefill_token_threshold). 0 = off.
  int long_prefill_token_threshold = 0;
  // When > 1, a step that carries running decodes takes at most as many prefill tokens as keep
  // its model time within this many decode-only steps (StepTimeBudget, fitted online from
  // ObserveStepTime), so that prompt chunks do not stall the decodes. Steps without decodes
  // still take max_num_batched_tokens. 0 = off.
  double step_time_ratio = 0;
  // When on (initial_ratio > 0), an admission must leave free, beyond the watermark, a learned
  // share of every running request's remaining output budget (GrowthReserve), so that a full
  // pool is not filled with prompts that outputs then preempt. Only without a KV-cache window
  // and with bounded lengths (a window bounds each request's memory). Default: off.
  GrowthReserve::Options growth_reserve;
  QueuePolicy queue_policy = QueuePolicy::kFcfs;
  // Under QueuePolicy::kPriority the victim is always a request with the largest priority
  // value; this policy breaks ties among them.
  PreemptionPolicy preemption_policy = PreemptionPolicy::kLastAdmitted;
  // How KV blocks are sized and kept. Null in serving (the default policy: paging with a KV
  // cache); the ablations of bench/ set their baselines here.
  std::shared_ptr<const AllocationPolicy> allocation_policy;
};

// Tiers below the device pool (kv_offload/, run by the engine): consulted at admission past the
// device prefix hit.
class ExternalPrefixCache {
 public:
  virtual ~ExternalPrefixCache() = default;
  // How many blocks of `request`'s chain, from block `first_block` on and at most `max_blocks`,
  // a lower tier holds and are worth loading rather than recomputing. Engine thread.
  virtual int MatchForLoad(const Request& request, int first_block, int max_blocks) = 0;
};

// Continuous batching with vLLM V1 semantics (research/vllm-engine.md §1.7-1.9). Each
// Schedule() call plans one engine step under the token budget:
//   1. running requests first, in admission order, each getting min(remaining, budget) tokens
//      (decodes take one token; long prompts are chunked). When the KV cache cannot hold a
//      request's new tokens, running requests are preempted by recompute (all their blocks
//      freed, back to the waiting queue with their generated tokens) until it fits, or the
//      request itself is the victim;
//   2. then, if nothing was preempted, waiting requests in queue order while the budget and
//      max_num_seqs allow. An admission first looks up the longest cached prefix and succeeds
//      only if the whole current sequence fits (plus the manager's watermark and, when on, the
//      growth reserve of the running requests and its own), so a long prompt is not admitted
//      on its first chunk and preempted on its second. Admission stops at the first request
//      that does not fit (no overtaking, so a large request cannot starve).
//
// The engine then runs the plan, appends each sampled token with AppendToken(), and calls
// FinishRequest() for requests that stop or are aborted (blocks are freed at once).
//
// The scheduler owns the KV-cache manager and each request's one record (Request, which a
// front end may derive from to keep its own per-request state there: the engine does). A plan
// hands out stable pointers to those records, so the engine needs no lookup per token.
//
// Not thread-safe: confined to the engine thread.
class Scheduler {
 public:
  // Builds the scheduler and the KV-cache manager it owns (as vLLM's scheduler owns its
  // KVCacheManager). Fails when the options are out of range or the KV cache cannot hold one
  // request of max_model_len tokens (such a request could never run, even alone).
  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(
      const SchedulerOptions& options, const block_manager::KvCacheManagerOptions& kv_options);

  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a new request (state kWaiting, nothing computed). The request was validated upstream
  // (engine/request_validation.h): a prompt of 1 to max_model_len tokens and no output yet,
  // asserted here, not checked again. AlreadyExists, with nothing queued, when a request with
  // the same id is unfinished.
  absl::Status AddRequest(std::unique_ptr<Request> request);

  // Plans the next step; see the class comment. Advances num_computed_tokens() of every
  // scheduled request by its new tokens. An empty plan means nothing can run now.
  StepPlan Schedule();

  // The model time of the step last planned (seconds): fits the step-time budget
  // (SchedulerOptions::step_time_ratio). Call once per non-empty plan, after running it.
  void ObserveStepTime(double seconds);
  // What the next step may add in prompt chunks beside its decodes (no limit when none is
  // running or the budget is off).
  StepTimeBudget::Limits NextPrefillLimits() const {
    return step_budget_.StepLimits(NumDecoding());
  }

  // Appends a token sampled for `id` (or `request`, as the plan gave it: no lookup), which must
  // be running and have been scheduled with `samples` in the last plan (checked).
  void AppendToken(RequestId id, TokenId token);
  void AppendToken(Request& request, TokenId token);

  // Tiers below the device pool; not owned, may be null (the default: none). With one, an
  // admission whose chain goes on in a lower tier takes blocks for that part too and waits in
  // state kLoading (StepPlan::loads) until FinishLoad. Not used under a KV-cache window.
  void set_external_prefix_cache(ExternalPrefixCache* cache) { external_ = cache; }
  // Ends the load of a kLoading request: its first `loaded_blocks` planned blocks hold their
  // K/V (they join the prefix cache), the rest are recomputed; it then runs. False for an
  // unknown id or a request that is not loading.
  bool FinishLoad(RequestId id, int loaded_blocks);
  int num_loading() const { return static_cast<int>(loading_.size()); }
  // Running requests, or waiting ones that may be admitted: a step may do something.
  bool has_schedulable() const { return !running_.empty() || !waiting_.empty(); }

  // Removes a finished or aborted request, running or waiting, and frees its KV blocks now.
  // Returns false (and does nothing) for an unknown id.
  bool FinishRequest(RequestId id);

  // Null for an unknown id. Valid until the request is finished.
  const Request* GetRequest(RequestId id) const;
  Request* GetRequest(RequestId id);
  // The ids of every unfinished request, running or waiting, in no particular order.
  std::vector<RequestId> RequestIds() const;

  int num_running() const { return static_cast<int>(running_.size()); }
  // Loading requests count as waiting.
  int num_waiting() const { return static_cast<int>(requests_.size()) - num_running(); }
  bool has_requests() const { return !requests_.empty(); }
  // Tokens whose K/V the running requests hold (sum of num_computed_tokens()). O(running).
  int64_t NumComputedTokensRunning() const;
  // Preemptions since start-up.
  int64_t num_preemptions() const { return num_preemptions_; }
  // The growth reserve's current ratio (0 when off).
  double growth_reserve_ratio() const { return growth_.enabled() ? growth_.ratio() : 0; }
  const SchedulerOptions& options() const { return options_; }
  const block_manager::KvCacheManager& kv_cache() const { return *kv_cache_; }
  // For KV events (KvCacheManager::EnableEvents, TakeEvents) only.
  block_manager::KvCacheManager& mutable_kv_cache() { return *kv_cache_; }

 private:
  // Waiting requests in admission order under the queue policy.
  class WaitingQueue {
   public:
    explicit WaitingQueue(QueuePolicy policy) : policy_(policy) {}
    void PushNew(Request* request);        // an arrival
    void PushPreempted(Request* request);  // a preempted request
    Request* Front() const;
    void PopFront();
    void Remove(Request* request);
    bool empty() const { return fifo_.empty() && by_priority_.empty(); }

   private:
    using Key = std::tuple<int, uint64_t, Request*>;
    QueuePolicy policy_;
    std::deque<Request*> fifo_;  // kFcfs
    std::set<Key> by_priority_;  // kPriority
  };

  Scheduler(const SchedulerOptions& options,
            std::unique_ptr<block_manager::KvCacheManager> kv_cache);

  block_manager::SequenceView View(const Request& request) const;
  int CapNewTokens(const Request& request, int num_new_tokens, int budget) const;
  // Running requests with one token left to compute (decodes).
  int NumDecoding() const;
  // Counts `n` new tokens of `request` against the step's prefill cap or its decodes.
  void CountTokens(const Request& request, int n);
  Request* ChooseVictim() const;
  // Frees the victim's blocks; `computed_before_step` is set when the victim was scheduled
  // earlier in this step (KvCacheManager::FreeUncomputed).
  void Preempt(Request* victim, std::optional<int> computed_before_step = std::nullopt);
  void ScheduleRunning(StepPlan& plan, int& budget);
  void ScheduleWaiting(StepPlan& plan, int& budget);
  // Tokens `request` may still add (its max_num_tokens, or max_model_len, less its tokens) and
  // its whole output budget.
  int RemainingTokens(const Request& request) const;
  int OutputBudget(const Request& request) const;
  // Tokens the growth reserve keeps for the running and loading requests (0 when off).
  int64_t ReservedGrowthTokens() const;
  // Blocks of `reserved_tokens` rounded up; 0 when the reserve is off.
  int ReservedBlocks(int64_t reserved_tokens) const;
  // Updates the growth reserve after planning a step.
  void ObserveGrowth(const StepPlan& plan);
  // Blocks of `request`'s chain after `hit` that a lower tier offers (0 without one).
  int ExternalHitBlocks(const Request& request, const block_manager::PrefixHit& hit);
  // Admits `request` with `hit` and `num_blocks` blocks to load; false when they do not fit.
  bool AdmitForLoad(Request* request, const block_manager::PrefixHit& hit, int num_blocks,
                    int reserved_blocks, StepPlan& plan);
  void RemoveFromRunning(Request* request);

  const SchedulerOptions options_;
  const AllocationPolicy& policy_;  // options_.allocation_policy's, or the default
  const std::unique_ptr<block_manager::KvCacheManager> kv_cache_;
  const block_manager::BlockHasher hasher_;
  absl::flat_hash_map<RequestId, std::unique_ptr<Request>> requests_;
  std::vector<Request*> running_;  // in admission order
  std::vector<Request*> loading_;  // in admission order
  ExternalPrefixCache* external_ = nullptr;
  WaitingQueue waiting_;
  uint64_t next_arrival_seq_ = 0;
  int64_t num_preemptions_ = 0;
  StepTimeBudget step_budget_;
  GrowthReserve growth_;
  // The step being planned (then the last one planned): the prompt tokens and seconds it may
  // still take, and the prompt tokens (with their span) and decodes it holds.
  StepTimeBudget::Limits prefill_left_;
  int step_prefill_tokens_ = 0;
  double step_prefill_span_ = 0;
  int step_decode_tokens_ = 0;
};

}  // namespace pagoda::scheduler
