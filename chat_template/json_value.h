#pragma once

// JSON in and out of template values. In: a request's messages, tools and kwargs, keeping
// object key order and the int/float distinction, as Python's json module does. Out: the
// `tojson` filter as transformers defines it, json.dumps(x, ensure_ascii=False, indent=...,
// separators=..., sort_keys=...), byte for byte.
//
// Thread-safe: pure functions.

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "chat_template/value.h"
#include "nlohmann/json_fwd.hpp"

namespace pagoda::chat_template {

// JSON nested deeper than this is refused (the conversion and the values are recursive).
inline constexpr int kMaxJsonDepth = 64;

absl::StatusOr<Value> FromJson(const nlohmann::ordered_json& json);

struct JsonDumpOptions {
  // None: one line with ", " and ": "; otherwise one item per line, indented this many spaces.
  std::optional<int> indent;
  // Python's separators=(item, key); unset means the defaults above (",", ": " with indent).
  std::optional<std::string> item_separator;
  std::optional<std::string> key_separator;
  bool sort_keys = false;
  // Escape every non-ASCII character as \uXXXX (surrogate pairs above U+FFFF).
  bool ensure_ascii = false;
  // The dump fails (ResourceExhausted) once its text passes this many bytes.
  size_t max_bytes = size_t{1} << 30;
};

// Python's json.dumps with ensure_ascii=False. Undefined, namespaces and functions are not
// JSON: an InvalidArgument ("Object of type Undefined is not JSON serializable").
absl::StatusOr<std::string> DumpJson(const Value& value, const JsonDumpOptions& options);

}  // namespace pagoda::chat_template
