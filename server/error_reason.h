#pragma once

// The machine-readable side of a failed RPC: the `pagoda-error-reason` and
// `pagoda-retry-after-ms` trailing metadata of proto/pagoda/v1/text_generation_service.proto,
// carried inside an absl::Status as payloads until ToGrpcStatus (server/grpc_status.h) turns
// them into metadata. The reason is the engine's (engine/error_reason.h, which attaches it);
// the retry hint and the rejection label are the server's. Pure functions; thread-safe.

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "engine/error_reason.h"

namespace pagoda::server {

using engine::ErrorReason;
using engine::ErrorReasonName;
using engine::GetErrorReason;
using engine::WithErrorReason;

// `status` (not OK) with a retry hint attached, rounded up to whole milliseconds (>= 1).
absl::Status WithRetryAfter(absl::Status status, absl::Duration retry_after);
std::optional<int64_t> GetRetryAfterMs(const absl::Status& status);

// The `reason` label of pagoda_requests_rejected_total for a refused Generate call: the error
// reason lowercased ("queue_full"); for a status without one, its code lowercased
// ("not_found", "already_exists", "failed_precondition", "unimplemented", "unavailable").
std::string RejectionLabel(const absl::Status& status);

}  // namespace pagoda::server
