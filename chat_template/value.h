#pragma once

// The values a chat template computes with, with Python's semantics where Jinja2 borrows them:
// str() and repr() of every kind, truthiness, equality and ordering, and Jinja2's Undefined.
//
// Lists and dicts are immutable once built (templates run in an immutable sandbox), so copies
// of a Value share them. A namespace() is the one mutable container; copies share it too.
// Strings are UTF-8; where Python counts characters (len, indexing, slicing) we count code
// points.
//
// Thread rule: a Value may be read from many threads when no namespace inside it is written.
// Rendering builds its own values; the parsed template's literals are read-only.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pagoda::chat_template {

class Value;
class Interpreter;
struct CallArgs;

class Dict;
class Callable;

class Value {
 public:
  enum class Kind {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kNamespace,
    kCallable
  };

  // Undefined, optionally naming what was looked up (for error messages).
  Value() = default;
  static Value Undefined(std::string hint);
  static Value None();
  static Value Bool(bool value);
  static Value Int(int64_t value);
  static Value Float(double value);
  // An integer beyond 64 bits (from JSON): it prints and dumps as its digits; arithmetic on
  // it is refused.
  static Value BigInt(std::string digits);
  bool is_big_int() const { return kind_ == Kind::kInt && ptr_ != nullptr; }
  static Value String(std::string value);
  static Value List(std::vector<Value> items);
  // A tuple is a list that prints with parentheses.
  static Value Tuple(std::vector<Value> items);
  static Value MakeDict(Dict dict);
  static Value Namespace(Dict initial);
  static Value Function(std::shared_ptr<const Callable> callable);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_tuple() const { return kind_ == Kind::kList && tuple_; }
  // int, float or bool (Python's bool is an int).
  bool is_number() const {
    return kind_ == Kind::kInt || kind_ == Kind::kFloat || kind_ == Kind::kBool;
  }
  bool is_integral() const { return kind_ == Kind::kInt || kind_ == Kind::kBool; }

  bool bool_value() const { return int_ != 0; }
  // The integer value of an int or bool.
  int64_t int_value() const { return int_; }
  // Any number as a double.
  double number() const { return kind_ == Kind::kFloat ? float_ : static_cast<double>(int_); }
  const std::string& string_value() const { return As<std::string>(); }
  const std::vector<Value>& list() const { return As<std::vector<Value>>(); }
  const Dict& dict() const { return As<Dict>(); }
  // The mutable dict of a namespace().
  // (Made mutable by Namespace(), so the cast is sound.)
  Dict& namespace_dict() const { return const_cast<Dict&>(As<Dict>()); }
  const Callable& callable() const { return As<Callable>(); }
  // What was looked up, for the error of using an Undefined (may be empty).
  const std::string& undefined_hint() const;

  // What the value would print as, at most (saturating): the bytes of its strings and a few
  // per item. The renderer bounds it, so that no value can print as more than a few times
  // RenderLimits::max_output_bytes.
  uint64_t weight() const { return weight_; }
  // Nesting of lists and dicts (0 for a scalar). Bounded by the renderer, so that printing,
  // comparing and freeing values cannot exhaust the stack.
  int depth() const { return depth_; }
  // Whether a namespace() is inside (a namespace may not be stored in one: no cycles).
  bool has_namespace() const { return has_namespace_; }

  // Python's bool(value); Undefined is false.
  bool Truthy() const;
  // Python's str(value) as Jinja2 prints it (Undefined prints as "").
  std::string Str() const;
  // Python's repr(value).
  std::string Repr() const;
  // The Python type name for error messages ("str", "int", "list", "dict", "NoneType", ...).
  absl::string_view TypeName() const;

 private:
  Kind kind_ = Kind::kUndefined;
  bool tuple_ = false;
  bool has_namespace_ = false;
  int depth_ = 0;
  uint64_t weight_ = 8;
  int64_t int_ = 0;
  double float_ = 0;
  template <typename T>
  const T& As() const {
    return *static_cast<const T*>(ptr_.get());
  }

  // One pointer for the kinds that hold one (a copy costs one count): the string (kString, an
  // Undefined's hint, a BigInt's digits), the list, the dict (also a namespace's), the callable.
  std::shared_ptr<const void> ptr_;
};

// An ordered dict with string keys (JSON objects and template dict literals). Keeps insertion
// order, as Python's dicts do.
class Dict {
 public:
  Dict() = default;
  // A dict of `entries` whose keys the caller knows to be distinct (no duplicate check).
  static Dict FromDistinct(std::vector<std::pair<std::string, Value>> entries);
  const Value* Find(absl::string_view key) const;
  // Sets `key`, keeping its first position when it is already there.
  void Set(std::string key, Value value);
  size_t size() const { return entries_.size(); }
  const std::vector<std::pair<std::string, Value>>& entries() const { return entries_; }

 private:
  std::vector<std::pair<std::string, Value>> entries_;
  // Key -> position, once the dict is large enough for a scan to cost more.
  absl::flat_hash_map<std::string, size_t> index_;
};

// Positional and keyword arguments of a call.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// Something a template can call: a global function, a macro, a bound method, loop.cycle.
class Callable {
 public:
  virtual ~Callable() = default;
  virtual absl::StatusOr<Value> Call(Interpreter& interpreter, CallArgs args) const = 0;
  virtual std::string name() const = 0;
};

// Python's ==, including 1 == 1.0 == True and deep equality of lists and dicts. Two
// Undefined values are equal, as in Jinja2.
bool Equal(const Value& a, const Value& b);
// Python's <: numbers, strings (by code point), lists and tuples (lexicographic). Other pairs
// are a TypeError, returned as InvalidArgument.
absl::StatusOr<bool> Less(const Value& a, const Value& b);

// Python's float repr: the shortest string that reads back the same ("0.1", "1e+20", "3.0").
std::string PythonFloatRepr(double value);
// Python's repr of a str: quoted with ' (or " when the text holds ' but no "), escaping what
// Python does not print.
std::string PythonStringRepr(absl::string_view text);

// UTF-8 helpers with Python's view of a string as code points. Invalid bytes count as one
// code point each (U+FFFD), so nothing is lost or fails.
std::vector<char32_t> DecodeUtf8(absl::string_view text);
std::string EncodeUtf8(const std::vector<char32_t>& code_points);
void AppendUtf8(char32_t code_point, std::string& out);
size_t CodePointCount(absl::string_view text);
// Python's str.isspace() for one code point.
bool IsPythonSpace(char32_t c);

}  // namespace pagoda::chat_template
