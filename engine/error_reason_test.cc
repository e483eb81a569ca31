#include "engine/error_reason.h"

#include "gtest/gtest.h"

namespace pagoda::engine {
namespace {

TEST(ErrorReasonTest, RoundTripsThroughTheStatus) {
  const absl::Status status =
      WithErrorReason(absl::ResourceExhaustedError("full"), ErrorReason::kQueueFull);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(status.message(), "full");
  EXPECT_EQ(GetErrorReason(status), ErrorReason::kQueueFull);
  EXPECT_EQ(GetErrorReason(absl::InternalError("x")), std::nullopt);
  EXPECT_EQ(GetErrorReason(WithErrorReason(status, ErrorReason::kDraining)),
            ErrorReason::kDraining);
  for (ErrorReason reason : kAllErrorReasons) {
    EXPECT_EQ(GetErrorReason(WithErrorReason(absl::InternalError(""), reason)), reason);
  }
}

TEST(ErrorReasonTest, Shorthands) {
  const absl::Status invalid = InvalidFieldError("top_p: must be in (0, 1], got 0");
  EXPECT_EQ(invalid.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(invalid.message(), "top_p: must be in (0, 1], got 0");
  EXPECT_EQ(GetErrorReason(invalid), ErrorReason::kInvalidField);
  const absl::Status too_long = PromptTooLongError("prompt: too long");
  EXPECT_EQ(too_long.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GetErrorReason(too_long), ErrorReason::kPromptTooLong);
}

TEST(ErrorReasonTest, Names) {
  EXPECT_EQ(ErrorReasonName(ErrorReason::kInvalidField), "INVALID_FIELD");
  EXPECT_EQ(ErrorReasonName(ErrorReason::kPromptTooLong), "PROMPT_TOO_LONG");
  EXPECT_EQ(ErrorReasonName(ErrorReason::kQueueFull), "QUEUE_FULL");
  EXPECT_EQ(ErrorReasonName(ErrorReason::kKvCacheTooSmall), "KV_CACHE_TOO_SMALL");
  EXPECT_EQ(ErrorReasonName(ErrorReason::kDraining), "DRAINING");
  EXPECT_EQ(ErrorReasonName(ErrorReason::kEngineFailure), "ENGINE_FAILURE");
}

}  // namespace
}  // namespace pagoda::engine
