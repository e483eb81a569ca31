#include "scheduler/step_time_budget.h"

#include <algorithm>
#include <limits>
#include <random>

#include "gtest/gtest.h"

namespace pagoda::scheduler {
namespace {

// A step of P prompt tokens spanning S thousand positions takes base + per_token * P +
// per_span * S seconds, with multiplicative noise.
struct Machine {
  double base;
  double per_token;
  double per_span = 0;
  double noise = 0;
  std::mt19937 rng{7};
  double Seconds(int prefill, double span = 0) {
    std::uniform_real_distribution<double> jitter(1 - noise, 1 + noise);
    return (base + per_token * prefill + per_span * span) * jitter(rng);
  }
  // One chunk of n tokens from `start`, observed.
  void Step(StepTimeBudget& budget, int n, int start, int decodes) {
    const double span = n > 0 ? StepTimeBudget::Span(n, start) : 0;
    budget.Observe(n, span, decodes, Seconds(n, span));
  }
};

// The prompt tokens from `start` that a step with `decodes` decodes takes (no floor).
int FirstChunk(const StepTimeBudget& budget, int decodes, int start) {
  const StepTimeBudget::Limits limits = budget.StepLimits(decodes);
  return std::min(limits.tokens, budget.TokensWithin(limits.seconds, start));
}

TEST(StepTimeBudgetTest, OffOrWithoutDecodesIsUnlimited) {
  StepTimeBudget off({.ratio = 0});
  off.Observe(0, 0, 8, 0.03);
  off.Observe(512, StepTimeBudget::Span(512, 0), 8, 0.8);
  EXPECT_FALSE(off.enabled());
  EXPECT_EQ(FirstChunk(off, 8, 0), StepTimeBudget::kUnlimited);
  StepTimeBudget on({.ratio = 2});
  EXPECT_EQ(FirstChunk(on, 0, 0), StepTimeBudget::kUnlimited);
}

TEST(StepTimeBudgetTest, InitialChunkUntilBothKindsOfStepWereSeen) {
  StepTimeBudget budget({.ratio = 2, .min_chunk = 16, .initial_chunk = 64});
  EXPECT_EQ(FirstChunk(budget, 4, 0), 64);
  for (int i = 0; i < 5; ++i) budget.Observe(0, 0, 4, 0.03);  // decode-only: no slope yet
  StepTimeBudget::Model model;
  EXPECT_FALSE(budget.Fitted(&model));
  EXPECT_EQ(FirstChunk(budget, 4, 0), 64);
}

TEST(StepTimeBudgetTest, FitsTheStepTimeAndCapsTheChunkAtTheRatio) {
  Machine machine{.base = 0.030, .per_token = 0.0015};
  StepTimeBudget budget({.ratio = 2});
  machine.Step(budget, 2048, 0, 0);  // a first prompt, alone
  for (int i = 0; i < 10; ++i) machine.Step(budget, 0, 0, 8);
  StepTimeBudget::Model model;
  ASSERT_TRUE(budget.Fitted(&model));
  EXPECT_NEAR(model.base, 0.030, 1e-9);
  EXPECT_NEAR(model.per_token, 0.0015, 1e-12);
  EXPECT_EQ(model.per_span, 0);  // two kinds of step cannot separate the terms
  // (2 - 1) * 30 ms / 1.5 ms per token = 20 tokens: a step of 8 decodes and 20 prompt tokens
  // takes 60 ms, twice the decode-only step.
  EXPECT_EQ(FirstChunk(budget, 8, 0), 20);
  EXPECT_NEAR(budget.ChunkSeconds(20, 0), 0.030, 1e-9);
  StepTimeBudget looser({.ratio = 3});
  machine.Step(looser, 2048, 0, 0);
  machine.Step(looser, 0, 0, 8);
  EXPECT_EQ(FirstChunk(looser, 8, 0), 40);
}

// Attention makes a prompt's late tokens dearer than its first: the fit separates the two
// costs, and a chunk late in a prompt gets fewer tokens for the same time.
TEST(StepTimeBudgetTest, LateChunksOfAPromptGetFewerTokens) {
  Machine machine{.base = 0.020, .per_token = 0.0004, .per_span = 0.0006};
  StepTimeBudget budget({.ratio = 2});
  std::mt19937 rng(5);
  for (int step = 0; step < 400; ++step) {
    const int start = static_cast<int>(rng() % 2000);
    machine.Step(budget, rng() % 3 == 0 ? 0 : 8 + static_cast<int>(rng() % 200), start, 8);
  }
  StepTimeBudget::Model model;
  ASSERT_TRUE(budget.Fitted(&model));
  EXPECT_NEAR(model.base, 0.020, 1e-6);
  EXPECT_NEAR(model.per_token, 0.0004, 1e-8);
  EXPECT_NEAR(model.per_span, 0.0006, 1e-8);
  const int early = FirstChunk(budget, 8, 0);
  const int late = FirstChunk(budget, 8, 1500);
  EXPECT_GT(early, 2 * late);
  for (const int start : {0, 1500}) {
    const int n = FirstChunk(budget, 8, start);
    // The chunk fits the 20 ms and one more token would not.
    EXPECT_LE(machine.Seconds(n, StepTimeBudget::Span(n, start)), 2 * 0.020 + 1e-12);
    EXPECT_GT(machine.Seconds(n + 1, StepTimeBudget::Span(n + 1, start)), 2 * 0.020);
  }
}

TEST(StepTimeBudgetTest, NoisyStepsStillKeepTheStepNearTheRatio) {
  Machine machine{.base = 0.012, .per_token = 0.0004, .noise = 0.15};
  StepTimeBudget budget({.ratio = 2});
  std::mt19937 rng(3);
  // A serving mix: mostly decode-only steps, prompt chunks of what the budget allows.
  for (int step = 0; step < 2000; ++step) {
    const int start = static_cast<int>(rng() % 512);
    const bool prompt = rng() % 4 == 0;
    const int prefill = prompt ? std::min(FirstChunk(budget, 8, start), 2048) : 0;
    machine.Step(budget, prefill, start, 8);
  }
  // The true chunk is 12 ms / 0.4 ms = 30 tokens; 15% noise moves the fit by a few tokens.
  EXPECT_GE(FirstChunk(budget, 8, 0), 24);
  EXPECT_LE(FirstChunk(budget, 8, 0), 36);
}

TEST(StepTimeBudgetTest, KeepsTheLastFitAndIgnoresBadSteps) {
  StepTimeBudget kept({.ratio = 2});
  Machine machine{.base = 0.030, .per_token = 0.0015};
  machine.Step(kept, 512, 0, 0);
  machine.Step(kept, 0, 0, 8);
  ASSERT_EQ(FirstChunk(kept, 8, 0), 20);
  // A long run of decode-only steps forgets the prompts (the fit degenerates): the fit stays.
  for (int i = 0; i < 20000; ++i) machine.Step(kept, 0, 0, 8);
  EXPECT_EQ(FirstChunk(kept, 8, 0), 20);
  kept.Observe(0, 0, 0, 5.0);
  kept.Observe(64, 1.0, 8, std::numeric_limits<double>::quiet_NaN());
  kept.Observe(64, 1.0, 8, std::numeric_limits<double>::infinity());
  kept.Observe(64, 1.0, 8, -1.0);
  kept.Observe(64, -1.0, 8, 0.1);
  EXPECT_EQ(FirstChunk(kept, 8, 0), 20);
  EXPECT_EQ(kept.TokensWithin(0, 0), 0);
  EXPECT_EQ(kept.TokensWithin(-1, 0), 0);
  EXPECT_EQ(kept.TokensWithin(StepTimeBudget::kNoLimit, 0), StepTimeBudget::kUnlimited);
  EXPECT_EQ(kept.min_chunk(), 16);  // the scheduler's floor for a step's first chunk
}

}  // namespace
}  // namespace pagoda::scheduler
