#pragma once

// Jinja2's built-in filters, tests, global functions and the Python methods of str, dict and
// list that chat templates call, with transformers' additions (tojson with ensure_ascii off,
// raise_exception, strftime_now). docs/chat_templates.md lists them.
//
// Thread-safe: the registries are constant; each call works on its arguments.

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "chat_template/value.h"

namespace pagoda::chat_template {

class Interpreter;

struct Filter {
  absl::string_view name;
  absl::StatusOr<Value> (*apply)(Interpreter& interpreter, const Value& operand, CallArgs& args);
};

struct Test {
  absl::string_view name;
  absl::StatusOr<bool> (*check)(Interpreter& interpreter, const Value& operand, CallArgs& args);
};

// Null when there is no such filter or test.
const Filter* FindFilter(absl::string_view name);
const Test* FindTest(absl::string_view name);

// The global functions (range, dict, namespace, raise_exception, strftime_now); Undefined
// when `name` is none of them.
Value GlobalFunction(absl::string_view name);

// Whether `object.name` is a method (so attribute access yields it, before any dict key).
bool HasMethod(const Value& object, absl::string_view name);
// object.name(args): a method of str, dict or list.
absl::StatusOr<Value> CallMethod(Interpreter& interpreter, const Value& object,
                                 absl::string_view name, CallArgs args);
// object.name without a call: a bound method value.
Value BoundMethod(const Value& object, absl::string_view name);

// Python's `value % args` for a str (printf-style: %s %r %d %i %f %x %%), as Jinja2's
// `format` filter and the % operator use it.
absl::StatusOr<Value> PercentFormat(const Value& format, const Value& args);

// Python's iter(): the items of a list, the keys of a dict, the characters of a str; Undefined
// iterates as empty. Other kinds are an error.
absl::StatusOr<std::vector<Value>> Iterate(const Value& value);

}  // namespace pagoda::chat_template
