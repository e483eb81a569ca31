#include "engine/error_reason.h"

#include <string>

#include "absl/strings/cord.h"

namespace pagoda::engine {
namespace {

// The payload's type URL inside absl::Status.
constexpr char kReasonUrl[] = "type.googleapis.com/pagoda.ErrorReason";

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
  for (ErrorReason reason : kAllErrorReasons) {
    if (ErrorReasonName(reason) == name) return reason;
  }
  return std::nullopt;
}

absl::Status InvalidFieldError(absl::string_view message) {
  return WithErrorReason(absl::InvalidArgumentError(message), ErrorReason::kInvalidField);
}

absl::Status PromptTooLongError(absl::string_view message) {
  return WithErrorReason(absl::InvalidArgumentError(message), ErrorReason::kPromptTooLong);
}

}  // namespace pagoda::engine
