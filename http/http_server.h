#pragma once

// An asynchronous HTTP/1.1 server on Boost.Beast over Asio, for the daemon's HTTP front ends
// (the OpenAI API and /metrics). A few threads serve any number of connections; a handler answers
// each request through a Responder, at once or later from any thread, with a whole response or
// a chunked stream (server-sent events). Beast and Asio are included by http_server.cc alone:
// they are heavy to compile.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pagoda::http {

// One request, read whole (head and body) before the handler sees it.
struct Request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // "/v1/models?x=1"
  std::string path;    // the target up to '?'
  // Header names in lower case, in arrival order.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  // The first header named `name` (lower case), or null.
  const std::string* Header(absl::string_view name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  // Extra header lines; names and values must not contain CR or LF.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // Close the connection after this response, whatever the client asked.
  bool close_connection = false;
};

// The answer to one request. Thread-safe: any method may be called from any thread, each call
// being queued in order on the server's thread. Exactly one of Send, or StartStream then any
// number of Write then End. Calls after the client went away (or out of order) are ignored.
class Responder {
 public:
  virtual ~Responder() = default;
  // A whole response, with Content-Length (to a HEAD request, without its body).
  virtual void Send(Response response) = 0;
  // The status and headers of a chunked response (`head.body` is sent as its first chunk when
  // not empty); then Write each piece and End.
  virtual void StartStream(Response head) = 0;
  virtual void Write(std::string data) = 0;
  virtual void End() = 0;
  // `callback` runs once, on the server's thread, if the client closes its connection (or
  // the server stops) before the response has been sent completely. Set it before the handler
  // returns; it must not block.
  virtual void OnDisconnect(std::function<void()> callback) = 0;
};

// Runs on one of the server's threads for every request and must not block on other work (an
// engine): hand it elsewhere and answer through the responder later.
using Handler = std::function<void(const Request&, std::shared_ptr<Responder>)>;

// Thread rule: Start and the destructor from any thread but the server's own; port() from any.
// The destructor stops the server, closes every connection (their responders' disconnect
// callbacks run) and joins the threads. Handlers run on the server's threads, several at once
// (never two for one connection).
class HttpServer {
 public:
  struct Options {
    std::string host = "127.0.0.1";  // an IPv4 or IPv6 address or a host name
    int port = 0;                    // 0: the kernel picks one (see port())
    // A request (head and body) must arrive within this, or the connection is closed without
    // an answer; a write must progress within it.
    int io_timeout_ms = 10000;
    // A kept-alive connection waits this long for its next request.
    int idle_timeout_ms = 30000;
    // Threads serving the connections (each connection is served by one at a time), so that a
    // handler's slow work (a large body to parse) holds up only the connections of its thread.
    int num_threads = 1;
    // Past this many open connections, new ones are closed at once.
    int max_connections = 4096;
    uint32_t max_header_bytes = 16 << 10;  // larger heads: 431
    uint64_t max_body_bytes = 4 << 20;     // larger bodies: 413
    // Set: the port speaks TLS only (1.2 or later), with this certificate chain (the server's
    // own first) and private key, both PEM; with `client_ca_pem`, clients must present a
    // certificate signed by one of its CAs (mTLS).
    struct Tls {
      std::string cert_chain_pem;
      std::string private_key_pem;
      std::optional<std::string> client_ca_pem;
    };
    std::optional<Tls> tls;
    Handler handler;
    // The body of the answers the server gives by itself (400 malformed, 413, 431) from
    // their status and message. Unset: text/plain with the message.
    std::function<Response(int status, const std::string& message)> error_response;
  };

  // Binds and listens, then serves on a new thread. Errors: InvalidArgument for a bad host
  // or TLS material OpenSSL refuses, Unavailable when the address cannot be bound (e.g. the port is
  // taken).
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(Options options);
  ~HttpServer();

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const;

 private:
  class Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The standard reason phrase of `status` ("Not Found"), or "Unknown".
absl::string_view ReasonPhrase(int status);

}  // namespace pagoda::http
