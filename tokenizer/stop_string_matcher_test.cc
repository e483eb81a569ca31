#include "tokenizer/stop_string_matcher.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace pagoda::tokenizer {
namespace {

// Feeds `deltas` and returns the concatenated output and the stop index.
std::pair<std::string, std::optional<size_t>> FeedAll(StopStringMatcher& matcher,
                                                      const std::vector<std::string>& deltas) {
  std::string out;
  std::optional<size_t> stop;
  for (const std::string& delta : deltas) {
    StopStringMatcher::Result r = matcher.Append(delta);
    out += r.text;
    if (r.stop_index.has_value()) stop = r.stop_index;
  }
  if (!matcher.stopped()) out += matcher.Flush();
  return {out, stop};
}

TEST(StopStringMatcherTest, DetectsStopAcrossDeltas) {
  StopStringMatcher matcher({.stop_strings = {"END"}});
  EXPECT_EQ(matcher.Append("abc E").text, "abc ");  // "E" could start "END": held back
  EXPECT_EQ(matcher.Append("N").text, "");
  const auto r = matcher.Append("D and more");
  EXPECT_EQ(r.text, "");
  EXPECT_EQ(r.stop_index, 0u);
  EXPECT_TRUE(matcher.stopped());
  EXPECT_EQ(matcher.Append("late").text, "");
}

TEST(StopStringMatcherTest, ReleasesHeldTextThatIsNotAStop) {
  StopStringMatcher matcher({.stop_strings = {"END"}});
  EXPECT_EQ(matcher.Append("E").text, "");
  EXPECT_EQ(matcher.Append("N").text, "");
  EXPECT_EQ(matcher.Append("x").text, "ENx");
  EXPECT_EQ(matcher.Append("EN").text, "");
  EXPECT_EQ(matcher.Flush(), "EN");
}

TEST(StopStringMatcherTest, IncludeStopStringInOutput) {
  StopStringMatcher matcher({.stop_strings = {"\n\n"}, .include_stop_str_in_output = true});
  const auto [out, stop] = FeedAll(matcher, {"line", "\n", "\n", "next"});
  EXPECT_EQ(out, "line\n\n");
  EXPECT_EQ(stop, 0u);
}

TEST(StopStringMatcherTest, EarliestStopWinsThenListOrder) {
  StopStringMatcher a({.stop_strings = {"cd", "b"}});
  EXPECT_EQ(FeedAll(a, {"abcd"}), std::make_pair(std::string("a"), std::optional<size_t>(1)));
  StopStringMatcher b({.stop_strings = {"bc", "bcd"}});
  EXPECT_EQ(FeedAll(b, {"abcd"}), std::make_pair(std::string("a"), std::optional<size_t>(0)));
}

TEST(StopStringMatcherTest, MultiByteStopStringsKeepUtf8Whole) {
  StopStringMatcher matcher({.stop_strings = {"\xE4\xB8\xAD\xE6\x96\x87"}});  // "中文"
  EXPECT_EQ(matcher.Append("a\xE4\xB8\xAD").text, "a");
  EXPECT_EQ(matcher.Append("\xE5\x9B\xBD").text, "\xE4\xB8\xAD\xE5\x9B\xBD");
}

TEST(StopStringMatcherTest, EveryDeltaSplitGivesTheSameResult) {
  const std::string text = "the answer is 42. STOP here STOP";
  for (size_t cut1 = 0; cut1 <= text.size(); ++cut1) {
    for (size_t cut2 = cut1; cut2 <= text.size(); cut2 += 3) {
      StopStringMatcher matcher({.stop_strings = {"STOP", "42!"}});
      const auto [out, stop] = FeedAll(
          matcher, {text.substr(0, cut1), text.substr(cut1, cut2 - cut1), text.substr(cut2)});
      ASSERT_EQ(out, "the answer is 42. ");
      ASSERT_EQ(stop, 0u);
    }
  }
}

TEST(StopStringMatcherTest, NoStopStringsPassesEverythingThrough) {
  StopStringMatcher matcher({.stop_strings = {""}});
  EXPECT_EQ(matcher.Append("abc").text, "abc");
  EXPECT_EQ(matcher.Flush(), "");
}

}  // namespace
}  // namespace pagoda::tokenizer
