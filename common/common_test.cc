#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/check.h"
#include "common/clock.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "gtest/gtest.h"

namespace pagoda {
namespace {

TEST(StrongIdTest, ComparesAndHashesByValue) {
  EXPECT_EQ(BlockId(3), BlockId(3));
  EXPECT_LT(BlockId(2), BlockId(3));
  EXPECT_EQ(BlockId().value(), 0);
  absl::flat_hash_set<RequestId> ids = {RequestId(1), RequestId(2), RequestId(1)};
  EXPECT_EQ(ids.size(), 2u);
}

absl::StatusOr<int> ParsePositive(int x) {
  if (x <= 0) return absl::InvalidArgumentError("x must be positive");
  return x;
}

absl::Status Check(int x) {
  if (x == 7) return absl::NotFoundError("seven");
  return absl::OkStatus();
}

absl::StatusOr<int> Twice(int x) {
  PAGODA_RETURN_IF_ERROR(Check(x));
  PAGODA_ASSIGN_OR_RETURN(int y, ParsePositive(x));
  PAGODA_ASSIGN_OR_RETURN(const int z, ParsePositive(y));
  return y + z;
}

TEST(StatusMacrosTest, PropagatesErrorsAndValues) {
  EXPECT_EQ(*Twice(4), 8);
  EXPECT_EQ(Twice(-1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Twice(7).status().code(), absl::StatusCode::kNotFound);
}

TEST(ClockTest, FakeClockMovesOnlyWhenAdvanced) {
  common::FakeClock clock;
  const absl::Time start = clock.Now();
  clock.Advance(absl::Milliseconds(5));
  EXPECT_EQ(clock.Now() - start, absl::Milliseconds(5));
  const absl::Time a = common::Clock::Real().Now();
  EXPECT_LE(a, common::Clock::Real().Now());
}

}  // namespace
}  // namespace pagoda

namespace pagoda {
namespace {

TEST(CheckDeathTest, FailedCheckAbortsWithConditionAndMessage) {
  int free_blocks = 2;
  PAGODA_CHECK_LE(1, free_blocks) << "never printed";
  EXPECT_DEATH({ PAGODA_CHECK_LE(3, free_blocks) << "need more blocks"; },
               "check failed: .*3.*free_blocks.*\\(3 vs 2\\).*need more blocks");
  EXPECT_DEATH(PAGODA_CHECK(free_blocks == 0), "common_test.cc:[0-9]+: check failed");
}

}  // namespace
}  // namespace pagoda
