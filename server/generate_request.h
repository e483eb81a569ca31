#pragma once

// Validation of the public request messages and their translation into the engine's types.
// Every limit the .proto comments promise is enforced here, before anything reaches the engine,
// so that errors name fields in the client's vocabulary: the proto text path of the field, then
// ": " and the reason ("sampling.top_p: must be in (0, 1], got 0").
//
// Pure functions over immutable state: thread-safe.

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/engine_core.h"
#include "engine/engine_request.h"
#include "model/tokenizer.h"
#include "pagoda/v1/generate.pb.h"

namespace pagoda::server {

// Limits documented in proto/pagoda/v1 (and docs/api.md).
inline constexpr int kMaxRequestIdBytes = 256;
inline constexpr int kMaxCacheSaltBytes = 256;
inline constexpr int kMaxStopStrings = 16;
inline constexpr int kMaxStopStringBytes = 256;
inline constexpr int kMaxStopTokenIds = 64;
inline constexpr int kMaxLogitBiasEntries = 1024;
inline constexpr float kMaxAbsLogitBias = 100.0f;
inline constexpr int kMaxAbortRequestIds = 1024;

// OK when `id` is 1 to 256 bytes of printable ASCII (0x21-0x7E), else InvalidArgument naming
// `field` ("request_id", "x-request-id").
absl::Status ValidateRequestId(absl::string_view id, absl::string_view field);

// The effective request id of a Generate call: `request_id` when not empty, else `header` (the
// x-request-id metadata) when present and not empty, else NewRequestId(). InvalidArgument when
// the chosen value is not a valid id.
absl::StatusOr<std::string> ResolveRequestId(absl::string_view request_id,
                                             std::optional<absl::string_view> header);

// A random version-4 UUID in its canonical lowercase form.
std::string NewRequestId();

// OK when `requested` is empty or equals `served`; else NotFound ("model: ...").
absl::Status CheckModelName(absl::string_view requested, absl::string_view served);

// Validates `request` against the served model and translates it: the prompt is tokenized
// (text) or copied (token ids) and truncated, sampling and stopping options are converted.
// `tokenizer` may be null (then text prompts and stop strings are refused). The returned
// request's external_id is empty: the caller sets the effective id.
//
// Errors, the first one found: NotFound (model); Unimplemented (n > 1, logprobs);
// FailedPrecondition (a text prompt or stop strings without a tokenizer); InvalidArgument with
// ErrorReason kInvalidField, or kPromptTooLong when the prompt or prompt + max_tokens exceeds
// max_model_len; ResourceExhausted with kKvCacheTooSmall when prompt + max_tokens needs more
// blocks than the whole KV cache has.
absl::StatusOr<engine::EngineRequest> ParseGenerateRequest(const v1::GenerateRequest& request,
                                                           const engine::EngineInfo& info,
                                                           const model::Tokenizer* tokenizer);

}  // namespace pagoda::server
