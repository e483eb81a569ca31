// TLS, mTLS and bearer-token authentication of the daemon, in process: a PagodaServer on
// 127.0.0.1 with kernel-picked ports, a real Engine over the fake model, real gRPC clients and
// the test-only certificates of server/testdata/ (README there).

#include <unistd.h>

#include <condition_variable>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "http/testing/http_client.h"
#include "pagoda/v1/text_generation_service.grpc.pb.h"
#include "runner/testing/fake_model_runner.h"
#include "server/pagoda_server.h"
#include "server/testing/server_fixture.h"
#include "tokenizer/byte_tokenizer.h"

namespace pagoda::server {
namespace {

using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::testing::HasSubstr;
using testing::MetricValue;
using ::testing::Not;

constexpr char kModelName[] = "fake-model";
constexpr char kToken[] = "s3cret-token-for-tests-only";
constexpr char kOtherToken[] = "second-token-for-tests-only";

std::string TestFile(const std::string& name) {
  return std::string(PAGODA_SERVER_TESTDATA) + "/" + name;
}

std::string ReadTestFile(const std::string& name) {
  std::ifstream file(TestFile(name));
  std::stringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

// A token file in the test's temporary directory, one per process: ctest runs the tests of
// this file as parallel processes, and a shared path let one truncate the file while another
// server read it.
std::string WriteTokenFile() {
  const std::string path =
      absl::StrCat(::testing::TempDir(), "/pagoda-security-test-tokens-", getpid());
  std::ofstream file(path);
  file << "# tokens of pagoda_server_security_test\n" << kToken << "\n\n" << kOtherToken << "\n";
  return path;
}

struct Security {
  bool tls = false;
  bool client_ca = false;              // mTLS
  bool auth_token = false;             // --auth-token-file
  std::optional<std::string> api_key;  // --api-key
};

// How a client connects.
struct ClientSecurity {
  bool tls = false;
  std::string cert;  // test file names of a client certificate and key, for mTLS
  std::string key;
};

// Connects to an IP address, never a host name: resolving "localhost" goes through c-ares,
// which leaks a few bytes LeakSanitizer reports. TLS checks the certificate against "localhost",
// the name the test server certificate is for.
std::shared_ptr<grpc::Channel> Connect(const std::string& address, const ClientSecurity& client) {
  if (!client.tls) return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadTestFile("ca.pem");
  if (!client.cert.empty()) {
    ssl.pem_cert_chain = ReadTestFile(client.cert);
    ssl.pem_private_key = ReadTestFile(client.key);
  }
  grpc::ChannelArguments arguments;
  arguments.SetSslTargetNameOverride("localhost");
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(ssl), arguments);
}

class PagodaServerSecurityTest : public ::testing::Test {
 protected:
  void StartServer(const Security& security) {
    ServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.metrics_port = 0;
    options.http_port = 0;
    options.drain_timeout = absl::Seconds(5);
    if (security.tls) {
      options.tls_cert_file = TestFile("server.pem");
      options.tls_key_file = TestFile("server.key");
    }
    if (security.client_ca) options.tls_client_ca_file = TestFile("ca.pem");
    if (security.auth_token) options.auth_token_file = WriteTokenFile();
    options.api_key = security.api_key;
    options.engine_core_factory = [](const engine::EngineConfig&) {
      engine::EngineCoreOptions core;
      core.scheduler.max_num_seqs = 4;
      core.scheduler.max_num_batched_tokens = 256;
      core.scheduler.max_model_len = 128;
      return engine::EngineCore::Create(
          kModelName,
          std::make_unique<runner::testing::FakeModelRunner>(
              runner::testing::FakeModelRunner::Options{
                  .vocab_size = tokenizer::ByteTokenizer::kVocabSize,
                  .eos_token_ids = {tokenizer::ByteTokenizer::kEosId}}),
          std::make_unique<tokenizer::ByteTokenizer>(), core);
    };
    absl::StatusOr<std::unique_ptr<PagodaServer>> server = PagodaServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_TRUE(server_->LoadEngine().ok());
  }

  void TearDown() override { server_.reset(); }

  std::string Address() const { return absl::StrCat("127.0.0.1:", server_->port()); }

  // A completion of two tokens over TLS to the HTTP API port, trusting ca.pem; with
  // `client.cert`, presenting that certificate.
  absl::StatusOr<http::testing::HttpResponse> HttpsPost(const ClientSecurity& client) {
    const std::string body = R"({"prompt": "hi", "max_tokens": 2, "ignore_eos": true})";
    http::testing::TlsClientOptions tls{.ca_pem = ReadTestFile("ca.pem")};
    if (!client.cert.empty()) {
      tls.cert_chain_pem = ReadTestFile(client.cert);
      tls.private_key_pem = ReadTestFile(client.key);
    }
    return http::testing::HttpsExchange(
        *server_->http_port(),
        absl::StrCat("POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n",
                     "Content-Length: ", body.size(), "\r\n\r\n", body),
        tls, 10000);
  }

  // A Generate of two tokens on a fresh channel; `authorization` empty: no such metadata.
  grpc::Status Generate(const ClientSecurity& client, const std::string& authorization = "") {
    auto stub = v1::TextGeneration::NewStub(Connect(Address(), client));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    if (!authorization.empty()) context.AddMetadata("authorization", authorization);
    v1::GenerateRequest request;
    request.set_text("hi");
    request.mutable_stopping()->set_max_tokens(2);
    request.mutable_stopping()->set_ignore_eos(true);
    std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
        stub->Generate(&context, request);
    v1::GenerateResponse response;
    bool completed = false;
    while (reader->Read(&response)) completed |= response.has_complete();
    grpc::Status status = reader->Finish();
    if (status.ok()) {
      EXPECT_TRUE(completed);
    }
    return status;
  }

  grpc::Status HealthCheck(const ClientSecurity& client, HealthCheckResponse* response) {
    auto health = grpc::health::v1::Health::NewStub(Connect(Address(), client));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    return health->Check(&context, HealthCheckRequest(), response);
  }

  double Metric(const std::string& series) {
    absl::StatusOr<http::testing::HttpResponse> response =
        http::testing::HttpGet(*server_->metrics_port(), "/metrics");
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? MetricValue(response->body, series) : -1;
  }

  std::unique_ptr<PagodaServer> server_;
};

TEST_F(PagodaServerSecurityTest, TlsServesTlsClientsOnly) {
  ASSERT_NO_FATAL_FAILURE(StartServer({.tls = true}));
  EXPECT_TRUE(Generate({.tls = true}).ok());
  HealthCheckResponse health;
  EXPECT_TRUE(HealthCheck({.tls = true}, &health).ok());
  EXPECT_EQ(health.status(), HealthCheckResponse::SERVING);
  // A plaintext client cannot complete the handshake.
  EXPECT_EQ(Generate({.tls = false}).error_code(), grpc::StatusCode::UNAVAILABLE);

  // The HTTP API port speaks TLS with the same certificate, and only TLS; --metrics-port
  // stays plaintext.
  const auto completion = HttpsPost({});
  ASSERT_TRUE(completion.ok()) << completion.status();
  EXPECT_EQ(completion->status, 200) << completion->body;
  EXPECT_THAT(completion->body, HasSubstr("\"completion_tokens\":2"));
  const auto plain = http::testing::HttpGet(*server_->http_port(), "/health");
  EXPECT_FALSE(plain.ok() && plain->status == 200);
  EXPECT_EQ(http::testing::HttpGet(*server_->metrics_port(), "/metrics")->status, 200);
}

TEST_F(PagodaServerSecurityTest, MutualTlsNeedsAClientCertificateOfTheCa) {
  ASSERT_NO_FATAL_FAILURE(StartServer({.tls = true, .client_ca = true}));
  EXPECT_TRUE(Generate({.tls = true, .cert = "client.pem", .key = "client.key"}).ok());
  EXPECT_FALSE(Generate({.tls = true}).ok());
  EXPECT_FALSE(Generate({.tls = true, .cert = "other_client.pem", .key = "other_client.key"}).ok());
  EXPECT_FALSE(Generate({.tls = false}).ok());
  HealthCheckResponse health;
  EXPECT_FALSE(HealthCheck({.tls = true}, &health).ok());  // mTLS covers the whole port
  // And the HTTP API port.
  EXPECT_EQ(HttpsPost({.cert = "client.pem", .key = "client.key"})->status, 200);
  EXPECT_FALSE(HttpsPost({}).ok());
  EXPECT_FALSE(HttpsPost({.cert = "other_client.pem", .key = "other_client.key"}).ok());
}

TEST_F(PagodaServerSecurityTest, BearerTokens) {
  ASSERT_NO_FATAL_FAILURE(StartServer({.auth_token = true}));
  const std::string rejected =
      R"(pagoda_requests_rejected_total{model_name="fake-model",reason="unauthenticated"})";
  EXPECT_EQ(Metric(rejected), 0);

  const grpc::Status missing = Generate({});
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(missing.error_message(), HasSubstr("authorization: Bearer <token>"));
  const grpc::Status wrong = Generate({}, "Bearer not-the-token");
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(wrong.error_message(), Not(HasSubstr("not-the-token")));
  EXPECT_EQ(Generate({}, kToken).error_code(), grpc::StatusCode::UNAUTHENTICATED);  // no scheme
  EXPECT_TRUE(Generate({}, absl::StrCat("Bearer ", kToken)).ok());
  EXPECT_TRUE(Generate({}, absl::StrCat("Bearer ", kOtherToken)).ok());
  EXPECT_EQ(Metric(rejected), 3);

  // Probes need no token.
  HealthCheckResponse health;
  ASSERT_TRUE(HealthCheck({}, &health).ok());
  EXPECT_EQ(health.status(), HealthCheckResponse::SERVING);
  EXPECT_EQ(Metric(rejected), 3);
}

// Every method of pagoda.v1.TextGeneration, present and future, checks the token: called
// without one, each fails with UNAUTHENTICATED before it looks at its (empty) request.
// The OpenAI API checks the same tokens: /v1/* and the tokenizer routes need one, /health,
// /version and /metrics do not.
TEST_F(PagodaServerSecurityTest, TheHttpApiChecksTheSameTokens) {
  ASSERT_NO_FATAL_FAILURE(StartServer({.auth_token = true}));
  const int port = *server_->http_port();
  auto post = [port](const std::string& path, const std::string& header) {
    const std::string body = R"({"prompt": "hi", "max_tokens": 2})";
    return http::testing::HttpExchange(
        port, absl::StrCat("POST ", path, " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n", header,
                           "Content-Length: ", body.size(), "\r\n\r\n", body));
  };
  const auto none = post("/v1/completions", "");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->status, 401);
  EXPECT_THAT(none->body, HasSubstr("\"type\":\"authentication_error\""));
  EXPECT_EQ(post("/v1/completions", "Authorization: Bearer wrong\r\n")->status, 401);
  EXPECT_EQ(post("/v1/completions", absl::StrCat("Authorization: Bearer ", kToken, "\r\n"))->status,
            200);
  EXPECT_EQ(post("/tokenize", "")->status, 401);
  EXPECT_EQ(http::testing::HttpGet(port, "/v1/models")->status, 401);
  EXPECT_EQ(http::testing::HttpGet(port, "/health")->status, 200);
  EXPECT_EQ(http::testing::HttpGet(port, "/version")->status, 200);
  EXPECT_EQ(http::testing::HttpGet(port, "/metrics")->status, 200);
}

TEST_F(PagodaServerSecurityTest, ApiKeyJoinsTheTokenFile) {
  ASSERT_NO_FATAL_FAILURE(StartServer({.auth_token = true, .api_key = "sk-command-line"}));
  const int port = *server_->http_port();
  auto models = [port](const std::string& authorization) {
    return http::testing::HttpExchange(
        port, absl::StrCat("GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n",
                           authorization, "\r\n"));
  };
  EXPECT_EQ(models("Authorization: Bearer sk-command-line\r\n")->status, 200);
  EXPECT_EQ(models(absl::StrCat("Authorization: Bearer ", kToken, "\r\n"))->status, 200);
  EXPECT_EQ(models("Authorization: Bearer sk-other\r\n")->status, 401);
  // The same store guards gRPC.
  EXPECT_TRUE(Generate({}, "Bearer sk-command-line").ok());
  EXPECT_EQ(Generate({}, "Bearer sk-other").error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(PagodaServerSecurityTest, EveryTextGenerationMethodNeedsTheToken) {
  ASSERT_NO_FATAL_FAILURE(StartServer({.tls = true, .auth_token = true}));
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          "pagoda.v1.TextGeneration");
  ASSERT_NE(service, nullptr);
  ASSERT_GE(service->method_count(), 6);
  grpc::GenericStub stub(Connect(Address(), {.tls = true}));
  for (int i = 0; i < service->method_count(); ++i) {
    const std::string method =
        absl::StrCat("/", service->full_name(), "/", service->method(i)->name());
    for (const std::string authorization : {"", "Bearer wrong"}) {
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
      if (!authorization.empty()) context.AddMetadata("authorization", authorization);
      grpc::Slice empty_message("");
      const grpc::ByteBuffer request(&empty_message, 1);
      grpc::ByteBuffer response;
      std::mutex mu;
      std::condition_variable done_cv;
      bool done = false;
      grpc::Status status;
      stub.UnaryCall(&context, method, grpc::StubOptions(), &request, &response,
                     [&](grpc::Status s) {
                       std::lock_guard<std::mutex> lock(mu);
                       status = std::move(s);
                       done = true;
                       done_cv.notify_one();
                     });
      std::unique_lock<std::mutex> lock(mu);
      done_cv.wait(lock, [&] { return done; });
      EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
          << method << " with '" << authorization << "': " << status.error_message();
    }
  }
}

TEST_F(PagodaServerSecurityTest, EngineHealthyGauge) {
  ASSERT_NO_FATAL_FAILURE(StartServer({}));
  EXPECT_EQ(Metric(R"(pagoda_engine_healthy{model_name="fake-model"})"), 1);
}

TEST_F(PagodaServerSecurityTest, BadFilesAreStartUpErrorsNamingTheFlag) {
  struct Case {
    std::function<void(ServerOptions&)> set;
    std::string error_start;
  };
  const Case cases[] = {
      {[](ServerOptions& o) {
         o.tls_cert_file = "/nonexistent/cert.pem";
         o.tls_key_file = TestFile("server.key");
       },
       "--tls-cert-file: "},
      {[](ServerOptions& o) {
         o.tls_cert_file = TestFile("server.pem");
         o.tls_key_file = TestFile("client.key");
       },
       "--tls-key-file: "},
      {[](ServerOptions& o) {
         o.tls_cert_file = TestFile("server.pem");
         o.tls_key_file = TestFile("server.key");
         o.tls_client_ca_file = TestFile("README.md");
       },
       "--tls-client-ca-file: "},
      {[](ServerOptions& o) { o.auth_token_file = "/nonexistent/tokens"; }, "--auth-token-file: "},
  };
  for (const Case& c : cases) {
    ServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.metrics_port.reset();
    options.http_port.reset();
    c.set(options);
    const absl::StatusOr<std::unique_ptr<PagodaServer>> server = PagodaServer::Start(options);
    ASSERT_FALSE(server.ok()) << c.error_start;
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(server.status().message()), ::testing::StartsWith(c.error_start));
  }
}

}  // namespace
}  // namespace pagoda::server
