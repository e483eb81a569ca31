// The Python methods of str, dict and list that chat templates call, and printf-style and
// str.format formatting. Declared in builtins.h.

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "chat_template/builtins.h"
#include "chat_template/interpreter.h"
#include "chat_template/operators.h"
#include "chat_template/params.h"
#include "chat_template/text.h"
#include "common/status_macros.h"

namespace pagoda::chat_template {
namespace {

constexpr absl::string_view kStringMethods[] = {
    "capitalize", "count",      "endswith",   "find",    "format",  "isalnum",
    "isalpha",    "isdigit",    "islower",    "isspace", "isupper", "join",
    "lower",      "lstrip",     "replace",    "rfind",   "rsplit",  "rstrip",
    "split",      "splitlines", "startswith", "strip",   "title",   "upper"};
constexpr absl::string_view kDictMethods[] = {"get", "items", "keys", "values"};
constexpr absl::string_view kListMethods[] = {"count", "index"};
// Methods that would change a value: the immutable sandbox refuses them.
constexpr absl::string_view kMutatingMethods[] = {"append",     "clear",   "extend", "insert",
                                                  "pop",        "popitem", "remove", "reverse",
                                                  "setdefault", "sort",    "update"};

template <size_t N>
bool In(const absl::string_view (&names)[N], absl::string_view name) {
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

class Bound : public Callable {
 public:
  Bound(Value object, std::string method)
      : object_(std::move(object)), method_(std::move(method)) {}
  absl::StatusOr<Value> Call(Interpreter& interpreter, CallArgs args) const override {
    return CallMethod(interpreter, object_, method_, std::move(args));
  }
  std::string name() const override { return absl::StrCat(object_.TypeName(), ".", method_); }

 private:
  Value object_;
  std::string method_;
};

Value StringList(const std::vector<std::string>& pieces) {
  std::vector<Value> items;
  items.reserve(pieces.size());
  for (const std::string& piece : pieces) items.push_back(Value::String(piece));
  return Value::List(std::move(items));
}

// startswith/endswith: a str or a tuple of them.
absl::StatusOr<Value> Affix(const std::string& full, const Value& affix, bool prefix, int64_t start,
                            std::optional<int64_t> end) {
  // text[start:end] in code points, with Python's clamping of negative and large bounds.
  const std::vector<char32_t> points = DecodeUtf8(full);
  const auto length = static_cast<int64_t>(points.size());
  auto clamp = [length](int64_t bound) {
    if (bound < 0) bound += length;
    return std::clamp<int64_t>(bound, 0, length);
  };
  const int64_t begin = clamp(start);
  const int64_t stop = end.has_value() ? clamp(*end) : length;
  if (stop < begin) return Value::Bool(false);
  const std::string text =
      EncodeUtf8(std::vector<char32_t>(points.begin() + begin, points.begin() + stop));
  std::vector<Value> options;
  if (affix.is_list()) {
    options = affix.list();
  } else {
    options.push_back(affix);
  }
  for (const Value& option : options) {
    if (!option.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat("TypeError: ", prefix ? "startswith" : "endswith",
                       " first arg must be str or a tuple of str"));
    }
    const std::string& s = option.string_value();
    if (s.size() <= text.size() &&
        (prefix ? text.compare(0, s.size(), s) == 0
                : text.compare(text.size() - s.size(), s.size(), s) == 0)) {
      return Value::Bool(true);
    }
  }
  return Value::Bool(false);
}

template <typename Predicate>
Value AllPoints(const std::string& text, Predicate predicate) {
  const std::vector<char32_t> points = DecodeUtf8(text);
  return Value::Bool(!points.empty() && std::all_of(points.begin(), points.end(), predicate));
}

// str.format: {} {0} {name} fields and {{ }} escapes; no format specs or conversions.
absl::StatusOr<Value> PyStrFormat(const std::string& format, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    const char c = format[i];
    if (c == '}') {
      if (i + 1 < format.size() && format[i + 1] == '}')
        ++i;
      else
        return absl::InvalidArgumentError("ValueError: Single '}' encountered in format string");
      out += '}';
      continue;
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < format.size() && format[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    const size_t close = format.find('}', i);
    if (close == std::string::npos)
      return absl::InvalidArgumentError("ValueError: Single '{' encountered in format string");
    const std::string field = format.substr(i + 1, close - i - 1);
    i = close;
    if (field.find_first_of(":!.[") != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("str.format: the field '{", field, "}' is not supported"));
    }
    const Value* value = nullptr;
    if (field.empty() ||
        std::all_of(field.begin(), field.end(), [](char d) { return d >= '0' && d <= '9'; })) {
      const size_t index = field.empty() ? auto_index++ : std::stoul(field);
      if (index < args.positional.size()) value = &args.positional[index];
    } else {
      for (const auto& [name, arg] : args.keyword) {
        if (name == field) value = &arg;
      }
    }
    if (value == nullptr)
      return absl::InvalidArgumentError(
          absl::StrCat("str.format: no argument for '{", field, "}'"));
    out += value->Str();
  }
  return Value::String(std::move(out));
}

absl::StatusOr<Value> CallStringMethod(const std::string& text, absl::string_view name,
                                       const CallArgs& args, size_t max_bytes) {
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    PAGODA_RETURN_IF_ERROR(Params(name, args, {}).status());
    if (name == "upper") return Value::String(PyUpper(text));
    if (name == "lower") return Value::String(PyLower(text));
    if (name == "title") return Value::String(PyTitle(text));
    return Value::String(PyCapitalize(text));
  }
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const Params params(name, args, {"chars"});
    PAGODA_RETURN_IF_ERROR(params.status());
    PAGODA_ASSIGN_OR_RETURN(auto chars, params.OptionalString(0));
    const StripSide side = name == "strip"    ? StripSide::kBoth
                           : name == "lstrip" ? StripSide::kLeft
                                              : StripSide::kRight;
    return Value::String(PyStrip(text, chars, side));
  }
  if (name == "split" || name == "rsplit") {
    const Params params(name, args, {"sep", "maxsplit"});
    PAGODA_RETURN_IF_ERROR(params.status());
    PAGODA_ASSIGN_OR_RETURN(auto separator, params.OptionalString(0));
    PAGODA_ASSIGN_OR_RETURN(int64_t max_split, params.Int(1, -1));
    if (separator.has_value() && separator->empty())
      return absl::InvalidArgumentError("ValueError: empty separator");
    return StringList(name == "split" ? PySplit(text, separator, max_split)
                                      : PyRSplit(text, separator, max_split));
  }
  if (name == "splitlines") {
    PAGODA_RETURN_IF_ERROR(Params(name, args, {}).status());
    const std::vector<std::string> lines = PySplitLines(text);
    return StringList(lines);
  }
  if (name == "startswith" || name == "endswith") {
    const Params params(name, args, {"affix", "start", "end"});
    PAGODA_RETURN_IF_ERROR(params.status());
    PAGODA_ASSIGN_OR_RETURN(int64_t start, params.Int(1, 0));
    std::optional<int64_t> end;
    if (params.Given(2) && !params.Get(2).is_none()) {
      PAGODA_ASSIGN_OR_RETURN(end, params.Int(2, 0));
    }
    return Affix(text, params.Get(0), name == "startswith", start, end);
  }
  if (name == "replace") {
    const Params params(name, args, {"old", "new", "count"});
    PAGODA_RETURN_IF_ERROR(params.status());
    PAGODA_ASSIGN_OR_RETURN(auto old_text, params.OptionalString(0));
    PAGODA_ASSIGN_OR_RETURN(auto new_text, params.OptionalString(1));
    PAGODA_ASSIGN_OR_RETURN(int64_t count, params.Int(2, -1));
    if (!old_text || !new_text)
      return absl::InvalidArgumentError("TypeError: replace expected 2 str arguments");
    if (ReplacedSize(text, *old_text, *new_text, count) > max_bytes) {
      return absl::ResourceExhaustedError(
          "str.replace: the result passed the chat template's bound");
    }
    return Value::String(PyReplace(text, *old_text, *new_text, count));
  }
  if (name == "find" || name == "rfind" || name == "count") {
    const Params params(name, args, {"sub"});
    PAGODA_RETURN_IF_ERROR(params.status());
    PAGODA_ASSIGN_OR_RETURN(auto sub, params.OptionalString(0));
    if (!sub)
      return absl::InvalidArgumentError(absl::StrCat("TypeError: ", name, "() needs a str"));
    if (name == "count") {
      if (sub->empty()) return Value::Int(static_cast<int64_t>(CodePointCount(text)) + 1);
      int64_t count = 0;
      for (size_t at = text.find(*sub); at != std::string::npos;
           at = text.find(*sub, at + sub->size()))
        ++count;
      return Value::Int(count);
    }
    const size_t at = name == "find" ? text.find(*sub) : text.rfind(*sub);
    if (at == std::string::npos) return Value::Int(-1);
    return Value::Int(static_cast<int64_t>(CodePointCount(absl::string_view(text).substr(0, at))));
  }
  if (name == "join") {
    const Params params(name, args, {"iterable"});
    PAGODA_RETURN_IF_ERROR(params.status());
    PAGODA_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(params.Get(0)));
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_string())
        return absl::InvalidArgumentError("TypeError: join expects str items");
      if (i > 0) out += text;
      out += items[i].string_value();
      if (out.size() > max_bytes) {
        return absl::ResourceExhaustedError(
            "str.join: the result passed the chat template's bound");
      }
    }
    return Value::String(std::move(out));
  }
  if (name == "format") return PyStrFormat(text, args);
  PAGODA_RETURN_IF_ERROR(Params(name, args, {}).status());
  if (name == "isdigit") return AllPoints(text, [](char32_t c) { return c >= '0' && c <= '9'; });
  if (name == "isspace") return AllPoints(text, IsPythonSpace);
  if (name == "isalpha" || name == "isalnum") {
    const bool digits = name == "isalnum";
    return AllPoints(text, [digits](char32_t c) {
      return (c < 0x80 && ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')) ||
             (digits && c >= '0' && c <= '9') ||
             (c >= 0x80 && PyUpper(EncodeUtf8({c})) != PyLower(EncodeUtf8({c})));
    });
  }
  const bool has_cased = PyUpper(text) != PyLower(text);
  if (name == "islower") return Value::Bool(has_cased && PyLower(text) == text);
  return Value::Bool(has_cased && PyUpper(text) == text);  // isupper
}

absl::StatusOr<Value> CallDictMethod(const Dict& dict, absl::string_view name,
                                     const CallArgs& args) {
  if (name == "get") {
    const Params params(name, args, {"key", "default"});
    PAGODA_RETURN_IF_ERROR(params.status());
    const Value key = params.Get(0);
    const Value* found = key.is_string() ? dict.Find(key.string_value()) : nullptr;
    return found != nullptr ? *found : params.Get(1);
  }
  PAGODA_RETURN_IF_ERROR(Params(name, args, {}).status());
  std::vector<Value> items;
  for (const auto& [key, value] : dict.entries()) {
    if (name == "items") items.push_back(Value::Tuple({Value::String(key), value}));
    if (name == "keys") items.push_back(Value::String(key));
    if (name == "values") items.push_back(value);
  }
  return Value::List(std::move(items));
}

absl::StatusOr<Value> CallListMethod(const std::vector<Value>& list, absl::string_view name,
                                     const CallArgs& args) {
  const Params params(name, args, {"value"});
  PAGODA_RETURN_IF_ERROR(params.status());
  int64_t count = 0;
  for (size_t i = 0; i < list.size(); ++i) {
    if (!Equal(list[i], params.Get(0))) continue;
    if (name == "index") return Value::Int(static_cast<int64_t>(i));
    ++count;
  }
  if (name == "index")
    return absl::InvalidArgumentError("ValueError: the value is not in the list");
  return Value::Int(count);
}

}  // namespace

bool HasMethod(const Value& object, absl::string_view name) {
  // Most attribute reads are a dict's keys ("role", "content"): rule those out cheaply.
  if (name.size() < 3 || name.size() > 10) return false;
  switch (object.kind()) {
    case Value::Kind::kString:
      return In(kStringMethods, name);
    case Value::Kind::kDict:
      return In(kDictMethods, name) || In(kMutatingMethods, name);
    case Value::Kind::kList:
      return In(kListMethods, name) || In(kMutatingMethods, name);
    default:
      return false;
  }
}

Value BoundMethod(const Value& object, absl::string_view name) {
  return Value::Function(std::make_shared<Bound>(object, std::string(name)));
}

absl::StatusOr<Value> CallMethod(Interpreter& interpreter, const Value& object,
                                 absl::string_view name, CallArgs args) {
  if (In(kMutatingMethods, name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("SecurityError: access to attribute '", name, "' of '", object.TypeName(),
                     "' object is unsafe (the chat template sandbox is immutable)"));
  }
  PAGODA_RETURN_IF_ERROR(interpreter.Charge(1));
  switch (object.kind()) {
    case Value::Kind::kString:
      return CallStringMethod(object.string_value(), name, args,
                              interpreter.limits().max_output_bytes);
    case Value::Kind::kDict:
      return CallDictMethod(object.dict(), name, args);
    case Value::Kind::kList:
      return CallListMethod(object.list(), name, args);
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("'", object.TypeName(), "' object has no method '", name, "'"));
  }
}

// printf of one value with a format checked by PercentFormat (flags, width, precision only).
template <typename T>
std::string CFormat(const std::string& format, T value) {
  const int n = std::snprintf(nullptr, 0, format.c_str(), value);
  if (n <= 0) return "";
  std::string out(static_cast<size_t>(n) + 1, '\0');
  std::snprintf(out.data(), out.size(), format.c_str(), value);
  out.resize(static_cast<size_t>(n));
  return out;
}

// One conversion's spec: [flags][width][.precision], each number at most kMaxFormatWidth.
struct FormatSpec {
  bool left = false;
  std::string flags;
  int width = -1;
  int precision = -1;
};

constexpr int kMaxFormatWidth = 1 << 16;

absl::StatusOr<FormatSpec> ParseSpec(absl::string_view spec) {
  FormatSpec out;
  size_t i = 0;
  while (i < spec.size() &&
         (spec[i] == '-' || spec[i] == '+' || spec[i] == ' ' || spec[i] == '0' || spec[i] == '#')) {
    if (spec[i] == '-') out.left = true;
    out.flags += spec[i++];
  }
  auto number = [&](int& into) -> absl::Status {
    into = 0;
    while (i < spec.size() && spec[i] >= '0' && spec[i] <= '9') {
      into = into * 10 + (spec[i++] - '0');
      if (into > kMaxFormatWidth)
        return absl::InvalidArgumentError("% format: a width or precision is too large");
    }
    return absl::OkStatus();
  };
  if (i < spec.size() && spec[i] != '.') PAGODA_RETURN_IF_ERROR(number(out.width));
  if (i < spec.size() && spec[i] == '.') {
    ++i;
    PAGODA_RETURN_IF_ERROR(number(out.precision));
  }
  if (i != spec.size()) return absl::InvalidArgumentError("ValueError: unsupported format spec");
  return out;
}

// Pads `text` to the spec's width in code points, as Python does.
std::string Pad(std::string text, const FormatSpec& spec) {
  const auto length = static_cast<int>(CodePointCount(text));
  if (spec.width <= length) return text;
  const std::string fill(static_cast<size_t>(spec.width - length), ' ');
  return spec.left ? text + fill : fill + text;
}

absl::StatusOr<std::string> FormatOne(char conversion, const FormatSpec& spec, const Value& value) {
  switch (conversion) {
    case 's':
    case 'r': {
      std::string text = conversion == 's' ? value.Str() : value.Repr();
      if (spec.precision >= 0) {
        std::vector<char32_t> points = DecodeUtf8(text);
        if (points.size() > static_cast<size_t>(spec.precision))
          points.resize(static_cast<size_t>(spec.precision));
        text = EncodeUtf8(points);
      }
      return Pad(std::move(text), spec);
    }
    case 'd':
    case 'i':
    case 'x': {
      if (!value.is_number()) {
        return absl::InvalidArgumentError(absl::StrCat("TypeError: %", std::string(1, conversion),
                                                       " format: a real number is required, not ",
                                                       value.TypeName()));
      }
      const int64_t n =
          value.is_integral() ? value.int_value() : static_cast<int64_t>(value.number());
      const uint64_t magnitude = n < 0 ? 0 - static_cast<uint64_t>(n) : static_cast<uint64_t>(n);
      // Python prints a sign and the magnitude (-ff), never two's complement.
      std::string digits =
          CFormat(absl::StrCat("%", spec.precision >= 0 ? absl::StrCat(".", spec.precision) : "",
                               conversion == 'x' ? "llx" : "llu"),
                  static_cast<unsigned long long>(magnitude));
      std::string sign = n < 0                                       ? "-"
                         : spec.flags.find('+') != std::string::npos ? "+"
                         : spec.flags.find(' ') != std::string::npos ? " "
                                                                     : "";
      const auto length = static_cast<int>(sign.size() + digits.size());
      if (!spec.left && spec.flags.find('0') != std::string::npos && spec.width > length) {
        digits = std::string(static_cast<size_t>(spec.width - length), '0') + digits;
      }
      return Pad(sign + digits, spec);
    }
    case 'f':
      if (!value.is_number()) return absl::InvalidArgumentError("TypeError: must be real number");
      return CFormat(absl::StrCat("%", spec.flags, spec.width >= 0 ? absl::StrCat(spec.width) : "",
                                  ".", spec.precision >= 0 ? spec.precision : 6, "f"),
                     value.number());
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unsupported format character '", std::string(1, conversion), "'"));
  }
}

absl::StatusOr<Value> PercentFormat(const Value& format, const Value& args) {
  std::vector<Value> values;
  if (args.is_tuple()) {
    values = args.list();
  } else {
    values.push_back(args);
  }
  const std::string& text = format.string_value();
  std::string out;
  size_t next = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    size_t j = i + 1;
    while (j < text.size() &&
           (text[j] == '-' || text[j] == '+' || text[j] == ' ' || text[j] == '#' ||
            text[j] == '.' || (text[j] >= '0' && text[j] <= '9'))) {
      ++j;
    }
    if (j >= text.size()) return absl::InvalidArgumentError("ValueError: incomplete format");
    const char conversion = text[j];
    PAGODA_ASSIGN_OR_RETURN(const FormatSpec spec,
                            ParseSpec(absl::string_view(text).substr(i + 1, j - i - 1)));
    i = j;
    if (conversion == '%') {
      out += '%';
      continue;
    }
    if (next >= values.size())
      return absl::InvalidArgumentError("TypeError: not enough arguments for format string");
    PAGODA_ASSIGN_OR_RETURN(std::string piece, FormatOne(conversion, spec, values[next++]));
    out += piece;
  }
  // Python: every argument must be used, unless the one argument is a mapping.
  if (next < values.size() && !(!args.is_tuple() && args.is_dict())) {
    return absl::InvalidArgumentError(
        "TypeError: not all arguments converted during string formatting");
  }
  return Value::String(std::move(out));
}

}  // namespace pagoda::chat_template
