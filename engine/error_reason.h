#pragma once

// Why the engine refused or failed a request, in a form every front end can map: an
// ErrorReason carried inside an absl::Status as a payload. gRPC sends it as the
// `pagoda-error-reason` trailing metadata (server/grpc_status.h); an HTTP front end maps it to
// its own error type. The engine attaches it where it decides (validation, Engine::Submit), so
// each reason has one owner. Pure functions; thread-safe.

#include <optional>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace pagoda::engine {

// The stable values of `pagoda-error-reason`, one per documented cause.
enum class ErrorReason {
  kInvalidField,     // INVALID_ARGUMENT: a field failed validation
  kPromptTooLong,    // INVALID_ARGUMENT: prompt (+ max_tokens) exceeds max_model_len
  kQueueFull,        // RESOURCE_EXHAUSTED: the waiting queue is full; retry later
  kKvCacheTooSmall,  // RESOURCE_EXHAUSTED: the request can never fit in the KV cache
  kDraining,         // UNAVAILABLE: the server is draining
  kEngineFailure,    // INTERNAL: the engine failed
};

inline constexpr ErrorReason kAllErrorReasons[] = {
    ErrorReason::kInvalidField,    ErrorReason::kPromptTooLong, ErrorReason::kQueueFull,
    ErrorReason::kKvCacheTooSmall, ErrorReason::kDraining,      ErrorReason::kEngineFailure};

// The metadata value, e.g. "QUEUE_FULL".
absl::string_view ErrorReasonName(ErrorReason reason);

// `status` (not OK) with `reason` attached; replaces an earlier reason.
absl::Status WithErrorReason(absl::Status status, ErrorReason reason);
std::optional<ErrorReason> GetErrorReason(const absl::Status& status);

// Shorthands: InvalidArgument with kInvalidField or kPromptTooLong.
absl::Status InvalidFieldError(absl::string_view message);
absl::Status PromptTooLongError(absl::string_view message);

}  // namespace pagoda::engine
