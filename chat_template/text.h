#pragma once

// Python's str operations that chat templates use, on UTF-8 and with Python's Unicode rules:
// full case mapping (ICU's root locale, as Python's str.upper/lower), str.isspace whitespace,
// and code-point sets for strip(chars).
//
// Thread-safe: pure functions.

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace pagoda::chat_template {

std::string PyUpper(absl::string_view text);
std::string PyLower(absl::string_view text);
// str.capitalize(): the first character title-cased, the rest lower-cased.
std::string PyCapitalize(absl::string_view text);
// str.title(): each run of cased characters starts title-cased, the rest lower-cased.
std::string PyTitle(absl::string_view text);

enum class StripSide { kBoth, kLeft, kRight };
// str.strip()/lstrip()/rstrip(): Python whitespace, or the code points of `chars`.
std::string PyStrip(absl::string_view text, const std::optional<std::string>& chars,
                    StripSide side);

// str.split(sep=None, maxsplit=-1): on runs of whitespace when `separator` is unset (empty
// pieces dropped), else on each occurrence of the (non-empty) separator.
std::vector<std::string> PySplit(absl::string_view text,
                                 const std::optional<std::string>& separator, int64_t max_split);
// str.rsplit with the same arguments.
std::vector<std::string> PyRSplit(absl::string_view text,
                                  const std::optional<std::string>& separator, int64_t max_split);
// str.replace(old, new, count=-1).
std::string PyReplace(absl::string_view text, absl::string_view old_text,
                      absl::string_view new_text, int64_t count);

// The byte size of PyReplace's result, without building it.
size_t ReplacedSize(absl::string_view text, absl::string_view old_text, absl::string_view new_text,
                    int64_t count);

// str.splitlines(): lines split at \n, \r, \r\n, \v, \f, \x1c-\x1e, \x85, U+2028, U+2029.
std::vector<std::string> PySplitLines(absl::string_view text);

}  // namespace pagoda::chat_template
