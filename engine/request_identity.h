#pragma once

// What every front end checks about a request's identity before the engine sees it: its id
// (a client's `request_id` field or `x-request-id` header, else a new UUID) and the model it
// names. Pure functions; thread-safe.

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pagoda::engine {

inline constexpr int kMaxRequestIdBytes = 256;

// OK when `id` is 1 to 256 bytes of printable ASCII (0x21-0x7E), else InvalidArgument naming
// `field` ("request_id", "x-request-id").
absl::Status ValidateRequestId(absl::string_view id, absl::string_view field);

// The effective request id of a request: `request_id` when not empty, else `header` (the
// x-request-id metadata or header) when present and not empty, else NewRequestId(). InvalidArgument
// when the chosen value is not a valid id.
absl::StatusOr<std::string> ResolveRequestId(absl::string_view request_id,
                                             std::optional<absl::string_view> header);

// A random version-4 UUID in its canonical lowercase form.
std::string NewRequestId();

// OK when `requested` is empty or equals `served`; else NotFound ("model: ...").
absl::Status CheckModelName(absl::string_view requested, absl::string_view served);

}  // namespace pagoda::engine
