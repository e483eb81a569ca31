#include "chat_template/text.h"

#include <algorithm>

#include "chat_template/value.h"
#include "unicode/locid.h"
#include "unicode/uchar.h"
#include "unicode/unistr.h"

namespace pagoda::chat_template {
namespace {

icu::UnicodeString ToIcu(absl::string_view text) {
  return icu::UnicodeString::fromUTF8(
      icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
}

std::string FromIcu(const icu::UnicodeString& text) {
  std::string out;
  text.toUTF8String(out);
  return out;
}

bool IsCased(char32_t c) { return u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_CASED) != 0; }

std::string TitleOne(char32_t c) {
  icu::UnicodeString one(static_cast<UChar32>(c));
  // Full title-case mapping of one character: upper-case it unless it has its own title form.
  const UChar32 title = u_totitle(static_cast<UChar32>(c));
  if (title != u_toupper(static_cast<UChar32>(c))) {
    std::string out;
    AppendUtf8(static_cast<char32_t>(title), out);
    return out;
  }
  return FromIcu(one.toUpper(icu::Locale::getRoot()));
}

std::string LowerOne(char32_t c) {
  icu::UnicodeString one(static_cast<UChar32>(c));
  return FromIcu(one.toLower(icu::Locale::getRoot()));
}

bool InSet(char32_t c, const std::optional<std::vector<char32_t>>& set) {
  if (!set.has_value()) return IsPythonSpace(c);
  return std::find(set->begin(), set->end(), c) != set->end();
}

}  // namespace

std::string PyUpper(absl::string_view text) {
  return FromIcu(ToIcu(text).toUpper(icu::Locale::getRoot()));
}

std::string PyLower(absl::string_view text) {
  return FromIcu(ToIcu(text).toLower(icu::Locale::getRoot()));
}

std::string PyCapitalize(absl::string_view text) {
  const std::vector<char32_t> points = DecodeUtf8(text);
  std::string out;
  for (size_t i = 0; i < points.size(); ++i) {
    out += i == 0 ? TitleOne(points[i]) : LowerOne(points[i]);
  }
  return out;
}

std::string PyTitle(absl::string_view text) {
  std::string out;
  bool previous_cased = false;
  for (char32_t c : DecodeUtf8(text)) {
    out += previous_cased ? LowerOne(c) : TitleOne(c);
    previous_cased = IsCased(c);
  }
  return out;
}

std::string PyStrip(absl::string_view text, const std::optional<std::string>& chars,
                    StripSide side) {
  std::optional<std::vector<char32_t>> set;
  if (chars.has_value()) set = DecodeUtf8(*chars);
  const std::vector<char32_t> points = DecodeUtf8(text);
  size_t begin = 0;
  size_t end = points.size();
  if (side != StripSide::kRight) {
    while (begin < end && InSet(points[begin], set)) ++begin;
  }
  if (side != StripSide::kLeft) {
    while (end > begin && InSet(points[end - 1], set)) --end;
  }
  return EncodeUtf8(std::vector<char32_t>(points.begin() + static_cast<ptrdiff_t>(begin),
                                          points.begin() + static_cast<ptrdiff_t>(end)));
}

std::vector<std::string> PySplit(absl::string_view text,
                                 const std::optional<std::string>& separator, int64_t max_split) {
  std::vector<std::string> out;
  if (separator.has_value()) {
    size_t start = 0;
    while (max_split < 0 || static_cast<int64_t>(out.size()) < max_split) {
      const size_t at = text.find(*separator, start);
      if (at == absl::string_view::npos) break;
      out.emplace_back(text.substr(start, at - start));
      start = at + separator->size();
    }
    out.emplace_back(text.substr(start));
    return out;
  }
  const std::vector<char32_t> points = DecodeUtf8(text);
  size_t i = 0;
  while (true) {
    while (i < points.size() && IsPythonSpace(points[i])) ++i;
    if (i == points.size()) break;
    if (max_split >= 0 && static_cast<int64_t>(out.size()) == max_split) {
      size_t end = points.size();
      while (end > i && IsPythonSpace(points[end - 1])) --end;
      out.push_back(
          EncodeUtf8(std::vector<char32_t>(points.begin() + static_cast<ptrdiff_t>(i),
                                           points.begin() + static_cast<ptrdiff_t>(end))));
      break;
    }
    const size_t start = i;
    while (i < points.size() && !IsPythonSpace(points[i])) ++i;
    out.push_back(EncodeUtf8(std::vector<char32_t>(points.begin() + static_cast<ptrdiff_t>(start),
                                                   points.begin() + static_cast<ptrdiff_t>(i))));
  }
  return out;
}

std::vector<std::string> PyRSplit(absl::string_view text,
                                  const std::optional<std::string>& separator, int64_t max_split) {
  if (max_split < 0) return PySplit(text, separator, max_split);
  std::vector<std::string> out;
  if (separator.has_value()) {
    size_t end = text.size();
    while (static_cast<int64_t>(out.size()) < max_split) {
      if (end < separator->size()) break;
      const size_t at = text.rfind(*separator, end - separator->size());
      if (at == absl::string_view::npos) break;
      out.emplace_back(text.substr(at + separator->size(), end - at - separator->size()));
      end = at;
    }
    out.emplace_back(text.substr(0, end));
    std::reverse(out.begin(), out.end());
    return out;
  }
  const std::vector<char32_t> points = DecodeUtf8(text);
  size_t i = points.size();
  while (true) {
    while (i > 0 && IsPythonSpace(points[i - 1])) --i;
    if (i == 0) break;
    if (static_cast<int64_t>(out.size()) == max_split) {
      size_t begin = 0;
      while (begin < i && IsPythonSpace(points[begin])) ++begin;
      out.push_back(EncodeUtf8(std::vector<char32_t>(points.begin() + static_cast<ptrdiff_t>(begin),
                                                     points.begin() + static_cast<ptrdiff_t>(i))));
      break;
    }
    const size_t end = i;
    while (i > 0 && !IsPythonSpace(points[i - 1])) --i;
    out.push_back(EncodeUtf8(std::vector<char32_t>(points.begin() + static_cast<ptrdiff_t>(i),
                                                   points.begin() + static_cast<ptrdiff_t>(end))));
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::string PyReplace(absl::string_view text, absl::string_view old_text,
                      absl::string_view new_text, int64_t count) {
  std::string out;
  if (old_text.empty()) {
    // Python inserts `new` before every character and at the end.
    const std::vector<char32_t> points = DecodeUtf8(text);
    int64_t done = 0;
    for (char32_t c : points) {
      if (count < 0 || done < count) {
        out.append(new_text.data(), new_text.size());
        ++done;
      }
      AppendUtf8(c, out);
    }
    if (count < 0 || done < count) out.append(new_text.data(), new_text.size());
    return out;
  }
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t at = text.find(old_text, start);
    if (at == absl::string_view::npos) break;
    out.append(text.data() + start, at - start);
    out.append(new_text.data(), new_text.size());
    start = at + old_text.size();
    ++done;
  }
  out.append(text.data() + start, text.size() - start);
  return out;
}

size_t ReplacedSize(absl::string_view text, absl::string_view old_text, absl::string_view new_text,
                    int64_t count) {
  int64_t found = 0;
  if (old_text.empty()) {
    found = static_cast<int64_t>(CodePointCount(text)) + 1;
  } else {
    for (size_t at = text.find(old_text); at != absl::string_view::npos;
         at = text.find(old_text, at + old_text.size())) {
      ++found;
    }
  }
  if (count >= 0) found = std::min(found, count);
  const auto n = static_cast<size_t>(found);
  return text.size() - n * old_text.size() + n * new_text.size();
}

std::vector<std::string> PySplitLines(absl::string_view text) {
  std::vector<std::string> lines;
  std::vector<char32_t> line;
  const std::vector<char32_t> points = DecodeUtf8(text);
  for (size_t i = 0; i < points.size(); ++i) {
    const char32_t c = points[i];
    const bool boundary = c == '\n' || c == '\r' || c == '\v' || c == '\f' || c == 0x1C ||
                          c == 0x1D || c == 0x1E || c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!boundary) {
      line.push_back(c);
      continue;
    }
    if (c == '\r' && i + 1 < points.size() && points[i + 1] == '\n') ++i;
    lines.push_back(EncodeUtf8(line));
    line.clear();
  }
  if (!line.empty()) lines.push_back(EncodeUtf8(line));
  return lines;
}

}  // namespace pagoda::chat_template
