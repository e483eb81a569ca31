#pragma once

// Test support: an in-process daemon for end-to-end tests. PagodaServerTest starts a
// PagodaServer on 127.0.0.1 with kernel-picked ports and a real Engine over the fake model
// (runner/testing/fake_model_runner.h, slowed down so that requests take a predictable while),
// and calls it through real gRPC and HTTP clients.
//
// Threads: the fixture and the helpers here are used from the test's thread only; the
// server's engine thread reads PagodaServerTest::fail_next_.

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "pagoda/v1/text_generation_service.grpc.pb.h"
#include "server/pagoda_server.h"

namespace pagoda::server::testing {

// The served model, as GetModelInfo and the metrics' model_name label report it.
inline constexpr char kModelName[] = "fake-model";
inline constexpr int kMaxModelLen = 128;  // tokens
inline constexpr int kNumKvBlocks = 64;
inline constexpr int kBlockSize = 4;  // tokens per block

struct TestConfig {
  absl::Duration step_time = absl::Milliseconds(5);  // the fake model's time per step
  int max_num_seqs = 8;
  int max_waiting_requests = 64;
  absl::Duration drain_timeout = absl::Seconds(10);
  bool load_engine = true;  // false: the test calls server_->LoadEngine() itself
  // --chat-template (the fake model has none of its own).
  std::optional<std::string> chat_template;
  // The fake model attends only its last `sliding_window` tokens (a windowed model: the blocks
  // behind the window are freed).
  std::optional<int> sliding_window;
  // Last changes to the server's options (other flags), if set.
  std::function<void(ServerOptions&)> customize;
};

// The outcome of one Generate call.
struct GenerateResult {
  grpc::Status status;
  std::vector<v1::GenerateResponse> responses;
  std::multimap<std::string, std::string> initial_metadata;
  std::multimap<std::string, std::string> trailing_metadata;

  // The first trailer named `key`, or "" when there is none.
  std::string Trailer(const std::string& key) const {
    const auto it = trailing_metadata.find(key);
    return it == trailing_metadata.end() ? "" : it->second;
  }
};

// The outcome of a call made with raw request bytes (PagodaServerTest::RawCall).
struct RawCallResult {
  grpc::Status status;
  std::multimap<std::string, std::string> trailing_metadata;

  // The first trailer named `key`, or "" when there is none.
  std::string Trailer(const std::string& key) const {
    const auto it = trailing_metadata.find(key);
    return it == trailing_metadata.end() ? "" : it->second;
  }
};

// gRPC metadata as owned strings.
std::multimap<std::string, std::string> ToMap(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata);

// A prompt of three token ids that generates `max_tokens` tokens (EOS ignored), streamed.
v1::GenerateRequest LongRequest(int max_tokens, const std::string& request_id = "");

// A streaming call the test reads at its own pace (PagodaServerTest::Open).
struct OpenStream {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader;

  // The next message; a failed EXPECT when the stream has ended.
  v1::GenerateResponse Next();
  // Reads to the end; returns the messages left and sets *status to the call's status.
  std::vector<v1::GenerateResponse> Rest(grpc::Status* status);
};

// The value of the first series line that starts with `series` in a Prometheus page, or -1.
double MetricValue(const std::string& page, const std::string& series);

// Polls `condition` every 5 ms until it holds (true) or `timeout` passes (its last value).
bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout = absl::Seconds(5));

// Each test calls StartServer first. TearDown aborts what is left and shuts the server down.
class PagodaServerTest : public ::testing::Test {
 protected:
  // Starts server_ (ASSERTs that it started and, with config.load_engine, that the engine
  // loaded) and the stubs on one channel to it.
  void StartServer(const TestConfig& config = {});

  void TearDown() override;

  // One Generate call read to its end, with `metadata` sent and a deadline `timeout` away.
  GenerateResult Generate(const v1::GenerateRequest& request,
                          const std::vector<std::pair<std::string, std::string>>& metadata = {},
                          absl::Duration timeout = absl::Seconds(20));

  // Starts a Generate call with a deadline `timeout` away and leaves it to the caller.
  std::unique_ptr<OpenStream> Open(const v1::GenerateRequest& request,
                                   absl::Duration timeout = absl::Seconds(20));

  // GetServerInfo; a failed EXPECT when the call fails.
  v1::ServerInfo ServerInfo();

  // Calls `method` ("/pagoda.v1.TextGeneration/Abort") with `request_bytes` as the request, as
  // a client whose protobuf library does not check UTF-8 would send it. A Generate call is
  // read as one message: enough for refusals and for an unstreamed request.
  RawCallResult RawCall(const std::string& method, const std::string& request_bytes);

  // The standard health service's status for `service` ("" = the server as a whole).
  grpc::health::v1::HealthCheckResponse::ServingStatus Health(const std::string& service);

  // The /metrics page; EXPECTs status 200, "" when the scrape fails.
  std::string Scrape();

  // MetricValue of a fresh scrape.
  double Metric(const std::string& series);

  // Set it and the model's next step fails ("injected model failure"), once.
  std::atomic<bool> fail_next_{false};  // outlives the server, whose model reads it
  std::unique_ptr<PagodaServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::TextGeneration::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

}  // namespace pagoda::server::testing
