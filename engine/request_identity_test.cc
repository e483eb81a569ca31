#include "engine/request_identity.h"

#include <string>

#include "absl/container/flat_hash_set.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pagoda::engine {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

TEST(RequestIdTest, ValidationAndPrecedence) {
  EXPECT_TRUE(ValidateRequestId("abc-123_XYZ", "request_id").ok());
  EXPECT_TRUE(ValidateRequestId(std::string(256, 'a'), "request_id").ok());
  EXPECT_THAT(std::string(ValidateRequestId(std::string(257, 'a'), "request_id").message()),
              StartsWith("request_id: at most 256 bytes"));
  EXPECT_THAT(std::string(ValidateRequestId("has space", "request_id").message()),
              HasSubstr("0x20 at 3"));
  EXPECT_THAT(std::string(ValidateRequestId("tab\t", "x-request-id").message()),
              StartsWith("x-request-id: "));

  EXPECT_EQ(*ResolveRequestId("mine", "header"), "mine");
  EXPECT_EQ(*ResolveRequestId("", "header"), "header");
  EXPECT_THAT(std::string(ResolveRequestId("", "bad header").status().message()),
              StartsWith("x-request-id: "));
  EXPECT_THAT(*ResolveRequestId("", std::nullopt),
              MatchesRegex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"));
  EXPECT_THAT(*ResolveRequestId("", ""), MatchesRegex(".{36}"));
}

TEST(RequestIdTest, GeneratedIdsAreDistinct) {
  absl::flat_hash_set<std::string> ids;
  for (int i = 0; i < 1000; ++i) ids.insert(NewRequestId());
  EXPECT_EQ(ids.size(), 1000u);
}

TEST(ModelNameTest, EmptyOrTheServedName) {
  EXPECT_TRUE(CheckModelName("", "m").ok());
  EXPECT_TRUE(CheckModelName("m", "m").ok());
  EXPECT_EQ(CheckModelName("other", "m").code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace pagoda::engine
