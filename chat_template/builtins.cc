#include "chat_template/builtins.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "chat_template/interpreter.h"
#include "chat_template/json_value.h"
#include "chat_template/operators.h"
#include "chat_template/params.h"
#include "chat_template/text.h"
#include "common/status_macros.h"

namespace pagoda::chat_template {
namespace {

// Iterating over a string makes a value per character: bounded.
constexpr size_t kMaxIteratedStringBytes = size_t{1} << 18;

}  // namespace

absl::StatusOr<std::vector<Value>> Iterate(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return std::vector<Value>();
    case Value::Kind::kList:
      return value.list();
    case Value::Kind::kDict: {
      std::vector<Value> keys;
      for (const auto& entry : value.dict().entries()) keys.push_back(Value::String(entry.first));
      return keys;
    }
    case Value::Kind::kString: {
      if (value.string_value().size() > kMaxIteratedStringBytes) {
        return absl::ResourceExhaustedError(absl::StrCat("iterating over a string of more than ",
                                                         kMaxIteratedStringBytes, " bytes"));
      }
      std::vector<Value> chars;
      for (char32_t c : DecodeUtf8(value.string_value())) {
        std::string one;
        AppendUtf8(c, one);
        chars.push_back(Value::String(std::move(one)));
      }
      return chars;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("TypeError: '", value.TypeName(), "' object is not iterable"));
  }
}

namespace {

using Status = absl::Status;

#define PAGODA_BIND(params, function, ...)            \
  const Params params(function, args, {__VA_ARGS__}); \
  PAGODA_RETURN_IF_ERROR(params.status())

// Jinja2's attribute getter for filters: "a.b.0" looks up item then attribute, part by part.
absl::StatusOr<Value> AttributeOf(const Value& item, const Value& attribute) {
  if (attribute.is_integral()) return GetItem(item, attribute);
  Value current = item;
  for (absl::string_view part : absl::StrSplit(attribute.Str(), '.')) {
    Value key = Value::String(std::string(part));
    if (!part.empty() &&
        std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      key = Value::Int(std::stoll(std::string(part)));
    }
    PAGODA_ASSIGN_OR_RETURN(current, GetItem(current, key));
  }
  return current;
}

// A string a filter builds may not pass the render's output bound.
absl::Status BoundOutput(const Interpreter& interpreter, size_t bytes) {
  if (bytes <= interpreter.limits().max_output_bytes) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat("a string passed the chat template's bound of ",
                                                   interpreter.limits().max_output_bytes,
                                                   " bytes"));
}

// The key a case-insensitive sort or unique compares: lower-cased strings.
Value IgnoreCase(const Value& value, bool case_sensitive) {
  if (case_sensitive || !value.is_string()) return value;
  return Value::String(PyLower(value.string_value()));
}

absl::StatusOr<Value> ToJson(Interpreter& interpreter, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "tojson", "ensure_ascii", "indent", "separators", "sort_keys");
  JsonDumpOptions options;
  options.ensure_ascii = params.Get(0, Value::Bool(false)).Truthy();
  const Value indent = params.Get(1);
  if (indent.is_integral()) {
    options.indent = static_cast<int>(std::clamp<int64_t>(indent.int_value(), 0, 64));
  } else if (!indent.is_none()) {
    return absl::InvalidArgumentError("tojson: indent must be an int or None");
  }
  const Value separators = params.Get(2);
  if (separators.is_list() && separators.list().size() == 2 && separators.list()[0].is_string() &&
      separators.list()[1].is_string()) {
    options.item_separator = separators.list()[0].string_value();
    options.key_separator = separators.list()[1].string_value();
  } else if (!separators.is_none()) {
    return absl::InvalidArgumentError("tojson: separators must be a pair of strings");
  }
  options.sort_keys = params.Get(3, Value::Bool(false)).Truthy();
  options.max_bytes = interpreter.limits().max_output_bytes;
  PAGODA_ASSIGN_OR_RETURN(std::string json, DumpJson(value, options));
  return Value::String(std::move(json));
}

absl::StatusOr<Value> Trim(Interpreter&, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "trim", "chars");
  PAGODA_ASSIGN_OR_RETURN(auto chars, params.OptionalString(0));
  return Value::String(PyStrip(value.Str(), chars, StripSide::kBoth));
}

absl::StatusOr<Value> Length(Interpreter&, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "length");
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return Value::Int(0);
    case Value::Kind::kString:
      return Value::Int(static_cast<int64_t>(CodePointCount(value.string_value())));
    case Value::Kind::kList:
      return Value::Int(static_cast<int64_t>(value.list().size()));
    case Value::Kind::kDict:
      return Value::Int(static_cast<int64_t>(value.dict().size()));
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("TypeError: object of type '", value.TypeName(), "' has no len()"));
  }
}

absl::StatusOr<Value> ToList(Interpreter& interpreter, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "list");
  PAGODA_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(value));
  PAGODA_RETURN_IF_ERROR(interpreter.Charge(static_cast<int64_t>(items.size())));
  return Value::List(std::move(items));
}

absl::StatusOr<Value> First(Interpreter&, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "first");
  PAGODA_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(value));
  if (items.empty()) return Value::Undefined("No first item, sequence was empty.");
  return items.front();
}

absl::StatusOr<Value> Last(Interpreter&, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "last");
  PAGODA_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(value));
  if (items.empty()) return Value::Undefined("No last item, sequence was empty.");
  return items.back();
}

absl::StatusOr<Value> Join(Interpreter& interpreter, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "join", "d", "attribute");
  const std::string separator = params.Get(0, Value::String("")).Str();
  PAGODA_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(value));
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    PAGODA_RETURN_IF_ERROR(BoundOutput(interpreter, out.size() + separator.size()));
    if (i > 0) out += separator;
    if (params.Given(1)) {
      PAGODA_ASSIGN_OR_RETURN(Value item, AttributeOf(items[i], params.Get(1)));
      out += item.Str();
    } else {
      out += items[i].Str();
    }
  }
  return Value::String(std::move(out));
}

absl::StatusOr<Value> ToString(Interpreter&, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "string");
  return Value::String(value.Str());
}

// int(x): Jinja2's do_int, which falls back to float(x) for strings and to the default.
absl::StatusOr<Value> ToInt(Interpreter&, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "int", "default", "base");
  const Value fallback = params.Get(0, Value::Int(0));
  if (value.is_integral()) return value.is_big_int() ? value : Value::Int(value.int_value());
  if (value.kind() == Value::Kind::kFloat) {
    const double d = value.number();
    if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return fallback;
    return Value::Int(static_cast<int64_t>(d));
  }
  if (!value.is_string()) return fallback;
  PAGODA_ASSIGN_OR_RETURN(int64_t base, params.Int(1, 10));
  std::string text = PyStrip(value.string_value(), std::nullopt, StripSide::kBoth);
  if (text.empty() || base < 2 || base > 36) return fallback;
  // Python's int() takes single underscores between digits ("1_000").
  for (size_t i = 1; i + 1 < text.size(); ++i) {
    if (text[i] == '_' && absl::ascii_isalnum(static_cast<unsigned char>(text[i - 1])) &&
        absl::ascii_isalnum(static_cast<unsigned char>(text[i + 1]))) {
      text.erase(i, 1);
    }
  }
  char* end = nullptr;
  errno = 0;
  const long long parsed = std::strtoll(text.c_str(), &end, static_cast<int>(base));
  if (errno == 0 && end == text.c_str() + text.size()) return Value::Int(parsed);
  const double d = std::strtod(text.c_str(), &end);
  if (end == text.c_str() + text.size() && std::isfinite(d) && std::fabs(d) < 9.2e18) {
    return Value::Int(static_cast<int64_t>(d));
  }
  return fallback;
}

absl::StatusOr<Value> ToFloat(Interpreter&, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "float", "default");
  const Value fallback = params.Get(0, Value::Float(0));
  if (value.is_number()) return Value::Float(value.number());
  if (!value.is_string()) return fallback;
  const std::string text = PyStrip(value.string_value(), std::nullopt, StripSide::kBoth);
  char* end = nullptr;
  const double d = std::strtod(text.c_str(), &end);
  if (!text.empty() && end == text.c_str() + text.size()) return Value::Float(d);
  return fallback;
}

absl::StatusOr<Value> Default(Interpreter&, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "default", "default_value", "boolean");
  const bool boolean = params.Get(1, Value::Bool(false)).Truthy();
  if (value.is_undefined() || (boolean && !value.Truthy())) {
    return params.Get(0, Value::String(""));
  }
  return value;
}

absl::StatusOr<Value> Upper(Interpreter&, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "upper");
  return Value::String(PyUpper(value.Str()));
}

absl::StatusOr<Value> Lower(Interpreter&, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "lower");
  return Value::String(PyLower(value.Str()));
}

absl::StatusOr<Value> Capitalize(Interpreter&, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "capitalize");
  return Value::String(PyCapitalize(value.Str()));
}

// Jinja2's title filter: pieces split at runs of "-", whitespace, "(", "{", "[" or "<" get
// their first character upper-cased and the rest lower-cased.
absl::StatusOr<Value> Title(Interpreter&, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "title");
  const std::vector<char32_t> points = DecodeUtf8(value.Str());
  auto is_break = [](char32_t c) {
    return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || IsPythonSpace(c);
  };
  std::string out;
  size_t i = 0;
  while (i < points.size()) {
    const bool breaks = is_break(points[i]);
    size_t j = i;
    while (j < points.size() && is_break(points[j]) == breaks) ++j;
    std::vector<char32_t> piece(points.begin() + static_cast<ptrdiff_t>(i),
                                points.begin() + static_cast<ptrdiff_t>(j));
    out += PyUpper(EncodeUtf8({piece[0]}));
    piece.erase(piece.begin());
    out += PyLower(EncodeUtf8(piece));
    i = j;
  }
  return Value::String(std::move(out));
}

absl::StatusOr<Value> Replace(Interpreter& interpreter, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "replace", "old", "new", "count");
  PAGODA_ASSIGN_OR_RETURN(int64_t count, params.Int(2, -1));
  const std::string text = value.Str();
  const std::string old_text = params.Get(0).Str();
  const std::string new_text = params.Get(1).Str();
  PAGODA_RETURN_IF_ERROR(BoundOutput(interpreter, ReplacedSize(text, old_text, new_text, count)));
  return Value::String(PyReplace(text, old_text, new_text, count));
}

// select/reject/selectattr/rejectattr: keeps the items whose (attribute's) test result is
// `keep`; with no test, the value's truth.
absl::StatusOr<Value> SelectItems(Interpreter& interpreter, const Value& value, CallArgs& args,
                                  bool by_attribute, bool keep) {
  PAGODA_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(value));
  std::vector<Value>& positional = args.positional;
  if (by_attribute && positional.empty()) {
    return absl::InvalidArgumentError("selectattr/rejectattr need an attribute");
  }
  const Value attribute = by_attribute ? positional[0] : Value();
  const size_t test_at = by_attribute ? 1 : 0;
  std::vector<Value> kept;
  for (const Value& item : items) {
    PAGODA_RETURN_IF_ERROR(interpreter.Charge(1));
    Value subject = item;
    if (by_attribute) {
      PAGODA_ASSIGN_OR_RETURN(subject, AttributeOf(item, attribute));
    }
    bool result = subject.Truthy();
    if (positional.size() > test_at) {
      CallArgs test_args;
      test_args.positional.assign(positional.begin() + static_cast<ptrdiff_t>(test_at) + 1,
                                  positional.end());
      test_args.keyword = args.keyword;
      PAGODA_ASSIGN_OR_RETURN(
          result, interpreter.ApplyTest(positional[test_at].Str(), subject, std::move(test_args)));
    }
    if (result == keep) kept.push_back(item);
  }
  return Value::List(std::move(kept));
}

absl::StatusOr<Value> Select(Interpreter& i, const Value& v, CallArgs& a) {
  return SelectItems(i, v, a, false, true);
}
absl::StatusOr<Value> Reject(Interpreter& i, const Value& v, CallArgs& a) {
  return SelectItems(i, v, a, false, false);
}
absl::StatusOr<Value> SelectAttr(Interpreter& i, const Value& v, CallArgs& a) {
  return SelectItems(i, v, a, true, true);
}
absl::StatusOr<Value> RejectAttr(Interpreter& i, const Value& v, CallArgs& a) {
  return SelectItems(i, v, a, true, false);
}

absl::StatusOr<Value> Map(Interpreter& interpreter, const Value& value, CallArgs& args) {
  PAGODA_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(value));
  std::vector<Value> mapped;
  Value attribute;
  Value fallback;
  for (const auto& [name, arg] : args.keyword) {
    if (name == "attribute") attribute = arg;
    if (name == "default") fallback = arg;
  }
  if (attribute.is_undefined() && args.positional.empty()) {
    return absl::InvalidArgumentError("map needs a filter name or attribute=");
  }
  for (const Value& item : items) {
    PAGODA_RETURN_IF_ERROR(interpreter.Charge(1));
    if (!attribute.is_undefined()) {
      PAGODA_ASSIGN_OR_RETURN(Value result, AttributeOf(item, attribute));
      mapped.push_back(result.is_undefined() && !fallback.is_undefined() ? fallback : result);
      continue;
    }
    CallArgs filter_args;
    filter_args.positional.assign(args.positional.begin() + 1, args.positional.end());
    filter_args.keyword = args.keyword;
    PAGODA_ASSIGN_OR_RETURN(Value result, interpreter.ApplyFilter(args.positional[0].Str(), item,
                                                                  std::move(filter_args)));
    mapped.push_back(std::move(result));
  }
  return Value::List(std::move(mapped));
}

std::vector<Value> DictItems(const Value& value) {
  std::vector<Value> items;
  for (const auto& [key, item] : value.dict().entries()) {
    items.push_back(Value::Tuple({Value::String(key), item}));
  }
  return items;
}

absl::StatusOr<Value> Items(Interpreter&, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "items");
  if (value.is_undefined()) return Value::List({});
  if (!value.is_dict()) {
    return absl::InvalidArgumentError(
        absl::StrCat("items: can only get item pairs from a mapping, not ", value.TypeName()));
  }
  return Value::List(DictItems(value));
}

// Sorts `items` by `key_of`, stably; a comparison Python refuses is an error.
absl::Status SortValues(std::vector<Value>& items, bool reverse,
                        const std::function<absl::StatusOr<Value>(const Value&)>& key_of) {
  std::vector<std::pair<Value, Value>> keyed;
  for (Value& item : items) {
    PAGODA_ASSIGN_OR_RETURN(Value key, key_of(item));
    keyed.emplace_back(std::move(key), std::move(item));
  }
  absl::Status error;
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    auto less = reverse ? Less(b.first, a.first) : Less(a.first, b.first);
    if (!less.ok()) {
      error = less.status();
      return false;
    }
    return *less;
  });
  items.clear();
  for (auto& entry : keyed) items.push_back(std::move(entry.second));
  return error;
}

absl::StatusOr<Value> DictSort(Interpreter&, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "dictsort", "case_sensitive", "by", "reverse");
  if (!value.is_dict()) return absl::InvalidArgumentError("dictsort: the value is not a dict");
  const bool case_sensitive = params.Get(0, Value::Bool(false)).Truthy();
  const std::string by = params.Get(1, Value::String("key")).Str();
  if (by != "key" && by != "value") {
    return absl::InvalidArgumentError("dictsort: 'by' must be 'key' or 'value'");
  }
  std::vector<Value> items = DictItems(value);
  PAGODA_RETURN_IF_ERROR(SortValues(items, params.Get(2, Value::Bool(false)).Truthy(),
                                    [&](const Value& pair) -> absl::StatusOr<Value> {
                                      return IgnoreCase(pair.list()[by == "key" ? 0 : 1],
                                                        case_sensitive);
                                    }));
  return Value::List(std::move(items));
}

absl::StatusOr<Value> Sort(Interpreter& interpreter, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "sort", "reverse", "case_sensitive", "attribute");
  PAGODA_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(value));
  PAGODA_RETURN_IF_ERROR(interpreter.Charge(static_cast<int64_t>(items.size())));
  const bool case_sensitive = params.Get(1, Value::Bool(false)).Truthy();
  const Value attribute = params.Get(2);
  PAGODA_RETURN_IF_ERROR(SortValues(items, params.Get(0, Value::Bool(false)).Truthy(),
                                    [&](const Value& item) -> absl::StatusOr<Value> {
                                      Value key = item;
                                      if (!attribute.is_none()) {
                                        PAGODA_ASSIGN_OR_RETURN(key, AttributeOf(item, attribute));
                                      }
                                      return IgnoreCase(key, case_sensitive);
                                    }));
  return Value::List(std::move(items));
}

absl::StatusOr<Value> Unique(Interpreter& interpreter, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "unique", "case_sensitive", "attribute");
  PAGODA_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(value));
  const bool case_sensitive = params.Get(0, Value::Bool(false)).Truthy();
  std::vector<Value> seen;
  std::vector<Value> out;
  for (const Value& item : items) {
    PAGODA_RETURN_IF_ERROR(interpreter.Charge(static_cast<int64_t>(seen.size()) + 1));
    Value key = item;
    if (params.Given(1)) {
      PAGODA_ASSIGN_OR_RETURN(key, AttributeOf(item, params.Get(1)));
    }
    key = IgnoreCase(key, case_sensitive);
    if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return Equal(s, key); })) {
      continue;
    }
    seen.push_back(key);
    out.push_back(item);
  }
  return Value::List(std::move(out));
}

absl::StatusOr<Value> Reverse(Interpreter&, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "reverse");
  if (value.is_string()) {
    std::vector<char32_t> points = DecodeUtf8(value.string_value());
    std::reverse(points.begin(), points.end());
    return Value::String(EncodeUtf8(points));
  }
  PAGODA_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(value));
  std::reverse(items.begin(), items.end());
  return Value::List(std::move(items));
}

// Jinja2's indent: every line after the first (and the first with first=true) gets the
// indentation; blank lines only with blank=true. Lines are Python's splitlines().
absl::StatusOr<Value> Indent(Interpreter& interpreter, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "indent", "width", "first", "blank");
  const Value width = params.Get(0, Value::Int(4));
  if (!width.is_string() && !width.is_integral()) {
    return absl::InvalidArgumentError("indent: width must be an int or a string");
  }
  const std::string pad =
      width.is_string()
          ? width.string_value()
          : std::string(static_cast<size_t>(std::clamp<int64_t>(width.int_value(), 0, 1024)), ' ');
  const bool first = params.Get(1, Value::Bool(false)).Truthy();
  const bool blank = params.Get(2, Value::Bool(false)).Truthy();
  const std::vector<std::string> lines = PySplitLines(value.Str() + "\n");
  size_t size = value.Str().size() + 1;
  for (size_t i = 0; i < lines.size(); ++i) size += pad.size();
  PAGODA_RETURN_IF_ERROR(BoundOutput(interpreter, size));
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) {
      out += '\n';
      if (blank || !lines[i].empty()) out += pad;
    }
    out += lines[i];
  }
  if (first) out = pad + out;
  return Value::String(std::move(out));
}

absl::StatusOr<Value> Abs(Interpreter&, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "abs");
  if (value.is_integral()) {
    if (value.int_value() < 0) return Negate(value);
    return Value::Int(value.int_value());
  }
  if (value.is_number()) return Value::Float(std::fabs(value.number()));
  return absl::InvalidArgumentError(
      absl::StrCat("TypeError: bad operand type for abs(): '", value.TypeName(), "'"));
}

// Jinja2's round: "common" is Python's round() (half to even on the exact value; an int stays
// an int); "ceil" and "floor" scale, apply and divide back, as floats.
absl::StatusOr<Value> Round(Interpreter&, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "round", "precision", "method");
  if (!value.is_number()) return absl::InvalidArgumentError("round: the value is not a number");
  PAGODA_ASSIGN_OR_RETURN(int64_t precision, params.Int(0, 0));
  precision = std::clamp<int64_t>(precision, -300, 300);
  const std::string method = params.Get(1, Value::String("common")).Str();
  if (method != "common" && method != "ceil" && method != "floor") {
    return absl::InvalidArgumentError("round: method must be 'common', 'ceil' or 'floor'");
  }
  const double scale = std::pow(10.0, static_cast<double>(precision));
  if (method != "common") {
    const double x = value.number() * scale;
    return Value::Float((method == "ceil" ? std::ceil(x) : std::floor(x)) / scale);
  }
  if (value.is_integral() && precision >= 0) return Value::Int(value.int_value());
  if (precision < 0) return Value::Float(std::nearbyint(value.number() * scale) / scale);
  // printf rounds the exact binary value half to even, as Python's round does.
  char buffer[512];
  std::snprintf(buffer, sizeof(buffer), "%.*f", static_cast<int>(precision), value.number());
  return Value::Float(std::strtod(buffer, nullptr));
}

absl::StatusOr<Value> Sum(Interpreter&, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "sum", "attribute", "start");
  PAGODA_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(value));
  Value total = params.Get(1, Value::Int(0));
  for (const Value& item : items) {
    Value term = item;
    if (params.Given(0)) {
      PAGODA_ASSIGN_OR_RETURN(term, AttributeOf(item, params.Get(0)));
    }
    PAGODA_ASSIGN_OR_RETURN(total, BinaryOperation(BinaryOp::kAdd, total, term));
  }
  return total;
}

absl::StatusOr<Value> MinMax(const Value& value, CallArgs& args, bool want_max) {
  PAGODA_BIND(params, want_max ? "max" : "min", "case_sensitive", "attribute");
  PAGODA_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(value));
  if (items.empty()) return Value::Undefined("No aggregated item, sequence was empty.");
  const bool case_sensitive = params.Get(0, Value::Bool(false)).Truthy();
  Value best = items[0];
  Value best_key;
  for (size_t i = 0; i < items.size(); ++i) {
    Value key = items[i];
    if (params.Given(1)) {
      PAGODA_ASSIGN_OR_RETURN(key, AttributeOf(items[i], params.Get(1)));
    }
    key = IgnoreCase(key, case_sensitive);
    if (i > 0) {
      PAGODA_ASSIGN_OR_RETURN(bool better, want_max ? Less(best_key, key) : Less(key, best_key));
      if (!better) continue;
    }
    best = items[i];
    best_key = key;
  }
  return best;
}

absl::StatusOr<Value> Min(Interpreter&, const Value& v, CallArgs& a) { return MinMax(v, a, false); }
absl::StatusOr<Value> Max(Interpreter&, const Value& v, CallArgs& a) { return MinMax(v, a, true); }

absl::StatusOr<Value> Safe(Interpreter&, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "safe");
  return value;
}

absl::StatusOr<Value> Format(Interpreter&, const Value& value, CallArgs& args) {
  if (!args.keyword.empty())
    return absl::InvalidArgumentError("format: keyword arguments are not supported");
  return PercentFormat(Value::String(value.Str()), Value::Tuple(args.positional));
}

// Jinja2's attr: an attribute only, never a dict's key.
absl::StatusOr<Value> Attr(Interpreter&, const Value& value, CallArgs& args) {
  PAGODA_BIND(params, "attr", "name");
  const std::string name = params.Get(0).Str();
  if (value.is_dict() && !HasMethod(value, name)) {
    return Value::Undefined(absl::StrCat("'dict object' has no attribute '", name, "'"));
  }
  return GetAttr(value, name);
}

constexpr Filter kFilters[] = {
    {"abs", Abs},
    {"attr", Attr},
    {"capitalize", Capitalize},
    {"count", Length},
    {"d", Default},
    {"default", Default},
    {"dictsort", DictSort},
    {"first", First},
    {"float", ToFloat},
    {"format", Format},
    {"indent", Indent},
    {"int", ToInt},
    {"items", Items},
    {"join", Join},
    {"last", Last},
    {"length", Length},
    {"list", ToList},
    {"lower", Lower},
    {"map", Map},
    {"max", Max},
    {"min", Min},
    {"reject", Reject},
    {"rejectattr", RejectAttr},
    {"replace", Replace},
    {"reverse", Reverse},
    {"round", Round},
    {"safe", Safe},
    {"select", Select},
    {"selectattr", SelectAttr},
    {"sort", Sort},
    {"string", ToString},
    {"sum", Sum},
    {"title", Title},
    {"tojson", ToJson},
    {"trim", Trim},
    {"unique", Unique},
    {"upper", Upper},
};

// --- globals ---
class Global : public Callable {
 public:
  using Fn = absl::StatusOr<Value> (*)(Interpreter&, CallArgs&);
  Global(absl::string_view name, Fn fn) : name_(name), fn_(fn) {}
  absl::StatusOr<Value> Call(Interpreter& interpreter, CallArgs args) const override {
    return fn_(interpreter, args);
  }
  std::string name() const override { return std::string(name_); }

 private:
  absl::string_view name_;
  Fn fn_;
};

absl::StatusOr<Value> Range(Interpreter& interpreter, CallArgs& args) {
  PAGODA_BIND(params, "range", "a", "b", "step");
  int64_t start = 0;
  int64_t stop = 0;
  if (params.Given(1)) {
    PAGODA_ASSIGN_OR_RETURN(start, params.Int(0, 0));
    PAGODA_ASSIGN_OR_RETURN(stop, params.Int(1, 0));
  } else {
    PAGODA_ASSIGN_OR_RETURN(stop, params.Int(0, 0));
  }
  PAGODA_ASSIGN_OR_RETURN(int64_t step, params.Int(2, 1));
  if (step == 0) return absl::InvalidArgumentError("ValueError: range() arg 3 must not be zero");
  // Jinja2's sandbox refuses ranges of more than 100,000 items.
  const double count =
      (static_cast<double>(stop) - static_cast<double>(start)) / static_cast<double>(step);
  if (count > 100000) {
    return absl::InvalidArgumentError(
        "OverflowError: Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  }
  std::vector<Value> items;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    PAGODA_RETURN_IF_ERROR(interpreter.Charge(1));
    items.push_back(Value::Int(i));
    if ((step > 0 && i > INT64_MAX - step) || (step < 0 && i < INT64_MIN - step)) break;
  }
  return Value::List(std::move(items));
}

absl::StatusOr<Value> MakeDictGlobal(Interpreter&, CallArgs& args) {
  if (!args.positional.empty())
    return absl::InvalidArgumentError("dict() takes keyword arguments only");
  Dict dict;
  for (auto& [name, value] : args.keyword) dict.Set(name, value);
  return Value::MakeDict(std::move(dict));
}

absl::StatusOr<Value> MakeNamespace(Interpreter&, CallArgs& args) {
  Dict dict;
  if (args.positional.size() > 1)
    return absl::InvalidArgumentError("namespace() takes at most one mapping");
  if (args.positional.size() == 1) {
    if (!args.positional[0].is_dict())
      return absl::InvalidArgumentError("namespace(): the argument is not a mapping");
    for (const auto& [key, value] : args.positional[0].dict().entries()) dict.Set(key, value);
  }
  for (auto& [name, value] : args.keyword) dict.Set(name, value);
  return Value::Namespace(std::move(dict));
}

absl::StatusOr<Value> RaiseException(Interpreter&, CallArgs& args) {
  PAGODA_BIND(params, "raise_exception", "message");
  absl::Status status = absl::InvalidArgumentError(params.Get(0, Value::String("")).Str());
  status.SetPayload(kRaisedPayload, absl::Cord("1"));
  return status;
}

absl::StatusOr<Value> StrftimeNow(Interpreter& interpreter, CallArgs& args) {
  PAGODA_BIND(params, "strftime_now", "format");
  // datetime.now() is naive: %Z and %z format as empty. Other directives go to strftime.
  std::string format;
  const std::string requested = params.Get(0, Value::String("")).Str();
  for (size_t i = 0; i < requested.size(); ++i) {
    if (requested[i] == '%' && i + 1 < requested.size()) {
      if (requested[i + 1] != 'Z' && requested[i + 1] != 'z') format += requested.substr(i, 2);
      ++i;
      continue;
    }
    format += requested[i];
  }
  const std::time_t seconds = absl::ToTimeT(interpreter.now());
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  std::string out(256 + format.size() * 8, '\0');
  const size_t n = format.empty() ? 0 : std::strftime(out.data(), out.size(), format.c_str(), &utc);
  out.resize(n);
  return Value::String(std::move(out));
}

}  // namespace

const Filter* FindFilter(absl::string_view name) {
  for (const Filter& filter : kFilters) {
    if (filter.name == name) return &filter;
  }
  return nullptr;
}

Value GlobalFunction(absl::string_view name) {
  static const auto* const kGlobals = new std::vector<Value>{
      Value::Function(std::make_shared<Global>("range", Range)),
      Value::Function(std::make_shared<Global>("dict", MakeDictGlobal)),
      Value::Function(std::make_shared<Global>("namespace", MakeNamespace)),
      Value::Function(std::make_shared<Global>("raise_exception", RaiseException)),
      Value::Function(std::make_shared<Global>("strftime_now", StrftimeNow)),
  };
  for (const Value& global : *kGlobals) {
    if (global.callable().name() == name) return global;
  }
  return Value();
}

}  // namespace pagoda::chat_template
