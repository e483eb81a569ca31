#include "tokenizer/json_fields.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace pagoda::tokenizer {
namespace {

absl::Status WrongType(std::string_view key, std::string_view expected) {
  return absl::InvalidArgumentError(
      absl::StrCat("field \"", std::string(key), "\" must be ", std::string(expected)));
}

}  // namespace

absl::StatusOr<Json> ParseJson(std::string_view text, std::string_view what) {
  Json parsed = Json::parse(text.begin(), text.end(), /*cb=*/nullptr,
                            /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what), " is not valid JSON"));
  }
  return parsed;
}

const Json* FindField(const Json& object, std::string_view key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

absl::StatusOr<std::string> GetString(const Json& object, std::string_view key) {
  const Json* field = FindField(object, key);
  if (field == nullptr || !field->is_string()) return WrongType(key, "a string");
  return field->get_ref<const std::string&>();
}

absl::StatusOr<bool> GetBool(const Json& object, std::string_view key) {
  const Json* field = FindField(object, key);
  if (field == nullptr || !field->is_boolean()) return WrongType(key, "a boolean");
  return field->get<bool>();
}

absl::StatusOr<int64_t> GetInt(const Json& object, std::string_view key) {
  const Json* field = FindField(object, key);
  if (field == nullptr || !field->is_number_integer()) return WrongType(key, "an integer");
  return field->get<int64_t>();
}

absl::StatusOr<bool> GetBoolOr(const Json& object, std::string_view key, bool fallback) {
  const Json* field = FindField(object, key);
  if (field == nullptr || field->is_null()) return fallback;
  return GetBool(object, key);
}

absl::StatusOr<int64_t> GetIntOr(const Json& object, std::string_view key, int64_t fallback) {
  const Json* field = FindField(object, key);
  if (field == nullptr || field->is_null()) return fallback;
  return GetInt(object, key);
}

absl::StatusOr<std::optional<std::string>> GetOptionalString(const Json& object,
                                                             std::string_view key) {
  const Json* field = FindField(object, key);
  if (field == nullptr || field->is_null()) return std::optional<std::string>();
  if (!field->is_string()) return WrongType(key, "a string or null");
  return std::optional<std::string>(field->get_ref<const std::string&>());
}

absl::StatusOr<std::string> GetType(const Json& component, std::string_view what) {
  if (!component.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what), " must be a JSON object"));
  }
  const Json* type = FindField(component, "type");
  if (type == nullptr || !type->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what), " has no string \"type\""));
  }
  return type->get_ref<const std::string&>();
}

}  // namespace pagoda::tokenizer
