#pragma once

// Jinja2's operators on values, with Python's semantics: attribute and item access (Undefined
// when missing, an error when the object itself is Undefined), slicing with negative steps,
// arithmetic with Python's int/float rules, and comparisons.
//
// Thread-safe: pure functions.

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "chat_template/ast.h"
#include "chat_template/value.h"

namespace pagoda::chat_template {

// The error of using an Undefined value ("'x' is undefined").
absl::Status UndefinedError(const Value& undefined);

// obj.name: a method of str/dict/list first, then a dict key or namespace attribute.
absl::StatusOr<Value> GetAttr(const Value& object, absl::string_view name);
// obj[key]: a dict key, a list or str index (negative counts from the end).
absl::StatusOr<Value> GetItem(const Value& object, const Value& key);
// obj[start:stop:step] on a list, tuple or str; each bound may be None or Undefined.
absl::StatusOr<Value> GetSlice(const Value& object, const Value& start, const Value& stop,
                               const Value& step);

absl::StatusOr<Value> BinaryOperation(BinaryOp op, const Value& left, const Value& right);
absl::StatusOr<bool> Compare(CompareOp op, const Value& left, const Value& right);
// Python's `needle in haystack`.
absl::StatusOr<bool> Contains(const Value& haystack, const Value& needle);
absl::StatusOr<Value> Negate(const Value& operand);

}  // namespace pagoda::chat_template
