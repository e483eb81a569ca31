#include "chat_template/operators.h"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "chat_template/builtins.h"

namespace pagoda::chat_template {
namespace {

// A repetition ("ab" * n, [x] * n) may not build more than this many items or bytes.
constexpr int64_t kMaxRepeat = int64_t{1} << 20;

absl::Status TypeError(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("TypeError: ", what));
}

absl::Status OperandError(absl::string_view op, const Value& left, const Value& right) {
  return TypeError(absl::StrCat("unsupported operand type(s) for ", op, ": '", left.TypeName(),
                                "' and '", right.TypeName(), "'"));
}

std::string Describe(const Value& object) {
  if (object.is_none()) return "None";
  return absl::StrCat(object.TypeName(), " object");
}

Value Missing(const Value& object, absl::string_view name) {
  return Value::Undefined(absl::StrCat("'", Describe(object), "' has no attribute '", name, "'"));
}

absl::StatusOr<Value> IntResult(bool overflow, int64_t value) {
  if (overflow) return absl::InvalidArgumentError("integer overflow in the chat template");
  return Value::Int(value);
}

absl::StatusOr<Value> IntArithmetic(BinaryOp op, int64_t a, int64_t b) {
  int64_t out = 0;
  switch (op) {
    case BinaryOp::kAdd: {
      const bool overflow = __builtin_add_overflow(a, b, &out);
      return IntResult(overflow, out);
    }
    case BinaryOp::kSub: {
      const bool overflow = __builtin_sub_overflow(a, b, &out);
      return IntResult(overflow, out);
    }
    case BinaryOp::kMul: {
      const bool overflow = __builtin_mul_overflow(a, b, &out);
      return IntResult(overflow, out);
    }
    case BinaryOp::kDiv:
      if (b == 0) return absl::InvalidArgumentError("ZeroDivisionError: division by zero");
      return Value::Float(static_cast<double>(a) / static_cast<double>(b));
    case BinaryOp::kFloorDiv:
    case BinaryOp::kMod: {
      if (b == 0)
        return absl::InvalidArgumentError("ZeroDivisionError: integer division or modulo by zero");
      if (a == INT64_MIN && b == -1) return IntResult(true, 0);
      int64_t q = a / b;
      int64_t r = a % b;
      if (r != 0 && ((r < 0) != (b < 0))) {
        --q;
        r += b;
      }
      return Value::Int(op == BinaryOp::kFloorDiv ? q : r);
    }
    case BinaryOp::kPow: {
      if (b < 0) return Value::Float(std::pow(static_cast<double>(a), static_cast<double>(b)));
      int64_t result = 1;
      for (int64_t i = 0; i < b; ++i) {
        if (__builtin_mul_overflow(result, a, &result)) return IntResult(true, 0);
        if (result == 0 || result == 1) break;
      }
      return Value::Int(result);
    }
  }
  return Value::Int(0);
}

absl::StatusOr<Value> FloatArithmetic(BinaryOp op, double a, double b) {
  switch (op) {
    case BinaryOp::kAdd:
      return Value::Float(a + b);
    case BinaryOp::kSub:
      return Value::Float(a - b);
    case BinaryOp::kMul:
      return Value::Float(a * b);
    case BinaryOp::kDiv:
      if (b == 0) return absl::InvalidArgumentError("ZeroDivisionError: float division by zero");
      return Value::Float(a / b);
    case BinaryOp::kFloorDiv:
    case BinaryOp::kMod: {
      if (b == 0) return absl::InvalidArgumentError("ZeroDivisionError: float modulo");
      double mod = std::fmod(a, b);
      if (mod != 0 && ((mod < 0) != (b < 0))) mod += b;
      if (op == BinaryOp::kMod) return Value::Float(mod);
      return Value::Float(std::floor((a - mod) / b + 0.5));
    }
    case BinaryOp::kPow:
      return Value::Float(std::pow(a, b));
  }
  return Value::Float(0);
}

absl::StatusOr<Value> Repeat(const Value& sequence, int64_t times) {
  const int64_t unit = sequence.is_string() ? static_cast<int64_t>(sequence.string_value().size())
                                            : static_cast<int64_t>(sequence.list().size());
  if (times <= 0 || unit == 0) {
    if (!sequence.is_list()) return Value::String("");
    return sequence.is_tuple() ? Value::Tuple({}) : Value::List({});
  }
  // Both the items built and what they would print as are bounded before anything is built.
  const auto weight = static_cast<double>(sequence.weight()) * static_cast<double>(times);
  if (times > kMaxRepeat / unit || weight > static_cast<double>(kMaxRepeat) * 16) {
    return absl::ResourceExhaustedError("chat template: a repetition is too large");
  }
  if (sequence.is_string()) {
    std::string out;
    for (int64_t i = 0; i < times; ++i) out += sequence.string_value();
    return Value::String(std::move(out));
  }
  std::vector<Value> items;
  for (int64_t i = 0; i < times; ++i) {
    items.insert(items.end(), sequence.list().begin(), sequence.list().end());
  }
  return sequence.is_tuple() ? Value::Tuple(std::move(items)) : Value::List(std::move(items));
}

absl::string_view OpSymbol(BinaryOp op) {
  switch (op) {
    case BinaryOp::kAdd:
      return "+";
    case BinaryOp::kSub:
      return "-";
    case BinaryOp::kMul:
      return "*";
    case BinaryOp::kDiv:
      return "/";
    case BinaryOp::kFloorDiv:
      return "//";
    case BinaryOp::kMod:
      return "%";
    case BinaryOp::kPow:
      return "**";
  }
  return "?";
}

// Python's slice.indices(length) bound for `bound`, with `fallback` for None.
absl::StatusOr<int64_t> SliceBound(const Value& bound, int64_t fallback, int64_t lower,
                                   int64_t upper, int64_t length) {
  if (bound.is_none() || bound.is_undefined()) return fallback;
  if (!bound.is_integral()) {
    return TypeError("slice indices must be integers or None");
  }
  int64_t value = bound.int_value();
  if (value < 0) value += length;
  if (value < lower) return lower;
  if (value > upper) return upper;
  return value;
}

}  // namespace

absl::Status UndefinedError(const Value& undefined) {
  const std::string& hint = undefined.undefined_hint();
  return absl::InvalidArgumentError(hint.empty() ? "a value is undefined" : hint);
}

absl::StatusOr<Value> GetAttr(const Value& object, absl::string_view name) {
  switch (object.kind()) {
    case Value::Kind::kUndefined:
      return UndefinedError(object);
    case Value::Kind::kNamespace: {
      const Value* found = object.namespace_dict().Find(name);
      return found != nullptr ? *found : Missing(object, name);
    }
    case Value::Kind::kDict:
      if (HasMethod(object, name)) return BoundMethod(object, name);
      if (const Value* found = object.dict().Find(name)) return *found;
      return Missing(object, name);
    default:
      if (HasMethod(object, name)) return BoundMethod(object, name);
      return Missing(object, name);
  }
}

absl::StatusOr<Value> GetItem(const Value& object, const Value& key) {
  if (object.is_undefined()) return UndefinedError(object);
  if (object.is_dict() || object.kind() == Value::Kind::kNamespace) {
    if (!key.is_string()) return Missing(object, key.Str());
    const Dict& dict = object.is_dict() ? object.dict() : object.namespace_dict();
    if (const Value* found = dict.Find(key.string_value())) return *found;
    if (object.is_dict() && HasMethod(object, key.string_value())) {
      return BoundMethod(object, key.string_value());
    }
    return Missing(object, key.string_value());
  }
  if ((object.is_list() || object.is_string()) && key.is_integral()) {
    std::vector<char32_t> points;
    if (object.is_string()) points = DecodeUtf8(object.string_value());
    const int64_t length = object.is_list() ? static_cast<int64_t>(object.list().size())
                                            : static_cast<int64_t>(points.size());
    int64_t index = key.int_value();
    if (index < 0) index += length;
    if (index < 0 || index >= length) return Missing(object, key.Str());
    if (object.is_list()) return object.list()[static_cast<size_t>(index)];
    std::string out;
    AppendUtf8(points[static_cast<size_t>(index)], out);
    return Value::String(std::move(out));
  }
  if (key.is_string()) return GetAttr(object, key.string_value());
  return Missing(object, key.Str());
}

absl::StatusOr<Value> GetSlice(const Value& object, const Value& start_value,
                               const Value& stop_value, const Value& step_value) {
  if (object.is_undefined()) return UndefinedError(object);
  if (!object.is_list() && !object.is_string()) {
    return TypeError(absl::StrCat("'", object.TypeName(), "' object is not subscriptable"));
  }
  int64_t step = 1;
  if (!step_value.is_none() && !step_value.is_undefined()) {
    if (!step_value.is_integral()) return TypeError("slice indices must be integers or None");
    step = step_value.int_value();
  }
  if (step == 0) return absl::InvalidArgumentError("ValueError: slice step cannot be zero");
  std::vector<char32_t> points;
  if (object.is_string()) points = DecodeUtf8(object.string_value());
  const int64_t length = object.is_list() ? static_cast<int64_t>(object.list().size())
                                          : static_cast<int64_t>(points.size());
  const int64_t lower = step > 0 ? 0 : -1;
  const int64_t upper = step > 0 ? length : length - 1;
  auto start = SliceBound(start_value, step > 0 ? lower : upper, lower, upper, length);
  auto stop = SliceBound(stop_value, step > 0 ? upper : lower, lower, upper, length);
  if (!start.ok()) return start.status();
  if (!stop.ok()) return stop.status();
  std::vector<Value> items;
  std::vector<char32_t> chars;
  for (int64_t i = *start; step > 0 ? i < *stop : i > *stop; i += step) {
    if (object.is_list()) {
      items.push_back(object.list()[static_cast<size_t>(i)]);
    } else {
      chars.push_back(points[static_cast<size_t>(i)]);
    }
  }
  if (object.is_string()) return Value::String(EncodeUtf8(chars));
  return object.is_tuple() ? Value::Tuple(std::move(items)) : Value::List(std::move(items));
}

absl::StatusOr<Value> BinaryOperation(BinaryOp op, const Value& left, const Value& right) {
  if (left.is_undefined()) return UndefinedError(left);
  if (right.is_undefined()) return UndefinedError(right);
  if (left.is_big_int() || right.is_big_int()) {
    return absl::InvalidArgumentError("arithmetic on integers beyond 64 bits is not supported");
  }
  if (left.is_number() && right.is_number()) {
    if (left.is_integral() && right.is_integral()) {
      return IntArithmetic(op, left.int_value(), right.int_value());
    }
    return FloatArithmetic(op, left.number(), right.number());
  }
  if (op == BinaryOp::kAdd) {
    if (left.is_string() && right.is_string()) {
      return Value::String(absl::StrCat(left.string_value(), right.string_value()));
    }
    if (left.is_list() && right.is_list() && left.is_tuple() == right.is_tuple()) {
      std::vector<Value> items = left.list();
      items.insert(items.end(), right.list().begin(), right.list().end());
      return left.is_tuple() ? Value::Tuple(std::move(items)) : Value::List(std::move(items));
    }
    if (left.is_string()) {
      return TypeError(
          absl::StrCat("can only concatenate str (not \"", right.TypeName(), "\") to str"));
    }
  }
  if (op == BinaryOp::kMul) {
    if ((left.is_string() || left.is_list()) && right.is_integral()) {
      return Repeat(left, right.int_value());
    }
    if (left.is_integral() && (right.is_string() || right.is_list())) {
      return Repeat(right, left.int_value());
    }
  }
  if (op == BinaryOp::kMod && left.is_string()) return PercentFormat(left, right);
  return OperandError(OpSymbol(op), left, right);
}

absl::StatusOr<bool> Contains(const Value& haystack, const Value& needle) {
  switch (haystack.kind()) {
    case Value::Kind::kUndefined:
      return false;
    case Value::Kind::kString:
      if (!needle.is_string()) {
        return TypeError(
            absl::StrCat("'in <string>' requires string as left operand, not ", needle.TypeName()));
      }
      return haystack.string_value().find(needle.string_value()) != std::string::npos;
    case Value::Kind::kList:
      for (const Value& item : haystack.list()) {
        if (Equal(item, needle)) return true;
      }
      return false;
    case Value::Kind::kDict:
      return needle.is_string() && haystack.dict().Find(needle.string_value()) != nullptr;
    default:
      return TypeError(
          absl::StrCat("argument of type '", haystack.TypeName(), "' is not iterable"));
  }
}

absl::StatusOr<bool> Compare(CompareOp op, const Value& left, const Value& right) {
  switch (op) {
    case CompareOp::kEq:
      return Equal(left, right);
    case CompareOp::kNe:
      return !Equal(left, right);
    case CompareOp::kIn:
      return Contains(right, left);
    case CompareOp::kNotIn: {
      auto in = Contains(right, left);
      if (!in.ok()) return in.status();
      return !*in;
    }
    default:
      break;
  }
  if (left.is_undefined()) return UndefinedError(left);
  if (right.is_undefined()) return UndefinedError(right);
  switch (op) {
    case CompareOp::kLt:
      return Less(left, right);
    case CompareOp::kGt:
      return Less(right, left);
    case CompareOp::kLe: {
      auto greater = Less(right, left);
      if (!greater.ok()) return greater.status();
      return !*greater;
    }
    case CompareOp::kGe: {
      auto less = Less(left, right);
      if (!less.ok()) return less.status();
      return !*less;
    }
    default:
      return false;
  }
}

absl::StatusOr<Value> Negate(const Value& operand) {
  if (operand.is_undefined()) return UndefinedError(operand);
  if (operand.is_integral()) {
    if (operand.int_value() == INT64_MIN) return IntResult(true, 0);
    return Value::Int(-operand.int_value());
  }
  if (operand.kind() == Value::Kind::kFloat) return Value::Float(-operand.number());
  return TypeError(absl::StrCat("bad operand type for unary -: '", operand.TypeName(), "'"));
}

}  // namespace pagoda::chat_template
