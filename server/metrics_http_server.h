#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace pagoda::server {

// A minimal HTTP/1.1 server for Prometheus scrapes: GET /metrics answers 200 with the text
// that `render` returns (text/plain; version=0.0.4); other paths 404, other methods 405. One
// connection at a time, each closed after its response; a client gets at most
// `io_timeout_ms` to send its request head (at most 8 KiB).
//
// Written instead of prometheus-cpp's civetweb Exposer, whose worker threads have 100 KiB
// stacks that large static TLS of other libraries can overflow (TOOLCHAIN.md pitfall 1), and
// whose destructor blocks for about 2 s (pitfall 2).
//
// Thread-safe to destroy from any thread but its own: the destructor stops accepting, closes
// the socket and joins the serving thread. `render` runs on that thread and must be
// thread-safe with respect to whatever it reads.
class MetricsHttpServer {
 public:
  struct Options {
    std::string host = "127.0.0.1";  // an IPv4 or IPv6 address or a host name
    int port = 0;                    // 0: the kernel picks one (see port())
    int io_timeout_ms = 2000;
    std::function<std::string()> render;
  };

  // Binds and listens, then serves on a new thread. Errors: InvalidArgument for a bad host,
  // Unavailable when the address cannot be bound (e.g. the port is taken).
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(Options options);
  ~MetricsHttpServer();

  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // The bound port.
  int port() const { return port_; }

 private:
  MetricsHttpServer(Options options, int listen_fd, int wake_read_fd, int wake_write_fd, int port);
  void Serve();
  void HandleConnection(int fd);

  const Options options_;
  const int listen_fd_;
  // A pipe whose write end the destructor writes to wake the poll() of Serve().
  const int wake_read_fd_;
  const int wake_write_fd_;
  const int port_;
  std::thread thread_;
};

}  // namespace pagoda::server
