// Jinja2's tests (`x is defined`, `x is divisibleby 3`, ...), declared in builtins.h.

#include <cmath>

#include "absl/strings/str_cat.h"
#include "chat_template/builtins.h"
#include "chat_template/interpreter.h"
#include "chat_template/operators.h"
#include "chat_template/text.h"
#include "common/status_macros.h"

namespace pagoda::chat_template {
namespace {

absl::StatusOr<Value> OneArg(const CallArgs& args, absl::string_view test) {
  if (args.positional.size() != 1 || !args.keyword.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("test '", test, "' takes one argument"));
  }
  return args.positional[0];
}

#define PAGODA_SIMPLE_TEST(Name, expr)                                          \
  absl::StatusOr<bool> Name(Interpreter&, const Value& value, CallArgs& args) { \
    (void)value;                                                                \
    if (!args.positional.empty() || !args.keyword.empty()) {                    \
      return absl::InvalidArgumentError("this test takes no argument");         \
    }                                                                           \
    return (expr);                                                              \
  }

PAGODA_SIMPLE_TEST(IsDefined, !value.is_undefined())
PAGODA_SIMPLE_TEST(IsUndefined, value.is_undefined())
PAGODA_SIMPLE_TEST(IsNone, value.is_none())
PAGODA_SIMPLE_TEST(IsString, value.is_string())
PAGODA_SIMPLE_TEST(IsNumber, value.is_number())
PAGODA_SIMPLE_TEST(IsInteger, value.kind() == Value::Kind::kInt)
PAGODA_SIMPLE_TEST(IsFloat, value.kind() == Value::Kind::kFloat)
PAGODA_SIMPLE_TEST(IsMapping, value.is_dict())
PAGODA_SIMPLE_TEST(IsIterable,
                   value.is_undefined() || value.is_string() || value.is_list() || value.is_dict())
PAGODA_SIMPLE_TEST(IsSequence,
                   value.is_undefined() || value.is_string() || value.is_list() || value.is_dict())
PAGODA_SIMPLE_TEST(IsBoolean, value.kind() == Value::Kind::kBool)
PAGODA_SIMPLE_TEST(IsTrue, value.kind() == Value::Kind::kBool && value.bool_value())
PAGODA_SIMPLE_TEST(IsFalse, value.kind() == Value::Kind::kBool && !value.bool_value())
PAGODA_SIMPLE_TEST(IsCallable, value.kind() == Value::Kind::kCallable)
PAGODA_SIMPLE_TEST(IsOdd,
                   value.is_integral()
                       ? value.int_value() % 2 != 0
                       : value.is_number() && std::fmod(std::fabs(value.number()), 2.0) == 1.0)
PAGODA_SIMPLE_TEST(IsEven, value.is_integral()
                               ? value.int_value() % 2 == 0
                               : value.is_number() && std::fmod(value.number(), 2.0) == 0.0)
// str(value).islower() / isupper(): a cased character, and none of the other case.
PAGODA_SIMPLE_TEST(IsLower, PyUpper(value.Str()) != PyLower(value.Str()) &&
                                PyLower(value.Str()) == value.Str())
PAGODA_SIMPLE_TEST(IsUpper, PyUpper(value.Str()) != PyLower(value.Str()) &&
                                PyUpper(value.Str()) == value.Str())
PAGODA_SIMPLE_TEST(IsEscaped, false)

template <CompareOp kOp>
absl::StatusOr<bool> CompareTest(Interpreter&, const Value& value, CallArgs& args) {
  PAGODA_ASSIGN_OR_RETURN(Value other, OneArg(args, "compare"));
  return Compare(kOp, value, other);
}

absl::StatusOr<bool> IsSameAs(Interpreter&, const Value& value, CallArgs& args) {
  PAGODA_ASSIGN_OR_RETURN(Value other, OneArg(args, "sameas"));
  if (value.kind() != other.kind()) return false;
  if (value.is_none() || value.is_undefined()) return true;
  if (value.kind() == Value::Kind::kBool) return value.bool_value() == other.bool_value();
  return false;
}

absl::StatusOr<bool> IsDivisibleBy(Interpreter&, const Value& value, CallArgs& args) {
  PAGODA_ASSIGN_OR_RETURN(Value other, OneArg(args, "divisibleby"));
  PAGODA_ASSIGN_OR_RETURN(Value rest, BinaryOperation(BinaryOp::kMod, value, other));
  return !rest.Truthy();
}

PAGODA_SIMPLE_TEST(IsFilter, value.is_string() && FindFilter(value.string_value()) != nullptr)
PAGODA_SIMPLE_TEST(IsTest, value.is_string() && FindTest(value.string_value()) != nullptr)

constexpr Test kTests[] = {
    {"!=", CompareTest<CompareOp::kNe>},
    {"<", CompareTest<CompareOp::kLt>},
    {"<=", CompareTest<CompareOp::kLe>},
    {"==", CompareTest<CompareOp::kEq>},
    {">", CompareTest<CompareOp::kGt>},
    {">=", CompareTest<CompareOp::kGe>},
    {"boolean", IsBoolean},
    {"callable", IsCallable},
    {"defined", IsDefined},
    {"divisibleby", IsDivisibleBy},
    {"eq", CompareTest<CompareOp::kEq>},
    {"equalto", CompareTest<CompareOp::kEq>},
    {"escaped", IsEscaped},
    {"even", IsEven},
    {"false", IsFalse},
    {"filter", IsFilter},
    {"float", IsFloat},
    {"ge", CompareTest<CompareOp::kGe>},
    {"greaterthan", CompareTest<CompareOp::kGt>},
    {"gt", CompareTest<CompareOp::kGt>},
    {"in", CompareTest<CompareOp::kIn>},
    {"integer", IsInteger},
    {"iterable", IsIterable},
    {"le", CompareTest<CompareOp::kLe>},
    {"lessthan", CompareTest<CompareOp::kLt>},
    {"lower", IsLower},
    {"lt", CompareTest<CompareOp::kLt>},
    {"mapping", IsMapping},
    {"ne", CompareTest<CompareOp::kNe>},
    {"none", IsNone},
    {"number", IsNumber},
    {"odd", IsOdd},
    {"sameas", IsSameAs},
    {"sequence", IsSequence},
    {"string", IsString},
    {"test", IsTest},
    {"true", IsTrue},
    {"undefined", IsUndefined},
    {"upper", IsUpper},
};

}  // namespace

const Test* FindTest(absl::string_view name) {
  for (const Test& test : kTests) {
    if (test.name == name) return &test;
  }
  return nullptr;
}

}  // namespace pagoda::chat_template
