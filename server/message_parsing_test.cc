#include "server/message_parsing.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pagoda/v1/generate.pb.h"
#include "pagoda/v1/tokenize.pb.h"
#include "server/error_reason.h"

namespace pagoda::server {
namespace {

// Serializes without protobuf's UTF-8 check getting in the way (it only logs when writing).
std::string Wire(const google::protobuf::Message& message) {
  std::string bytes;
  EXPECT_TRUE(message.SerializeToString(&bytes));
  return bytes;
}

TEST(MessageParsingTest, ParsesValidMessages) {
  v1::GenerateRequest request;
  request.set_text("héllo");
  request.mutable_stopping()->add_stop("\n");
  v1::GenerateRequest parsed;
  parsed.set_model("stale");
  ASSERT_TRUE(ParseMessage(Wire(request), parsed).ok());
  EXPECT_EQ(parsed.text(), "héllo");
  EXPECT_TRUE(parsed.model().empty());
}

TEST(MessageParsingTest, NamesTheFieldWithInvalidUtf8) {
  v1::GenerateRequest request;
  request.set_text("ok \xff");
  v1::GenerateRequest parsed;
  absl::Status status = ParseMessage(Wire(request), parsed);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "text: must be valid UTF-8");
  EXPECT_EQ(GetErrorReason(status), ErrorReason::kInvalidField);

  request.set_text("fine");
  request.mutable_stopping()->add_stop("a");
  request.mutable_stopping()->add_stop("b");
  request.mutable_stopping()->add_stop("\xc3(");
  status = ParseMessage(Wire(request), parsed);
  EXPECT_EQ(status.message(), "stopping.stop[2]: must be valid UTF-8");

  request.mutable_stopping()->clear_stop();
  (*request.mutable_extra())["key"] = "\xe2\x82";
  status = ParseMessage(Wire(request), parsed);
  EXPECT_EQ(status.message(), "extra: must be valid UTF-8");

  v1::TokenizeRequest tokenize;
  tokenize.set_text("\xed\xa0\x80");  // an encoded surrogate
  v1::TokenizeRequest parsed_tokenize;
  EXPECT_EQ(ParseMessage(Wire(tokenize), parsed_tokenize).message(), "text: must be valid UTF-8");
}

TEST(MessageParsingTest, MalformedBytes) {
  v1::GenerateRequest parsed;
  const absl::Status status = ParseMessage(
      "\x1a\x05"
      "ab",
      parsed);  // truncated field
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "request: not a valid pagoda.v1.GenerateRequest");
  EXPECT_EQ(FindInvalidUtf8Field("\x1a\x05"
                                 "ab",
                                 *parsed.GetDescriptor()),
            std::nullopt);
}

}  // namespace
}  // namespace pagoda::server
