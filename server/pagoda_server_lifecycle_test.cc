// End-to-end tests of the daemon's lifecycle in process (server/testing/server_fixture.h):
// draining and its timeout, health while loading and after an engine failure, and ports that
// are already taken.

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "pagoda/v1/text_generation_service.grpc.pb.h"
#include "server/pagoda_server.h"
#include "server/server_options.h"
#include "server/testing/server_fixture.h"

namespace pagoda::server {
namespace {

using ::grpc::health::v1::HealthCheckResponse;
using ::pagoda::server::testing::GenerateResult;
using ::pagoda::server::testing::LongRequest;
using ::pagoda::server::testing::OpenStream;
using ::pagoda::server::testing::PagodaServerTest;
using ::pagoda::server::testing::ToMap;
using ::pagoda::server::testing::WaitFor;
using ::testing::HasSubstr;
using ::testing::StartsWith;

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
  options.http_port = 0;
  EXPECT_EQ(PagodaServer::Start(options).status().code(), absl::StatusCode::kUnavailable);
  options.port = 0;
  options.metrics_port = *server_->metrics_port();
  const absl::Status metrics = PagodaServer::Start(options).status();
  EXPECT_EQ(metrics.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(metrics.message()), StartsWith("--metrics-port: "));
}

}  // namespace
}  // namespace pagoda::server
