#include "server/log.h"

#include <optional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pagoda::server {
namespace {

using ::testing::HasSubstr;

TEST(LogRateLimiterTest, LetsABurstThroughPerWindowAndCountsTheRest) {
  absl::Time now = absl::FromUnixSeconds(1000);
  LogRateLimiter limiter(3, absl::Minutes(1), [&now] { return now; });
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limiter.Admit("a", "bad utf-8"), "bad utf-8");
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(limiter.Admit("a", "bad utf-8"), std::nullopt);
  // Another key has its own budget.
  EXPECT_EQ(limiter.Admit("b", "other"), "other");
  now += absl::Seconds(61);
  const std::optional<std::string> next = limiter.Admit("a", "bad utf-8");
  ASSERT_TRUE(next.has_value());
  EXPECT_THAT(*next, HasSubstr("1000 similar lines suppressed"));
  EXPECT_EQ(limiter.Admit("a", "bad utf-8"), "bad utf-8");
}

TEST(LogRateLimiterTest, BoundsTheKeysItRemembers) {
  absl::Time now = absl::FromUnixSeconds(1000);
  LogRateLimiter limiter(1, absl::Minutes(1), [&now] { return now; });
  for (size_t i = 0; i < LogRateLimiter::kMaxKeys; ++i) {
    EXPECT_TRUE(limiter.Admit(std::to_string(i), "x").has_value());
  }
  // Full, and no window has ended: a new key is dropped rather than remembered.
  EXPECT_EQ(limiter.Admit("new", "x"), std::nullopt);
  now += absl::Minutes(2);
  EXPECT_TRUE(limiter.Admit("new", "x").has_value());
}

}  // namespace
}  // namespace pagoda::server
