#include "openai/json_fields.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "engine/error_reason.h"
#include "nlohmann/json.hpp"

namespace pagoda::openai {

absl::Status FieldError(absl::string_view field, absl::string_view what) {
  return engine::InvalidFieldError(absl::StrCat(field, ": ", what));
}

absl::string_view JsonTypeName(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::null:
      return "null";
    case nlohmann::json::value_t::object:
      return "object";
    case nlohmann::json::value_t::array:
      return "array";
    case nlohmann::json::value_t::string:
      return "string";
    case nlohmann::json::value_t::boolean:
      return "boolean";
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
      return "integer";
    case nlohmann::json::value_t::number_float:
      return "number";
    default:
      return "unknown";
  }
}

namespace {

absl::Status WrongType(absl::string_view field, absl::string_view want, const nlohmann::json& got) {
  return FieldError(field, absl::StrCat("must be ", want, ", got ", JsonTypeName(got)));
}

// The integer value of `value` when it is one (also a float with no fraction, as Pydantic's lax
// mode takes 16.0 for 16); nullopt otherwise. Unsigned values above 2^63 saturate.
std::optional<int64_t> IntegerValue(const nlohmann::json& value) {
  if (value.is_number_unsigned()) {
    return static_cast<int64_t>(
        std::min<uint64_t>(value.get<uint64_t>(), std::numeric_limits<int64_t>::max()));
  }
  if (value.is_number_integer()) return value.get<int64_t>();
  if (value.is_number_float()) {
    const double d = value.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e18) {
      return static_cast<int64_t>(d);
    }
  }
  return std::nullopt;
}

absl::Status CheckRange(absl::string_view field, int64_t value, int64_t min, int64_t max) {
  if (value < min || value > max) {
    return FieldError(field, absl::StrCat("must be in [", min, ", ", max, "], got ", value));
  }
  return absl::OkStatus();
}

}  // namespace

const nlohmann::json* JsonFields::Get(absl::string_view name) {
  known_.insert(std::string(name));
  const auto it = object_.find(std::string(name));
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

bool JsonFields::Present(absl::string_view name) const {
  return object_.find(std::string(name)) != object_.end();
}

absl::Status JsonFields::Bool(absl::string_view name, std::optional<bool>& out) {
  const nlohmann::json* value = Get(name);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_boolean()) return WrongType(name, "a boolean", *value);
  out = value->get<bool>();
  return absl::OkStatus();
}

absl::Status JsonFields::Int(absl::string_view name, int64_t min, int64_t max,
                             std::optional<int64_t>& out) {
  const nlohmann::json* value = Get(name);
  if (value == nullptr) return absl::OkStatus();
  const std::optional<int64_t> integer = IntegerValue(*value);
  if (!integer.has_value()) return WrongType(name, "an integer", *value);
  if (absl::Status status = CheckRange(name, *integer, min, max); !status.ok()) return status;
  out = *integer;
  return absl::OkStatus();
}

absl::Status JsonFields::Uint64(absl::string_view name, std::optional<uint64_t>& out) {
  const nlohmann::json* value = Get(name);
  if (value == nullptr) return absl::OkStatus();
  if (value->is_number_unsigned()) {
    out = value->get<uint64_t>();
  } else if (value->is_number_integer()) {
    out = static_cast<uint64_t>(value->get<int64_t>());
  } else {
    return WrongType(name, "an integer", *value);
  }
  return absl::OkStatus();
}

absl::Status JsonFields::Number(absl::string_view name, std::optional<double>& out) {
  const nlohmann::json* value = Get(name);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_number()) return WrongType(name, "a number", *value);
  out = value->get<double>();
  return absl::OkStatus();
}

absl::Status JsonFields::String(absl::string_view name, std::optional<std::string>& out) {
  const nlohmann::json* value = Get(name);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_string()) return WrongType(name, "a string", *value);
  out = value->get<std::string>();
  return absl::OkStatus();
}

absl::Status JsonFields::Strings(absl::string_view name, size_t max_items,
                                 std::vector<std::string>& out) {
  const nlohmann::json* value = Get(name);
  if (value == nullptr) return absl::OkStatus();
  if (value->is_string()) {
    out.push_back(value->get<std::string>());
    return absl::OkStatus();
  }
  if (!value->is_array()) return WrongType(name, "a string or an array of strings", *value);
  if (value->size() > max_items) {
    return FieldError(name, absl::StrCat("at most ", max_items, " items, got ", value->size()));
  }
  for (size_t i = 0; i < value->size(); ++i) {
    const nlohmann::json& item = (*value)[i];
    if (!item.is_string()) return WrongType(absl::StrCat(name, "[", i, "]"), "a string", item);
    out.push_back(item.get<std::string>());
  }
  return absl::OkStatus();
}

absl::Status JsonFields::Ints(absl::string_view name, size_t max_items, int64_t min, int64_t max,
                              std::vector<int64_t>& out) {
  const nlohmann::json* value = Get(name);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_array()) return WrongType(name, "an array of integers", *value);
  if (value->size() > max_items) {
    return FieldError(name, absl::StrCat("at most ", max_items, " items, got ", value->size()));
  }
  for (size_t i = 0; i < value->size(); ++i) {
    const std::string item_name = absl::StrCat(name, "[", i, "]");
    const std::optional<int64_t> integer = IntegerValue((*value)[i]);
    if (!integer.has_value()) return WrongType(item_name, "an integer", (*value)[i]);
    if (absl::Status status = CheckRange(item_name, *integer, min, max); !status.ok()) {
      return status;
    }
    out.push_back(*integer);
  }
  return absl::OkStatus();
}

absl::Status JsonFields::OnlyValue(absl::string_view name, const nlohmann::json& allowed,
                                   absl::string_view why) {
  const nlohmann::json* value = Get(name);
  if (value == nullptr || *value == allowed) return absl::OkStatus();
  return FieldError(name, why);
}

std::vector<std::string> JsonFields::UnknownFields() const {
  std::vector<std::string> unknown;
  for (const auto& [key, value] : object_.items()) {
    if (!known_.contains(key)) unknown.push_back(key);
  }
  std::sort(unknown.begin(), unknown.end());
  return unknown;
}

}  // namespace pagoda::openai
