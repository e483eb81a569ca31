#include "server/error_reason.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/engine_request.h"

namespace pagoda::server {
namespace {

// Payload type URLs. The reason's is the engine's (engine/engine_request.h), so that errors the
// engine tags (PROMPT_TOO_LONG) read the same way as the server's own.
constexpr const char* kReasonUrl = engine::kErrorReasonPayload;
constexpr char kRetryAfterUrl[] = "type.googleapis.com/pagoda.RetryAfterMs";

constexpr ErrorReason kAllReasons[] = {ErrorReason::kInvalidField, ErrorReason::kPromptTooLong,
                                       ErrorReason::kQueueFull,    ErrorReason::kKvCacheTooSmall,
                                       ErrorReason::kDraining,     ErrorReason::kEngineFailure};

}  // namespace

absl::string_view ErrorReasonName(ErrorReason reason) {
  switch (reason) {
    case ErrorReason::kInvalidField:
      return "INVALID_FIELD";
    case ErrorReason::kPromptTooLong:
      return "PROMPT_TOO_LONG";
    case ErrorReason::kQueueFull:
      return "QUEUE_FULL";
    case ErrorReason::kKvCacheTooSmall:
      return "KV_CACHE_TOO_SMALL";
    case ErrorReason::kDraining:
      return "DRAINING";
    case ErrorReason::kEngineFailure:
      return "ENGINE_FAILURE";
  }
  return "UNKNOWN";
}

absl::Status WithErrorReason(absl::Status status, ErrorReason reason) {
  status.SetPayload(kReasonUrl, absl::Cord(ErrorReasonName(reason)));
  return status;
}

std::optional<ErrorReason> GetErrorReason(const absl::Status& status) {
  const auto payload = status.GetPayload(kReasonUrl);
  if (!payload.has_value()) return std::nullopt;
  const std::string name(*payload);
  for (ErrorReason reason : kAllReasons) {
    if (ErrorReasonName(reason) == name) return reason;
  }
  return std::nullopt;
}

absl::Status WithRetryAfter(absl::Status status, absl::Duration retry_after) {
  const int64_t ms = std::max<int64_t>(
      1, static_cast<int64_t>(std::ceil(absl::ToDoubleMilliseconds(retry_after))));
  status.SetPayload(kRetryAfterUrl, absl::Cord(absl::StrCat(ms)));
  return status;
}

std::optional<int64_t> GetRetryAfterMs(const absl::Status& status) {
  const auto payload = status.GetPayload(kRetryAfterUrl);
  int64_t ms = 0;
  if (!payload.has_value() || !absl::SimpleAtoi(std::string(*payload), &ms)) return std::nullopt;
  return ms;
}

std::string RejectionLabel(const absl::Status& status) {
  if (const auto reason = GetErrorReason(status)) {
    return absl::AsciiStrToLower(ErrorReasonName(*reason));
  }
  return absl::AsciiStrToLower(absl::StatusCodeToString(status.code()));
}

}  // namespace pagoda::server
