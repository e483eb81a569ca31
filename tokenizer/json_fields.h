#pragma once

// Checked, non-throwing access to fields of a parsed JSON object (tokenizer.json,
// tokenizer_config.json). Every accessor validates the type and returns a status that names the
// field, so arbitrary (fuzzed) JSON can never make nlohmann::json throw or assert.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace pagoda::tokenizer {

using Json = nlohmann::json;

// Parses `text` without throwing; an InvalidArgument error names `what` when it is not JSON.
absl::StatusOr<Json> ParseJson(std::string_view text, std::string_view what);

// The member `key` of `object`, or nullptr when `object` is not an object or has no such member.
const Json* FindField(const Json& object, std::string_view key);

// The member `key` as a string / bool / integer / object. Missing or of another type is an
// InvalidArgument error naming `key`.
absl::StatusOr<std::string> GetString(const Json& object, std::string_view key);
absl::StatusOr<bool> GetBool(const Json& object, std::string_view key);
absl::StatusOr<int64_t> GetInt(const Json& object, std::string_view key);

// Like the above, but a missing member or a JSON null yields `fallback` (or nullopt).
absl::StatusOr<bool> GetBoolOr(const Json& object, std::string_view key, bool fallback);
absl::StatusOr<int64_t> GetIntOr(const Json& object, std::string_view key, int64_t fallback);
absl::StatusOr<std::optional<std::string>> GetOptionalString(const Json& object,
                                                             std::string_view key);

// The "type" member of a component object ("BPE", "Sequence", ...).
absl::StatusOr<std::string> GetType(const Json& component, std::string_view what);

}  // namespace pagoda::tokenizer
