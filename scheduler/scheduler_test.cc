#include "scheduler/scheduler.h"

#include <algorithm>
#include <memory>
#include <numeric>
#include <random>
#include <tuple>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pagoda::scheduler {
namespace {

using block_manager::KvCacheManagerOptions;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

// The options of the KV-cache manager the scheduler builds and owns.
KvCacheManagerOptions MakeKv(int num_blocks, int block_size = 4, bool prefix_caching = true,
                             double watermark = 0.0) {
  return {.num_blocks = num_blocks,
          .block_size = block_size,
          .enable_prefix_caching = prefix_caching,
          .watermark_ratio = watermark};
}

// A prompt of `n` tokens starting at `first` (distinct prompts share no prefix).
std::unique_ptr<Request> MakeRequest(uint64_t id, int n, int first = 0, int priority = 0) {
  std::vector<TokenId> prompt(n);
  std::iota(prompt.begin(), prompt.end(), first);
  return std::make_unique<Request>(RequestId(id), std::move(prompt), priority);
}

// Appends a token to every request the plan samples, as the engine does: through the record
// the plan hands out (the scheduler's own, no lookup).
void SampleAll(Scheduler& s, const StepPlan& plan, TokenId token = 7) {
  for (const ScheduledRequest& r : plan.requests) {
    ASSERT_NE(r.request, nullptr);
    ASSERT_EQ(r.request, s.GetRequest(r.id));
    if (r.samples) s.AppendToken(*r.request, token);
  }
}

std::vector<uint64_t> Ids(const StepPlan& plan) {
  std::vector<uint64_t> ids;
  for (const ScheduledRequest& r : plan.requests) ids.push_back(r.id.value());
  return ids;
}

TEST(SchedulerTest, CreateRejectsBadOptions) {
  auto kv = MakeKv(8);
  EXPECT_FALSE(Scheduler::Create({.max_num_seqs = 0}, kv).ok());
  EXPECT_FALSE(Scheduler::Create({.max_num_batched_tokens = 0}, kv).ok());
  EXPECT_FALSE(Scheduler::Create({.max_model_len = 0}, kv).ok());
  EXPECT_FALSE(
      Scheduler::Create({.max_model_len = 32, .long_prefill_token_threshold = -1}, kv).ok());
  // 8 blocks of 4 tokens hold 32 tokens: a max_model_len of 33 could never run alone.
  EXPECT_TRUE(Scheduler::Create({.max_model_len = 32}, kv).ok());
  const auto too_long = Scheduler::Create({.max_model_len = 33}, kv);
  ASSERT_FALSE(too_long.ok());
  EXPECT_THAT(std::string(too_long.status().message()), ::testing::HasSubstr("max_model_len"));
  // The watermark counts too.
  auto kv_watermark = MakeKv(8, 4, true, 0.25);
  EXPECT_FALSE(Scheduler::Create({.max_model_len = 32}, kv_watermark).ok());
  EXPECT_TRUE(Scheduler::Create({.max_model_len = 24}, kv_watermark).ok());
  // The growth reserve: a ratio in [0, 1], a floor at most the ratio, a positive decay.
  for (const GrowthReserve::Options bad :
       {GrowthReserve::Options{.initial_ratio = 1.5}, GrowthReserve::Options{.initial_ratio = -0.1},
        GrowthReserve::Options{.initial_ratio = 0.5, .min_ratio = 0.6},
        GrowthReserve::Options{.initial_ratio = 0.5, .decay_steps = 0}}) {
    EXPECT_FALSE(Scheduler::Create({.max_model_len = 32, .growth_reserve = bad}, kv).ok());
  }
  EXPECT_TRUE(
      Scheduler::Create({.max_model_len = 32, .growth_reserve = {.initial_ratio = 1}}, kv).ok());
}

// The engine validates requests once (engine/request_validation.h); the scheduler asserts what
// it relies on instead of checking again.
TEST(SchedulerDeathTest, AddRequestAssertsAValidatedRequest) {
  auto kv = MakeKv(8);
  auto s = *Scheduler::Create({.max_model_len = 16}, kv);
  EXPECT_DEATH((void)s->AddRequest(MakeRequest(1, 0)), "an unvalidated request of 0 tokens");
  EXPECT_DEATH((void)s->AddRequest(MakeRequest(1, 17)), "an unvalidated request of 17 tokens");
  EXPECT_TRUE(s->AddRequest(MakeRequest(1, 16)).ok());
  EXPECT_EQ(s->AddRequest(MakeRequest(1, 3)).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(s->num_waiting(), 1);
}

TEST(SchedulerTest, ChunkedPrefillThenDecode) {
  auto kv = MakeKv(64);
  auto s = *Scheduler::Create({.max_num_batched_tokens = 32, .max_model_len = 128}, kv);
  ASSERT_TRUE(s->AddRequest(MakeRequest(1, 100)).ok());
  std::vector<int> chunks;
  std::vector<bool> samples;
  for (int step = 0; step < 5; ++step) {
    const StepPlan plan = s->Schedule();
    ASSERT_EQ(plan.requests.size(), 1u);
    EXPECT_EQ(plan.num_scheduled_tokens, plan.requests[0].num_new_tokens);
    EXPECT_EQ(plan.requests[0].newly_admitted, step == 0);
    chunks.push_back(plan.requests[0].num_new_tokens);
    samples.push_back(plan.requests[0].samples);
    // The block table covers every computed token.
    EXPECT_GE(static_cast<int>(plan.requests[0].block_table.size()) * 4,
              plan.requests[0].num_computed_tokens + plan.requests[0].num_new_tokens);
    SampleAll(*s, plan);
  }
  EXPECT_THAT(chunks, ElementsAre(32, 32, 32, 4, 1));
  EXPECT_THAT(samples, ElementsAre(false, false, false, true, true));
  EXPECT_EQ(s->GetRequest(RequestId(1))->num_output_tokens(), 2);
}

// A request with its own per-step cap (prompt scoring) is chunked by it, whatever the budget.
// (Skipping the prefix cache is checked through the engine: EngineLlamaTest.PromptLogprobs...)
TEST(SchedulerTest, PerRequestStepCapChunksThePrompt) {
  auto kv = MakeKv(64);
  auto s = *Scheduler::Create({.max_num_batched_tokens = 512, .max_model_len = 128}, kv);
  std::unique_ptr<Request> capped = MakeRequest(1, 100);
  capped->set_max_tokens_per_step(24);
  capped->set_skips_prefix_cache(true);
  ASSERT_TRUE(s->AddRequest(std::move(capped)).ok());
  std::vector<int> chunks;
  for (int step = 0; step < 5; ++step) {
    const StepPlan plan = s->Schedule();
    ASSERT_EQ(plan.requests.size(), 1u);
    chunks.push_back(plan.requests[0].num_new_tokens);
    SampleAll(*s, plan);
  }
  EXPECT_EQ(chunks, std::vector<int>({24, 24, 24, 24, 4}));
  EXPECT_EQ(s->num_running(), 1);
}

TEST(SchedulerTest, RunningDecodesGetTheBudgetBeforeWaitingPrompts) {
  auto kv = MakeKv(64);
  auto s = *Scheduler::Create({.max_num_batched_tokens = 10, .max_model_len = 64}, kv);
  for (uint64_t id = 1; id <= 3; ++id)
    ASSERT_TRUE(s->AddRequest(MakeRequest(id, 2, 100 * id)).ok());
  SampleAll(*s, s->Schedule());  // all three prompts fit: 6 tokens
  ASSERT_TRUE(s->AddRequest(MakeRequest(4, 50, 1000)).ok());
  const StepPlan plan = s->Schedule();
  EXPECT_THAT(Ids(plan), ElementsAre(1, 2, 3, 4));
  EXPECT_EQ(plan.requests[0].num_new_tokens, 1);
  EXPECT_EQ(plan.requests[3].num_new_tokens, 7);  // what the three decodes left
  EXPECT_FALSE(plan.requests[3].samples);
  EXPECT_EQ(plan.num_scheduled_tokens, 10);
}

TEST(SchedulerTest, StepTimeRatioCapsPromptChunksBesideDecodesOnly) {
  auto kv = MakeKv(128);
  auto s = *Scheduler::Create(
      {.max_num_batched_tokens = 256, .max_model_len = 256, .step_time_ratio = 2}, kv);
  EXPECT_FALSE(Scheduler::Create({.max_model_len = 64, .step_time_ratio = 1}, kv).ok());
  EXPECT_FALSE(Scheduler::Create({.max_model_len = 64, .step_time_ratio = -2}, kv).ok());
  // No decodes yet: the first prompt takes the whole budget it needs.
  ASSERT_TRUE(s->AddRequest(MakeRequest(1, 200, 0)).ok());
  StepPlan plan = s->Schedule();
  ASSERT_EQ(plan.requests.size(), 1u);
  EXPECT_EQ(plan.requests[0].num_new_tokens, 200);
  EXPECT_EQ(s->NextPrefillLimits().tokens, StepTimeBudget::kUnlimited);  // none sampled yet
  s->ObserveStepTime(0.030 + 0.0015 * 200);
  SampleAll(*s, plan);
  EXPECT_EQ(s->NextPrefillLimits().tokens, 64);  // request 1 now decodes; nothing fitted yet
  // A decode beside a new prompt: one step seen is no fit yet, so the initial chunk.
  ASSERT_TRUE(s->AddRequest(MakeRequest(2, 150, 1000)).ok());
  plan = s->Schedule();
  ASSERT_THAT(Ids(plan), ElementsAre(1, 2));
  EXPECT_EQ(plan.requests[0].num_new_tokens, 1);
  EXPECT_EQ(plan.requests[1].num_new_tokens, 64);
  s->ObserveStepTime(0.030 + 0.0015 * 64);
  SampleAll(*s, plan);
  // The fit (30 ms a step, 1.5 ms a prompt token) now allows 20 prompt tokens beside decodes.
  plan = s->Schedule();
  ASSERT_THAT(Ids(plan), ElementsAre(1, 2));
  EXPECT_EQ(plan.requests[1].num_new_tokens, 20);
  EXPECT_EQ(plan.num_scheduled_tokens, 21);
  s->ObserveStepTime(0.030 + 0.0015 * 20);
  SampleAll(*s, plan);
  // Without the decode (request 1 finished), the rest of the prompt goes in one step.
  ASSERT_TRUE(s->FinishRequest(RequestId(1)));
  plan = s->Schedule();
  ASSERT_THAT(Ids(plan), ElementsAre(2));
  EXPECT_EQ(plan.requests[0].num_new_tokens, 150 - 64 - 20);
}

TEST(SchedulerTest, LongPrefillThresholdSharesTheBudget) {
  auto kv = MakeKv(64);
  auto s = *Scheduler::Create(
      {.max_num_batched_tokens = 32, .max_model_len = 64, .long_prefill_token_threshold = 8}, kv);
  ASSERT_TRUE(s->AddRequest(MakeRequest(1, 40, 0)).ok());
  ASSERT_TRUE(s->AddRequest(MakeRequest(2, 40, 100)).ok());
  const StepPlan plan = s->Schedule();
  ASSERT_EQ(plan.requests.size(), 2u);
  EXPECT_EQ(plan.requests[0].num_new_tokens, 8);
  EXPECT_EQ(plan.requests[1].num_new_tokens, 8);
}

TEST(SchedulerTest, MaxNumSeqsBoundsRunningRequests) {
  auto kv = MakeKv(64);
  auto s = *Scheduler::Create({.max_num_seqs = 2, .max_model_len = 64}, kv);
  for (uint64_t id = 1; id <= 3; ++id) ASSERT_TRUE(s->AddRequest(MakeRequest(id, 3, 10 * id)).ok());
  const StepPlan plan = s->Schedule();
  EXPECT_THAT(Ids(plan), ElementsAre(1, 2));
  EXPECT_EQ(s->num_running(), 2);
  EXPECT_EQ(s->num_waiting(), 1);
  SampleAll(*s, plan);
  ASSERT_TRUE(s->FinishRequest(RequestId(1)));
  EXPECT_THAT(Ids(s->Schedule()), ElementsAre(2, 3));
}

TEST(SchedulerTest, AdmissionNeedsTheWholeSequenceAndDoesNotOvertake) {
  // 8 blocks of 4 tokens. Request 1 holds 5 blocks, then 6; request 2's 16-token prompt needs
  // 4 blocks, so it is not admitted on a first chunk that would fit; request 3 (1 block) does
  // not overtake it.
  auto kv = MakeKv(8);
  auto s = *Scheduler::Create({.max_num_batched_tokens = 4, .max_model_len = 32}, kv);
  ASSERT_TRUE(s->AddRequest(MakeRequest(1, 20, 0)).ok());
  for (int step = 0; step < 5; ++step) SampleAll(*s, s->Schedule());
  ASSERT_EQ(s->kv_cache().Stats().num_used_blocks, 5);  // the 20 prompt tokens; one token sampled
  ASSERT_TRUE(s->AddRequest(MakeRequest(2, 16, 100)).ok());
  ASSERT_TRUE(s->AddRequest(MakeRequest(3, 2, 200)).ok());
  EXPECT_THAT(Ids(s->Schedule()), ElementsAre(1));
  EXPECT_EQ(s->num_waiting(), 2);
  ASSERT_TRUE(s->FinishRequest(RequestId(1)));
  EXPECT_EQ(s->kv_cache().Stats().num_used_blocks, 0);
  const StepPlan plan = s->Schedule();
  EXPECT_THAT(Ids(plan), ElementsAre(2));  // the budget of 4 is spent on request 2's chunk
  EXPECT_FALSE(plan.requests[0].samples);
}

TEST(SchedulerTest, PreemptsTheLastAdmittedAndResumesItFirst) {
  // 4 blocks of 4 tokens; two requests of 7 tokens each take 2 blocks. Request 1 grows into a
  // third block at its 9th token: request 2 (last admitted) is preempted.
  auto kv = MakeKv(4);
  auto s = *Scheduler::Create({.max_num_batched_tokens = 64, .max_model_len = 16}, kv);
  ASSERT_TRUE(s->AddRequest(MakeRequest(1, 7, 0)).ok());
  ASSERT_TRUE(s->AddRequest(MakeRequest(2, 7, 100)).ok());
  ASSERT_TRUE(s->AddRequest(MakeRequest(3, 2, 200)).ok());
  StepPlan plan = s->Schedule();
  ASSERT_THAT(Ids(plan), ElementsAre(1, 2));  // request 3 waits: the cache is full
  SampleAll(*s, plan, 50);                    // 8 tokens each, 7 computed
  plan = s->Schedule();                       // the 8th token of each fits in block 2
  ASSERT_THAT(Ids(plan), ElementsAre(1, 2));
  ASSERT_THAT(plan.preempted, IsEmpty());
  SampleAll(*s, plan, 51);  // 9 tokens each, 8 computed: both need a third block
  plan = s->Schedule();
  EXPECT_THAT(Ids(plan), ElementsAre(1));
  EXPECT_THAT(plan.preempted, ElementsAre(RequestId(2)));
  EXPECT_EQ(plan.requests[0].num_new_blocks, 1);
  const Request* preempted = s->GetRequest(RequestId(2));
  EXPECT_EQ(preempted->state(), RequestState::kWaiting);
  EXPECT_EQ(preempted->num_computed_tokens(), 0);
  EXPECT_EQ(preempted->num_preemptions(), 1);
  EXPECT_THAT(preempted->output_tokens(), ElementsAre(50, 51));  // keeps its output
  EXPECT_EQ(s->num_preemptions(), 1);
  SampleAll(*s, plan, 52);
  // Request 1 took request 2's tail block (freed tail first, so evicted first). Request 1
  // finishes; request 2 resumes ahead of request 3, finds its first block still in the prefix
  // cache and recomputes the other 5 of its 9 tokens.
  ASSERT_TRUE(s->FinishRequest(RequestId(1)));
  plan = s->Schedule();
  ASSERT_THAT(Ids(plan), ElementsAre(2, 3));
  EXPECT_TRUE(plan.requests[0].newly_admitted);
  EXPECT_EQ(plan.requests[0].num_prefix_hit_tokens, 4);
  EXPECT_EQ(plan.requests[0].num_new_tokens, 5);
  EXPECT_TRUE(plan.requests[0].samples);
  // Re-admission does not count as a prompt-cache hit for the client.
  EXPECT_EQ(s->GetRequest(RequestId(2))->num_cached_prompt_tokens(), 0);
  EXPECT_EQ(s->kv_cache().Stats().preempted_prefix_hit_tokens, 4);
}

TEST(SchedulerTest, LeastComputedPolicyPicksTheShortestVictim) {
  auto kv = MakeKv(6);
  auto s = *Scheduler::Create({.max_num_batched_tokens = 64,
                               .max_model_len = 24,
                               .preemption_policy = PreemptionPolicy::kLeastComputed},
                              kv);
  ASSERT_TRUE(s->AddRequest(MakeRequest(1, 4, 0)).ok());     // 1 block
  ASSERT_TRUE(s->AddRequest(MakeRequest(2, 12, 100)).ok());  // 3 blocks
  ASSERT_TRUE(s->AddRequest(MakeRequest(3, 7, 200)).ok());   // 2 blocks
  StepPlan plan = s->Schedule();
  ASSERT_THAT(Ids(plan), ElementsAre(1, 2, 3));
  SampleAll(*s, plan);
  // Requests 1 and 2 need a new block for their 5th/13th token; nothing is free. The victim is
  // request 1 itself (4 computed, fewer than 7 and 12).
  plan = s->Schedule();
  EXPECT_THAT(plan.preempted, ElementsAre(RequestId(1)));
  EXPECT_THAT(Ids(plan), IsEmpty());  // like vLLM, the rest of the running list waits
  plan = s->Schedule();
  EXPECT_THAT(Ids(plan), ElementsAre(2, 3));
}

TEST(SchedulerTest, PriorityPolicyAdmitsLowestValueFirstAndPreemptsHighest) {
  auto kv = MakeKv(4);
  auto s = *Scheduler::Create({.max_num_seqs = 1,
                               .max_num_batched_tokens = 64,
                               .max_model_len = 16,
                               .queue_policy = QueuePolicy::kPriority},
                              kv);
  ASSERT_TRUE(s->AddRequest(MakeRequest(1, 3, 0, /*priority=*/5)).ok());
  ASSERT_TRUE(s->AddRequest(MakeRequest(2, 3, 100, /*priority=*/1)).ok());
  ASSERT_TRUE(s->AddRequest(MakeRequest(3, 3, 200, /*priority=*/1)).ok());
  EXPECT_THAT(Ids(s->Schedule()), ElementsAre(2));
  ASSERT_TRUE(s->FinishRequest(RequestId(2)));
  EXPECT_THAT(Ids(s->Schedule()), ElementsAre(3));  // same priority: arrival order
  ASSERT_TRUE(s->FinishRequest(RequestId(3)));
  EXPECT_THAT(Ids(s->Schedule()), ElementsAre(1));

  // Victim choice: the largest priority value, even if admitted first.
  auto kv2 = MakeKv(4);
  auto s2 = *Scheduler::Create(
      {.max_num_batched_tokens = 64, .max_model_len = 16, .queue_policy = QueuePolicy::kPriority},
      kv2);
  ASSERT_TRUE(s2->AddRequest(MakeRequest(1, 8, 0, /*priority=*/9)).ok());
  ASSERT_TRUE(s2->AddRequest(MakeRequest(2, 8, 100, /*priority=*/0)).ok());
  StepPlan plan = s2->Schedule();
  ASSERT_THAT(Ids(plan), ElementsAre(2, 1));  // admitted in priority order
  SampleAll(*s2, plan);
  plan = s2->Schedule();
  EXPECT_THAT(plan.preempted, ElementsAre(RequestId(1)));
  EXPECT_THAT(Ids(plan), ElementsAre(2));
}

TEST(SchedulerTest, FinishFreesBlocksAtOnce) {
  auto kv = MakeKv(16);
  auto s = *Scheduler::Create({.max_model_len = 64}, kv);
  ASSERT_TRUE(s->AddRequest(MakeRequest(1, 10)).ok());
  ASSERT_TRUE(s->AddRequest(MakeRequest(2, 10, 100)).ok());
  s->Schedule();
  EXPECT_EQ(s->kv_cache().Stats().num_used_blocks, 6);
  EXPECT_TRUE(s->FinishRequest(RequestId(1)));
  EXPECT_EQ(s->kv_cache().Stats().num_used_blocks, 3);
  EXPECT_FALSE(s->FinishRequest(RequestId(1)));
  EXPECT_EQ(s->GetRequest(RequestId(1)), nullptr);
  ASSERT_TRUE(s->AddRequest(MakeRequest(3, 2, 200)).ok());
  EXPECT_TRUE(s->FinishRequest(RequestId(3)));  // a waiting request
  EXPECT_TRUE(s->FinishRequest(RequestId(2)));
  EXPECT_FALSE(s->has_requests());
  EXPECT_EQ(s->kv_cache().Stats().num_used_blocks, 0);
}

TEST(SchedulerTest, SharedPrefixIsServedFromTheCache) {
  auto kv = MakeKv(32);
  auto s = *Scheduler::Create({.max_model_len = 64}, kv);
  ASSERT_TRUE(s->AddRequest(MakeRequest(1, 13)).ok());
  SampleAll(*s, s->Schedule());
  std::vector<TokenId> prompt(13);
  std::iota(prompt.begin(), prompt.end(), 0);
  prompt.back() = 999;  // same first 12 tokens = 3 full blocks
  ASSERT_TRUE(s->AddRequest(std::make_unique<Request>(RequestId(2), prompt)).ok());
  const StepPlan plan = s->Schedule();
  ASSERT_THAT(Ids(plan), ElementsAre(1, 2));
  EXPECT_EQ(plan.requests[1].num_prefix_hit_tokens, 12);
  EXPECT_EQ(plan.requests[1].num_computed_tokens, 12);
  EXPECT_EQ(plan.requests[1].num_new_tokens, 1);
  EXPECT_EQ(s->GetRequest(RequestId(2))->num_cached_prompt_tokens(), 12);
  // The same three blocks head both tables.
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(plan.requests[0].block_table[i], plan.requests[1].block_table[i]);
}

// The allocation-policy seam the ablations of bench/ use (bench/kv_ablation_policies.h has the
// real ones): a reservation of max_model_len at admission, and no KV cache.
class ReserveMaxModelLen final : public AllocationPolicy {
 public:
  int AdmissionLookaheadTokens(int max_model_len, int num_cached_tokens,
                               int num_new_tokens) const override {
    return max_model_len - num_cached_tokens - num_new_tokens;
  }
};

class DropBlocks final : public AllocationPolicy {
 public:
  bool DropsBlocksAfterEachToken() const override { return true; }
};

TEST(SchedulerTest, AnAdmissionLookaheadEmulatesAContiguousAllocator) {
  auto kv = MakeKv(16);  // 64 tokens: two requests of max_model_len 32
  auto s = *Scheduler::Create(
      {.max_model_len = 32, .allocation_policy = std::make_shared<ReserveMaxModelLen>()}, kv);
  for (uint64_t id = 1; id <= 3; ++id) ASSERT_TRUE(s->AddRequest(MakeRequest(id, 3, 10 * id)).ok());
  const StepPlan plan = s->Schedule();
  EXPECT_THAT(Ids(plan), ElementsAre(1, 2));  // the third does not fit, though 3 tokens each
  EXPECT_EQ(s->kv_cache().Stats().num_used_blocks, 16);
  EXPECT_EQ(plan.requests[0].block_table.size(), 8u);
  EXPECT_EQ(s->NumComputedTokensRunning(), 6);
}

TEST(SchedulerTest, DroppingBlocksAfterEachTokenRecomputesTheWholeSequence) {
  auto kv = MakeKv(16, 4, /*prefix_caching=*/false);
  auto s = *Scheduler::Create(
      {.max_model_len = 32, .allocation_policy = std::make_shared<DropBlocks>()}, kv);
  ASSERT_TRUE(s->AddRequest(MakeRequest(1, 5)).ok());
  std::vector<int> computed;
  for (int step = 0; step < 4; ++step) {
    const StepPlan plan = s->Schedule();
    ASSERT_EQ(plan.requests.size(), 1u);
    EXPECT_EQ(plan.requests[0].num_computed_tokens, 0);
    EXPECT_TRUE(plan.requests[0].samples);
    computed.push_back(plan.requests[0].num_new_tokens);
    SampleAll(*s, plan);
    EXPECT_EQ(s->kv_cache().Stats().num_used_blocks, 0);
  }
  EXPECT_THAT(computed, ElementsAre(5, 6, 7, 8));
  auto kv_cached = MakeKv(16, 4, /*prefix_caching=*/true);
  EXPECT_FALSE(
      Scheduler::Create({.max_model_len = 32, .allocation_policy = std::make_shared<DropBlocks>()},
                        kv_cached)
          .ok());
}

// Random arrivals, decodes and finishes against a small pool: the invariants of every plan.
struct WorkloadResult {
  int finished = 0;
  int64_t preemptions = 0;
  int steps = 0;
};

// 300 random requests (prompts of 1 to 30 tokens, outputs of 1 to max_output) through a pool of
// 24 blocks of 4 tokens that forces preemptions, checking the scheduler's invariants at every
// step. Each request knows its length (max_num_tokens) and stops there, or earlier with
// probability 1/50 per token.
void RunRandomWorkload(const SchedulerOptions& options, WorkloadResult* result,
                       int max_output = 12) {
  std::mt19937 rng(42);
  auto kv = MakeKv(24, 4);
  auto s = *Scheduler::Create(options, kv);
  uint64_t next_id = 1;
  absl::flat_hash_map<RequestId, int> target_len;
  for (int step = 0; step < 3000; ++step) {
    if (next_id <= 300 && rng() % 3 == 0) {
      const int prompt = 1 + static_cast<int>(rng() % 30);
      auto request = MakeRequest(next_id, prompt, static_cast<int>(rng() % 3) * 50);
      const int target =
          std::min(options.max_model_len, prompt + 1 + static_cast<int>(rng() % max_output));
      request->set_max_num_tokens(target);
      ASSERT_TRUE(s->AddRequest(std::move(request)).ok());
      target_len[RequestId(next_id)] = target;
      ++next_id;
    }
    const StepPlan plan = s->Schedule();
    ++result->steps;
    result->preemptions += static_cast<int64_t>(plan.preempted.size());
    ASSERT_LE(plan.num_scheduled_tokens, options.max_num_batched_tokens);
    ASSERT_LE(s->num_running(), options.max_num_seqs);
    ASSERT_LE(s->kv_cache().Stats().num_used_blocks, s->kv_cache().num_blocks());
    if (s->has_requests() && plan.empty()) {
      ASSERT_FALSE(plan.preempted.empty()) << "a step with work scheduled nothing";
    }
    std::vector<RequestId> done;
    for (const ScheduledRequest& r : plan.requests) {
      const Request* request = s->GetRequest(r.id);
      ASSERT_EQ(request->state(), RequestState::kRunning);
      ASSERT_GE(static_cast<int>(r.block_table.size()) * 4,
                r.num_computed_tokens + r.num_new_tokens);
      if (!r.samples) continue;
      s->AppendToken(r.id, static_cast<TokenId>(rng() % 100));
      if (request->num_tokens() >= target_len[r.id] || rng() % 50 == 0) done.push_back(r.id);
    }
    for (const RequestId id : done) {
      ASSERT_TRUE(s->FinishRequest(id));
      ++result->finished;
    }
    if (!s->has_requests() && next_id > 300) break;
  }
  EXPECT_EQ(s->kv_cache().Stats().num_used_blocks, 0) << "blocks leaked";
  EXPECT_EQ(result->preemptions, s->num_preemptions());
}

TEST(SchedulerTest, RandomWorkloadKeepsInvariants) {
  for (const PreemptionPolicy policy :
       {PreemptionPolicy::kLastAdmitted, PreemptionPolicy::kLeastComputed}) {
    WorkloadResult result;
    RunRandomWorkload({.max_num_seqs = 6,
                       .max_num_batched_tokens = 20,
                       .max_model_len = 40,
                       .preemption_policy = policy},
                      &result);
    EXPECT_EQ(result.finished, 300);
    EXPECT_GT(result.preemptions, 0) << "the pool was meant to force preemptions";
  }
}

TEST(SchedulerTest, TheGrowthReserveCutsPreemptionsOnTheSameWorkload) {
  // Long outputs and room for 16 running requests: memory is the limit.
  SchedulerOptions options{.max_num_seqs = 16, .max_num_batched_tokens = 32, .max_model_len = 64};
  WorkloadResult off;
  RunRandomWorkload(options, &off, /*max_output=*/32);
  options.growth_reserve = {.initial_ratio = 0.7, .min_ratio = 0.1};
  WorkloadResult on;
  RunRandomWorkload(options, &on, /*max_output=*/32);
  ASSERT_EQ(off.finished, 300);
  ASSERT_EQ(on.finished, 300);
  ASSERT_GT(off.preemptions, 20);
  EXPECT_LT(on.preemptions * 2, off.preemptions)
      << "with the reserve " << on.preemptions << " in " << on.steps << " steps, without "
      << off.preemptions << " in " << off.steps;
}

TEST(SchedulerTest, TheGrowthReserveKeepsRoomForTheRunningRequestsOutputs) {
  // 8 blocks of 4 tokens and a ratio pinned at 1. Request 1 (4 tokens, up to 24) holds 1 block
  // and keeps 5 for its growth. Request 2's 8-token prompt (2 blocks, up to 12 tokens) would
  // fit the 7 free blocks, but not beside the reserve; and since the two need 36 tokens
  // together, it stays out for as long as request 1 runs (no preemption can follow).
  auto kv = MakeKv(8);
  auto s = *Scheduler::Create(
      {.max_model_len = 32, .growth_reserve = {.initial_ratio = 1, .min_ratio = 1}}, kv);
  auto first = MakeRequest(1, 4, 0);
  first->set_max_num_tokens(24);
  ASSERT_TRUE(s->AddRequest(std::move(first)).ok());
  auto second = MakeRequest(2, 8, 100);
  second->set_max_num_tokens(12);
  ASSERT_TRUE(s->AddRequest(std::move(second)).ok());
  StepPlan plan = s->Schedule();
  EXPECT_THAT(Ids(plan), ElementsAre(1));
  EXPECT_EQ(s->num_waiting(), 1);
  EXPECT_DOUBLE_EQ(s->growth_reserve_ratio(), 1.0);
  for (int i = 0; i < 19; ++i) {
    SampleAll(*s, plan);
    plan = s->Schedule();
    ASSERT_THAT(Ids(plan), ElementsAre(1)) << "step " << i;
  }
  EXPECT_EQ(s->GetRequest(RequestId(1))->num_tokens(), 23);
  ASSERT_TRUE(s->FinishRequest(RequestId(1)));
  EXPECT_THAT(Ids(s->Schedule()), ElementsAre(2));

  // Off, the same requests run together at once.
  auto off = *Scheduler::Create({.max_model_len = 32}, kv);
  ASSERT_TRUE(off->AddRequest(MakeRequest(1, 4, 0)).ok());
  ASSERT_TRUE(off->AddRequest(MakeRequest(2, 8, 100)).ok());
  EXPECT_THAT(Ids(off->Schedule()), ElementsAre(1, 2));
  EXPECT_EQ(off->growth_reserve_ratio(), 0);
}

TEST(SchedulerTest, TheGrowthRatioDecaysWhileNothingIsPreemptedAndRisesOnAPreemption) {
  // 8 blocks of 4 tokens; requests of 7 prompt tokens (2 blocks) that may grow to 32.
  auto kv = MakeKv(8);
  auto s = *Scheduler::Create(
      {.max_num_batched_tokens = 64,
       .max_model_len = 32,
       .growth_reserve = {.initial_ratio = 0.5, .min_ratio = 0, .decay_steps = 2}},
      kv);
  for (uint64_t id : {1, 2}) ASSERT_TRUE(s->AddRequest(MakeRequest(id, 7, id * 100)).ok());
  ASSERT_TRUE(s->AddRequest(MakeRequest(3, 2, 300)).ok());
  // Ratio 0.5: request 1 keeps ceil(0.5 * 25) = 13 tokens (4 blocks); request 2 would need
  // 2 blocks + 26 reserved tokens (7 blocks) of the 6 free.
  StepPlan plan = s->Schedule();
  EXPECT_THAT(Ids(plan), ElementsAre(1));
  EXPECT_DOUBLE_EQ(s->growth_reserve_ratio(), 0.25);  // one step without a preemption
  SampleAll(*s, plan);
  // Ratio 0.25: request 2 needs 2 blocks + 6 + 7 reserved tokens (4 blocks) of the 6 free.
  // Request 3 then needs 1 block + 21 tokens (6 blocks) of the 4 left.
  plan = s->Schedule();
  EXPECT_THAT(Ids(plan), ElementsAre(1, 2));
  EXPECT_DOUBLE_EQ(s->growth_reserve_ratio(), 0);
  SampleAll(*s, plan);
  plan = s->Schedule();  // ratio 0: request 3 joins on its prompt alone
  EXPECT_THAT(Ids(plan), ElementsAre(1, 2, 3));
  SampleAll(*s, plan);
  // They grow until request 3, the last admitted, is preempted: the ratio goes back up.
  for (int step = 0; step < 40 && plan.preempted.empty(); ++step) {
    plan = s->Schedule();
    SampleAll(*s, plan);
  }
  ASSERT_THAT(plan.preempted, ElementsAre(RequestId(3)));
  EXPECT_GE(s->growth_reserve_ratio(), 0.5);
}

TEST(SchedulerTest, TheGrowthReserveIsOffUnderAWindowOrUnboundedLengths) {
  const SchedulerOptions on{
      .max_num_batched_tokens = 8, .max_model_len = 32, .growth_reserve = {.initial_ratio = 0.7}};
  EXPECT_DOUBLE_EQ((*Scheduler::Create(on, MakeKv(8)))->growth_reserve_ratio(), 0.7);
  KvCacheManagerOptions windowed = MakeKv(8);
  windowed.window = common::AttentionWindow{.sliding_window = 8};
  EXPECT_EQ((*Scheduler::Create(on, windowed))->growth_reserve_ratio(), 0);
  SchedulerOptions unbounded = on;
  unbounded.unbounded_length = true;
  EXPECT_EQ((*Scheduler::Create(unbounded, windowed))->growth_reserve_ratio(), 0);
}

// A lower tier that offers every block of a request's chain it is asked about, up to `offer`.
class FakeTier : public ExternalPrefixCache {
 public:
  int MatchForLoad(const Request& request, int first_block, int max_blocks) override {
    asked.push_back({request.id().value(), first_block, max_blocks});
    return std::min(offer, max_blocks);
  }
  int offer = 0;
  std::vector<std::tuple<uint64_t, int, int>> asked;
};

TEST(SchedulerLoadTest, AChainInALowerTierLoadsBeforeTheRequestRuns) {
  auto s = *Scheduler::Create({.max_model_len = 64}, MakeKv(16));
  FakeTier tier;
  tier.offer = 3;
  s->set_external_prefix_cache(&tier);
  ASSERT_TRUE(s->AddRequest(MakeRequest(1, 21)).ok());  // 5 full blocks of 4, and one token
  StepPlan plan = s->Schedule();
  EXPECT_TRUE(plan.requests.empty());
  ASSERT_EQ(plan.loads.size(), 1u);
  EXPECT_EQ(plan.loads[0].first_block, 0);
  EXPECT_EQ(plan.loads[0].blocks.size(), 3u);
  EXPECT_THAT(tier.asked, ElementsAre(std::make_tuple(1u, 0, 5)));
  EXPECT_EQ(s->GetRequest(RequestId(1))->state(), RequestState::kLoading);
  EXPECT_EQ(s->num_loading(), 1);
  EXPECT_EQ(s->num_waiting(), 1);  // loading counts as waiting
  EXPECT_FALSE(s->has_schedulable());
  EXPECT_TRUE(s->Schedule().empty());  // nothing runs until the load ends
  // Two of the three blocks arrive: the third is recomputed with the rest.
  ASSERT_TRUE(s->FinishLoad(RequestId(1), 2));
  EXPECT_FALSE(s->FinishLoad(RequestId(1), 2));
  EXPECT_EQ(s->GetRequest(RequestId(1))->num_cached_prompt_tokens(), 8);
  plan = s->Schedule();
  ASSERT_EQ(plan.requests.size(), 1u);
  EXPECT_EQ(plan.requests[0].num_computed_tokens, 8);
  EXPECT_EQ(plan.requests[0].num_new_tokens, 13);
  EXPECT_TRUE(plan.requests[0].samples);
  EXPECT_EQ(plan.requests[0].block_table.size(), 6u);
  // The loaded blocks joined the prefix cache: the same prompt hits them on the device.
  tier.offer = 0;
  ASSERT_TRUE(s->AddRequest(MakeRequest(2, 21)).ok());
  SampleAll(*s, plan);
  plan = s->Schedule();
  ASSERT_EQ(plan.requests.size(), 2u);
  EXPECT_EQ(plan.requests[1].num_prefix_hit_tokens, 20);
}

TEST(SchedulerLoadTest, AnAbortedLoadFreesItsBlocksAndLoadsCountTowardMaxNumSeqs) {
  auto s = *Scheduler::Create({.max_num_seqs = 1, .max_model_len = 64}, MakeKv(16));
  FakeTier tier;
  tier.offer = 2;
  s->set_external_prefix_cache(&tier);
  ASSERT_TRUE(s->AddRequest(MakeRequest(1, 12)).ok());
  ASSERT_TRUE(s->AddRequest(MakeRequest(2, 12, 100)).ok());
  StepPlan plan = s->Schedule();
  ASSERT_EQ(plan.loads.size(), 1u);
  EXPECT_TRUE(plan.requests.empty());  // request 2 waits: max_num_seqs is taken by the load
  EXPECT_EQ(s->kv_cache().Stats().num_used_blocks, 2);  // the two blocks to load
  ASSERT_TRUE(s->FinishRequest(RequestId(1)));
  EXPECT_EQ(s->num_loading(), 0);
  EXPECT_FALSE(s->FinishLoad(RequestId(1), 2));
  // Nothing of the unfinished load was registered.
  EXPECT_EQ(s->kv_cache().Stats().num_cached_blocks, 0);
  plan = s->Schedule();
  ASSERT_EQ(plan.loads.size(), 1u);
  EXPECT_EQ(plan.loads[0].id, RequestId(2));
}

TEST(SchedulerLoadTest, NoLoadWithoutATierOrForAPromptScoredFromScratch) {
  auto s = *Scheduler::Create({.max_model_len = 64}, MakeKv(16));
  FakeTier tier;
  tier.offer = 2;
  s->set_external_prefix_cache(&tier);
  auto scored = MakeRequest(1, 12);
  scored->set_skips_prefix_cache(true);
  ASSERT_TRUE(s->AddRequest(std::move(scored)).ok());
  StepPlan plan = s->Schedule();
  EXPECT_TRUE(plan.loads.empty());
  ASSERT_EQ(plan.requests.size(), 1u);
  EXPECT_TRUE(tier.asked.empty());
  // A prompt shorter than a block plus one token has nothing to load.
  ASSERT_TRUE(s->AddRequest(MakeRequest(2, 4, 50)).ok());
  plan = s->Schedule();
  EXPECT_TRUE(plan.loads.empty());
  EXPECT_TRUE(tier.asked.empty());
}

}  // namespace
}  // namespace pagoda::scheduler
