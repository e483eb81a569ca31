#include "engine/engine.h"

#include <atomic>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/check.h"
#include "engine/error_reason.h"
#include "gtest/gtest.h"
#include "runner/testing/fake_model_runner.h"

namespace pagoda::engine {
namespace {

using runner::testing::FakeModelRunner;

// A thread-safe sink for requests submitted from test threads.
class WaitableSink final : public RequestSink {
 public:
  void OnChunk(OutputChunk chunk) override {
    absl::MutexLock lock(&mu_);
    num_tokens_ += static_cast<int>(chunk.token_ids.size());
  }
  void OnComplete(RequestCompletion completion) override {
    absl::MutexLock lock(&mu_);
    completion_ = std::move(completion);
    ++num_completions_;
    done_.Notify();
  }
  bool WaitDone(absl::Duration timeout) { return done_.WaitForNotificationWithTimeout(timeout); }
  RequestCompletion completion() {
    absl::MutexLock lock(&mu_);
    return completion_;
  }
  int num_completions() {
    absl::MutexLock lock(&mu_);
    return num_completions_;
  }
  int num_tokens() {
    absl::MutexLock lock(&mu_);
    return num_tokens_;
  }

 private:
  absl::Mutex mu_;
  RequestCompletion completion_ ABSL_GUARDED_BY(mu_);
  int num_completions_ ABSL_GUARDED_BY(mu_) = 0;
  int num_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Notification done_;
};

std::unique_ptr<Engine> MakeEngine(int max_waiting = 1024, int max_num_seqs = 8,
                                   absl::Duration step_delay = absl::ZeroDuration()) {
  EngineCoreOptions options;
  options.scheduler.max_num_seqs = max_num_seqs;
  options.scheduler.max_num_batched_tokens = 64;
  options.scheduler.max_model_len = 256;
  auto core = EngineCore::Create("fake",
                                 std::make_unique<FakeModelRunner>(FakeModelRunner::Options{
                                     .num_kv_blocks = 256, .step_delay = step_delay}),
                                 nullptr, options);
  PAGODA_CHECK(core.ok());
  auto engine = Engine::Create(*std::move(core), {.max_waiting_requests = max_waiting});
  PAGODA_CHECK(engine.ok());
  return *std::move(engine);
}

EngineRequest Request(int prompt_len, int max_tokens) {
  EngineRequest request;
  request.prompt_tokens.resize(prompt_len);
  std::iota(request.prompt_tokens.begin(), request.prompt_tokens.end(), 1);
  request.sampling.temperature = 0.0f;
  request.stopping.max_tokens = max_tokens;
  request.stopping.ignore_eos = true;
  return request;
}

TEST(EngineTest, ConcurrentSubmittersAllComplete) {
  std::unique_ptr<Engine> engine = MakeEngine();
  constexpr int kThreads = 4;
  constexpr int kPerThread = 25;
  std::vector<std::shared_ptr<WaitableSink>> sinks(kThreads * kPerThread);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto sink = std::make_shared<WaitableSink>();
        sinks[t * kPerThread + i] = sink;
        PAGODA_CHECK(engine->Submit(Request(1 + (i % 7), 1 + (i % 5)), sink).ok());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < sinks.size(); ++i) {
    ASSERT_TRUE(sinks[i]->WaitDone(absl::Seconds(30))) << i;
    EXPECT_EQ(sinks[i]->num_completions(), 1);
    EXPECT_EQ(sinks[i]->completion().finish_reason, FinishReason::kLength);
    EXPECT_EQ(sinks[i]->num_tokens(), 1 + (static_cast<int>(i % kPerThread) % 5));
  }
  ASSERT_TRUE(engine->WaitUntilIdle(absl::Seconds(10)));
  const EngineSnapshot snapshot = engine->Snapshot();
  EXPECT_EQ(snapshot.num_running, 0);
  EXPECT_EQ(snapshot.num_waiting, 0);
  EXPECT_EQ(snapshot.kv.num_used_blocks, 0);
  EXPECT_GT(snapshot.num_steps, 0);
  EXPECT_TRUE(snapshot.healthy);
}

TEST(EngineTest, SubmitValidatesOnTheCallersThread) {
  std::unique_ptr<Engine> engine = MakeEngine();
  auto sink = std::make_shared<WaitableSink>();
  const auto result = engine->Submit(Request(0, 4), sink);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sink->num_completions(), 0);
}

TEST(EngineTest, QueueFullIsResourceExhausted) {
  // One running request at a time and room for 3 waiting: most of a burst is refused.
  std::unique_ptr<Engine> engine = MakeEngine(/*max_waiting=*/3, /*max_num_seqs=*/1);
  std::vector<std::shared_ptr<WaitableSink>> accepted;
  int refused = 0;
  for (int i = 0; i < 40; ++i) {
    auto sink = std::make_shared<WaitableSink>();
    const auto id = engine->Submit(Request(8, 200), sink);
    if (id.ok()) {
      accepted.push_back(sink);
    } else {
      EXPECT_EQ(id.status().code(), absl::StatusCode::kResourceExhausted);
      EXPECT_EQ(GetErrorReason(id.status()), ErrorReason::kQueueFull);
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);
  EXPECT_LE(accepted.size(), 40u - refused);
  engine->AbortAll();
  for (const auto& sink : accepted) ASSERT_TRUE(sink->WaitDone(absl::Seconds(30)));
}

// SubmitAll: ids in order, every request queued, or none when the waiting queue cannot take
// them all (or one is invalid); an empty queue takes a group larger than its limit.
TEST(EngineTest, SubmitAllQueuesAllOrNone) {
  std::unique_ptr<Engine> engine =
      MakeEngine(/*max_waiting=*/3, /*max_num_seqs=*/1, absl::Milliseconds(5));
  const auto group = [](int n, int prompt_len) {
    std::vector<std::pair<EngineRequest, std::shared_ptr<RequestSink>>> requests;
    for (int i = 0; i < n; ++i) {
      requests.emplace_back(Request(prompt_len, 50), std::make_shared<WaitableSink>());
    }
    return requests;
  };
  const auto big = engine->SubmitAll(group(5, 8));  // more than the limit, into an empty queue
  ASSERT_TRUE(big.ok()) << big.status();
  ASSERT_EQ(big->size(), 5u);
  for (size_t i = 1; i < big->size(); ++i) EXPECT_LT((*big)[i - 1].value(), (*big)[i].value());
  const auto refused = engine->SubmitAll(group(2, 8));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  const auto invalid = engine->SubmitAll(group(1, 0));  // an empty prompt: nothing queued
  EXPECT_EQ(invalid.status().code(), absl::StatusCode::kInvalidArgument);
  engine->AbortAll();
  ASSERT_TRUE(engine->WaitUntilIdle(absl::Seconds(10)));
  EXPECT_EQ(engine->Snapshot().kv.num_used_blocks, 0);
}

TEST(EngineTest, AbortAndDrain) {
  // 5 ms steps: the long request needs 1.2 s, far longer than the abort takes to arrive.
  std::unique_ptr<Engine> engine = MakeEngine(1024, 8, absl::Milliseconds(5));
  auto long_running = std::make_shared<WaitableSink>();
  const auto id = engine->Submit(Request(4, 240), long_running);
  ASSERT_TRUE(id.ok());
  auto short_one = std::make_shared<WaitableSink>();
  ASSERT_TRUE(engine->Submit(Request(4, 3), short_one).ok());
  engine->StartDrain();
  EXPECT_TRUE(engine->draining());
  const absl::Status refused =
      engine->Submit(Request(4, 3), std::make_shared<WaitableSink>()).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(GetErrorReason(refused), ErrorReason::kDraining);
  ASSERT_TRUE(short_one->WaitDone(absl::Seconds(30)));  // accepted work goes on
  engine->Abort(*id);
  ASSERT_TRUE(long_running->WaitDone(absl::Seconds(30)));
  EXPECT_EQ(long_running->completion().finish_reason, FinishReason::kAbort);
  ASSERT_TRUE(engine->WaitUntilIdle(absl::Seconds(10)));
  EXPECT_EQ(engine->Snapshot().kv.num_used_blocks, 0);
}

TEST(EngineTest, DestructionAbortsWhatIsLeft) {
  auto sink = std::make_shared<WaitableSink>();
  {
    // Slow steps, so the request cannot finish before the destructor aborts it.
    std::unique_ptr<Engine> engine = MakeEngine(1024, 8, absl::Milliseconds(5));
    ASSERT_TRUE(engine->Submit(Request(4, 250), sink).ok());
  }
  EXPECT_EQ(sink->num_completions(), 1);
  EXPECT_EQ(sink->completion().finish_reason, FinishReason::kAbort);
}

}  // namespace
}  // namespace pagoda::engine
