// Wire-format contract of the pagoda.v1 API: fully populated messages survive serialization,
// proto3 `optional` presence survives it too, the fully populated builders really set every
// field of every message in the package (so a new field cannot go untested), and the service
// has its six methods with their streaming shapes.

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "pagoda/v1/generate.pb.h"
#include "pagoda/v1/info.pb.h"
#include "pagoda/v1/text_generation_service.grpc.pb.h"
#include "pagoda/v1/text_generation_service.pb.h"
#include "pagoda/v1/tokenize.pb.h"
#include "proto/testing/field_coverage.h"
#include "proto/testing/full_messages.h"

namespace pagoda::proto {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::DescriptorPool;
using ::google::protobuf::FileDescriptor;
using ::google::protobuf::Message;
using ::google::protobuf::MethodDescriptor;
using ::google::protobuf::ServiceDescriptor;
using ::google::protobuf::util::MessageDifferencer;
using ::pagoda::proto::testing::AllFullMessages;
using ::pagoda::proto::testing::FieldCoverage;
using ::pagoda::proto::testing::PromptKind;
using ::pagoda::proto::testing::StopReasonKind;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Serializes `in`, parses the bytes into a fresh message and expects it to equal `in`.
template <typename M>
M RoundTrip(const M& in) {
  std::string bytes;
  EXPECT_TRUE(in.SerializeToString(&bytes));
  M out;
  EXPECT_TRUE(out.ParseFromString(bytes));
  EXPECT_TRUE(MessageDifferencer::Equals(in, out))
      << "before: " << in.ShortDebugString() << "\nafter: " << out.ShortDebugString();
  return out;
}

// The file that declares the service; it imports every other file of the package.
const FileDescriptor* FindServiceFile() {
  return DescriptorPool::generated_pool()->FindFileByName(
      "pagoda/v1/text_generation_service.proto");
}

TEST(ProtoRoundTripTest, EveryFullyPopulatedMessageSurvivesSerialization) {
  for (const std::unique_ptr<Message>& in : AllFullMessages()) {
    SCOPED_TRACE(in->GetDescriptor()->full_name());
    std::string bytes;
    ASSERT_TRUE(in->SerializeToString(&bytes));
    std::unique_ptr<Message> out(in->New());
    ASSERT_TRUE(out->ParseFromString(bytes));
    EXPECT_TRUE(MessageDifferencer::Equals(*in, *out));
  }
}

TEST(ProtoRoundTripTest, TextPromptRequestKeepsZeroValuedOptionals) {
  const v1::GenerateRequest out = RoundTrip(testing::FullGenerateRequest(PromptKind::kText));
  EXPECT_EQ(out.prompt_case(), v1::GenerateRequest::kText);
  EXPECT_EQ(out.text(), "Once upon a time");
  EXPECT_TRUE(out.sampling().has_temperature());
  EXPECT_EQ(out.sampling().temperature(), 0.0f);
  EXPECT_TRUE(out.sampling().has_seed());
  EXPECT_EQ(out.sampling().seed(), 0u);
  EXPECT_EQ(out.sampling().logit_bias().at(7), -100.0f);
  EXPECT_EQ(out.stopping().max_tokens(), 64u);
  EXPECT_THAT(out.stopping().stop(), ElementsAre("\n\n", "END"));
  EXPECT_EQ(out.logprobs().top_logprobs(), 5u);
  EXPECT_EQ(out.truncate_prompt_tokens(), 100u);
  EXPECT_EQ(out.cache_salt(), "tenant-a");
  EXPECT_EQ(out.extra().at("key"), "value");
}

TEST(ProtoRoundTripTest, TokenIdsPromptRequestKeepsItsIds) {
  const v1::GenerateRequest out = RoundTrip(testing::FullGenerateRequest(PromptKind::kTokenIds));
  EXPECT_EQ(out.prompt_case(), v1::GenerateRequest::kTokenIds);
  EXPECT_FALSE(out.has_text());
  EXPECT_THAT(out.token_ids().ids(), ElementsAre(1u, 9038u, 2501u));
}

TEST(ProtoRoundTripTest, UnsetOptionalsStayUnsetAndDifferFromZero) {
  v1::GenerateRequest unset;
  unset.set_text("Hi");
  unset.mutable_sampling();
  unset.mutable_stopping();
  const v1::GenerateRequest out = RoundTrip(unset);
  EXPECT_TRUE(out.has_sampling());
  EXPECT_FALSE(out.sampling().has_temperature());
  EXPECT_FALSE(out.sampling().has_seed());
  EXPECT_FALSE(out.stopping().has_max_tokens());
  EXPECT_FALSE(out.has_truncate_prompt_tokens());
  EXPECT_FALSE(out.has_logprobs());

  v1::GenerateRequest zero = unset;
  zero.mutable_sampling()->set_temperature(0.0f);
  EXPECT_FALSE(MessageDifferencer::Equals(unset, zero));
  EXPECT_TRUE(RoundTrip(zero).sampling().has_temperature());
}

TEST(ProtoRoundTripTest, ChunkKeepsDeltaLogprobsAndUsage) {
  const v1::GenerateResponse out = RoundTrip(testing::FullChunkResponse());
  ASSERT_EQ(out.kind_case(), v1::GenerateResponse::kChunk);
  EXPECT_EQ(out.request_id(), "req-42");
  EXPECT_THAT(out.chunk().token_ids(), ElementsAre(11u));
  EXPECT_EQ(out.chunk().text(), " there");
  ASSERT_EQ(out.chunk().logprobs_size(), 1);
  EXPECT_EQ(out.chunk().logprobs(0).top(0).token_id(), 12u);
  EXPECT_EQ(out.chunk().usage().cached_prompt_tokens(), 32u);
}

TEST(ProtoRoundTripTest, CompleteKeepsEachStopReason) {
  using Complete = v1::GenerateResponse::Complete;
  const v1::GenerateResponse eos = RoundTrip(testing::FullCompleteResponse(StopReasonKind::kEos));
  ASSERT_EQ(eos.kind_case(), v1::GenerateResponse::kComplete);
  EXPECT_EQ(eos.complete().stop_reason_case(), Complete::kEos);
  EXPECT_TRUE(eos.complete().eos());

  const v1::GenerateResponse token =
      RoundTrip(testing::FullCompleteResponse(StopReasonKind::kStopTokenId));
  EXPECT_EQ(token.complete().stop_reason_case(), Complete::kStopTokenId);
  EXPECT_EQ(token.complete().stop_token_id(), 13u);

  const v1::GenerateResponse text =
      RoundTrip(testing::FullCompleteResponse(StopReasonKind::kStopString));
  EXPECT_EQ(text.complete().stop_reason_case(), Complete::kStopString);
  EXPECT_EQ(text.complete().stop_string(), "END");
  EXPECT_EQ(text.complete().finish_reason(), v1::FINISH_REASON_STOP);
  EXPECT_THAT(text.complete().token_ids(), ElementsAre(11u, 13u));
  EXPECT_EQ(text.complete().usage().completion_tokens(), 2u);
  EXPECT_EQ(text.complete().timings().ttft_seconds(), 0.04);
  EXPECT_EQ(text.complete().timings().num_preemptions(), 2u);
}

TEST(ProtoRoundTripTest, ModelInfoKeepsZeroBosTokenId) {
  const v1::ModelInfo out = RoundTrip(testing::FullModelInfo());
  EXPECT_TRUE(out.has_bos_token_id());
  EXPECT_EQ(out.bos_token_id(), 0u);
  EXPECT_THAT(out.eos_token_ids(), ElementsAre(2u, 128009u));
  EXPECT_EQ(out.kv_cache_dtype(), v1::DATA_TYPE_BFLOAT16);
  EXPECT_EQ(out.backend(), v1::BACKEND_CUDA);
  EXPECT_FALSE(RoundTrip(v1::ModelInfo()).has_bos_token_id());
}

TEST(ProtoRoundTripTest, ServerInfoKeepsLoadAndDrainState) {
  const v1::ServerInfo out = RoundTrip(testing::FullServerInfo());
  EXPECT_EQ(out.version(), "0.1.0");
  EXPECT_EQ(out.num_requests_running(), 7u);
  EXPECT_EQ(out.kv_cache_usage_ratio(), 0.625);
  EXPECT_TRUE(out.draining());
  EXPECT_EQ(out.start_time_unix_seconds(), 1.7e9);
}

TEST(ProtoRoundTripTest, TokenizeAndDetokenizeMessagesKeepTheirFields) {
  const v1::TokenizeRequest tokenize = RoundTrip(testing::FullTokenizeRequest());
  EXPECT_EQ(tokenize.text(), "Hello world");
  EXPECT_TRUE(tokenize.no_add_special_tokens());
  EXPECT_TRUE(tokenize.return_token_strings());

  const v1::TokenizeResponse tokens = RoundTrip(testing::FullTokenizeResponse());
  EXPECT_THAT(tokens.token_ids(), ElementsAre(15043u, 3186u));
  EXPECT_THAT(tokens.token_strings(), ElementsAre("▁Hello", "▁world"));

  const v1::DetokenizeRequest detokenize = RoundTrip(testing::FullDetokenizeRequest());
  EXPECT_THAT(detokenize.token_ids(), ElementsAre(15043u, 3186u));
  EXPECT_TRUE(detokenize.keep_special_tokens());

  EXPECT_EQ(RoundTrip(testing::FullDetokenizeResponse()).text(), "Hello world");
}

TEST(FieldCoverageTest, FullMessagesSetEveryFieldOfEveryMessageType) {
  const FileDescriptor* service_file = FindServiceFile();
  ASSERT_NE(service_file, nullptr);
  EXPECT_GE(testing::PackageMessageTypes(*service_file).size(), 20u);
  FieldCoverage coverage;
  for (const std::unique_ptr<Message>& message : AllFullMessages()) coverage.Add(*message);
  EXPECT_THAT(coverage.Problems(*service_file), IsEmpty());
}

TEST(FieldCoverageTest, ReportsAnUnsetFieldAMissingOneofMemberAndAMissingType) {
  const FileDescriptor* service_file = FindServiceFile();
  ASSERT_NE(service_file, nullptr);
  FieldCoverage coverage;
  v1::GenerateRequest request = testing::FullGenerateRequest(PromptKind::kText);
  request.mutable_sampling()->clear_temperature();
  coverage.Add(request);
  const std::vector<std::string> problems = coverage.Problems(*service_file);
  EXPECT_THAT(problems, Contains(HasSubstr("pagoda.v1.SamplingParams is not fully populated")));
  EXPECT_THAT(problems, Contains(HasSubstr("pagoda.v1.SamplingParams.temperature is never set")));
  EXPECT_THAT(problems, Contains(HasSubstr("pagoda.v1.GenerateRequest.token_ids is never set")));
  EXPECT_THAT(problems, Contains(HasSubstr("no instance of pagoda.v1.ModelInfo")));
}

TEST(TextGenerationServiceTest, HasExactlySixMethodsWithTheirStreamingShapes) {
  const ServiceDescriptor* service =
      DescriptorPool::generated_pool()->FindServiceByName("pagoda.v1.TextGeneration");
  ASSERT_NE(service, nullptr);
  EXPECT_EQ(service->full_name(), v1::TextGeneration::service_full_name());
  struct Expected {
    const char* name;
    bool server_streaming;
    const Descriptor* input;
    const Descriptor* output;
  };
  const Expected expected_methods[] = {
      {"Generate", true, v1::GenerateRequest::descriptor(), v1::GenerateResponse::descriptor()},
      {"Abort", false, v1::AbortRequest::descriptor(), v1::AbortResponse::descriptor()},
      {"GetModelInfo", false, v1::GetModelInfoRequest::descriptor(), v1::ModelInfo::descriptor()},
      {"GetServerInfo", false, v1::GetServerInfoRequest::descriptor(),
       v1::ServerInfo::descriptor()},
      {"Tokenize", false, v1::TokenizeRequest::descriptor(), v1::TokenizeResponse::descriptor()},
      {"Detokenize", false, v1::DetokenizeRequest::descriptor(),
       v1::DetokenizeResponse::descriptor()},
  };
  ASSERT_EQ(service->method_count(), 6);
  for (const Expected& expected : expected_methods) {
    SCOPED_TRACE(expected.name);
    const MethodDescriptor* method = service->FindMethodByName(expected.name);
    ASSERT_NE(method, nullptr);
    EXPECT_FALSE(method->client_streaming());
    EXPECT_EQ(method->server_streaming(), expected.server_streaming);
    EXPECT_EQ(method->input_type(), expected.input);
    EXPECT_EQ(method->output_type(), expected.output);
  }
}

}  // namespace
}  // namespace pagoda::proto
