#include "server/metrics_http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/testing/http_get.h"

namespace pagoda::server {
namespace {

using ::testing::HasSubstr;
using testing::HttpExchange;
using testing::HttpGet;

std::unique_ptr<MetricsHttpServer> StartServer(std::atomic<int>* renders,
                                               int io_timeout_ms = 2000) {
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server = MetricsHttpServer::Start(
      {.host = "127.0.0.1", .port = 0, .io_timeout_ms = io_timeout_ms, .render = [renders] {
         renders->fetch_add(1);
         return std::string("pagoda_up 1\n");
       }});
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

TEST(MetricsHttpServerTest, ServesMetricsAndRefusesTheRest) {
  std::atomic<int> renders{0};
  const std::unique_ptr<MetricsHttpServer> server = StartServer(&renders);
  ASSERT_NE(server, nullptr);
  ASSERT_GT(server->port(), 0);

  absl::StatusOr<testing::HttpResponse> response = HttpGet(server->port(), "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 200);
  EXPECT_THAT(response->headers, HasSubstr("Content-Type: text/plain; version=0.0.4"));
  EXPECT_THAT(response->headers, HasSubstr("Content-Length: 12"));
  EXPECT_EQ(response->body, "pagoda_up 1\n");

  EXPECT_EQ(HttpGet(server->port(), "/metrics?name[]=x")->status, 200);
  EXPECT_EQ(HttpGet(server->port(), "/")->status, 404);
  EXPECT_EQ(HttpExchange(server->port(), "POST /metrics HTTP/1.1\r\n\r\n")->status, 405);
  EXPECT_EQ(HttpExchange(server->port(), "garbage\r\n\r\n")->status, 400);
  const absl::StatusOr<testing::HttpResponse> head =
      HttpExchange(server->port(), "HEAD /metrics HTTP/1.0\r\n\r\n");
  EXPECT_EQ(head->status, 200);
  EXPECT_TRUE(head->body.empty());
  EXPECT_EQ(renders.load(), 3);
}

TEST(MetricsHttpServerTest, ASilentClientDoesNotBlockTheNextOneForLong) {
  std::atomic<int> renders{0};
  const std::unique_ptr<MetricsHttpServer> server = StartServer(&renders, /*io_timeout_ms=*/200);
  ASSERT_NE(server, nullptr);
  const int silent = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(server->port()));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(silent, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  const absl::Time start = absl::Now();
  EXPECT_EQ(HttpGet(server->port(), "/metrics")->status, 200);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  close(silent);
}

TEST(MetricsHttpServerTest, ATakenPortIsAnError) {
  std::atomic<int> renders{0};
  const std::unique_ptr<MetricsHttpServer> first = StartServer(&renders);
  ASSERT_NE(first, nullptr);
  const absl::StatusOr<std::unique_ptr<MetricsHttpServer>> second =
      MetricsHttpServer::Start({.host = "127.0.0.1", .port = first->port()});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(MetricsHttpServer::Start({.host = "no such host.invalid", .port = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MetricsHttpServerTest, StopsPromptly) {
  std::atomic<int> renders{0};
  std::unique_ptr<MetricsHttpServer> server = StartServer(&renders);
  const absl::Time start = absl::Now();
  server.reset();
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
}

}  // namespace
}  // namespace pagoda::server
