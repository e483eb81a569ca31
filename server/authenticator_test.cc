#include "server/authenticator.h"

#include <cstdio>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pagoda::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kTokens[] = R"(# tokens of the test
alpha-token-0123456789

  # indented comment
	beta-token-abcdef   
)";

std::unique_ptr<Authenticator> Make(const std::string& text) {
  absl::StatusOr<std::unique_ptr<Authenticator>> authenticator = Authenticator::FromText(text);
  EXPECT_TRUE(authenticator.ok()) << authenticator.status();
  return authenticator.ok() ? *std::move(authenticator) : nullptr;
}

TEST(AuthenticatorTest, AcceptsEveryTokenOfTheFile) {
  const std::unique_ptr<Authenticator> auth = Make(kTokens);
  ASSERT_NE(auth, nullptr);
  EXPECT_EQ(auth->num_tokens(), 2);
  EXPECT_TRUE(auth->Check("Bearer alpha-token-0123456789").ok());
  EXPECT_TRUE(auth->Check("Bearer beta-token-abcdef").ok());
  EXPECT_TRUE(auth->Check("bearer beta-token-abcdef").ok());  // the scheme in any case
  EXPECT_TRUE(auth->Check("BEARER  beta-token-abcdef").ok());
}

TEST(AuthenticatorTest, RefusesMissingMalformedAndWrongTokens) {
  const std::unique_ptr<Authenticator> auth = Make(kTokens);
  ASSERT_NE(auth, nullptr);
  for (const std::optional<absl::string_view> value : std::vector<std::optional<absl::string_view>>{
           std::nullopt, "", "Bearer", "Bearer ", "alpha-token-0123456789",
           "Basic alpha-token-0123456789", "Bearer alpha-token-012345678",
           "Bearer alpha-token-01234567890", "Bearer beta-token-abcdeF", "Bearer # tokens",
           "Bearer alpha-token-0123456789 beta-token-abcdef"}) {
    const absl::Status status = auth->Check(value);
    EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated) << value.value_or("(none)");
    // Never echoes what the client sent.
    EXPECT_THAT(std::string(status.message()), Not(HasSubstr("alpha"))) << status;
    EXPECT_THAT(std::string(status.message()), Not(HasSubstr("beta"))) << status;
  }
  EXPECT_THAT(std::string(auth->Check(std::nullopt).message()),
              HasSubstr("authorization: Bearer <token>"));
  EXPECT_EQ(std::string(auth->Check("Bearer wrong").message()), "invalid bearer token");
}

TEST(AuthenticatorTest, BadFilesNameTheFlag) {
  for (const char* text :
       {"", "\n\n", "# only a comment\n", "two words\n", "tab\there\n", "caf\xc3\xa9\n"}) {
    const absl::StatusOr<std::unique_ptr<Authenticator>> auth = Authenticator::FromText(text);
    ASSERT_FALSE(auth.ok()) << text;
    EXPECT_EQ(auth.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(auth.status().message()), StartsWith("--auth-token-file: "))
        << auth.status();
    EXPECT_THAT(std::string(auth.status().message()), Not(HasSubstr("words")));
  }
  const absl::StatusOr<std::unique_ptr<Authenticator>> missing =
      Authenticator::FromFile("/nonexistent/pagoda-tokens");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()),
              StartsWith("--auth-token-file: cannot read '/nonexistent/pagoda-tokens'"));
}

TEST(AuthenticatorTest, ReadsAFile) {
  const std::string path = ::testing::TempDir() + "/pagoda-auth-tokens";
  {
    std::ofstream file(path);
    file << kTokens;
  }
  absl::StatusOr<std::unique_ptr<Authenticator>> auth = Authenticator::FromFile(path);
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_TRUE((*auth)->Check("Bearer alpha-token-0123456789").ok());
  {
    std::ofstream file(path);
    file << "# no token\n";
  }
  auth = Authenticator::FromFile(path);
  ASSERT_FALSE(auth.ok());
  EXPECT_THAT(std::string(auth.status().message()), HasSubstr(path));
  std::remove(path.c_str());
}

TEST(ConstantTimeEqualsTest, Equality) {
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcabc"));  // b repeated must not match
  EXPECT_FALSE(ConstantTimeEquals("abcabc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", ""));
}

}  // namespace
}  // namespace pagoda::server
