#include "chat_template/json_value.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace pagoda::chat_template {

namespace {

absl::StatusOr<Value> FromJsonAt(const nlohmann::ordered_json& json, int depth) {
  if (depth > kMaxJsonDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("JSON nested deeper than ", kMaxJsonDepth, " levels"));
  }
  switch (json.type()) {
    case nlohmann::ordered_json::value_t::null:
    case nlohmann::ordered_json::value_t::discarded:
      return Value::None();
    case nlohmann::ordered_json::value_t::boolean:
      return Value::Bool(json.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value::Int(json.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const auto value = json.get<uint64_t>();
      if (value > static_cast<uint64_t>(INT64_MAX)) return Value::BigInt(std::to_string(value));
      return Value::Int(static_cast<int64_t>(value));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Value::Float(json.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value::String(json.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(json.size());
      for (const auto& item : json) {
        PAGODA_ASSIGN_OR_RETURN(Value value, FromJsonAt(item, depth + 1));
        items.push_back(std::move(value));
      }
      return Value::List(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Dict dict;
      for (const auto& [key, item] : json.items()) {
        PAGODA_ASSIGN_OR_RETURN(Value value, FromJsonAt(item, depth + 1));
        dict.Set(key, std::move(value));
      }
      return Value::MakeDict(std::move(dict));
    }
    case nlohmann::ordered_json::value_t::binary:
      return Value::None();
  }
  return Value::None();
}

}  // namespace

absl::StatusOr<Value> FromJson(const nlohmann::ordered_json& json) { return FromJsonAt(json, 0); }

namespace {

// One byte of a JSON string as Python's json escapes it (", \\ and control characters).
void AppendJsonByte(char c, std::string& out) {
  switch (c) {
    case '"':
      out += "\\\"";
      break;
    case '\\':
      out += "\\\\";
      break;
    case '\n':
      out += "\\n";
      break;
    case '\r':
      out += "\\r";
      break;
    case '\t':
      out += "\\t";
      break;
    case '\b':
      out += "\\b";
      break;
    case '\f':
      out += "\\f";
      break;
    default:
      if (static_cast<unsigned char>(c) < 0x20) {
        absl::StrAppendFormat(&out, "\\u%04x", static_cast<unsigned>(c));
      } else {
        out += c;
      }
  }
}

// Python's json string encoding: with ensure_ascii off, non-ASCII characters are kept; with it
// on, they become \uXXXX escapes (surrogate pairs above U+FFFF).
void AppendJsonString(absl::string_view text, bool ensure_ascii, std::string& out) {
  out += '"';
  if (!ensure_ascii) {
    for (char c : text) AppendJsonByte(c, out);
  } else {
    for (char32_t c : DecodeUtf8(text)) {
      if (c < 0x7F) {
        AppendJsonByte(static_cast<char>(c), out);
      } else if (c < 0x10000) {
        absl::StrAppendFormat(&out, "\\u%04x", static_cast<unsigned>(c));
      } else {
        const char32_t v = c - 0x10000;
        absl::StrAppendFormat(&out, "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (v >> 10)),
                              static_cast<unsigned>(0xDC00 + (v & 0x3FF)));
      }
    }
  }
  out += '"';
}

class Dumper {
 public:
  explicit Dumper(const JsonDumpOptions& options) : options_(options) {
    const bool indented = options.indent.has_value();
    item_separator_ = options.item_separator.value_or(indented ? "," : ", ");
    key_separator_ = options.key_separator.value_or(": ");
  }

  absl::Status Dump(const Value& value, int level, std::string& out) {
    if (level > 512) return absl::InvalidArgumentError("ValueError: JSON nesting is too deep");
    if (out.size() > options_.max_bytes) {
      return absl::ResourceExhaustedError("tojson: the JSON passed the chat template's bound");
    }
    switch (value.kind()) {
      case Value::Kind::kNone:
        out += "null";
        return absl::OkStatus();
      case Value::Kind::kBool:
        out += value.bool_value() ? "true" : "false";
        return absl::OkStatus();
      case Value::Kind::kInt:
        out += value.Repr();
        return absl::OkStatus();
      case Value::Kind::kFloat: {
        const double d = value.number();
        if (std::isnan(d))
          out += "NaN";
        else if (std::isinf(d))
          out += d > 0 ? "Infinity" : "-Infinity";
        else
          out += PythonFloatRepr(d);
        return absl::OkStatus();
      }
      case Value::Kind::kString:
        AppendJsonString(value.string_value(), options_.ensure_ascii, out);
        return absl::OkStatus();
      case Value::Kind::kList:
        return DumpList(value.list(), level, out);
      case Value::Kind::kDict:
        return DumpDict(value.dict(), level, out);
      default:
        return absl::InvalidArgumentError(absl::StrCat(
            "TypeError: Object of type ", value.TypeName(), " is not JSON serializable"));
    }
  }

 private:
  void Newline(int level, std::string& out) const {
    if (!options_.indent.has_value()) return;
    out += '\n';
    out.append(static_cast<size_t>(std::max(0, *options_.indent) * level), ' ');
  }

  absl::Status DumpList(const std::vector<Value>& items, int level, std::string& out) {
    if (items.empty()) {
      out += "[]";
      return absl::OkStatus();
    }
    out += '[';
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) out += item_separator_;
      Newline(level + 1, out);
      PAGODA_RETURN_IF_ERROR(Dump(items[i], level + 1, out));
    }
    Newline(level, out);
    out += ']';
    return absl::OkStatus();
  }

  absl::Status DumpDict(const Dict& dict, int level, std::string& out) {
    if (dict.size() == 0) {
      out += "{}";
      return absl::OkStatus();
    }
    std::vector<const std::pair<std::string, Value>*> entries;
    for (const auto& entry : dict.entries()) entries.push_back(&entry);
    if (options_.sort_keys) {
      std::stable_sort(entries.begin(), entries.end(),
                       [](const auto* a, const auto* b) { return a->first < b->first; });
    }
    out += '{';
    for (size_t i = 0; i < entries.size(); ++i) {
      if (i > 0) out += item_separator_;
      Newline(level + 1, out);
      AppendJsonString(entries[i]->first, options_.ensure_ascii, out);
      out += key_separator_;
      PAGODA_RETURN_IF_ERROR(Dump(entries[i]->second, level + 1, out));
    }
    Newline(level, out);
    out += '}';
    return absl::OkStatus();
  }

  const JsonDumpOptions& options_;
  std::string item_separator_;
  std::string key_separator_;
};

}  // namespace

absl::StatusOr<std::string> DumpJson(const Value& value, const JsonDumpOptions& options) {
  std::string out;
  PAGODA_RETURN_IF_ERROR(Dumper(options).Dump(value, 0, out));
  return out;
}

}  // namespace pagoda::chat_template
