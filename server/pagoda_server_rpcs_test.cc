// End-to-end tests in process (server/testing/server_fixture.h) of the RPCs other than Generate
// and of the /metrics page: the info and tokenizer RPCs, invalid UTF-8 and malformed request
// bytes on every RPC (Generate included), and a scrape that counts what clients received.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/unknown_field_set.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "pagoda/v1/text_generation_service.grpc.pb.h"
#include "server/pagoda_server.h"
#include "server/testing/exported_metrics.h"
#include "server/testing/server_fixture.h"

namespace pagoda::server {
namespace {

using ::pagoda::server::testing::GenerateResult;
using ::pagoda::server::testing::kBlockSize;
using ::pagoda::server::testing::kMaxModelLen;
using ::pagoda::server::testing::kModelName;
using ::pagoda::server::testing::kNumKvBlocks;
using ::pagoda::server::testing::LongRequest;
using ::pagoda::server::testing::MetricValue;
using ::pagoda::server::testing::PagodaServerTest;
using ::pagoda::server::testing::RawCallResult;
using ::pagoda::server::testing::WaitFor;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;
using ::testing::Not;
using ::testing::StartsWith;

// The wire form of a message that holds only field `number`, length-delimited, with `value`.
std::string LengthDelimitedField(int number, const std::string& value) {
  google::protobuf::UnknownFieldSet fields;
  fields.AddLengthDelimited(number, value);
  std::string bytes;
  EXPECT_TRUE(fields.SerializeToString(&bytes));
  return bytes;
}

// A request that sets one string field and nothing else: its wire bytes and the field's path
// in proto text syntax, as INVALID_ARGUMENT messages name it.
struct StringFieldRequest {
  std::string path;
  std::string bytes;
};

// One request per string field of `message`, also inside nested messages (at most `depth`
// levels) and map entries (a map field is named without its key), each field holding `value`.
// A repeated field holds it as its only entry, [0].
std::vector<StringFieldRequest> StringFieldRequests(const google::protobuf::Descriptor& message,
                                                    const std::string& value, int depth = 4) {
  using google::protobuf::FieldDescriptor;
  std::vector<StringFieldRequest> requests;
  if (depth == 0) return requests;
  for (int i = 0; i < message.field_count(); ++i) {
    const FieldDescriptor& field = *message.field(i);
    std::string path = field.name();
    if (field.is_repeated() && !field.is_map()) absl::StrAppend(&path, "[0]");
    if (field.type() == FieldDescriptor::TYPE_STRING) {
      requests.push_back({path, LengthDelimitedField(field.number(), value)});
    } else if (field.type() == FieldDescriptor::TYPE_MESSAGE) {
      for (const StringFieldRequest& inner :
           StringFieldRequests(*field.message_type(), value, depth - 1)) {
        requests.push_back({field.is_map() ? path : absl::StrCat(path, ".", inner.path),
                            LengthDelimitedField(field.number(), inner.bytes)});
      }
    }
  }
  return requests;
}

TEST_F(PagodaServerTest, InfoAndTokenizerRpcs) {
  StartServer();
  {
    grpc::ClientContext context;
    v1::ModelInfo info;
    ASSERT_TRUE(stub_->GetModelInfo(&context, v1::GetModelInfoRequest(), &info).ok());
    EXPECT_EQ(info.model_name(), kModelName);
    EXPECT_EQ(info.vocab_size(), 258u);
    EXPECT_EQ(info.max_model_len(), static_cast<uint32_t>(kMaxModelLen));
    EXPECT_EQ(info.block_size(), static_cast<uint32_t>(kBlockSize));
    EXPECT_EQ(info.num_kv_blocks(), static_cast<uint32_t>(kNumKvBlocks));
    EXPECT_TRUE(info.supports_text_input());
  }
  {
    grpc::ClientContext context;
    v1::GetModelInfoRequest request;
    request.set_model("other");
    v1::ModelInfo info;
    EXPECT_EQ(stub_->GetModelInfo(&context, request, &info).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  v1::TokenizeResponse tokens;
  {
    grpc::ClientContext context;
    v1::TokenizeRequest request;
    request.set_text("hi");
    ASSERT_TRUE(stub_->Tokenize(&context, request, &tokens).ok());
    EXPECT_THAT(tokens.token_ids(), ElementsAre(256u, uint32_t{'h'}, uint32_t{'i'}));
  }
  {
    grpc::ClientContext context;
    v1::TokenizeRequest request;
    request.set_text("\xff");
    v1::TokenizeResponse response;
    const grpc::Status status = stub_->Tokenize(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(status.error_message(), "text: must be valid UTF-8");
  }
  {
    grpc::ClientContext context;
    v1::DetokenizeRequest request;
    *request.mutable_token_ids() = tokens.token_ids();
    v1::DetokenizeResponse text;
    ASSERT_TRUE(stub_->Detokenize(&context, request, &text).ok());
    EXPECT_EQ(text.text(), "hi");
  }
  const v1::ServerInfo info = ServerInfo();
  EXPECT_FALSE(info.version().empty());
  EXPECT_GT(info.uptime_seconds(), 0);
  EXPECT_GT(info.start_time_unix_seconds(), 1.7e9);
  EXPECT_FALSE(info.draining());
}

// Every RPC parses its own request bytes. Invalid UTF-8 in any string field of any request
// (checked before anything else the RPC does) is INVALID_ARGUMENT naming the field, while
// valid UTF-8 in the same field gets past parsing; bytes that are no message at all are
// INVALID_ARGUMENT as well, never gRPC's bare UNIMPLEMENTED or INTERNAL.
TEST_F(PagodaServerTest, EveryRpcNamesAStringFieldWithInvalidUtf8) {
  StartServer();
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          "pagoda.v1.TextGeneration");
  ASSERT_NE(service, nullptr);
  std::vector<std::string> methods_with_string_fields;
  for (int i = 0; i < service->method_count(); ++i) {
    const google::protobuf::MethodDescriptor& method = *service->method(i);
    const std::string path = absl::StrCat("/", service->full_name(), "/", method.name());
    const google::protobuf::Descriptor& request = *method.input_type();
    SCOPED_TRACE(path);

    const std::vector<StringFieldRequest> invalid = StringFieldRequests(request, "ok \xc3(");
    if (!invalid.empty()) methods_with_string_fields.push_back(method.name());
    for (const StringFieldRequest& field : invalid) {
      SCOPED_TRACE(field.path);
      const RawCallResult result = RawCall(path, field.bytes);
      EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
      EXPECT_EQ(result.status.error_message(), absl::StrCat(field.path, ": must be valid UTF-8"));
      EXPECT_EQ(result.Trailer("pagoda-error-reason"), "INVALID_FIELD");
    }
    for (const StringFieldRequest& field : StringFieldRequests(request, "ok \xc3\xa9")) {
      SCOPED_TRACE(field.path);
      const RawCallResult result = RawCall(path, field.bytes);
      EXPECT_THAT(result.status.error_message(), Not(HasSubstr("UTF-8")));
      EXPECT_THAT(result.status.error_message(), Not(StartsWith("request: ")));
    }

    // Field 1, length-delimited, says 5 bytes follow; 2 do.
    const RawCallResult malformed = RawCall(path, "\x0a\x05ok");
    EXPECT_EQ(malformed.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(malformed.status.error_message(),
              absl::StrCat("request: not a valid ", request.full_name()));
    EXPECT_EQ(malformed.Trailer("pagoda-error-reason"), "INVALID_FIELD");
  }
  EXPECT_THAT(methods_with_string_fields,
              IsSupersetOf({"Generate", "Abort", "GetModelInfo", "Tokenize", "Detokenize"}));
  EXPECT_EQ(server_->num_unfinished_requests(), 0);
}

TEST_F(PagodaServerTest, MetricsScrapeCountsWhatClientsReceived) {
  StartServer();
  const GenerateResult first = Generate(LongRequest(5));
  const GenerateResult second = Generate(LongRequest(7));
  ASSERT_TRUE(first.status.ok() && second.status.ok());
  uint32_t prompt = 0;
  uint32_t generated = 0;
  for (const GenerateResult* r : {&first, &second}) {
    prompt += r->responses.back().complete().usage().prompt_tokens();
    generated += r->responses.back().complete().usage().completion_tokens();
  }
  // The engine reports a step's metrics after its outputs went to the clients, so a client can
  // hold its last token before the counters include it (TOOLCHAIN.md pitfall 8): wait for the
  // step's report, then check every figure exactly.
  std::string page;
  ASSERT_TRUE(WaitFor([&] {
    page = Scrape();
    return MetricValue(page, R"(pagoda_generation_tokens_total{model_name="fake-model"})") >=
           generated;
  }));
  for (const char* name : testing::kExportedMetricFamilies) {
    EXPECT_THAT(page, HasSubstr(absl::StrCat("# TYPE ", name, " "))) << name;
  }
  EXPECT_EQ(MetricValue(page, R"(pagoda_prompt_tokens_total{model_name="fake-model"})"), prompt);
  EXPECT_EQ(MetricValue(page, R"(pagoda_generation_tokens_total{model_name="fake-model"})"),
            generated);
  EXPECT_EQ(
      MetricValue(
          page,
          R"(pagoda_request_success_total{model_name="fake-model",finished_reason="length"})"),
      2);
  EXPECT_EQ(MetricValue(page, R"(pagoda_kv_cache_capacity_blocks{model_name="fake-model"})"),
            kNumKvBlocks);
  EXPECT_EQ(
      MetricValue(page, R"(pagoda_time_to_first_token_seconds_count{model_name="fake-model"})"), 2);
}

}  // namespace
}  // namespace pagoda::server
