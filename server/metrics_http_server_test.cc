#include "server/metrics_http_server.h"

#include <unistd.h>

#include <atomic>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/testing/http_client.h"

namespace pagoda::server {
namespace {

using http::testing::HttpExchange;
using http::testing::HttpGet;
using ::testing::HasSubstr;

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

  absl::StatusOr<http::testing::HttpResponse> response = HttpGet(server->port(), "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 200);
  EXPECT_THAT(response->headers, HasSubstr("Content-Type: text/plain; version=0.0.4"));
  EXPECT_THAT(response->headers, HasSubstr("Content-Length: 12"));
  EXPECT_EQ(response->body, "pagoda_up 1\n");

  EXPECT_EQ(HttpGet(server->port(), "/metrics?name[]=x")->status, 200);
  EXPECT_EQ(HttpGet(server->port(), "/")->status, 404);
  EXPECT_EQ(HttpExchange(server->port(), "POST /metrics HTTP/1.1\r\n\r\n")->status, 405);
  EXPECT_EQ(HttpExchange(server->port(), "garbage\r\n\r\n")->status, 400);
  const absl::StatusOr<http::testing::HttpResponse> head =
      HttpExchange(server->port(), "HEAD /metrics HTTP/1.0\r\n\r\n");
  EXPECT_EQ(head->status, 200);
  EXPECT_TRUE(head->body.empty());
  EXPECT_EQ(renders.load(), 3);
}

TEST(MetricsHttpServerTest, ASilentClientDoesNotBlockTheNextOneForLong) {
  std::atomic<int> renders{0};
  const std::unique_ptr<MetricsHttpServer> server = StartServer(&renders, /*io_timeout_ms=*/200);
  ASSERT_NE(server, nullptr);
  const int silent = http::testing::ConnectLoopback(server->port());
  ASSERT_GE(silent, 0);
  const absl::Time start = absl::Now();
  EXPECT_EQ(HttpGet(server->port(), "/metrics")->status, 200);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  close(silent);
}

// The hardening issue's starvation: the old server took one connection at a time and waited
// up to 2 s for each, so six idle sockets made every scrape fail and 200 blinded it.
TEST(MetricsHttpServerTest, TwoHundredIdleSocketsDoNotDelayAScrape) {
  std::atomic<int> renders{0};
  const std::unique_ptr<MetricsHttpServer> server = StartServer(&renders);
  ASSERT_NE(server, nullptr);
  std::vector<int> idle;
  for (int i = 0; i < 200; ++i) idle.push_back(http::testing::ConnectLoopback(server->port()));
  for (int i = 0; i < 5; ++i) {
    const absl::Time start = absl::Now();
    const absl::StatusOr<http::testing::HttpResponse> response =
        HttpGet(server->port(), "/metrics", /*timeout_ms=*/1000);
    ASSERT_TRUE(response.ok()) << response.status();
    EXPECT_EQ(response->status, 200);
    EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  }
  for (int fd : idle) close(fd);
}

TEST(MetricsHttpServerTest, KeepsAliveAndBoundsOpenConnections) {
  std::atomic<int> renders{0};
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
      MetricsHttpServer::Start({.port = 0, .max_connections = 3, .render = [&renders] {
                                  renders.fetch_add(1);
                                  return std::string("pagoda_up 1\n");
                                }});
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  // Two requests on one connection, the second closing it: both answered.
  const absl::StatusOr<http::testing::HttpResponse> two =
      HttpExchange(port,
                   "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n"
                   "GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->status, 200);
  EXPECT_EQ(renders.load(), 2);
  // Three connections held open fill the limit: a fourth is closed unanswered, and answered
  // again once one of them goes.
  std::vector<int> held;
  for (int i = 0; i < 3; ++i) held.push_back(http::testing::ConnectLoopback(port));
  absl::SleepFor(absl::Milliseconds(100));  // the server accepts them
  const absl::StatusOr<http::testing::HttpResponse> refused = HttpGet(port, "/metrics", 1000);
  EXPECT_FALSE(refused.ok() && refused->status == 200);
  close(held.back());
  held.pop_back();
  absl::SleepFor(absl::Milliseconds(100));
  const absl::StatusOr<http::testing::HttpResponse> after = HttpGet(port, "/metrics", 1000);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->status, 200);
  for (int fd : held) close(fd);
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
