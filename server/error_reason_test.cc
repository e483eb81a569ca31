#include "server/error_reason.h"

#include "gtest/gtest.h"

namespace pagoda::server {
namespace {

TEST(ErrorReasonTest, RetryAfterRoundsUpToWholeMilliseconds) {
  EXPECT_EQ(GetRetryAfterMs(WithRetryAfter(absl::UnavailableError(""), absl::Seconds(1))), 1000);
  EXPECT_EQ(GetRetryAfterMs(WithRetryAfter(absl::UnavailableError(""), absl::Microseconds(1))), 1);
  EXPECT_EQ(GetRetryAfterMs(WithRetryAfter(absl::UnavailableError(""), absl::ZeroDuration())), 1);
  EXPECT_EQ(GetRetryAfterMs(absl::UnavailableError("")), std::nullopt);
  // The hint and the engine's reason travel side by side.
  const absl::Status both = WithRetryAfter(
      WithErrorReason(absl::ResourceExhaustedError("full"), ErrorReason::kQueueFull),
      absl::Milliseconds(250));
  EXPECT_EQ(GetRetryAfterMs(both), 250);
  EXPECT_EQ(GetErrorReason(both), ErrorReason::kQueueFull);
}

TEST(ErrorReasonTest, RejectionLabels) {
  EXPECT_EQ(RejectionLabel(
                WithErrorReason(absl::ResourceExhaustedError(""), ErrorReason::kKvCacheTooSmall)),
            "kv_cache_too_small");
  EXPECT_EQ(RejectionLabel(WithErrorReason(absl::InvalidArgumentError(""),
                                           ErrorReason::kPromptTooLong)),
            "prompt_too_long");
  EXPECT_EQ(RejectionLabel(absl::NotFoundError("")), "not_found");
  EXPECT_EQ(RejectionLabel(absl::AlreadyExistsError("")), "already_exists");
  EXPECT_EQ(RejectionLabel(absl::UnimplementedError("")), "unimplemented");
}

}  // namespace
}  // namespace pagoda::server
