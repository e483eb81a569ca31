#pragma once

#include <optional>
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

// What a TLS client trusts and presents (PEM text).
struct TlsClientOptions {
  std::string ca_pem;                         // the server's certificate must chain to it
  std::optional<std::string> cert_chain_pem;  // a client certificate, for mTLS
  std::optional<std::string> private_key_pem;
  std::string server_name = "localhost";  // checked against the certificate, and sent as SNI
};

// HttpExchange over TLS (1.2 or later), verifying the server's certificate. Unavailable with
// OpenSSL's reason when the handshake fails (an untrusted server, a client without a certificate
// the server requires).
absl::StatusOr<HttpResponse> HttpsExchange(int port, const std::string& request,
                                           const TlsClientOptions& tls, int timeout_ms = 5000);

}  // namespace pagoda::http::testing
