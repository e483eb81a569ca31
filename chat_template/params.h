#pragma once

// Python-style binding of a built-in's arguments to its named parameters, for the filters,
// tests, globals and methods (internal to chat_template/).
//
// Not thread-safe; one per call.

#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "chat_template/value.h"

namespace pagoda::chat_template {

class Params {
 public:
  // Binds `args` to `names` in order; keywords by name. Too many or unknown ones are an error
  // (see status()).
  Params(absl::string_view function, const CallArgs& args,
         std::initializer_list<absl::string_view> names)
      : names_(names) {
    values_.resize(names_.size());
    if (args.positional.size() > names_.size()) {
      status_ =
          absl::InvalidArgumentError(absl::StrCat(function, "() takes at most ", names_.size(),
                                                  " argument(s), got ", args.positional.size()));
      return;
    }
    for (size_t i = 0; i < args.positional.size(); ++i) values_[i] = args.positional[i];
    for (const auto& [name, value] : args.keyword) {
      size_t i = 0;
      while (i < names_.size() && names_[i] != name) ++i;
      if (i == names_.size()) {
        status_ = absl::InvalidArgumentError(
            absl::StrCat(function, "() got an unexpected keyword argument '", name, "'"));
        return;
      }
      values_[i] = value;
    }
  }

  const absl::Status& status() const { return status_; }
  // The argument, or `fallback` when it was not given.
  Value Get(size_t i, Value fallback = Value::None()) const {
    return values_[i].has_value() ? *values_[i] : fallback;
  }
  bool Given(size_t i) const { return values_[i].has_value(); }
  // A str argument (None when not given).
  absl::StatusOr<std::optional<std::string>> OptionalString(size_t i) const {
    if (!values_[i].has_value() || values_[i]->is_none()) return std::optional<std::string>();
    if (!values_[i]->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "TypeError: argument '", names_[i], "' must be str, not ", values_[i]->TypeName()));
    }
    return std::optional<std::string>(values_[i]->string_value());
  }
  absl::StatusOr<int64_t> Int(size_t i, int64_t fallback) const {
    if (!values_[i].has_value() || values_[i]->is_none()) return fallback;
    if (!values_[i]->is_integral()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "TypeError: argument '", names_[i], "' must be int, not ", values_[i]->TypeName()));
    }
    return values_[i]->int_value();
  }

 private:
  std::vector<absl::string_view> names_;
  std::vector<std::optional<Value>> values_;
  absl::Status status_;
};

}  // namespace pagoda::chat_template
