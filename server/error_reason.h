#pragma once

// The machine-readable side of a failed RPC: the `pagoda-error-reason` and
// `pagoda-retry-after-ms` trailing metadata of proto/pagoda/v1/text_generation_service.proto,
// carried inside an absl::Status as payloads until ToGrpcStatus (server/grpc_status.h) turns
// them into metadata. Pure functions; thread-safe.

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace pagoda::server {

// The stable values of `pagoda-error-reason`, one per documented cause.
enum class ErrorReason {
  kInvalidField,     // INVALID_ARGUMENT: a field failed validation
  kPromptTooLong,    // INVALID_ARGUMENT: prompt (+ max_tokens) exceeds max_model_len
  kQueueFull,        // RESOURCE_EXHAUSTED: the waiting queue is full; retry later
  kKvCacheTooSmall,  // RESOURCE_EXHAUSTED: the request can never fit in the KV cache
  kDraining,         // UNAVAILABLE: the server is draining
  kEngineFailure,    // INTERNAL: the engine failed
};

// The metadata value, e.g. "QUEUE_FULL".
absl::string_view ErrorReasonName(ErrorReason reason);

// `status` (not OK) with `reason` attached; replaces an earlier reason.
absl::Status WithErrorReason(absl::Status status, ErrorReason reason);
std::optional<ErrorReason> GetErrorReason(const absl::Status& status);

// `status` (not OK) with a retry hint attached, rounded up to whole milliseconds (>= 1).
absl::Status WithRetryAfter(absl::Status status, absl::Duration retry_after);
std::optional<int64_t> GetRetryAfterMs(const absl::Status& status);

// The `reason` label of pagoda_requests_rejected_total for a refused Generate call: the error
// reason lowercased ("queue_full"); for a status without one, its code lowercased
// ("not_found", "already_exists", "failed_precondition", "unimplemented", "unavailable").
std::string RejectionLabel(const absl::Status& status);

}  // namespace pagoda::server
