#include "server/error_reason.h"

#include "absl/strings/cord.h"
#include "engine/engine_request.h"
#include "gtest/gtest.h"

namespace pagoda::server {
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
}

TEST(ErrorReasonTest, ReadsTheEnginesPromptTooLongPayload) {
  absl::Status status = absl::InvalidArgumentError("prompt: too long");
  status.SetPayload(engine::kErrorReasonPayload, absl::Cord(engine::kPromptTooLongReason));
  EXPECT_EQ(GetErrorReason(status), ErrorReason::kPromptTooLong);
}

TEST(ErrorReasonTest, RetryAfterRoundsUpToWholeMilliseconds) {
  EXPECT_EQ(GetRetryAfterMs(WithRetryAfter(absl::UnavailableError(""), absl::Seconds(1))), 1000);
  EXPECT_EQ(GetRetryAfterMs(WithRetryAfter(absl::UnavailableError(""), absl::Microseconds(1))), 1);
  EXPECT_EQ(GetRetryAfterMs(WithRetryAfter(absl::UnavailableError(""), absl::ZeroDuration())), 1);
  EXPECT_EQ(GetRetryAfterMs(absl::UnavailableError("")), std::nullopt);
}

TEST(ErrorReasonTest, NamesAndRejectionLabels) {
  EXPECT_EQ(ErrorReasonName(ErrorReason::kInvalidField), "INVALID_FIELD");
  EXPECT_EQ(ErrorReasonName(ErrorReason::kPromptTooLong), "PROMPT_TOO_LONG");
  EXPECT_EQ(ErrorReasonName(ErrorReason::kQueueFull), "QUEUE_FULL");
  EXPECT_EQ(ErrorReasonName(ErrorReason::kKvCacheTooSmall), "KV_CACHE_TOO_SMALL");
  EXPECT_EQ(ErrorReasonName(ErrorReason::kDraining), "DRAINING");
  EXPECT_EQ(ErrorReasonName(ErrorReason::kEngineFailure), "ENGINE_FAILURE");
  EXPECT_EQ(RejectionLabel(
                WithErrorReason(absl::ResourceExhaustedError(""), ErrorReason::kKvCacheTooSmall)),
            "kv_cache_too_small");
  EXPECT_EQ(RejectionLabel(absl::NotFoundError("")), "not_found");
  EXPECT_EQ(RejectionLabel(absl::AlreadyExistsError("")), "already_exists");
  EXPECT_EQ(RejectionLabel(absl::UnimplementedError("")), "unimplemented");
}

}  // namespace
}  // namespace pagoda::server
