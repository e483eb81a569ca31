#include "server/testing/server_fixture.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "grpcpp/generic/generic_stub.h"
#include "http/testing/http_client.h"
#include "runner/testing/fake_model_runner.h"
#include "tokenizer/byte_tokenizer.h"

namespace pagoda::server::testing {
namespace {

using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;

// The fake model, slowed to `step_time` per step; fails its next step when *fail_next is set.
class SlowFakeRunner final : public runner::ModelRunner {
 public:
  SlowFakeRunner(absl::Duration step_time, std::atomic<bool>* fail_next,
                 std::optional<int> sliding_window)
      : inner_(runner::testing::FakeModelRunner::Options{
            .vocab_size = tokenizer::ByteTokenizer::kVocabSize,
            .num_kv_blocks = kNumKvBlocks,
            .block_size = kBlockSize,
            .max_position_embeddings = 512,
            .eos_token_ids = {tokenizer::ByteTokenizer::kEosId},
            .favored_tokens = Letters(),
            .sliding_window = sliding_window}),
        step_time_(step_time),
        fail_next_(fail_next) {}

  const model::ModelConfig& config() const override { return inner_.config(); }
  int num_kv_blocks() const override { return inner_.num_kv_blocks(); }
  int block_size() const override { return inner_.block_size(); }
  model::DType kv_dtype() const override { return inner_.kv_dtype(); }
  model::DType weight_dtype() const override { return inner_.weight_dtype(); }
  common::AttentionWindow kv_window() const override { return inner_.kv_window(); }
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

  runner::testing::FakeModelRunner inner_;
  const absl::Duration step_time_;
  std::atomic<bool>* const fail_next_;
};

}  // namespace

std::multimap<std::string, std::string> ToMap(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) {
  std::multimap<std::string, std::string> out;
  for (const auto& [k, v] : metadata) {
    out.emplace(std::string(k.data(), k.size()), std::string(v.data(), v.size()));
  }
  return out;
}

v1::GenerateRequest LongRequest(int max_tokens, const std::string& request_id) {
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

// Reading advances the call, which the reader member holds by pointer: these are not const,
// whatever clang-tidy infers from the members.
// NOLINTBEGIN(readability-make-member-function-const)
v1::GenerateResponse OpenStream::Next() {
  v1::GenerateResponse response;
  EXPECT_TRUE(reader->Read(&response));
  return response;
}

std::vector<v1::GenerateResponse> OpenStream::Rest(grpc::Status* status) {
  std::vector<v1::GenerateResponse> rest;
  v1::GenerateResponse response;
  while (reader->Read(&response)) rest.push_back(response);
  *status = reader->Finish();
  return rest;
}
// NOLINTEND(readability-make-member-function-const)

double MetricValue(const std::string& page, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(page, '\n')) {
    if (absl::StartsWith(line, series)) {
      double value = 0;
      if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &value)) return value;
    }
  }
  return -1;
}

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return condition();
}

void PagodaServerTest::StartServer(const TestConfig& config) {
  ServerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  options.metrics_port = 0;
  options.http_port = 0;
  options.drain_timeout = config.drain_timeout;
  options.engine.model = "dummy:fake";  // no model directory, so no chat template of its own
  options.chat_template = config.chat_template;
  options.queue_full_retry_after = absl::Milliseconds(250);
  options.engine.max_waiting_requests = config.max_waiting_requests;
  options.engine_core_factory = [this, config](const engine::EngineConfig&) {
    engine::EngineCoreOptions core;
    core.scheduler.max_num_seqs = config.max_num_seqs;
    core.scheduler.max_num_batched_tokens = 256;
    core.scheduler.max_model_len = kMaxModelLen;
    return engine::EngineCore::Create(
        kModelName,
        std::make_unique<SlowFakeRunner>(config.step_time, &fail_next_, config.sliding_window),
        std::make_unique<tokenizer::ByteTokenizer>(), core);
  };
  if (config.customize) config.customize(options);
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

void PagodaServerTest::TearDown() {
  // Leftover requests would hold the drain for its whole timeout.
  if (server_ != nullptr && server_->engine() != nullptr) server_->engine()->AbortAll();
  server_.reset();
}

GenerateResult PagodaServerTest::Generate(
    const v1::GenerateRequest& request,
    const std::vector<std::pair<std::string, std::string>>& metadata, absl::Duration timeout) {
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

std::unique_ptr<OpenStream> PagodaServerTest::Open(const v1::GenerateRequest& request,
                                                   absl::Duration timeout) {
  auto stream = std::make_unique<OpenStream>();
  stream->context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  stream->reader = stub_->Generate(&stream->context, request);
  return stream;
}

v1::ServerInfo PagodaServerTest::ServerInfo() {
  grpc::ClientContext context;
  v1::ServerInfo info;
  EXPECT_TRUE(stub_->GetServerInfo(&context, v1::GetServerInfoRequest(), &info).ok());
  return info;
}

RawCallResult PagodaServerTest::RawCall(const std::string& method,
                                        const std::string& request_bytes) {
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

HealthCheckResponse::ServingStatus PagodaServerTest::Health(const std::string& service) {
  grpc::ClientContext context;
  HealthCheckRequest request;
  request.set_service(service);
  HealthCheckResponse response;
  const grpc::Status status = health_->Check(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.status();
}

std::string PagodaServerTest::Scrape() {
  absl::StatusOr<http::testing::HttpResponse> response =
      http::testing::HttpGet(*server_->metrics_port(), "/metrics");
  EXPECT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 200);
  return response.ok() ? response->body : "";
}

double PagodaServerTest::Metric(const std::string& series) { return MetricValue(Scrape(), series); }

}  // namespace pagoda::server::testing
