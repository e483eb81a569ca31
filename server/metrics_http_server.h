#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace pagoda::http {
class HttpServer;
}  // namespace pagoda::http

namespace pagoda::server {

// The HTTP/1.1 server of Prometheus scrapes, on Boost.Beast over Asio: GET (or HEAD) /metrics
// answers 200 with the text that `render` returns (text/plain; version=0.0.4); other paths 404,
// other methods 405, a malformed request 400. Asynchronous: one thread serves any number of
// connections at once, so idle or slow clients cannot starve a scrape (the hardening issue: six
// idle sockets used to make every scrape of the old one-connection-at-a-time server fail).
// Keep-alive as the client asks. Per connection, a request head must arrive within
// `io_timeout_ms` (8 KiB at most), and a kept-alive connection waits `idle_timeout_ms` for the
// next request; past `max_connections` open at once, new ones are closed at once.
//
// Rather than prometheus-cpp's civetweb Exposer, whose worker threads have 100 KiB stacks that
// large static TLS of other libraries can overflow, and whose destructor blocks about 2 s. It is
// the daemon's HTTP server (http/http_server.h) with one route.
//
// Thread-safe to destroy from any thread but its own: the destructor stops the server, closes
// every connection and joins the serving thread. `render` runs on that thread and must be
// thread-safe with respect to whatever it reads.
class MetricsHttpServer {
 public:
  struct Options {
    std::string host = "127.0.0.1";  // an IPv4 or IPv6 address or a host name
    int port = 0;                    // 0: the kernel picks one (see port())
    int io_timeout_ms = 2000;
    int idle_timeout_ms = 30000;
    int max_connections = 1024;
    std::function<std::string()> render;
  };

  // Binds and listens, then serves on a new thread. Errors: InvalidArgument for a bad host,
  // Unavailable when the address cannot be bound (e.g. the port is taken).
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(Options options);
  ~MetricsHttpServer();

  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // The bound port.
  int port() const;

 private:
  explicit MetricsHttpServer(std::unique_ptr<http::HttpServer> server);
  std::unique_ptr<http::HttpServer> server_;
};

}  // namespace pagoda::server
