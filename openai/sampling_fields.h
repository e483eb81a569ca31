#pragma once

// What /v1/completions and /v1/chat/completions share: the body as a JSON object, and the
// sampling and stopping fields (vLLM's names) translated into an engine request. Translation
// only: the engine validates the ranges. Pure functions; thread-safe.

#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/engine_info.h"
#include "engine/engine_request.h"
#include "nlohmann/json_fwd.hpp"
#include "openai/json_fields.h"

namespace pagoda::openai {

// `body` parsed as a JSON object; else InvalidArgument (kInvalidField) "body: ...".
absl::StatusOr<nlohmann::json> ParseJsonObject(absl::string_view body);

// temperature, top_p, top_k (-1 or 0: off), min_p, seed, the repetition, presence and frequency
// penalties, logit_bias ({"token id": bias}), stop, stop_token_ids, ignore_eos, min_tokens,
// include_stop_str_in_output, skip_special_tokens (default true), priority, cache_salt; `user`
// is read and ignored.
absl::Status ParseSamplingFields(JsonFields& fields, const engine::EngineInfo& info,
                                 engine::EngineRequest& out);

// Choices per prompt (`n`) at most this, and prompts × n at most kMaxChoices.
inline constexpr int kMaxChoicesPerPrompt = 128;
inline constexpr size_t kMaxChoices = 256;

// `n` (default 1) into `n`, checked against the prompts it multiplies.
absl::Status ParseN(JsonFields& fields, size_t num_prompts, int& n);

// Each request `n` times in a row: choice i*n + j is copy j of prompt i. vLLM fans out n the
// same way; the copies share the prompt's KV blocks through the prefix cache (one prefill, the
// blocks counted once). With a seed, copy j samples with seed + j, so the choices differ.
std::vector<engine::EngineRequest> FanOut(std::vector<engine::EngineRequest> prompts, int n);

// stream, and stream_options' include_usage and continuous_usage_stats (only with stream).
absl::Status ParseStreamFields(JsonFields& fields, bool& stream, bool& include_usage,
                               bool& continuous_usage_stats);

// The field `name` (max_tokens, max_completion_tokens) into out.max_tokens: `default_value`
// when absent (0: none), none when null, else an integer >= 1.
absl::Status ParseMaxTokens(JsonFields& fields, absl::string_view name, int default_value,
                            engine::StoppingOptions& out);

}  // namespace pagoda::openai
