#pragma once

// Translation of the public request messages into the engine's types, with the checks only the
// wire can make: presence, the request id, the served model's name, fields not implemented,
// unknown extension keys. UTF-8 is checked as the bytes are parsed (server/message_parsing.h).
// Every semantic limit the .proto comments promise (ranges, sizes, lengths, the vocabulary) is
// the engine's one validation (engine/request_validation.h), which Engine::Submit runs; its
// errors name fields in the client's vocabulary: the proto text path of the field, then ": "
// and the reason ("sampling.top_p: must be in (0, 1], got 0").
//
// Pure functions over immutable state: thread-safe.

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/engine_info.h"
#include "engine/engine_request.h"
#include "pagoda/v1/generate.pb.h"
#include "tokenizer/tokenizer.h"

namespace pagoda::server {

// Limits of the gRPC messages themselves, documented in proto/pagoda/v1 (and docs/api.md); the
// request's own limits are the engine's (engine/engine_request.h), its id's and model name's
// checks are engine/request_identity.h.
inline constexpr int kMaxAbortRequestIds = 1024;

// Translates `request` (whose strings are valid UTF-8) for the served model: the prompt is
// tokenized (text) or copied (token ids) and truncated, sampling and stopping options are
// converted. `tokenizer` may be null (then text prompts are refused). The returned request's
// external_id is empty: the caller sets the effective id. It is not yet validated: hand it to
// Engine::Submit (or engine::ValidateEngineRequest).
//
// Errors, the first one found: NotFound (model); Unimplemented (n > 1);
// FailedPrecondition (a text prompt without a tokenizer); InvalidArgument with ErrorReason
// kInvalidField (no prompt, an empty text, an unknown extra key, truncate_prompt_tokens out of
// range).
absl::StatusOr<engine::EngineRequest> ParseGenerateRequest(const v1::GenerateRequest& request,
                                                           const engine::EngineInfo& info,
                                                           const tokenizer::Tokenizer* tokenizer);

}  // namespace pagoda::server
