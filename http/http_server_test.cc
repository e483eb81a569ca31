#include "http/http_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/testing/http_client.h"

namespace pagoda::http {
namespace {

using ::testing::HasSubstr;
using testing::HttpExchange;

std::unique_ptr<HttpServer> StartServer(Handler handler, int io_timeout_ms = 2000) {
  HttpServer::Options options;
  options.io_timeout_ms = io_timeout_ms;
  options.max_header_bytes = 1024;
  options.max_body_bytes = 100;
  options.handler = std::move(handler);
  options.error_response = [](int status, const std::string& message) {
    Response response;
    response.body = absl::StrCat("{\"status\":", status, ",\"message\":\"", message, "\"}");
    return response;
  };
  absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(std::move(options));
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

// Echoes the method, path, a header and the body.
void Echo(const Request& request, std::shared_ptr<Responder> responder) {
  Response response;
  response.content_type = "text/plain";
  const std::string* value = request.Header("x-test");
  response.body = absl::StrCat(request.method, " ", request.path, " ",
                               value == nullptr ? "-" : *value, " ", request.body);
  responder->Send(std::move(response));
}

// The payload of a chunked body ("3\r\nabc\r\n0\r\n\r\n" -> "abc"); "!" when malformed.
std::string Dechunk(const std::string& body) {
  std::string out;
  size_t at = 0;
  while (true) {
    const size_t eol = body.find("\r\n", at);
    if (eol == std::string::npos) return "!";
    size_t size = 0;
    if (!absl::SimpleHexAtoi(body.substr(at, eol - at), &size)) return "!";
    if (size == 0) return out;
    out += body.substr(eol + 2, size);
    at = eol + 2 + size + 2;
  }
}

TEST(HttpServerTest, AnswersWholeResponsesAndHead) {
  const std::unique_ptr<HttpServer> server = StartServer(Echo);
  ASSERT_NE(server, nullptr);
  const auto response = HttpExchange(server->port(),
                                     "POST /a/b?q=1 HTTP/1.1\r\nHost: x\r\nX-Test: yes\r\n"
                                     "Content-Length: 5\r\nConnection: close\r\n\r\nhello");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "POST /a/b yes hello");
  EXPECT_THAT(response->headers, HasSubstr("Content-Length: 19"));
  const auto head = HttpExchange(server->port(), "HEAD / HTTP/1.0\r\n\r\n");
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_THAT(head->headers, HasSubstr("Content-Length: 9"));
  EXPECT_EQ(head->body, "");
}

TEST(HttpServerTest, AnswersPipelinedRequestsInOrder) {
  const std::unique_ptr<HttpServer> server = StartServer(Echo);
  ASSERT_NE(server, nullptr);
  const auto response = HttpExchange(server->port(),
                                     "GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
                                     "GET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  ASSERT_TRUE(response.ok()) << response.status();
  // The client reads one response; the second follows it in the bytes read.
  EXPECT_THAT(response->body, HasSubstr("GET /one - "));
  EXPECT_THAT(response->body, HasSubstr("GET /two - "));
}

TEST(HttpServerTest, StreamsChunksWrittenFromAnotherThread) {
  std::thread writer;
  const std::unique_ptr<HttpServer> server =
      StartServer([&writer](const Request&, std::shared_ptr<Responder> responder) {
        Response head;
        head.content_type = "text/event-stream";
        head.body = "first;";
        responder->StartStream(std::move(head));
        writer = std::thread([responder] {
          for (int i = 0; i < 3; ++i) {
            absl::SleepFor(absl::Milliseconds(10));
            responder->Write(absl::StrCat("piece", i, ";"));
          }
          responder->End();
          responder->Write("after the end");  // ignored
        });
      });
  ASSERT_NE(server, nullptr);
  const auto response =
      HttpExchange(server->port(), "GET /s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  writer.join();
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_THAT(response->headers, HasSubstr("Transfer-Encoding: chunked"));
  EXPECT_THAT(response->headers, HasSubstr("Content-Type: text/event-stream"));
  EXPECT_EQ(Dechunk(response->body), "first;piece0;piece1;piece2;");
}

// A handler that starts a stream and never ends it: only the client's leaving (or the server
// stopping) ends it.
struct HeldStream {
  Handler handler() {
    return [this](const Request&, std::shared_ptr<Responder> responder) {
      responder->StartStream(Response{.content_type = "text/event-stream"});
      responder->OnDisconnect([this] { disconnected.Notify(); });
      absl::MutexLock lock(&mu);
      kept = responder;
    };
  }
  // Connects, asks for the stream and reads its head; the socket, or -1.
  static int Open(int port) {
    const int fd = testing::ConnectLoopback(port);
    const std::string request = "GET /s HTTP/1.1\r\nHost: x\r\n\r\n";
    char buffer[256];
    if (fd < 0 ||
        send(fd, request.data(), request.size(), 0) != static_cast<ssize_t>(request.size()) ||
        recv(fd, buffer, sizeof(buffer), 0) <= 0) {
      if (fd >= 0) close(fd);
      return -1;
    }
    return fd;
  }
  // Writing to a stream whose client or server is gone is harmless.
  void WriteToNobody() {
    absl::MutexLock lock(&mu);
    kept->Write("to nobody");
    kept->End();
  }

  absl::Notification disconnected;
  absl::Mutex mu;
  std::shared_ptr<Responder> kept ABSL_GUARDED_BY(mu);
};

TEST(HttpServerTest, TellsTheHandlerWhenTheClientLeaves) {
  HeldStream held;
  const std::unique_ptr<HttpServer> server = StartServer(held.handler());
  ASSERT_NE(server, nullptr);
  const int fd = HeldStream::Open(server->port());
  ASSERT_GE(fd, 0);
  close(fd);
  EXPECT_TRUE(held.disconnected.WaitForNotificationWithTimeout(absl::Seconds(5)));
  held.WriteToNobody();
}

TEST(HttpServerTest, StoppingEndsOpenStreams) {
  HeldStream held;
  std::unique_ptr<HttpServer> server = StartServer(held.handler());
  ASSERT_NE(server, nullptr);
  const int fd = HeldStream::Open(server->port());
  ASSERT_GE(fd, 0);
  const absl::Time start = absl::Now();
  server.reset();
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EXPECT_TRUE(held.disconnected.HasBeenNotified());
  close(fd);
  held.WriteToNobody();
}

TEST(HttpServerTest, RefusesOversizedAndMalformedRequests) {
  const std::unique_ptr<HttpServer> server = StartServer(Echo);
  ASSERT_NE(server, nullptr);
  const auto big_body = HttpExchange(
      server->port(), absl::StrCat("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n",
                                   std::string(101, 'a')));
  ASSERT_TRUE(big_body.ok()) << big_body.status();
  EXPECT_EQ(big_body->status, 413);
  EXPECT_THAT(big_body->body, HasSubstr("\"status\":413"));
  const auto big_head =
      HttpExchange(server->port(),
                   absl::StrCat("GET / HTTP/1.1\r\nX-Flood: ", std::string(2000, 'h'), "\r\n\r\n"));
  ASSERT_TRUE(big_head.ok()) << big_head.status();
  EXPECT_EQ(big_head->status, 431);
  const auto garbage = HttpExchange(server->port(), "garbage\r\n\r\n");
  ASSERT_TRUE(garbage.ok()) << garbage.status();
  EXPECT_EQ(garbage->status, 400);
  EXPECT_THAT(garbage->headers, HasSubstr("Connection: close"));
}

TEST(HttpServerTest, ASlowRequestIsDroppedAfterTheTimeout) {
  const std::unique_ptr<HttpServer> server = StartServer(Echo, /*io_timeout_ms=*/200);
  ASSERT_NE(server, nullptr);
  const absl::Time start = absl::Now();
  // Half a head, then silence: the server closes the connection, unanswered.
  const auto slow = HttpExchange(server->port(), "GET / HTTP/1.1\r\nHost: x\r\n", 3000);
  EXPECT_FALSE(slow.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  // The server keeps serving.
  EXPECT_EQ(HttpExchange(server->port(), "GET / HTTP/1.0\r\n\r\n")->status, 200);
}

TEST(HttpServerTest, AnswersExpectContinueBeforeTheBody) {
  const std::unique_ptr<HttpServer> server = StartServer(Echo);
  ASSERT_NE(server, nullptr);
  const int fd = testing::ConnectLoopback(server->port());
  ASSERT_GE(fd, 0);
  const std::string head =
      "POST /c HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n"
      "Connection: close\r\n\r\n";
  ASSERT_EQ(send(fd, head.data(), head.size(), 0), static_cast<ssize_t>(head.size()));
  char buffer[512];
  const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);  // before any body byte was sent
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buffer, static_cast<size_t>(n)), "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_EQ(send(fd, "abc", 3, 0), 3);
  std::string rest;
  for (ssize_t got; (got = recv(fd, buffer, sizeof(buffer), 0)) > 0;) {
    rest.append(buffer, static_cast<size_t>(got));
  }
  close(fd);
  EXPECT_THAT(rest, HasSubstr("POST /c - abc"));
}

// With two threads, a handler that holds its thread does not hold up another connection.
TEST(HttpServerTest, ASlowHandlerHoldsUpOnlyItsThread) {
  absl::Notification release;
  HttpServer::Options options;
  options.num_threads = 2;
  options.handler = [&release](const Request& request, std::shared_ptr<Responder> responder) {
    if (request.path == "/slow") release.WaitForNotificationWithTimeout(absl::Seconds(10));
    responder->Send(Response{.body = "{}"});
  };
  absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(std::move(options));
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  std::thread slow([port] { (void)HttpExchange(port, "GET /slow HTTP/1.0\r\n\r\n", 15000); });
  absl::SleepFor(absl::Milliseconds(100));
  const absl::Time start = absl::Now();
  EXPECT_EQ(HttpExchange(port, "GET /fast HTTP/1.0\r\n\r\n", 5000)->status, 200);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  release.Notify();
  slow.join();
}

// TLS, with the test-only certificates of server/testdata (README there): the server's for
// "localhost" signed by ca.pem, a client certificate signed by the same CA, and one signed by
// another CA.
std::string TestCert(const std::string& name) {
  std::ifstream file(std::string(PAGODA_TLS_TESTDATA) + "/" + name);
  std::stringstream contents;
  contents << file.rdbuf();
  EXPECT_FALSE(contents.str().empty()) << name;
  return contents.str();
}

std::unique_ptr<HttpServer> StartTlsServer(Handler handler, bool require_client_cert) {
  HttpServer::Options options;
  options.io_timeout_ms = 1000;
  options.handler = std::move(handler);
  options.tls = HttpServer::Options::Tls{
      .cert_chain_pem = TestCert("server.pem"),
      .private_key_pem = TestCert("server.key"),
      .client_ca_pem =
          require_client_cert ? std::optional<std::string>(TestCert("ca.pem")) : std::nullopt};
  absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(std::move(options));
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

TEST(HttpServerTlsTest, ServesWholeAndStreamedAnswersOverTlsOnly) {
  const std::unique_ptr<HttpServer> server = StartTlsServer(
      [](const Request& request, std::shared_ptr<Responder> responder) {
        if (request.path == "/echo") return Echo(request, std::move(responder));
        responder->StartStream(Response{.content_type = "text/event-stream", .body = "a;"});
        responder->Write("b;");
        responder->End();
      },
      /*require_client_cert=*/false);
  ASSERT_NE(server, nullptr);
  const testing::TlsClientOptions tls{.ca_pem = TestCert("ca.pem")};
  const auto whole = testing::HttpsExchange(
      server->port(),
      "POST /echo HTTP/1.1\r\nHost: x\r\nX-Test: t\r\nContent-Length: 4\r\nConnection: close\r\n"
      "\r\nbody",
      tls);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->status, 200);
  EXPECT_EQ(whole->body, "POST /echo t body");
  const auto streamed = testing::HttpsExchange(
      server->port(), "GET /s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", tls);
  ASSERT_TRUE(streamed.ok()) << streamed.status();
  EXPECT_EQ(Dechunk(streamed->body), "a;b;");
  // A client that does not trust the server's CA refuses it.
  const auto untrusted = testing::HttpsExchange(
      server->port(), "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      {.ca_pem = TestCert("other_ca.pem")});
  EXPECT_EQ(untrusted.status().code(), absl::StatusCode::kUnavailable) << untrusted.status();
  // Plain HTTP to the TLS port gets no HTTP answer, and the server keeps serving.
  const auto plain =
      HttpExchange(server->port(), "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_FALSE(plain.ok() && plain->status == 200);
  // A client that connects and sends nothing is dropped after the request timeout.
  const int idle = testing::ConnectLoopback(server->port());
  ASSERT_GE(idle, 0);
  char byte;
  const absl::Time start = absl::Now();
  EXPECT_LE(recv(idle, &byte, 1, 0), 0);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  close(idle);
  EXPECT_EQ(testing::HttpsExchange(
                server->port(), "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", tls)
                ->status,
            200);
}

TEST(HttpServerTlsTest, MutualTlsNeedsACertificateFromTheClientCa) {
  const std::unique_ptr<HttpServer> server = StartTlsServer(Echo, /*require_client_cert=*/true);
  ASSERT_NE(server, nullptr);
  const std::string request = "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  const std::string ca = TestCert("ca.pem");
  EXPECT_FALSE(testing::HttpsExchange(server->port(), request, {.ca_pem = ca}).ok());
  EXPECT_FALSE(testing::HttpsExchange(server->port(), request,
                                      {.ca_pem = ca,
                                       .cert_chain_pem = TestCert("other_client.pem"),
                                       .private_key_pem = TestCert("other_client.key")})
                   .ok());
  const auto accepted = testing::HttpsExchange(server->port(), request,
                                               {.ca_pem = ca,
                                                .cert_chain_pem = TestCert("client.pem"),
                                                .private_key_pem = TestCert("client.key")});
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  EXPECT_EQ(accepted->body, "GET /echo - ");
}

TEST(HttpServerTlsTest, MaterialOpenSslRefusesIsAnError) {
  HttpServer::Options options;
  options.handler = Echo;
  options.tls = HttpServer::Options::Tls{.cert_chain_pem = "not a certificate",
                                         .private_key_pem = TestCert("server.key")};
  absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(options);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(server.status().message()), HasSubstr("certificate chain"));
  // A key of another certificate.
  options.tls = HttpServer::Options::Tls{.cert_chain_pem = TestCert("server.pem"),
                                         .private_key_pem = TestCert("client.key")};
  server = HttpServer::Start(options);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << server.status();
}

TEST(HttpServerTest, ReasonPhrases) {
  EXPECT_EQ(ReasonPhrase(404), "Not Found");
  EXPECT_EQ(ReasonPhrase(429), "Too Many Requests");
  EXPECT_EQ(ReasonPhrase(42), "Unknown");
}

}  // namespace
}  // namespace pagoda::http
