#include "scheduler/scheduler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace pagoda::scheduler {

using block_manager::Admission;
using block_manager::KvCacheManager;
using block_manager::LookupKind;
using block_manager::PrefixHit;
using block_manager::SequenceView;
using block_manager::SlotRequest;

void Scheduler::WaitingQueue::PushNew(Request* request) {
  if (policy_ == QueuePolicy::kFcfs) {
    fifo_.push_back(request);
  } else {
    by_priority_.emplace(request->priority(), request->arrival_seq(), request);
  }
}

void Scheduler::WaitingQueue::PushPreempted(Request* request) {
  if (policy_ == QueuePolicy::kFcfs) {
    fifo_.push_front(request);
  } else {
    // Its original key: it keeps its place among requests of its priority instead of going
    // behind later arrivals (the bug of vLLM #41951).
    by_priority_.emplace(request->priority(), request->arrival_seq(), request);
  }
}

Request* Scheduler::WaitingQueue::Front() const {
  if (policy_ == QueuePolicy::kFcfs) return fifo_.empty() ? nullptr : fifo_.front();
  return by_priority_.empty() ? nullptr : std::get<2>(*by_priority_.begin());
}

void Scheduler::WaitingQueue::PopFront() {
  if (policy_ == QueuePolicy::kFcfs) {
    fifo_.pop_front();
  } else {
    by_priority_.erase(by_priority_.begin());
  }
}

void Scheduler::WaitingQueue::Remove(Request* request) {
  if (policy_ == QueuePolicy::kFcfs) {
    const auto it = std::find(fifo_.begin(), fifo_.end(), request);
    PAGODA_CHECK(it != fifo_.end());
    fifo_.erase(it);
  } else {
    const size_t erased =
        by_priority_.erase(Key(request->priority(), request->arrival_seq(), request));
    PAGODA_CHECK_EQ(erased, 1u);
  }
}

namespace {

// Serving: blocks as tokens arrive, kept until the request ends.
const AllocationPolicy kDefaultPolicy{};

// The growth reserve as configured, or off where growth is not bounded by max_tokens alone: a
// KV-cache window bounds each request's memory, and unbounded requests have no budget.
GrowthReserve::Options GrowthOptions(const SchedulerOptions& options,
                                     const KvCacheManager& kv_cache) {
  GrowthReserve::Options growth = options.growth_reserve;
  if (options.unbounded_length || !kv_cache.options().window.full()) growth.initial_ratio = 0;
  return growth;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(
    const SchedulerOptions& options, const block_manager::KvCacheManagerOptions& kv_options) {
  if (options.max_num_seqs <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_num_seqs must be positive, got ", options.max_num_seqs));
  }
  if (options.max_num_batched_tokens <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_num_batched_tokens must be positive, got ",
                                                   options.max_num_batched_tokens));
  }
  if (options.max_model_len <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_model_len must be positive, got ", options.max_model_len));
  }
  if (!(options.step_time_ratio == 0 || options.step_time_ratio > 1) ||
      !std::isfinite(options.step_time_ratio)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "step_time_ratio must be 0 (off) or greater than 1, got ", options.step_time_ratio));
  }
  if (absl::Status growth = GrowthReserve::Validate(options.growth_reserve); !growth.ok()) {
    return growth;
  }
  if (options.long_prefill_token_threshold < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "long_prefill_token_threshold must be >= 0, got ", options.long_prefill_token_threshold));
  }
  absl::StatusOr<std::unique_ptr<KvCacheManager>> kv_cache = KvCacheManager::Create(kv_options);
  if (!kv_cache.ok()) return kv_cache.status();
  // A lone request of max_model_len tokens must be admissible in an empty cache, watermark
  // included, or it would wait forever. (Its last token is never computed, but admission
  // checks the whole sequence.)
  // Under a window it holds at most the window's blocks plus a step's chunk; a request of
  // unbounded length, recomputed after a preemption, may take chunks of the whole budget.
  if (options.unbounded_length && kv_options.window.full()) {
    return absl::InvalidArgumentError("unbounded_length needs a KV-cache window");
  }
  const int longest =
      options.unbounded_length ? std::numeric_limits<int>::max() / 2 : options.max_model_len;
  const int needed = (*kv_cache)->MaxLiveBlocks(longest, options.max_num_batched_tokens) +
                     (*kv_cache)->num_watermark_blocks();
  if (needed > (*kv_cache)->num_blocks()) {
    const std::string request =
        options.unbounded_length
            ? std::string("one streaming request (its window plus a step's chunk)")
            : absl::StrCat("one request of max_model_len = ", options.max_model_len, " tokens");
    return absl::InvalidArgumentError(
        absl::StrCat("the KV cache holds ", (*kv_cache)->num_blocks(), " blocks of ",
                     (*kv_cache)->block_size(), " tokens; ", request, " needs ", needed,
                     " (watermark included): lower max_model_len or enlarge the KV cache"));
  }
  if (options.allocation_policy != nullptr &&
      options.allocation_policy->DropsBlocksAfterEachToken() &&
      (*kv_cache)->options().enable_prefix_caching) {
    return absl::InvalidArgumentError(
        "an allocation policy that drops blocks after each token needs prefix caching off");
  }
  return std::unique_ptr<Scheduler>(new Scheduler(options, *std::move(kv_cache)));
}

Scheduler::Scheduler(const SchedulerOptions& options, std::unique_ptr<KvCacheManager> kv_cache)
    : options_(options),
      policy_(options_.allocation_policy != nullptr ? *options_.allocation_policy : kDefaultPolicy),
      kv_cache_(std::move(kv_cache)),
      hasher_(kv_cache_->block_size()),
      waiting_(options.queue_policy),
      step_budget_(StepTimeBudget::Options{.ratio = options.step_time_ratio}),
      growth_(GrowthOptions(options_, *kv_cache_)) {}

absl::Status Scheduler::AddRequest(std::unique_ptr<Request> request) {
  PAGODA_CHECK(request != nullptr);
  PAGODA_CHECK(request->num_tokens() > 0 && request->num_tokens() <= options_.max_model_len)
      << "an unvalidated request of " << request->num_tokens() << " tokens";
  PAGODA_CHECK_EQ(request->num_output_tokens(), 0);
  if (requests_.contains(request->id())) {
    return absl::AlreadyExistsError(
        absl::StrCat("request ", request->id().value(), " is already queued or running"));
  }
  request->arrival_seq_ = next_arrival_seq_++;
  if (kv_cache_->options().enable_prefix_caching) {
    hasher_.Extend(request->tokens_, request->cache_salt_, &request->block_hashes_);
  }
  Request* raw = request.get();
  requests_.emplace(raw->id(), std::move(request));
  waiting_.PushNew(raw);
  return absl::OkStatus();
}

SequenceView Scheduler::View(const Request& request) const {
  return {.id = request.id(),
          .tokens = request.tokens(),
          .block_hashes = request.block_hashes(),
          .extra_key = request.cache_salt(),
          .num_computed_tokens = request.num_computed_tokens()};
}

int Scheduler::CapNewTokens(const Request& request, int num_new_tokens, int budget) const {
  int n = std::min(num_new_tokens, budget);
  if (options_.long_prefill_token_threshold > 0) {
    n = std::min(n, options_.long_prefill_token_threshold);
  }
  if (request.max_tokens_per_step() > 0) n = std::min(n, request.max_tokens_per_step());
  if (num_new_tokens > 1) {
    n = std::min(n, prefill_left_.tokens);
    int fits = step_budget_.TokensWithin(prefill_left_.seconds, request.num_computed_tokens());
    if (step_prefill_tokens_ == 0) fits = std::max(fits, step_budget_.min_chunk());  // progress
    n = std::min(n, fits);
  }
  if (options_.unbounded_length) return n;
  return std::min(n, options_.max_model_len - request.num_computed_tokens());
}

int Scheduler::NumDecoding() const {
  int decoding = 0;
  for (const Request* request : running_) {
    decoding += request->num_tokens() - request->num_computed_tokens() == 1 ? 1 : 0;
  }
  return decoding;
}

void Scheduler::CountTokens(const Request& request, int n) {
  if (request.num_tokens() - request.num_computed_tokens() > 1) {
    const int start = request.num_computed_tokens();
    if (prefill_left_.tokens != StepTimeBudget::kUnlimited) prefill_left_.tokens -= n;
    prefill_left_.seconds -= step_budget_.ChunkSeconds(n, start);
    step_prefill_tokens_ += n;
    step_prefill_span_ += StepTimeBudget::Span(n, start);
  } else {
    step_decode_tokens_ += n;
  }
}

void Scheduler::ObserveStepTime(double seconds) {
  step_budget_.Observe(step_prefill_tokens_, step_prefill_span_, step_decode_tokens_, seconds);
}

Request* Scheduler::ChooseVictim() const {
  PAGODA_CHECK(!running_.empty());
  // running_ is in admission order, so scanning backwards and keeping the first best gives
  // ties to the most recently admitted.
  const auto better = [&](const Request* a, const Request* b) {
    if (options_.queue_policy == QueuePolicy::kPriority && a->priority() != b->priority()) {
      return a->priority() > b->priority();
    }
    if (options_.preemption_policy == PreemptionPolicy::kLeastComputed) {
      return a->num_computed_tokens() < b->num_computed_tokens();
    }
    return false;
  };
  Request* victim = running_.back();
  for (auto it = running_.rbegin() + 1; it != running_.rend(); ++it) {
    if (better(*it, victim)) victim = *it;
  }
  return victim;
}

void Scheduler::RemoveFromRunning(Request* request) {
  const auto it = std::find(running_.begin(), running_.end(), request);
  PAGODA_CHECK(it != running_.end());
  running_.erase(it);
}

void Scheduler::Preempt(Request* victim, std::optional<int> computed_before_step) {
  if (computed_before_step.has_value()) {
    kv_cache_->FreeUncomputed(victim->id(), *computed_before_step);
  } else {
    kv_cache_->Free(victim->id());
  }
  RemoveFromRunning(victim);
  victim->num_computed_tokens_ = 0;
  victim->state_ = RequestState::kWaiting;
  ++victim->num_preemptions_;
  ++num_preemptions_;
  waiting_.PushPreempted(victim);
}

void Scheduler::ScheduleRunning(StepPlan& plan, int& budget) {
  // A snapshot: preemptions remove requests from running_ while we walk it.
  const std::vector<Request*> order = running_;
  for (Request* request : order) {
    if (budget <= 0) break;
    if (request->state_ != RequestState::kRunning) continue;  // preempted earlier in this loop
    const int n =
        CapNewTokens(*request, request->num_tokens() - request->num_computed_tokens(), budget);
    if (n <= 0) continue;
    const int blocks_before = static_cast<int>(kv_cache_->GetBlockTable(request->id()).size());
    bool allocated = false;
    while (true) {
      if (kv_cache_->AllocateSlots(View(*request), PrefixHit{}, SlotRequest{.num_new_tokens = n})) {
        allocated = true;
        break;
      }
      Request* victim = ChooseVictim();
      const auto scheduled =
          std::find_if(plan.requests.begin(), plan.requests.end(),
                       [&](const ScheduledRequest& s) { return s.id == victim->id(); });
      // A victim scheduled earlier in this step registered blocks its tokens were to fill:
      // they leave the prefix cache, since they will never be computed.
      std::optional<int> computed;
      if (scheduled != plan.requests.end()) {
        budget += scheduled->num_new_tokens;
        computed = scheduled->num_computed_tokens;
        plan.requests.erase(scheduled);
      }
      Preempt(victim, computed);
      plan.preempted.push_back(victim->id());
      if (victim == request) break;
    }
    // Like vLLM: once a running request cannot grow, the cache is full and the rest wait.
    if (!allocated) break;
    budget -= n;
    CountTokens(*request, n);
    plan.requests.push_back(ScheduledRequest{
        .id = request->id(),
        .request = request,
        .num_computed_tokens = request->num_computed_tokens(),
        .num_new_tokens = n,
        .num_new_blocks =
            static_cast<int>(kv_cache_->GetBlockTable(request->id()).size()) - blocks_before});
  }
}

void Scheduler::ScheduleWaiting(StepPlan& plan, int& budget) {
  int64_t reserved = ReservedGrowthTokens();
  while (budget > 0 && num_running() + num_loading() < options_.max_num_seqs && !waiting_.empty()) {
    Request* request = waiting_.Front();
    PAGODA_CHECK_EQ(request->num_computed_tokens(), 0);
    const PrefixHit hit =
        request->skips_prefix_cache()
            ? PrefixHit{}
            : kv_cache_->GetComputedBlocks(View(*request), request->ever_admitted_
                                                               ? LookupKind::kResumedAfterPreemption
                                                               : LookupKind::kNewRequest);
    // What the running requests may still grow into, and this one (counted once admitted).
    const int64_t own_reserve = growth_.ReserveTokens(RemainingTokens(*request));
    const int reserved_blocks = ReservedBlocks(reserved + own_reserve);
    if (const int external = ExternalHitBlocks(*request, hit); external > 0) {
      // head-of-line, as below
      if (!AdmitForLoad(request, hit, external, reserved_blocks, plan)) break;
      reserved += own_reserve;
      continue;
    }
    request->num_computed_tokens_ = hit.num_tokens;
    const int n = CapNewTokens(*request, request->num_tokens() - hit.num_tokens, budget);
    // With the hit counted as computed, the view asks for slots after the hit only.
    SequenceView view = View(*request);
    view.num_computed_tokens = 0;
    const int lookahead =
        std::max(0, policy_.AdmissionLookaheadTokens(options_.max_model_len, hit.num_tokens, n));
    if (n <= 0 || !kv_cache_->AllocateSlots(view, hit,
                                            SlotRequest{.num_new_tokens = n,
                                                        .num_lookahead_tokens = lookahead,
                                                        .admission = Admission::kNewRequest,
                                                        .num_reserved_blocks = reserved_blocks})) {
      request->num_computed_tokens_ = 0;
      break;  // head-of-line: later requests do not overtake it
    }
    waiting_.PopFront();
    running_.push_back(request);
    reserved += own_reserve;
    request->state_ = RequestState::kRunning;
    if (!request->ever_admitted_) {
      request->ever_admitted_ = true;
      request->num_cached_prompt_tokens_ = hit.num_tokens;
    }
    budget -= n;
    CountTokens(*request, n);
    plan.requests.push_back(ScheduledRequest{
        .id = request->id(),
        .request = request,
        .num_computed_tokens = hit.num_tokens,
        .num_new_tokens = n,
        .newly_admitted = true,
        .num_prefix_hit_tokens = hit.num_tokens,
        .num_new_blocks = static_cast<int>(kv_cache_->GetBlockTable(request->id()).size()) -
                          static_cast<int>(hit.blocks.size())});
  }
}

int Scheduler::RemainingTokens(const Request& request) const {
  const int limit = request.max_num_tokens() > 0
                        ? std::min(request.max_num_tokens(), options_.max_model_len)
                        : options_.max_model_len;
  return std::max(0, limit - request.num_tokens());
}

int Scheduler::OutputBudget(const Request& request) const {
  return RemainingTokens(request) + request.num_output_tokens();
}

int64_t Scheduler::ReservedGrowthTokens() const {
  if (!growth_.enabled()) return 0;
  int64_t reserved = 0;
  for (const std::vector<Request*>* list : {&running_, &loading_}) {
    for (const Request* request : *list)
      reserved += growth_.ReserveTokens(RemainingTokens(*request));
  }
  return reserved;
}

int Scheduler::ReservedBlocks(int64_t reserved_tokens) const {
  const int64_t blocks = (reserved_tokens + kv_cache_->block_size() - 1) / kv_cache_->block_size();
  // More than the pool holds only fails the admission; the clamp keeps it an int.
  return static_cast<int>(std::min<int64_t>(blocks, kv_cache_->num_blocks()));
}

void Scheduler::ObserveGrowth(const StepPlan& plan) {
  if (!growth_.enabled()) return;
  if (plan.preempted.empty()) {
    if (!plan.requests.empty()) growth_.ObserveStep();
    return;
  }
  int64_t generated = 0;
  int64_t budget = 0;
  for (const Request* request : running_) {
    generated += request->num_output_tokens();
    budget += OutputBudget(*request);
  }
  growth_.ObservePreemption(generated, budget, num_running());
}

int Scheduler::ExternalHitBlocks(const Request& request, const PrefixHit& hit) {
  if (external_ == nullptr || request.skips_prefix_cache() ||
      !kv_cache_->options().enable_prefix_caching || !kv_cache_->options().window.full()) {
    return 0;
  }
  const int first = static_cast<int>(hit.blocks.size());
  // The last token is always computed, so that its logits exist.
  const int max_blocks = (request.num_tokens() - 1) / kv_cache_->block_size() - first;
  return max_blocks > 0 ? std::min(max_blocks, external_->MatchForLoad(request, first, max_blocks))
                        : 0;
}

bool Scheduler::AdmitForLoad(Request* request, const PrefixHit& hit, int num_blocks,
                             int reserved_blocks, StepPlan& plan) {
  SequenceView view = View(*request);
  view.num_computed_tokens = 0;
  if (!kv_cache_->AllocateSlots(view, hit,
                                SlotRequest{.num_new_tokens = num_blocks * kv_cache_->block_size(),
                                            .admission = Admission::kNewRequest,
                                            .num_reserved_blocks = reserved_blocks,
                                            .defer_registration = true})) {
    return false;
  }
  waiting_.PopFront();
  loading_.push_back(request);
  request->state_ = RequestState::kLoading;
  request->num_computed_tokens_ = hit.num_tokens;
  if (!request->ever_admitted_) {
    request->ever_admitted_ = true;
    request->num_cached_prompt_tokens_ = hit.num_tokens;
  }
  const absl::Span<const BlockId> table = kv_cache_->GetBlockTable(request->id());
  const int first = static_cast<int>(hit.blocks.size());
  plan.loads.push_back(LoadPlan{
      .id = request->id(),
      .request = request,
      .first_block = first,
      .blocks = std::vector<BlockId>(table.begin() + first, table.begin() + first + num_blocks)});
  return true;
}

bool Scheduler::FinishLoad(RequestId id, int loaded_blocks) {
  Request* request = GetRequest(id);
  if (request == nullptr || request->state_ != RequestState::kLoading) return false;
  PAGODA_CHECK_GE(loaded_blocks, 0);
  loading_.erase(std::find(loading_.begin(), loading_.end(), request));
  request->num_computed_tokens_ += loaded_blocks * kv_cache_->block_size();
  PAGODA_CHECK_LT(request->num_computed_tokens_, request->num_tokens());
  kv_cache_->CommitLoadedBlocks(View(*request), request->num_computed_tokens_);
  // Served from the cache at the first admission, the lower tiers included.
  if (request->num_preemptions_ == 0) {
    request->num_cached_prompt_tokens_ = request->num_computed_tokens_;
  }
  request->state_ = RequestState::kRunning;
  running_.push_back(request);
  return true;
}

StepPlan Scheduler::Schedule() {
  StepPlan plan;
  int budget = options_.max_num_batched_tokens;
  prefill_left_ = NextPrefillLimits();
  step_prefill_tokens_ = step_decode_tokens_ = 0;
  step_prefill_span_ = 0;
  ScheduleRunning(plan, budget);
  // vLLM: no admissions in a step that preempted, the cache is under pressure.
  if (plan.preempted.empty()) ScheduleWaiting(plan, budget);
  ObserveGrowth(plan);

  for (ScheduledRequest& scheduled : plan.requests) {
    Request& request = *scheduled.request;
    request.num_computed_tokens_ = scheduled.num_computed_tokens + scheduled.num_new_tokens;
    scheduled.samples = request.num_computed_tokens_ == request.num_tokens();
    // Taken last: allocations above may have moved other requests' tables.
    scheduled.block_table = kv_cache_->GetBlockTable(scheduled.id);
    plan.num_scheduled_tokens += scheduled.num_new_tokens;
  }
  PAGODA_CHECK_LE(plan.num_scheduled_tokens, options_.max_num_batched_tokens);
  return plan;
}

void Scheduler::AppendToken(RequestId id, TokenId token) {
  const auto it = requests_.find(id);
  PAGODA_CHECK(it != requests_.end()) << "unknown request " << id.value();
  AppendToken(*it->second, token);
}

void Scheduler::AppendToken(Request& request, TokenId token) {
  const RequestId id = request.id();
  PAGODA_CHECK(request.state_ == RequestState::kRunning);
  PAGODA_CHECK_EQ(request.num_computed_tokens_, request.num_tokens())
      << "request " << id.value() << " has tokens left to compute";
  request.tokens_.push_back(token);
  if (kv_cache_->options().enable_prefix_caching) {
    hasher_.Extend(request.tokens_, request.cache_salt_, &request.block_hashes_);
  }
  if (policy_.DropsBlocksAfterEachToken()) {
    kv_cache_->Free(id);
    request.num_computed_tokens_ = 0;
  }
}

bool Scheduler::FinishRequest(RequestId id) {
  const auto it = requests_.find(id);
  if (it == requests_.end()) return false;
  Request* request = it->second.get();
  if (request->state_ == RequestState::kRunning) {
    RemoveFromRunning(request);
  } else if (request->state_ == RequestState::kLoading) {
    loading_.erase(std::find(loading_.begin(), loading_.end(), request));
  } else {
    waiting_.Remove(request);
  }
  kv_cache_->Free(id);
  requests_.erase(it);
  return true;
}

int64_t Scheduler::NumComputedTokensRunning() const {
  int64_t total = 0;
  for (const Request* request : running_) total += request->num_computed_tokens();
  return total;
}

const Request* Scheduler::GetRequest(RequestId id) const {
  const auto it = requests_.find(id);
  return it == requests_.end() ? nullptr : it->second.get();
}

Request* Scheduler::GetRequest(RequestId id) {
  const auto it = requests_.find(id);
  return it == requests_.end() ? nullptr : it->second.get();
}

std::vector<RequestId> Scheduler::RequestIds() const {
  std::vector<RequestId> ids;
  ids.reserve(requests_.size());
  for (const auto& [id, request] : requests_) ids.push_back(id);
  return ids;
}

}  // namespace pagoda::scheduler
