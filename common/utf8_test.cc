#include "common/utf8.h"

#include <string>

#include "gtest/gtest.h"

namespace pagoda::common {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

TEST(Utf8Test, ValidTextIsUnchanged) {
  const std::string text = "abc \xC3\xA9 \xE4\xB8\xAD \xF0\x9F\x98\x80";
  EXPECT_TRUE(IsValidUtf8(text));
  EXPECT_EQ(SanitizeUtf8(text), text);
}

TEST(Utf8Test, ReplacesEachMaximalSubpartOnce) {
  // Truncated 3-byte sequence: one replacement for both bytes (WHATWG / from_utf8_lossy).
  EXPECT_EQ(SanitizeUtf8("a\xE2\x82z"), "a" + kFffd + "z");
  // Bytes that start nothing: one replacement each.
  EXPECT_EQ(SanitizeUtf8("\x80\x80"), kFffd + kFffd);
  EXPECT_EQ(SanitizeUtf8("\xFF"), kFffd);
  // Overlong and surrogate encodings are invalid from their second byte on.
  EXPECT_EQ(SanitizeUtf8("\xC0\xAF"), kFffd + kFffd);
  EXPECT_EQ(SanitizeUtf8("\xED\xA0\x80"), kFffd + kFffd + kFffd);
  EXPECT_EQ(SanitizeUtf8("\xF4\x90\x80\x80"), kFffd + kFffd + kFffd + kFffd);
  // A truncated sequence at the end.
  EXPECT_EQ(SanitizeUtf8("x\xF0\x9F\x98"), "x" + kFffd);
  EXPECT_FALSE(IsValidUtf8("x\xF0\x9F\x98"));
}

TEST(Utf8Test, AppendAndDecodeRoundTrip) {
  for (const char32_t cp : {U'a', U'\u00E9', U'\u4E2D', U'\U0001F600', U'\u0080', U'\uFFFD'}) {
    std::string s;
    AppendUtf8(cp, s);
    ASSERT_EQ(ValidSequenceLength(s, 0), s.size());
    EXPECT_EQ(DecodeValidSequence(s, 0, s.size()), cp);
  }
}

TEST(Utf8Test, EndsWithReplacementChar) {
  EXPECT_TRUE(EndsWithReplacementChar("ab" + kFffd));
  EXPECT_FALSE(EndsWithReplacementChar("ab"));
  EXPECT_FALSE(EndsWithReplacementChar(""));
}

}  // namespace
}  // namespace pagoda::common
