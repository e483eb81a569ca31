#include "scheduler/step_time_budget.h"

#include <random>

#include "gtest/gtest.h"

namespace pagoda::scheduler {
namespace {

// A step of P prefill tokens takes base + per_token * P seconds, with multiplicative noise.
struct Machine {
  double base;
  double per_token;
  double noise = 0;
  std::mt19937 rng{7};
  double Seconds(int prefill) {
    std::uniform_real_distribution<double> jitter(1 - noise, 1 + noise);
    return (base + per_token * prefill) * jitter(rng);
  }
};

TEST(StepTimeBudgetTest, OffOrWithoutDecodesIsUnlimited) {
  StepTimeBudget off({.ratio = 0});
  off.Observe(0, 8, 0.03);
  off.Observe(512, 8, 0.8);
  EXPECT_FALSE(off.enabled());
  EXPECT_EQ(off.PrefillCap(8), StepTimeBudget::kUnlimited);
  StepTimeBudget on({.ratio = 2});
  EXPECT_EQ(on.PrefillCap(0), StepTimeBudget::kUnlimited);
}

TEST(StepTimeBudgetTest, InitialChunkUntilBothKindsOfStepWereSeen) {
  StepTimeBudget budget({.ratio = 2, .min_chunk = 16, .initial_chunk = 64});
  EXPECT_EQ(budget.PrefillCap(4), 64);
  for (int i = 0; i < 5; ++i) budget.Observe(0, 4, 0.03);  // decode-only: no slope yet
  double base = 0, per_token = 0;
  EXPECT_FALSE(budget.Fit(&base, &per_token));
  EXPECT_EQ(budget.PrefillCap(4), 64);
}

TEST(StepTimeBudgetTest, FitsTheStepTimeAndCapsTheChunkAtTheRatio) {
  Machine machine{.base = 0.030, .per_token = 0.0015};
  StepTimeBudget budget({.ratio = 2});
  budget.Observe(2048, 0, machine.Seconds(2048));  // a first prompt, alone
  for (int i = 0; i < 10; ++i) budget.Observe(0, 8, machine.Seconds(0));
  double base = 0, per_token = 0;
  ASSERT_TRUE(budget.Fit(&base, &per_token));
  EXPECT_NEAR(base, 0.030, 1e-9);
  EXPECT_NEAR(per_token, 0.0015, 1e-12);
  // (2 - 1) * 30 ms / 1.5 ms per token = 20 tokens: a step of 8 decodes and 20 prompt tokens
  // takes 60 ms, twice the decode-only step.
  EXPECT_EQ(budget.PrefillCap(8), 20);
  StepTimeBudget looser({.ratio = 3});
  looser.Observe(2048, 0, machine.Seconds(2048));
  looser.Observe(0, 8, machine.Seconds(0));
  EXPECT_EQ(looser.PrefillCap(8), 40);
}

TEST(StepTimeBudgetTest, NoisyStepsStillKeepTheStepNearTheRatio) {
  Machine machine{.base = 0.012, .per_token = 0.0004, .noise = 0.15};
  StepTimeBudget budget({.ratio = 2});
  std::mt19937 rng(3);
  // A serving mix: mostly decode-only steps, prompt chunks of the cap the budget gives.
  for (int step = 0; step < 2000; ++step) {
    const bool prompt = rng() % 4 == 0;
    const int prefill = prompt ? std::min(budget.PrefillCap(8), 2048) : 0;
    budget.Observe(prefill, 8, machine.Seconds(prefill));
  }
  // The true cap is 12 ms / 0.4 ms = 30 tokens; 15% noise moves the fit by a few tokens.
  EXPECT_GE(budget.PrefillCap(8), 24);
  EXPECT_LE(budget.PrefillCap(8), 36);
}

TEST(StepTimeBudgetTest, NeverBelowTheMinimumChunkAndKeepsTheLastFit) {
  Machine slow{.base = 0.010, .per_token = 0.010};  // a prompt token costs a whole decode step
  StepTimeBudget budget({.ratio = 1.5, .min_chunk = 16});
  budget.Observe(256, 0, slow.Seconds(256));
  budget.Observe(0, 2, slow.Seconds(0));
  EXPECT_EQ(budget.PrefillCap(2), 16);  // the fit says 0.5 tokens; prompts must still finish
  StepTimeBudget kept({.ratio = 2});
  Machine machine{.base = 0.030, .per_token = 0.0015};
  kept.Observe(512, 0, machine.Seconds(512));
  kept.Observe(0, 8, machine.Seconds(0));
  ASSERT_EQ(kept.PrefillCap(8), 20);
  // A long run of decode-only steps forgets the prompts (the fit degenerates): the cap stays.
  for (int i = 0; i < 20000; ++i) kept.Observe(0, 8, machine.Seconds(0));
  EXPECT_EQ(kept.PrefillCap(8), 20);
}

TEST(StepTimeBudgetTest, IgnoresEmptyAndNonFiniteSteps) {
  Machine machine{.base = 0.030, .per_token = 0.0015};
  StepTimeBudget budget({.ratio = 2});
  budget.Observe(2048, 0, machine.Seconds(2048));
  budget.Observe(0, 8, machine.Seconds(0));
  budget.Observe(0, 0, 5.0);
  budget.Observe(64, 8, std::numeric_limits<double>::quiet_NaN());
  budget.Observe(64, 8, std::numeric_limits<double>::infinity());
  budget.Observe(64, 8, -1.0);
  EXPECT_EQ(budget.PrefillCap(8), 20);
}

}  // namespace
}  // namespace pagoda::scheduler
