#include "scheduler/growth_reserve.h"

#include "gtest/gtest.h"

namespace pagoda::scheduler {
namespace {

TEST(GrowthReserveTest, ValidateNamesTheRanges) {
  EXPECT_TRUE(GrowthReserve::Validate({}).ok());  // off, whatever its floor
  EXPECT_TRUE(GrowthReserve::Validate({.initial_ratio = 1, .min_ratio = 1}).ok());
  EXPECT_FALSE(GrowthReserve::Validate({.initial_ratio = 1.5}).ok());
  EXPECT_FALSE(GrowthReserve::Validate({.initial_ratio = 0.5, .min_ratio = 0.6}).ok());
  EXPECT_FALSE(GrowthReserve::Validate({.initial_ratio = 0.5, .min_ratio = -0.1}).ok());
  EXPECT_FALSE(GrowthReserve::Validate({.initial_ratio = 0.5, .decay_steps = 0}).ok());
}

TEST(GrowthReserveTest, OffReservesNothing) {
  GrowthReserve reserve(GrowthReserve::Options{});
  EXPECT_FALSE(reserve.enabled());
  EXPECT_EQ(reserve.ReserveTokens(1000), 0);
  reserve.ObservePreemption(10, 100, 1);
  EXPECT_EQ(reserve.ReserveTokens(1000), 0);
}

TEST(GrowthReserveTest, ReservesTheRatioOfWhatIsLeftRoundedUp) {
  GrowthReserve reserve({.initial_ratio = 0.7, .min_ratio = 0.1, .decay_steps = 600});
  EXPECT_EQ(reserve.ReserveTokens(100), 70);
  EXPECT_EQ(reserve.ReserveTokens(11), 8);  // 7.7
  EXPECT_EQ(reserve.ReserveTokens(0), 0);
  EXPECT_EQ(reserve.ReserveTokens(-5), 0);
}

TEST(GrowthReserveTest, DecaysLinearlyToTheFloor) {
  GrowthReserve reserve({.initial_ratio = 0.5, .min_ratio = 0.1, .decay_steps = 4});
  reserve.ObserveStep();
  EXPECT_DOUBLE_EQ(reserve.ratio(), 0.4);
  for (int i = 0; i < 3; ++i) reserve.ObserveStep();
  EXPECT_NEAR(reserve.ratio(), 0.1, 1e-12);
  reserve.ObserveStep();
  EXPECT_NEAR(reserve.ratio(), 0.1, 1e-12);
}

TEST(GrowthReserveTest, APreemptionRaisesTheRatioToTheEstimate) {
  GrowthReserve reserve({.initial_ratio = 0.5, .min_ratio = 0.1, .decay_steps = 4});
  for (int i = 0; i < 4; ++i) reserve.ObserveStep();
  // Little used so far: back to the initial ratio, not below.
  reserve.ObservePreemption(/*generated=*/10, /*budget=*/1000, /*num_running=*/2);
  EXPECT_DOUBLE_EQ(reserve.ratio(), 0.5);
  // Most of the budgets used: (700 + 2 * 20) / 1000.
  reserve.ObservePreemption(700, 1000, 2);
  EXPECT_DOUBLE_EQ(reserve.ratio(), 0.74);
  // Never above 1; never lowered by a preemption.
  reserve.ObservePreemption(1000, 1000, 4);
  EXPECT_DOUBLE_EQ(reserve.ratio(), 1.0);
  reserve.ObservePreemption(0, 0, 0);
  EXPECT_DOUBLE_EQ(reserve.ratio(), 1.0);
}

}  // namespace
}  // namespace pagoda::scheduler
