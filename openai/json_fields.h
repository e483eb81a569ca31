#pragma once

// Typed reads of a JSON request object's fields, for the OpenAI front end. Every error is an
// InvalidArgument with ErrorReason kInvalidField whose message starts with the field's name
// ("temperature: must be a number, got string"). Absent and null fields read as unset, as
// OpenAI's and vLLM's optional fields do. Fields that were never read are the object's unknown
// fields: accepted, and reported to the caller for a log line.
//
// Not thread-safe; one reader per request, on one thread.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json_fwd.hpp"

namespace pagoda::openai {

// An InvalidArgument with ErrorReason kInvalidField: "<field>: <what>".
absl::Status FieldError(absl::string_view field, absl::string_view what);

// The JSON type of `value` as an error message names it ("string", "array", "null", ...).
absl::string_view JsonTypeName(const nlohmann::json& value);

class JsonFields {
 public:
  // `object` must be a JSON object and outlive the reader.
  explicit JsonFields(const nlohmann::json& object) : object_(object) {}

  // The field's value, or null when absent or null; marks the field as known.
  const nlohmann::json* Get(absl::string_view name);
  // Whether the field is there at all (null included).
  bool Present(absl::string_view name) const;

  absl::Status Bool(absl::string_view name, std::optional<bool>& out);
  // An integer in [min, max] (a number with a fraction is refused).
  absl::Status Int(absl::string_view name, int64_t min, int64_t max, std::optional<int64_t>& out);
  // Any integer in [-2^63, 2^64), as its 64-bit two's complement (a seed).
  absl::Status Uint64(absl::string_view name, std::optional<uint64_t>& out);
  absl::Status Number(absl::string_view name, std::optional<double>& out);
  absl::Status String(absl::string_view name, std::optional<std::string>& out);
  // A string or an array of strings (OpenAI's `stop`), at most `max_items`.
  absl::Status Strings(absl::string_view name, size_t max_items, std::vector<std::string>& out);
  // An array of integers in [min, max], at most `max_items`.
  absl::Status Ints(absl::string_view name, size_t max_items, int64_t min, int64_t max,
                    std::vector<int64_t>& out);
  // Refuses the field unless it is absent, null or equal to `allowed` (e.g. n = 1).
  absl::Status OnlyValue(absl::string_view name, const nlohmann::json& allowed,
                         absl::string_view why);

  // The fields present that were never read, sorted.
  std::vector<std::string> UnknownFields() const;

 private:
  const nlohmann::json& object_;
  absl::flat_hash_set<std::string> known_;
};

}  // namespace pagoda::openai
