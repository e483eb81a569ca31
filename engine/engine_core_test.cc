#include "engine/engine_core.h"

#include <algorithm>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "block_manager/testing/kv_event_mirror.h"
#include "common/check.h"
#include "engine/error_reason.h"
#include "engine/offline.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runner/testing/fake_model_runner.h"
#include "tokenizer/byte_tokenizer.h"

namespace pagoda::engine {
namespace {

using runner::testing::FakeModelRunner;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::StartsWith;

struct CoreWithRunner {
  std::unique_ptr<EngineCore> core;
  FakeModelRunner* runner = nullptr;  // owned by core
};

CoreWithRunner MakeCore(const FakeModelRunner::Options& runner_options,
                        const EngineCoreOptions& options,
                        std::unique_ptr<tokenizer::Tokenizer> tokenizer = nullptr,
                        const common::Clock* clock = nullptr) {
  auto runner = std::make_unique<FakeModelRunner>(runner_options);
  FakeModelRunner* raw = runner.get();
  auto core = EngineCore::Create("fake", std::move(runner), std::move(tokenizer), options, clock);
  PAGODA_CHECK(core.ok()) << core.status().message();
  return {*std::move(core), raw};
}

EngineCoreOptions Options(int max_model_len = 256, int max_num_seqs = 16, int budget = 64) {
  EngineCoreOptions options;
  options.scheduler.max_num_seqs = max_num_seqs;
  options.scheduler.max_num_batched_tokens = budget;
  options.scheduler.max_model_len = max_model_len;
  return options;
}

EngineRequest Request(std::vector<TokenId> prompt, std::optional<int> max_tokens = 8) {
  EngineRequest request;
  request.prompt_tokens = std::move(prompt);
  request.sampling.temperature = 0.0f;
  request.stopping.max_tokens = max_tokens;
  return request;
}

std::vector<TokenId> Iota(int n, int first = 1) {
  std::vector<TokenId> v(n);
  std::iota(v.begin(), v.end(), first);
  return v;
}

// What a lone greedy request of `prompt` generates in a large cache.
std::vector<TokenId> GenerateAlone(const std::vector<TokenId>& prompt, int max_tokens,
                                   const FakeModelRunner::Options& runner_options = {}) {
  CoreWithRunner c = MakeCore(runner_options, Options());
  std::vector<EngineRequest> requests;
  requests.push_back(Request(prompt, max_tokens));
  requests.back().stopping.ignore_eos = true;
  auto out = GenerateOffline(*c.core, std::move(requests));
  PAGODA_CHECK(out.ok());
  return (*out)[0].token_ids;
}

TEST(EngineCoreTest, GeneratesMaxTokensAndStreamsEveryToken) {
  CoreWithRunner c = MakeCore({}, Options());
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(c.core->AddRequest(RequestId(1), Request(Iota(10), 5), sink).ok());
  while (c.core->has_requests()) ASSERT_TRUE(c.core->Step().ok());
  ASSERT_EQ(sink->num_completions, 1);
  const RequestCompletion& done = *sink->completion;
  EXPECT_TRUE(done.status.ok());
  EXPECT_EQ(done.finish_reason, FinishReason::kLength);
  EXPECT_EQ(done.token_ids.size(), 5u);
  ASSERT_EQ(sink->chunks.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    ASSERT_EQ(sink->chunks[i].token_ids.size(), 1u);
    EXPECT_EQ(sink->chunks[i].token_ids[0], done.token_ids[i]);
    EXPECT_EQ(sink->chunks[i].usage.completion_tokens, static_cast<int>(i) + 1);
  }
  EXPECT_EQ(done.usage.prompt_tokens, 10);
  EXPECT_EQ(done.usage.completion_tokens, 5);
  EXPECT_EQ(c.core->kv_stats().num_used_blocks, 0);
}

// A runner that answers argmax rows itself (as the CUDA runner does) must give the same outputs
// as host sampling: IsArgmaxRow holds only where the sampler would take the plain argmax. EOS
// (token 5) is the argmax everywhere, so a row answered by argmax while EOS is banned
// (min_tokens), biased away or penalized would end its request early.
TEST(EngineCoreTest, RunnerGreedyRowsMatchHostSampling) {
  FakeModelRunner::Options runner_options;
  runner_options.eos_token_ids = {5};
  runner_options.favored_tokens = {5};
  std::vector<EngineRequest> requests;
  requests.push_back(Request(Iota(6, 1), 8));  // plain greedy: EOS at once
  requests.push_back(Request(Iota(6, 2), 8));  // EOS banned for 4 tokens
  requests.back().stopping.min_tokens = 4;
  requests.push_back(Request(Iota(6, 3), 6));  // biased to token 7
  requests.back().sampling.logit_bias = {{7, 100.0f}};
  requests.push_back(Request(Iota(6, 4), 6));  // repetition penalty, EOS ignored
  requests.back().sampling.repetition_penalty = 8.0f;
  requests.back().stopping.ignore_eos = true;
  requests.push_back(Request(Iota(6, 5), 6));  // sampled, seeded
  requests.back().sampling.temperature = 0.9f;
  requests.back().sampling.seed = 3;
  requests.push_back(Request(Iota(6, 6), 6));  // plain greedy, EOS ignored: all answered by
  requests.back().stopping.ignore_eos = true;  // the runner
  std::vector<std::vector<TokenId>> outputs[2];
  int64_t greedy_rows[2] = {0, 0};
  for (const bool device_greedy : {false, true}) {
    runner_options.device_greedy = device_greedy;
    CoreWithRunner c = MakeCore(runner_options, Options());
    auto out = GenerateOffline(*c.core, requests);
    ASSERT_TRUE(out.ok()) << out.status();
    for (const RequestCompletion& done : *out) outputs[device_greedy].push_back(done.token_ids);
    greedy_rows[device_greedy] = c.runner->num_greedy_rows();
  }
  EXPECT_EQ(outputs[1], outputs[0]);
  EXPECT_THAT(outputs[0][0], ElementsAreArray({5}));
  ASSERT_EQ(outputs[0][1].size(), 5u);  // four banned EOS, then EOS
  EXPECT_EQ(outputs[0][1][4], 5);
  EXPECT_THAT(outputs[0][2], ElementsAreArray({7, 7, 7, 7, 7, 7}));
  EXPECT_THAT(outputs[0][5], ElementsAreArray({5, 5, 5, 5, 5, 5}));
  // Request 0's token, request 1's last one and request 5's six: nothing else qualifies.
  EXPECT_EQ(greedy_rows[1], 1 + 1 + 6);
  EXPECT_EQ(greedy_rows[0], 0);
}

TEST(EngineCoreTest, StopsAtMaxModelLen) {
  CoreWithRunner c = MakeCore({}, Options(/*max_model_len=*/16));
  auto out = GenerateOffline(*c.core, {Request(Iota(10), std::nullopt)});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].finish_reason, FinishReason::kLength);
  EXPECT_EQ((*out)[0].token_ids.size(), 6u);
}

TEST(EngineCoreTest, StopTokensEosAndMinTokens) {
  const std::vector<TokenId> free_run = GenerateAlone(Iota(6), 20);
  ASSERT_EQ(free_run.size(), 20u);
  const TokenId third = free_run[2];
  const size_t first_index = std::find(free_run.begin(), free_run.end(), third) - free_run.begin();

  {  // A stop token id ends the request, and is the last output token.
    CoreWithRunner c = MakeCore({}, Options());
    EngineRequest request = Request(Iota(6), 20);
    request.stopping.stop_token_ids = {third};
    auto out = GenerateOffline(*c.core, {request});
    ASSERT_TRUE(out.ok());
    EXPECT_EQ((*out)[0].finish_reason, FinishReason::kStop);
    EXPECT_EQ((*out)[0].stop_kind, StopKind::kStopTokenId);
    EXPECT_EQ((*out)[0].stop_token_id, third);
    EXPECT_THAT((*out)[0].token_ids,
                ElementsAreArray(free_run.begin(), free_run.begin() + first_index + 1));
  }
  {  // The same token as the model's EOS; ignore_eos runs on.
    CoreWithRunner c = MakeCore({.eos_token_ids = {third}}, Options());
    EngineRequest request = Request(Iota(6), 20);
    auto out = GenerateOffline(*c.core, {request});
    ASSERT_TRUE(out.ok());
    EXPECT_EQ((*out)[0].stop_kind, StopKind::kEos);
    EXPECT_EQ((*out)[0].token_ids.size(), first_index + 1);
    request.stopping.ignore_eos = true;
    out = GenerateOffline(*c.core, {request});
    ASSERT_TRUE(out.ok());
    EXPECT_EQ((*out)[0].finish_reason, FinishReason::kLength);
    EXPECT_THAT((*out)[0].token_ids, ElementsAreArray(free_run));
  }
  {  // min_tokens bans the stop token until that many tokens exist.
    CoreWithRunner c = MakeCore({}, Options());
    EngineRequest request = Request(Iota(6), 20);
    request.stopping.stop_token_ids = {third};
    request.stopping.min_tokens = static_cast<int>(first_index) + 2;
    auto out = GenerateOffline(*c.core, {request});
    ASSERT_TRUE(out.ok());
    const std::vector<TokenId>& tokens = (*out)[0].token_ids;
    for (int i = 0; i < request.stopping.min_tokens && i < static_cast<int>(tokens.size()); ++i) {
      EXPECT_NE(tokens[i], third) << "at " << i;
    }
    EXPECT_GE(tokens.size(), static_cast<size_t>(request.stopping.min_tokens));
  }
}

// Lowercase letters are favored so that the byte tokenizer's text is readable.
FakeModelRunner::Options LetterModel() {
  FakeModelRunner::Options options;
  options.vocab_size = tokenizer::ByteTokenizer::kVocabSize;
  for (TokenId t = 'a'; t <= 'z'; ++t) options.favored_tokens.push_back(t);
  options.favored_bias = 100.0f;
  return options;
}

TEST(EngineCoreTest, TextDeltasAndStopStrings) {
  const std::vector<TokenId> prompt = {'h', 'i'};
  std::string free_text;
  {
    CoreWithRunner c =
        MakeCore(LetterModel(), Options(), std::make_unique<tokenizer::ByteTokenizer>());
    auto sink = std::make_shared<CollectingSink>();
    ASSERT_TRUE(c.core->AddRequest(RequestId(1), Request(prompt, 12), sink).ok());
    while (c.core->has_requests()) ASSERT_TRUE(c.core->Step().ok());
    std::string streamed;
    for (const OutputChunk& chunk : sink->chunks) streamed += chunk.text;
    free_text = sink->completion->text;
    EXPECT_EQ(streamed, free_text);
    ASSERT_EQ(free_text.size(), 12u);
  }
  const std::string stop = free_text.substr(4, 3);
  const size_t at = free_text.find(stop);
  for (const bool include : {false, true}) {
    CoreWithRunner c =
        MakeCore(LetterModel(), Options(), std::make_unique<tokenizer::ByteTokenizer>());
    EngineRequest request = Request(prompt, 12);
    request.stopping.stop_strings = {"not-there", stop};
    request.stopping.include_stop_str_in_output = include;
    auto sink = std::make_shared<CollectingSink>();
    ASSERT_TRUE(c.core->AddRequest(RequestId(1), request, sink).ok());
    while (c.core->has_requests()) ASSERT_TRUE(c.core->Step().ok());
    const RequestCompletion& done = *sink->completion;
    EXPECT_EQ(done.finish_reason, FinishReason::kStop);
    EXPECT_EQ(done.stop_kind, StopKind::kStopString);
    EXPECT_EQ(done.stop_string, stop);
    EXPECT_EQ(done.text, free_text.substr(0, at + (include ? stop.size() : 0)));
    std::string streamed;
    for (const OutputChunk& chunk : sink->chunks) streamed += chunk.text;
    EXPECT_EQ(streamed, done.text);  // no part of a cut stop string was ever streamed
    EXPECT_EQ(done.token_ids.size(), at + stop.size());
  }
}

TEST(EngineCoreTest, ValidationNamesTheField) {
  CoreWithRunner c = MakeCore({}, Options(/*max_model_len=*/32));
  const auto message = [&](const EngineRequest& r) {
    return std::string(c.core->ValidateRequest(r).message());
  };
  EXPECT_THAT(message(Request({})), StartsWith("prompt: "));
  EXPECT_EQ(message(Request({1, 2, 64})),
            "prompt[2]: token id 64 is outside the vocabulary [0, 64)");
  EngineRequest named = Request({1, 2, 64});
  named.prompt_field = "token_ids.ids";
  EXPECT_THAT(message(named), StartsWith("token_ids.ids[2]: "));
  EXPECT_EQ(GetErrorReason(c.core->ValidateRequest(named)), ErrorReason::kInvalidField);
  EXPECT_THAT(message(Request(Iota(4), 0)), StartsWith("stopping.max_tokens: "));
  const absl::Status too_long = c.core->ValidateRequest(Request(Iota(30), 3));
  EXPECT_THAT(std::string(too_long.message()), StartsWith("stopping.max_tokens: "));
  EXPECT_EQ(GetErrorReason(too_long), ErrorReason::kPromptTooLong);
  EXPECT_EQ(GetErrorReason(c.core->ValidateRequest(Request(Iota(32), std::nullopt))),
            ErrorReason::kPromptTooLong);
  EngineRequest r = Request(Iota(4));
  r.stopping.min_tokens = 9;
  EXPECT_THAT(message(r), StartsWith("stopping.min_tokens: "));
  r = Request(Iota(4));
  r.stopping.stop_token_ids = {1, 99};
  EXPECT_THAT(message(r), StartsWith("stopping.stop_token_ids[1]: "));
  r = Request(Iota(4));
  r.stopping.stop_strings = {"x"};
  EXPECT_EQ(c.core->ValidateRequest(r).code(), absl::StatusCode::kFailedPrecondition);
  r = Request(Iota(4));
  r.sampling.top_p = 0.0f;
  EXPECT_THAT(message(r), StartsWith("sampling.top_p"));
  r = Request(Iota(4));
  r.sampling.logit_bias = {{64, 1.0f}};
  EXPECT_THAT(message(r), StartsWith("sampling.logit_bias"));
  // AddRequest takes validated requests (it does not check them again) and refuses duplicate ids.
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(c.core->AddRequest(RequestId(1), Request(Iota(4)), sink).ok());
  EXPECT_EQ(c.core->AddRequest(RequestId(1), Request(Iota(4)), sink).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(sink->num_completions, 0);
}

TEST(EngineCoreTest, SlidingWindowFreesDeadBlocksAndKeepsALongRequestsMemoryFlat) {
  // A windowed model (the fake's logits hash exactly the window, read through the table): a
  // 200-token generation with a 10-token window holds at most ceil(10/4) + 1 blocks of 4 once
  // past its prompt, in a pool that could not hold the whole sequence, and generates what the
  // same model does with ample memory.
  const FakeModelRunner::Options windowed{.num_kv_blocks = 16, .sliding_window = 10};
  CoreWithRunner c = MakeCore(windowed, Options(/*max_model_len=*/256, 4, /*budget=*/8));
  EXPECT_EQ(c.core->info().kv_window.sliding_window, 10);
  EXPECT_FALSE(c.core->info().streaming);
  auto sink = std::make_shared<CollectingSink>();
  EngineRequest request = Request(Iota(6), 200);
  request.stopping.ignore_eos = true;
  ASSERT_TRUE(c.core->AddRequest(RequestId(1), request, sink).ok());
  int max_live = 0;
  while (c.core->has_requests()) {
    ASSERT_TRUE(c.core->Step().ok());
    max_live = std::max(max_live, c.core->kv_stats().num_used_blocks);
  }
  ASSERT_EQ(sink->num_completions, 1);
  const std::vector<TokenId>& tokens = sink->completion->token_ids;
  EXPECT_EQ(tokens.size(), 200u);
  EXPECT_LE(max_live, 4);  // the window's 3 blocks plus the one a step starts
  FakeModelRunner::Options ample = windowed;
  ample.num_kv_blocks = 128;
  EXPECT_EQ(tokens, GenerateAlone(Iota(6), 200, ample));
}

TEST(EngineCoreTest, AModelsOwnWindowMayExceedMaxModelLen) {
  auto created = EngineCore::Create(
      "fake", std::make_unique<FakeModelRunner>(FakeModelRunner::Options{.sliding_window = 128}),
      nullptr, Options(/*max_model_len=*/64));
  EXPECT_TRUE(created.ok()) << created.status();
}

TEST(EngineCoreTest, AbortFreesBlocksAtOnce) {
  CoreWithRunner c = MakeCore({}, Options());
  auto a = std::make_shared<CollectingSink>();
  auto b = std::make_shared<CollectingSink>();
  ASSERT_TRUE(c.core->AddRequest(RequestId(1), Request(Iota(20), 50), a).ok());
  ASSERT_TRUE(c.core->AddRequest(RequestId(2), Request(Iota(20, 100 % 64), 50), b).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(c.core->Step().ok());
  const int used = c.core->kv_stats().num_used_blocks;
  EXPECT_GT(used, 0);
  EXPECT_TRUE(c.core->Abort(RequestId(1)));
  EXPECT_FALSE(c.core->Abort(RequestId(1)));
  ASSERT_EQ(a->num_completions, 1);
  EXPECT_EQ(a->completion->finish_reason, FinishReason::kAbort);
  EXPECT_EQ(a->completion->token_ids.size(), a->chunks.size());
  EXPECT_LT(c.core->kv_stats().num_used_blocks, used);
  c.core->AbortAll();
  EXPECT_EQ(b->num_completions, 1);
  EXPECT_FALSE(c.core->has_requests());
  EXPECT_EQ(c.core->kv_stats().num_used_blocks, 0);
}

TEST(EngineCoreTest, ModelFailureCompletesEveryRequestWithTheError) {
  CoreWithRunner c = MakeCore({}, Options());
  auto a = std::make_shared<CollectingSink>();
  ASSERT_TRUE(c.core->AddRequest(RequestId(1), Request(Iota(5), 10), a).ok());
  ASSERT_TRUE(c.core->Step().ok());
  c.runner->FailNextStep();
  EXPECT_EQ(c.core->Step().code(), absl::StatusCode::kInternal);
  ASSERT_EQ(a->num_completions, 1);
  EXPECT_EQ(a->completion->status.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(c.core->kv_stats().num_used_blocks, 0);
}

// A row the runner could not sample (its logits had no samplable token) ends that request alone,
// with the runner's error; the step and the other request go on, and no block leaks.
TEST(EngineCoreTest, RunnerRowErrorFailsOnlyThatRequest) {
  CoreWithRunner c = MakeCore({}, Options());
  auto a = std::make_shared<CollectingSink>();
  auto b = std::make_shared<CollectingSink>();
  ASSERT_TRUE(c.core->AddRequest(RequestId(1), Request(Iota(5), 10), a).ok());
  ASSERT_TRUE(c.core->AddRequest(RequestId(2), Request(Iota(5, 2), 10), b).ok());
  ASSERT_TRUE(c.core->Step().ok());
  c.runner->ReplaceNextToken(0, absl::FailedPreconditionError("sampling: no samplable token"));
  ASSERT_TRUE(c.core->Step().ok());
  ASSERT_EQ(a->num_completions, 1);
  EXPECT_EQ(a->completion->status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(a->completion->token_ids.size(), 1u);  // the first step's token
  while (c.core->has_requests()) ASSERT_TRUE(c.core->Step().ok());
  ASSERT_EQ(b->num_completions, 1);
  EXPECT_TRUE(b->completion->status.ok()) << b->completion->status;
  EXPECT_EQ(b->completion->token_ids.size(), 10u);
  EXPECT_EQ(c.core->kv_stats().num_used_blocks, 0);
}

// A token outside the vocabulary from the runner is an engine failure reported as a status (every
// request ends with it), never a crash, and never reaches the scheduler or the detokenizer.
TEST(EngineCoreTest, RunnerTokenOutsideTheVocabularyIsAnEngineFailure) {
  CoreWithRunner c = MakeCore({}, Options());
  auto a = std::make_shared<CollectingSink>();
  ASSERT_TRUE(c.core->AddRequest(RequestId(1), Request(Iota(5), 10), a).ok());
  const int vocab = c.core->info().vocab_size;
  c.runner->ReplaceNextToken(0, vocab);
  const absl::Status status = c.core->Step();
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(status.message(), HasSubstr("outside the vocabulary"));
  ASSERT_EQ(a->num_completions, 1);
  EXPECT_EQ(a->completion->status.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(c.core->kv_stats().num_used_blocks, 0);
}

class RecordingObserver final : public MetricsObserver {
 public:
  void OnStep(const StepMetrics& step) override { steps.push_back(step); }
  void OnRequestFinished(const FinishedRequestMetrics& request) override {
    finished.push_back(request);
  }
  std::vector<StepMetrics> steps;
  std::vector<FinishedRequestMetrics> finished;
};

TEST(EngineCoreTest, MetricsAndTimingsFollowTheClock) {
  common::FakeClock clock;
  CoreWithRunner c = MakeCore({}, Options(256, 16, /*budget=*/8), nullptr, &clock);
  RecordingObserver observer;
  c.core->set_metrics_observer(&observer);
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(c.core->AddRequest(RequestId(1), Request(Iota(12), 3), sink).ok());
  while (c.core->has_requests()) {
    clock.Advance(absl::Milliseconds(10));
    ASSERT_TRUE(c.core->Step().ok());
  }
  // Steps: prompt chunk of 8, chunk of 4 + first token, then two decodes.
  ASSERT_EQ(observer.steps.size(), 4u);
  EXPECT_EQ(observer.steps[0].num_scheduled_tokens, 8);
  EXPECT_EQ(observer.steps[0].num_prompt_tokens, 8);
  EXPECT_EQ(observer.steps[1].num_prompt_tokens, 4);
  EXPECT_EQ(observer.steps[1].num_generation_tokens, 1);
  EXPECT_EQ(observer.steps[2].num_prompt_tokens, 0);
  ASSERT_EQ(observer.steps[0].queue_seconds.size(), 1u);
  EXPECT_DOUBLE_EQ(observer.steps[0].queue_seconds[0], 0.01);
  ASSERT_EQ(observer.steps[1].ttft_seconds.size(), 1u);
  EXPECT_DOUBLE_EQ(observer.steps[1].ttft_seconds[0], 0.02);
  ASSERT_EQ(observer.steps[2].inter_token_seconds.size(), 1u);
  EXPECT_DOUBLE_EQ(observer.steps[2].inter_token_seconds[0], 0.01);
  EXPECT_EQ(observer.steps[3].num_running, 0);
  EXPECT_EQ(observer.steps[3].kv.num_used_blocks, 0);
  ASSERT_EQ(observer.finished.size(), 1u);
  EXPECT_EQ(observer.finished[0].finish_reason, FinishReason::kLength);
  EXPECT_EQ(observer.finished[0].generation_tokens, 3);
  EXPECT_DOUBLE_EQ(observer.finished[0].e2e_seconds, 0.04);
  EXPECT_DOUBLE_EQ(*observer.finished[0].time_per_output_token_seconds, 0.01);
  EXPECT_DOUBLE_EQ(sink->completion->timings.ttft_seconds, 0.02);
  EXPECT_DOUBLE_EQ(sink->completion->timings.queue_seconds, 0.01);
}

TEST(EngineCoreTest, RequestsEndedOutsideAStepAreReportedByTheNext) {
  CoreWithRunner c = MakeCore({}, Options());
  RecordingObserver observer;
  c.core->set_metrics_observer(&observer);
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(c.core->AddRequest(RequestId(1), Request(Iota(5), 10), sink).ok());
  ASSERT_TRUE(c.core->Step().ok());
  ASSERT_TRUE(c.core->Abort(RequestId(1)));  // the engine is now idle
  ASSERT_EQ(observer.steps.size(), 1u);
  ASSERT_TRUE(c.core->Step().ok());  // nothing runs, the abort is reported
  ASSERT_EQ(observer.finished.size(), 1u);
  EXPECT_EQ(observer.finished[0].finish_reason, FinishReason::kAbort);
  ASSERT_EQ(observer.steps.size(), 2u);
  EXPECT_EQ(observer.steps[1].num_scheduled_tokens, 0);
  EXPECT_EQ(observer.steps[1].kv.num_used_blocks, 0);
  ASSERT_TRUE(c.core->Step().ok());  // and only once
  EXPECT_EQ(observer.steps.size(), 2u);

  // Requests ended by an engine failure are reported too.
  ASSERT_TRUE(c.core->AddRequest(RequestId(2), Request(Iota(5), 10), sink).ok());
  ASSERT_TRUE(c.core->AddRequest(RequestId(3), Request(Iota(6), 10), sink).ok());
  c.runner->FailNextStep();
  EXPECT_FALSE(c.core->Step().ok());
  EXPECT_EQ(observer.finished.size(), 3u);
  EXPECT_EQ(observer.steps.size(), 3u);
}

// Random arrivals and cancellations against a tiny pool that forces preemption. Each request
// samples with its own seed; its output must equal the output it produces alone. Returns the
// preemptions (through `preemptions`); `expect_preemptions`: the pool must have forced some.
void RunRandomWorkloadWithPreemption(const EngineCoreOptions& options, bool expect_preemptions,
                                     int64_t* preemptions) {
  std::mt19937 rng(7);
  const FakeModelRunner::Options runner_options{.num_kv_blocks = 24, .block_size = 4};
  CoreWithRunner c = MakeCore(runner_options, options);
  RecordingObserver observer;
  c.core->set_metrics_observer(&observer);

  struct Submitted {
    EngineRequest request;
    std::shared_ptr<CollectingSink> sink;
    bool cancelled = false;
  };
  std::vector<Submitted> submitted;
  for (int step = 0; step < 4000 && (submitted.size() < 120 || c.core->has_requests()); ++step) {
    if (submitted.size() < 120 && rng() % 2 == 0) {
      EngineRequest request;
      request.prompt_tokens = Iota(1 + static_cast<int>(rng() % 30), static_cast<int>(rng() % 8));
      request.sampling.temperature = (rng() % 3 == 0) ? 0.0f : 0.8f;
      request.sampling.seed = rng();
      request.stopping.max_tokens = 1 + static_cast<int>(rng() % 16);
      request.stopping.ignore_eos = true;
      auto sink = std::make_shared<CollectingSink>();
      ASSERT_TRUE(c.core->AddRequest(RequestId(submitted.size() + 1), request, sink).ok());
      submitted.push_back({request, sink});
    }
    if (!submitted.empty() && rng() % 25 == 0) {
      const size_t victim = rng() % submitted.size();
      if (c.core->Abort(RequestId(victim + 1))) submitted[victim].cancelled = true;
    }
    ASSERT_TRUE(c.core->Step().ok());
  }
  ASSERT_FALSE(c.core->has_requests());
  EXPECT_EQ(c.core->kv_stats().num_used_blocks, 0) << "blocks leaked";
  if (expect_preemptions) {
    EXPECT_GT(c.core->num_preemptions(), 0) << "the pool was meant to force preemptions";
  }
  for (const StepMetrics& step : observer.steps) ASSERT_LE(step.num_scheduled_tokens, 24);

  int preempted_checked = 0;
  for (size_t i = 0; i < submitted.size(); ++i) {
    const Submitted& s = submitted[i];
    ASSERT_EQ(s.sink->num_completions, 1) << "request " << i + 1;
    const RequestCompletion& done = *s.sink->completion;
    if (s.cancelled) {
      EXPECT_EQ(done.finish_reason, FinishReason::kAbort);
      continue;
    }
    EXPECT_EQ(done.finish_reason, FinishReason::kLength);
    // Alone, in a large cache.
    CoreWithRunner alone = MakeCore({}, Options(64));
    auto out = GenerateOffline(*alone.core, {s.request});
    ASSERT_TRUE(out.ok());
    EXPECT_EQ(done.token_ids, (*out)[0].token_ids) << "request " << i + 1;
    if (done.timings.num_preemptions > 0) ++preempted_checked;
  }
  if (expect_preemptions) {
    EXPECT_GT(preempted_checked, 0);
  }
  *preemptions = c.core->num_preemptions();
}

TEST(EngineCoreTest, RandomWorkloadWithPreemptionMatchesRunningAlone) {
  int64_t preemptions = 0;
  RunRandomWorkloadWithPreemption(Options(/*max_model_len=*/64, 8, /*budget=*/24),
                                  /*expect_preemptions=*/true, &preemptions);
}

// The growth reserve (--new-token-ratio) sees each request's max_tokens through the
// scheduler's record: the same workload preempts less and every output is unchanged.
TEST(EngineCoreTest, TheGrowthReserveCutsPreemptionsAndChangesNoOutput) {
  int64_t off = 0;
  RunRandomWorkloadWithPreemption(Options(/*max_model_len=*/64, 8, /*budget=*/24),
                                  /*expect_preemptions=*/true, &off);
  EngineCoreOptions options = Options(/*max_model_len=*/64, 8, /*budget=*/24);
  options.scheduler.growth_reserve = {.initial_ratio = 0.7, .min_ratio = 0.1};
  int64_t on = 0;
  RunRandomWorkloadWithPreemption(options, /*expect_preemptions=*/false, &on);
  EXPECT_LT(on * 2, off) << "with the reserve " << on << ", without " << off;
}

// A KV-event sink that takes or refuses batches on command.
class SwitchableSink : public block_manager::KvEventSink {
 public:
  bool Publish(std::vector<block_manager::KvCacheEvent> events) override {
    if (!accept) {
      ++num_refused;
      return false;
    }
    batches.push_back(std::move(events));
    return true;
  }
  bool accept = true;
  int num_refused = 0;
  std::vector<std::vector<block_manager::KvCacheEvent>> batches;
};

TEST(EngineCoreTest, KvEventsFollowTheCacheAndResyncAfterADroppedBatch) {
  std::mt19937 rng(11);
  CoreWithRunner c = MakeCore({.num_kv_blocks = 16, .block_size = 4},
                              Options(/*max_model_len=*/64, 4, /*budget=*/24));
  SwitchableSink sink;
  c.core->set_kv_event_sink(&sink);
  block_manager::testing::KvEventMirror mirror;
  bool resynced = false;
  for (int round = 0; round < 60; ++round) {
    // Shared prefixes (the first token picks one of three), salts, and enough work to evict.
    EngineRequest request =
        Request(Iota(6 + static_cast<int>(rng() % 20), 1 + static_cast<int>(rng() % 3)), 3);
    request.stopping.ignore_eos = true;
    if (rng() % 4 == 0) request.cache_salt = "tenant";
    ASSERT_TRUE(
        c.core->AddRequest(RequestId(round + 1), request, std::make_shared<CollectingSink>()).ok());
    // Refuse the batches of a few steps in the middle: the engine must re-announce the cache.
    sink.accept = !(round >= 20 && round < 23);
    while (c.core->has_requests()) ASSERT_TRUE(c.core->Step().ok());
    if (!sink.accept) continue;
    for (const auto& batch : sink.batches) {
      if (!batch.empty() && batch[0].kind == block_manager::KvCacheEvent::Kind::kAllBlocksCleared &&
          round == 23) {
        resynced = true;
      }
      ASSERT_TRUE(mirror.Apply(batch, /*block_size=*/4).ok()) << "round " << round;
    }
    sink.batches.clear();
    ASSERT_TRUE(mirror.Compare(c.core->ListCachedBlocks()).ok()) << "round " << round;
    EXPECT_FALSE(c.core->kv_resync_pending());
  }
  EXPECT_GT(sink.num_refused, 0);
  EXPECT_TRUE(resynced) << "the first batch taken after the drops starts with AllBlocksCleared";
  EXPECT_GT(c.core->kv_stats().num_evictions, 0) << "the workload must evict";
  EXPECT_GT(mirror.size(), 0);
}

}  // namespace
}  // namespace pagoda::engine
