// End-to-end tests of the daemon in process: a PagodaServer on 127.0.0.1 with kernel-picked
// ports, a real Engine over a fake model (engine/testing/fake_model_runner.h, slowed down so
// that requests take a predictable while), and real gRPC and HTTP clients.

#include "server/pagoda_server.h"

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "engine/testing/fake_model_runner.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/unknown_field_set.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "model/byte_tokenizer.h"
#include "pagoda/v1/text_generation_service.grpc.pb.h"
#include "server/testing/exported_metrics.h"
#include "server/testing/http_get.h"

namespace pagoda::server {
namespace {

using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kModelName[] = "fake-model";
constexpr int kMaxModelLen = 128;
constexpr int kNumKvBlocks = 64;
constexpr int kBlockSize = 4;

// The fake model, slowed to `step_time` per step; fails its next step when *fail_next is set.
class SlowFakeRunner final : public engine::ModelRunner {
 public:
  SlowFakeRunner(absl::Duration step_time, std::atomic<bool>* fail_next)
      : inner_(engine::testing::FakeModelRunner::Options{
            .vocab_size = model::ByteTokenizer::kVocabSize,
            .num_kv_blocks = kNumKvBlocks,
            .block_size = kBlockSize,
            .max_position_embeddings = 512,
            .eos_token_ids = {model::ByteTokenizer::kEosId},
            .favored_tokens = Letters()}),
        step_time_(step_time),
        fail_next_(fail_next) {}

  const model::ModelConfig& config() const override { return inner_.config(); }
  int num_kv_blocks() const override { return inner_.num_kv_blocks(); }
  int block_size() const override { return inner_.block_size(); }
  model::DType kv_dtype() const override { return inner_.kv_dtype(); }
  model::DType weight_dtype() const override { return inner_.weight_dtype(); }
  const char* backend_name() const override { return "cpu"; }
  absl::Status Execute(const model::ForwardBatch& batch, std::vector<float>* logits) override {
    if (fail_next_->exchange(false)) return absl::InternalError("injected model failure");
    absl::SleepFor(step_time_);
    return inner_.Execute(batch, logits);
  }

 private:
  // Readable output: lowercase ASCII letters are favoured.
  static std::vector<TokenId> Letters() {
    std::vector<TokenId> letters;
    for (TokenId c = 'a'; c <= 'z'; ++c) letters.push_back(c);
    return letters;
  }

  engine::testing::FakeModelRunner inner_;
  const absl::Duration step_time_;
  std::atomic<bool>* const fail_next_;
};

struct TestConfig {
  absl::Duration step_time = absl::Milliseconds(5);
  int max_num_seqs = 8;
  int max_waiting_requests = 64;
  absl::Duration drain_timeout = absl::Seconds(10);
  bool load_engine = true;
};

// The outcome of one Generate call.
struct GenerateResult {
  grpc::Status status;
  std::vector<v1::GenerateResponse> responses;
  std::multimap<std::string, std::string> initial_metadata;
  std::multimap<std::string, std::string> trailing_metadata;

  std::string Trailer(const std::string& key) const {
    const auto it = trailing_metadata.find(key);
    return it == trailing_metadata.end() ? "" : it->second;
  }
};

std::multimap<std::string, std::string> ToMap(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) {
  std::multimap<std::string, std::string> out;
  for (const auto& [k, v] : metadata) {
    out.emplace(std::string(k.data(), k.size()), std::string(v.data(), v.size()));
  }
  return out;
}

// The outcome of a call made with raw request bytes.
struct RawCallResult {
  grpc::Status status;
  std::multimap<std::string, std::string> trailing_metadata;

  std::string Trailer(const std::string& key) const {
    const auto it = trailing_metadata.find(key);
    return it == trailing_metadata.end() ? "" : it->second;
  }
};

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

// A prompt of three token ids that generates `max_tokens` tokens (EOS ignored), streamed.
v1::GenerateRequest LongRequest(int max_tokens, const std::string& request_id = "") {
  v1::GenerateRequest request;
  request.set_request_id(request_id);
  request.mutable_token_ids()->add_ids(1);
  request.mutable_token_ids()->add_ids(2);
  request.mutable_token_ids()->add_ids(3);
  request.mutable_stopping()->set_max_tokens(max_tokens);
  request.mutable_stopping()->set_ignore_eos(true);
  request.set_stream(true);
  return request;
}

// A streaming call the test reads at its own pace.
struct OpenStream {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader;

  v1::GenerateResponse Next() {
    v1::GenerateResponse response;
    EXPECT_TRUE(reader->Read(&response));
    return response;
  }
  // Reads to the end; returns the messages left.
  std::vector<v1::GenerateResponse> Rest(grpc::Status* status) {
    std::vector<v1::GenerateResponse> rest;
    v1::GenerateResponse response;
    while (reader->Read(&response)) rest.push_back(response);
    *status = reader->Finish();
    return rest;
  }
};

// The value of the first series line that starts with `series` in a Prometheus page, or -1.
double MetricValue(const std::string& page, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(page, '\n')) {
    if (absl::StartsWith(line, series)) {
      double value = 0;
      if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &value)) return value;
    }
  }
  return -1;
}

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout = absl::Seconds(5)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return condition();
}

class PagodaServerTest : public ::testing::Test {
 protected:
  void StartServer(const TestConfig& config = {}) {
    ServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.metrics_port = 0;
    options.drain_timeout = config.drain_timeout;
    options.queue_full_retry_after = absl::Milliseconds(250);
    options.engine.max_waiting_requests = config.max_waiting_requests;
    options.engine_core_factory = [this, config](const engine::EngineConfig&) {
      engine::EngineCoreOptions core;
      core.scheduler.max_num_seqs = config.max_num_seqs;
      core.scheduler.max_num_batched_tokens = 256;
      core.scheduler.max_model_len = kMaxModelLen;
      return engine::EngineCore::Create(
          kModelName, std::make_unique<SlowFakeRunner>(config.step_time, &fail_next_),
          std::make_unique<model::ByteTokenizer>(), core);
    };
    absl::StatusOr<std::unique_ptr<PagodaServer>> server = PagodaServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    stub_ = v1::TextGeneration::NewStub(channel_);
    health_ = grpc::health::v1::Health::NewStub(channel_);
    if (config.load_engine) {
      ASSERT_TRUE(server_->LoadEngine().ok());
    }
  }

  void TearDown() override {
    // Leftover requests would hold the drain for its whole timeout.
    if (server_ != nullptr && server_->engine() != nullptr) server_->engine()->AbortAll();
    server_.reset();
  }

  GenerateResult Generate(const v1::GenerateRequest& request,
                          const std::vector<std::pair<std::string, std::string>>& metadata = {},
                          absl::Duration timeout = absl::Seconds(20)) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    for (const auto& [key, value] : metadata) context.AddMetadata(key, value);
    GenerateResult result;
    std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
        stub_->Generate(&context, request);
    v1::GenerateResponse response;
    while (reader->Read(&response)) result.responses.push_back(response);
    result.status = reader->Finish();
    result.initial_metadata = ToMap(context.GetServerInitialMetadata());
    result.trailing_metadata = ToMap(context.GetServerTrailingMetadata());
    return result;
  }

  std::unique_ptr<OpenStream> Open(const v1::GenerateRequest& request,
                                   absl::Duration timeout = absl::Seconds(20)) {
    auto stream = std::make_unique<OpenStream>();
    stream->context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    stream->reader = stub_->Generate(&stream->context, request);
    return stream;
  }

  v1::ServerInfo ServerInfo() {
    grpc::ClientContext context;
    v1::ServerInfo info;
    EXPECT_TRUE(stub_->GetServerInfo(&context, v1::GetServerInfoRequest(), &info).ok());
    return info;
  }

  // Calls `method` ("/pagoda.v1.TextGeneration/Abort") with `request_bytes` as the request, as
  // a client whose protobuf library does not check UTF-8 would send it. A Generate call is
  // read as one message: enough for refusals and for an unstreamed request.
  RawCallResult RawCall(const std::string& method, const std::string& request_bytes) {
    grpc::GenericStub stub(channel_);
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    grpc::Slice slice(request_bytes);
    const grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    RawCallResult result;
    absl::Notification done;
    stub.UnaryCall(&context, method, grpc::StubOptions(), &request, &response,
                   [&](grpc::Status status) {
                     result.status = std::move(status);
                     done.Notify();
                   });
    done.WaitForNotification();
    result.trailing_metadata = ToMap(context.GetServerTrailingMetadata());
    return result;
  }

  HealthCheckResponse::ServingStatus Health(const std::string& service) {
    grpc::ClientContext context;
    HealthCheckRequest request;
    request.set_service(service);
    HealthCheckResponse response;
    const grpc::Status status = health_->Check(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.status();
  }

  std::string Scrape() {
    absl::StatusOr<testing::HttpResponse> response =
        testing::HttpGet(*server_->metrics_port(), "/metrics");
    EXPECT_TRUE(response.ok()) << response.status();
    EXPECT_EQ(response->status, 200);
    return response.ok() ? response->body : "";
  }

  double Metric(const std::string& series) { return MetricValue(Scrape(), series); }

  std::atomic<bool> fail_next_{false};  // outlives the server, whose model reads it
  std::unique_ptr<PagodaServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::TextGeneration::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

TEST_F(PagodaServerTest, UnaryAndStreamingGenerateAgree) {
  StartServer();
  v1::GenerateRequest request;
  request.set_text("Hello");
  request.mutable_sampling()->set_temperature(0);
  request.mutable_stopping()->set_max_tokens(8);
  request.mutable_stopping()->set_ignore_eos(true);
  const GenerateResult unary = Generate(request, {{"x-request-id", "unary-1"}});
  ASSERT_TRUE(unary.status.ok()) << unary.status.error_message();
  ASSERT_EQ(unary.responses.size(), 1u);
  ASSERT_TRUE(unary.responses[0].has_complete());
  EXPECT_EQ(unary.responses[0].request_id(), "unary-1");
  EXPECT_EQ(unary.initial_metadata.find("x-request-id")->second, "unary-1");
  const v1::GenerateResponse::Complete& complete = unary.responses[0].complete();
  EXPECT_EQ(complete.finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(complete.token_ids_size(), 8);
  EXPECT_EQ(complete.text().size(), 8u);            // the fake model favours ASCII letters
  EXPECT_EQ(complete.usage().prompt_tokens(), 6u);  // BOS + "Hello"
  EXPECT_EQ(complete.usage().completion_tokens(), 8u);
  EXPECT_GT(complete.timings().ttft_seconds(), 0);
  EXPECT_GE(complete.timings().e2e_seconds(), complete.timings().ttft_seconds());

  request.set_stream(true);
  request.set_usage_every_chunk(true);
  request.set_request_id("stream-1");
  const GenerateResult streamed = Generate(request, {{"x-request-id", "ignored"}});
  ASSERT_TRUE(streamed.status.ok()) << streamed.status.error_message();
  ASSERT_GE(streamed.responses.size(), 2u);
  EXPECT_EQ(streamed.initial_metadata.find("x-request-id")->second, "stream-1");
  std::vector<uint32_t> ids;
  std::string text;
  uint32_t last_completion_tokens = 0;
  for (size_t i = 0; i + 1 < streamed.responses.size(); ++i) {
    const v1::GenerateResponse& r = streamed.responses[i];
    EXPECT_EQ(r.request_id(), "stream-1");
    ASSERT_TRUE(r.has_chunk());
    ids.insert(ids.end(), r.chunk().token_ids().begin(), r.chunk().token_ids().end());
    text += r.chunk().text();
    ASSERT_TRUE(r.chunk().has_usage());
    EXPECT_GT(r.chunk().usage().completion_tokens(), last_completion_tokens);
    last_completion_tokens = r.chunk().usage().completion_tokens();
  }
  EXPECT_THAT(ids, ElementsAreArray(complete.token_ids()));
  EXPECT_EQ(text, complete.text());
  const v1::GenerateResponse& last = streamed.responses.back();
  ASSERT_TRUE(last.has_complete());
  EXPECT_TRUE(last.complete().token_ids().empty());
  EXPECT_TRUE(last.complete().text().empty());
  EXPECT_EQ(last.complete().usage().completion_tokens(), 8u);
}

TEST_F(PagodaServerTest, ServerGeneratesARequestIdWhenNoneIsGiven) {
  StartServer();
  const GenerateResult result = Generate(LongRequest(2));
  ASSERT_TRUE(result.status.ok());
  const std::string id = result.responses.back().request_id();
  EXPECT_THAT(id,
              MatchesRegex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"));
  EXPECT_EQ(result.initial_metadata.find("x-request-id")->second, id);
}

TEST_F(PagodaServerTest, EveryValidationCaseHasItsStatus) {
  StartServer();
  struct Case {
    std::string name;
    std::function<void(v1::GenerateRequest&)> mutate;
    grpc::StatusCode code;
    std::string message_prefix;
    std::string reason;  // pagoda-error-reason, "" = none
    std::vector<std::pair<std::string, std::string>> metadata = {};
  };
  const std::string invalid = "INVALID_FIELD";
  const std::string too_long = "PROMPT_TOO_LONG";
  const std::vector<Case> cases = {
      {"no prompt", [](v1::GenerateRequest& r) { r.clear_token_ids(); },
       grpc::StatusCode::INVALID_ARGUMENT, "prompt: required", invalid},
      // The client library sends these (it only logs); protobuf's parser refuses them.
      {"invalid UTF-8 text", [](v1::GenerateRequest& r) { r.set_text("ok \xff"); },
       grpc::StatusCode::INVALID_ARGUMENT, "text: must be valid UTF-8", invalid},
      {"invalid UTF-8 stop string",
       [](v1::GenerateRequest& r) { r.mutable_stopping()->add_stop("\xc3("); },
       grpc::StatusCode::INVALID_ARGUMENT, "stopping.stop[0]: must be valid UTF-8", invalid},
      {"empty text", [](v1::GenerateRequest& r) { r.set_text(""); },
       grpc::StatusCode::INVALID_ARGUMENT, "text: must not be empty", invalid},
      {"empty token ids", [](v1::GenerateRequest& r) { r.mutable_token_ids()->clear_ids(); },
       grpc::StatusCode::INVALID_ARGUMENT, "token_ids.ids: must not be empty", invalid},
      {"token id >= vocab", [](v1::GenerateRequest& r) { r.mutable_token_ids()->set_ids(1, 258); },
       grpc::StatusCode::INVALID_ARGUMENT,
       "token_ids.ids[1]: token id 258 is outside the vocabulary [0, 258)", invalid},
      {"prompt too long",
       [](v1::GenerateRequest& r) {
         for (int i = 0; i < kMaxModelLen; ++i) r.mutable_token_ids()->add_ids(5);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "token_ids.ids: the prompt has", too_long},
      {"prompt + max_tokens > max_model_len",
       [](v1::GenerateRequest& r) { r.mutable_stopping()->set_max_tokens(kMaxModelLen - 2); },
       grpc::StatusCode::INVALID_ARGUMENT, "stopping.max_tokens: the prompt's 3 tokens", too_long},
      {"temperature < 0", [](v1::GenerateRequest& r) { r.mutable_sampling()->set_temperature(-1); },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling.temperature: must be finite and >= 0, got -1",
       invalid},
      {"top_p 0", [](v1::GenerateRequest& r) { r.mutable_sampling()->set_top_p(0); },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling.top_p: must be in (0, 1], got 0", invalid},
      {"top_p > 1", [](v1::GenerateRequest& r) { r.mutable_sampling()->set_top_p(1.01f); },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling.top_p: must be in (0, 1]", invalid},
      {"too many stop strings",
       [](v1::GenerateRequest& r) {
         for (int i = 0; i < 17; ++i) r.mutable_stopping()->add_stop("x");
       },
       grpc::StatusCode::INVALID_ARGUMENT, "stopping.stop: at most 16 stop strings, got 17",
       invalid},
      {"stop string too long",
       [](v1::GenerateRequest& r) { r.mutable_stopping()->add_stop(std::string(257, 'x')); },
       grpc::StatusCode::INVALID_ARGUMENT, "stopping.stop[0]: at most 256 bytes", invalid},
      {"max_tokens 0", [](v1::GenerateRequest& r) { r.mutable_stopping()->set_max_tokens(0); },
       grpc::StatusCode::INVALID_ARGUMENT, "stopping.max_tokens: must be >= 1", invalid},
      {"unknown extra key", [](v1::GenerateRequest& r) { (*r.mutable_extra())["beam"] = "4"; },
       grpc::StatusCode::INVALID_ARGUMENT, "extra[\"beam\"]: unknown key", invalid},
      {"bad request_id", [](v1::GenerateRequest& r) { r.set_request_id("a b"); },
       grpc::StatusCode::INVALID_ARGUMENT, "request_id: must be printable ASCII", invalid},
      {"bad x-request-id",
       [](v1::GenerateRequest&) {},
       grpc::StatusCode::INVALID_ARGUMENT,
       "x-request-id: must be printable ASCII",
       invalid,
       {{"x-request-id", "a b"}}},
      {"other model", [](v1::GenerateRequest& r) { r.set_model("gpt-5"); },
       grpc::StatusCode::NOT_FOUND, "model: \"gpt-5\" is not served", ""},
      {"n > 1", [](v1::GenerateRequest& r) { r.set_n(2); }, grpc::StatusCode::UNIMPLEMENTED,
       "n: ", ""},
      {"logprobs", [](v1::GenerateRequest& r) { r.mutable_logprobs(); },
       grpc::StatusCode::UNIMPLEMENTED, "logprobs: ", ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::GenerateRequest request = LongRequest(4);
    c.mutate(request);
    const GenerateResult result = Generate(request, c.metadata);
    EXPECT_EQ(result.status.error_code(), c.code) << result.status.error_message();
    EXPECT_THAT(result.status.error_message(), StartsWith(c.message_prefix));
    EXPECT_EQ(result.Trailer("pagoda-error-reason"), c.reason);
    EXPECT_TRUE(result.responses.empty());
  }
  EXPECT_EQ(
      Metric(R"(pagoda_requests_rejected_total{model_name="fake-model",reason="invalid_field"})"),
      15);
  EXPECT_EQ(
      Metric(R"(pagoda_requests_rejected_total{model_name="fake-model",reason="prompt_too_long"})"),
      2);
  EXPECT_EQ(Metric(R"(pagoda_requests_rejected_total{model_name="fake-model",reason="not_found"})"),
            1);
  EXPECT_EQ(server_->num_unfinished_requests(), 0);
}

TEST_F(PagodaServerTest, AnUnfinishedRequestIdCannotBeReused) {
  StartServer();
  std::unique_ptr<OpenStream> first = Open(LongRequest(100, "dup"));
  ASSERT_TRUE(first->Next().has_chunk());
  const GenerateResult second = Generate(LongRequest(2, "dup"));
  EXPECT_EQ(second.status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(second.status.error_message(), StartsWith("request_id: \"dup\""));
  first->context.TryCancel();
  grpc::Status status;
  first->Rest(&status);
  ASSERT_TRUE(WaitFor([&] { return server_->num_unfinished_requests() == 0; }));
  EXPECT_TRUE(Generate(LongRequest(2, "dup")).status.ok());
}

TEST_F(PagodaServerTest, AbortByIdEndsTheStreamWithAbort) {
  StartServer();
  std::unique_ptr<OpenStream> stream = Open(LongRequest(100, "victim"));
  ASSERT_TRUE(stream->Next().has_chunk());
  grpc::ClientContext context;
  v1::AbortRequest abort;
  abort.add_request_ids("victim");
  abort.add_request_ids("nobody");
  v1::AbortResponse response;
  ASSERT_TRUE(stub_->Abort(&context, abort, &response).ok());
  EXPECT_EQ(response.num_found(), 1u);
  grpc::Status status;
  const std::vector<v1::GenerateResponse> rest = stream->Rest(&status);
  EXPECT_TRUE(status.ok()) << status.error_message();
  ASSERT_FALSE(rest.empty());
  ASSERT_TRUE(rest.back().has_complete());
  EXPECT_EQ(rest.back().complete().finish_reason(), v1::FINISH_REASON_ABORT);
  EXPECT_LT(rest.back().complete().usage().completion_tokens(), 100u);

  grpc::ClientContext too_many_context;
  v1::AbortRequest too_many;
  for (int i = 0; i < 1025; ++i) too_many.add_request_ids(absl::StrCat(i));
  const grpc::Status refused = stub_->Abort(&too_many_context, too_many, &response);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), StartsWith("request_ids: at most 1024"));
}

TEST_F(PagodaServerTest, CancelMidStreamFreesTheBlocks) {
  StartServer();
  std::unique_ptr<OpenStream> stream = Open(LongRequest(120));
  ASSERT_TRUE(stream->Next().has_chunk());
  ASSERT_TRUE(stream->Next().has_chunk());
  const v1::ServerInfo busy = ServerInfo();
  EXPECT_EQ(busy.num_requests_running(), 1u);
  EXPECT_GT(busy.kv_cache_usage_ratio(), 0);
  EXPECT_GT(Metric(R"(pagoda_kv_cache_blocks{model_name="fake-model",state="used"})"), 0);

  stream->context.TryCancel();
  grpc::Status status;
  stream->Rest(&status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(WaitFor([&] {
    const v1::ServerInfo info = ServerInfo();
    return info.num_requests_running() == 0 && info.kv_cache_usage_ratio() == 0;
  }));
  EXPECT_EQ(server_->engine()->Snapshot().kv.num_used_blocks, 0);
  EXPECT_EQ(Metric(R"(pagoda_kv_cache_blocks{model_name="fake-model",state="used"})"), 0);
  // The engine reports an aborted request's metrics with its next step.
  ASSERT_TRUE(Generate(LongRequest(2)).status.ok());
  EXPECT_EQ(
      Metric(R"(pagoda_request_success_total{model_name="fake-model",finished_reason="abort"})"),
      1);
  EXPECT_TRUE(WaitFor([&] { return server_->num_unfinished_requests() == 0; }));
}

TEST_F(PagodaServerTest, AnExpiredDeadlineAbortsTheRequest) {
  StartServer();
  const GenerateResult result = Generate(LongRequest(120), {}, absl::Milliseconds(100));
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ASSERT_TRUE(WaitFor([&] {
    const engine::EngineSnapshot snapshot = server_->engine()->Snapshot();
    return snapshot.num_running == 0 && snapshot.num_waiting == 0 &&
           snapshot.kv.num_used_blocks == 0;
  }));
  EXPECT_TRUE(WaitFor([&] { return server_->num_unfinished_requests() == 0; }));
}

TEST_F(PagodaServerTest, AFullQueueRefusesWithRetryAfter) {
  // 50 ms steps: the running request lasts 6 s, so it cannot finish (and let a waiting one
  // in) while a loaded machine is slow to run the checks below.
  StartServer({.step_time = absl::Milliseconds(50), .max_num_seqs = 1, .max_waiting_requests = 2});
  std::unique_ptr<OpenStream> running = Open(LongRequest(120));
  ASSERT_TRUE(running->Next().has_chunk());
  std::unique_ptr<OpenStream> waiting1 = Open(LongRequest(120));
  std::unique_ptr<OpenStream> waiting2 = Open(LongRequest(120));
  ASSERT_TRUE(WaitFor([&] { return ServerInfo().num_requests_waiting() == 2; }));
  // Until the engine thread has run a step with both in its core, one may still be in transit
  // from its inbox, where the engine's count misses it for a moment.
  const int64_t steps = server_->engine()->Snapshot().num_steps;
  ASSERT_TRUE(WaitFor([&] { return server_->engine()->Snapshot().num_steps >= steps + 2; }));
  ASSERT_EQ(ServerInfo().num_requests_waiting(), 2u);
  EXPECT_EQ(ServerInfo().max_num_waiting_requests(), 2u);

  const GenerateResult refused = Generate(LongRequest(2));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(refused.Trailer("pagoda-error-reason"), "QUEUE_FULL");
  EXPECT_EQ(refused.Trailer("pagoda-retry-after-ms"), "250");
  EXPECT_EQ(
      Metric(R"(pagoda_requests_rejected_total{model_name="fake-model",reason="queue_full"})"), 1);
  for (OpenStream* s : {running.get(), waiting1.get(), waiting2.get()}) {
    s->context.TryCancel();
    grpc::Status status;
    s->Rest(&status);
  }
}

TEST_F(PagodaServerTest, DrainRefusesNewRequestsAndLetsRunningOnesFinish) {
  StartServer();
  EXPECT_EQ(Health(""), HealthCheckResponse::SERVING);
  EXPECT_EQ(Health("pagoda.v1.TextGeneration"), HealthCheckResponse::SERVING);
  std::unique_ptr<OpenStream> stream = Open(LongRequest(40));
  ASSERT_TRUE(stream->Next().has_chunk());

  server_->StartDrain();
  EXPECT_EQ(Health(""), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Health("pagoda.v1.TextGeneration"), HealthCheckResponse::NOT_SERVING);
  EXPECT_TRUE(ServerInfo().draining());
  const GenerateResult refused = Generate(LongRequest(2));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(refused.Trailer("pagoda-error-reason"), "DRAINING");

  grpc::Status status;
  const std::vector<v1::GenerateResponse> rest = stream->Rest(&status);
  EXPECT_TRUE(status.ok());
  ASSERT_TRUE(rest.back().has_complete());
  EXPECT_EQ(rest.back().complete().finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(rest.back().complete().usage().completion_tokens(), 40u);

  const absl::Time start = absl::Now();
  server_->Shutdown();
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

TEST_F(PagodaServerTest, DrainTimeoutAbortsWhatIsStillRunning) {
  StartServer({.drain_timeout = absl::Milliseconds(100)});
  std::unique_ptr<OpenStream> stream = Open(LongRequest(120));
  ASSERT_TRUE(stream->Next().has_chunk());
  const absl::Time start = absl::Now();
  std::thread shutdown([&] { server_->Shutdown(); });
  grpc::Status status;
  const std::vector<v1::GenerateResponse> rest = stream->Rest(&status);
  shutdown.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_TRUE(status.ok()) << status.error_message();
  ASSERT_FALSE(rest.empty());
  ASSERT_TRUE(rest.back().has_complete());
  EXPECT_EQ(rest.back().complete().finish_reason(), v1::FINISH_REASON_ABORT);
}

TEST_F(PagodaServerTest, HealthWhileLoadingAndAfterAnEngineFailure) {
  StartServer({.load_engine = false});
  EXPECT_EQ(Health(""), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Health("pagoda.v1.TextGeneration"), HealthCheckResponse::NOT_SERVING);
  const GenerateResult loading = Generate(LongRequest(2));
  EXPECT_EQ(loading.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(loading.status.error_message(), HasSubstr("loading"));
  EXPECT_FALSE(ServerInfo().draining());
  EXPECT_EQ(Scrape(), "");

  ASSERT_TRUE(server_->LoadEngine().ok());
  EXPECT_EQ(Health(""), HealthCheckResponse::SERVING);
  EXPECT_EQ(Health("pagoda.v1.TextGeneration"), HealthCheckResponse::SERVING);
  EXPECT_EQ(Metric(R"(pagoda_engine_healthy{model_name="fake-model"})"), 1);

  // A failure mid-stream ends the stream with INTERNAL and turns health NOT_SERVING for good.
  std::unique_ptr<OpenStream> stream = Open(LongRequest(120));
  ASSERT_TRUE(stream->Next().has_chunk());
  fail_next_ = true;
  grpc::Status status;
  stream->Rest(&status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL);
  const auto trailers = ToMap(stream->context.GetServerTrailingMetadata());
  EXPECT_EQ(trailers.find("pagoda-error-reason")->second, "ENGINE_FAILURE");
  ASSERT_TRUE(WaitFor([&] { return Health("") == HealthCheckResponse::NOT_SERVING; }));
  EXPECT_EQ(Health("pagoda.v1.TextGeneration"), HealthCheckResponse::NOT_SERVING);
  const GenerateResult after = Generate(LongRequest(2));
  EXPECT_EQ(after.status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(after.Trailer("pagoda-error-reason"), "ENGINE_FAILURE");
  EXPECT_EQ(Metric(R"(pagoda_engine_healthy{model_name="fake-model"})"), 0);
}

TEST_F(PagodaServerTest, TakenPortsAreErrors) {
  StartServer();
  ServerOptions options;
  options.host = "127.0.0.1";
  options.port = server_->port();
  options.metrics_port = 0;
  EXPECT_EQ(PagodaServer::Start(options).status().code(), absl::StatusCode::kUnavailable);
  options.port = 0;
  options.metrics_port = *server_->metrics_port();
  const absl::Status metrics = PagodaServer::Start(options).status();
  EXPECT_EQ(metrics.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(metrics.message()), StartsWith("--metrics-port: "));
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
