#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace pagoda::http::testing {

// A raw HTTP exchange over a plain socket, for tests of the HTTP servers.
struct HttpResponse {
  int status = 0;       // e.g. 200
  std::string headers;  // the header lines, CRLF-separated
  std::string body;
};

// A TCP socket connected to 127.0.0.1:`port` (close it yourself), or -1 with errno set.
int ConnectLoopback(int port);

// Connects to 127.0.0.1:`port`, sends `request` verbatim (e.g. "GET /metrics HTTP/1.1\r\n...")
// and reads until the server closes the connection or `timeout_ms` passes.
absl::StatusOr<HttpResponse> HttpExchange(int port, const std::string& request,
                                          int timeout_ms = 5000);

// GET `path` with HTTP/1.1 and Connection: close.
absl::StatusOr<HttpResponse> HttpGet(int port, const std::string& path, int timeout_ms = 5000);

}  // namespace pagoda::http::testing
