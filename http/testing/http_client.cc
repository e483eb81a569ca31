#include "http/testing/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace pagoda::http::testing {
namespace {

absl::StatusOr<HttpResponse> ParseResponse(const std::string& raw);

std::string OpenSslError(absl::string_view what) {
  const unsigned long code = ERR_get_error();
  char text[256] = "unknown";
  if (code != 0) ERR_error_string_n(code, text, sizeof(text));
  ERR_clear_error();
  return absl::StrCat(what, ": ", text);
}

// Adds every certificate of `pem` to the context's trust store.
bool TrustPem(SSL_CTX* context, const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  int added = 0;
  while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
    added += X509_STORE_add_cert(SSL_CTX_get_cert_store(context), cert);
    X509_free(cert);
  }
  BIO_free(bio);
  ERR_clear_error();  // the loop ends on "no start line"
  return added > 0;
}

bool UsePem(SSL_CTX* context, const std::string& cert_pem, const std::string& key_pem) {
  BIO* bio = BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  bio = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  const bool ok = cert != nullptr && key != nullptr &&
                  SSL_CTX_use_certificate(context, cert) == 1 &&
                  SSL_CTX_use_PrivateKey(context, key) == 1;
  X509_free(cert);
  EVP_PKEY_free(key);
  return ok;
}

}  // namespace

int ConnectLoopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    const int error = errno;
    close(fd);
    errno = error;
    return -1;
  }
  return fd;
}

absl::StatusOr<HttpResponse> HttpExchange(int port, const std::string& request, int timeout_ms) {
  const absl::Time deadline = absl::Now() + absl::Milliseconds(timeout_ms);
  const int fd = ConnectLoopback(port);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("connect: ", std::strerror(errno)));
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  std::string raw;
  char buffer[4096];
  while (true) {
    const int left_ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    pollfd pfd{.fd = fd, .events = POLLIN, .revents = 0};
    if (left_ms <= 0 || poll(&pfd, 1, left_ms) <= 0) {
      close(fd);
      return absl::DeadlineExceededError(absl::StrCat("no complete answer; got '", raw, "'"));
    }
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    raw.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return ParseResponse(raw);
}

namespace {

absl::StatusOr<HttpResponse> ParseResponse(const std::string& raw) {
  HttpResponse response;
  const size_t head_end = raw.find("\r\n\r\n");
  const size_t line_end = raw.find("\r\n");
  if (head_end == std::string::npos || raw.size() < 12 ||
      !absl::SimpleAtoi(raw.substr(9, 3), &response.status)) {
    return absl::DataLossError(absl::StrCat("malformed answer: '", raw, "'"));
  }
  response.headers = raw.substr(line_end + 2, head_end - line_end - 2);
  response.body = raw.substr(head_end + 4);
  return response;
}

}  // namespace

absl::StatusOr<HttpResponse> HttpsExchange(int port, const std::string& request,
                                           const TlsClientOptions& tls, int timeout_ms) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> context(SSL_CTX_new(TLS_client_method()),
                                                            &SSL_CTX_free);
  SSL_CTX_set_min_proto_version(context.get(), TLS1_2_VERSION);
  SSL_CTX_set_verify(context.get(), SSL_VERIFY_PEER, nullptr);
  if (!TrustPem(context.get(), tls.ca_pem)) return absl::InvalidArgumentError("no CA certificate");
  if (tls.cert_chain_pem.has_value() &&
      !UsePem(context.get(), *tls.cert_chain_pem, tls.private_key_pem.value_or(""))) {
    return absl::InvalidArgumentError(OpenSslError("client certificate"));
  }
  const int fd = ConnectLoopback(port);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("connect: ", std::strerror(errno)));
  timeval timeout{.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(context.get()), &SSL_free);
  SSL_set_fd(ssl.get(), fd);
  SSL_set_tlsext_host_name(ssl.get(), tls.server_name.c_str());
  SSL_set1_host(ssl.get(), tls.server_name.c_str());
  if (SSL_connect(ssl.get()) != 1) {
    const std::string error = OpenSslError("TLS handshake");
    close(fd);
    return absl::UnavailableError(error);
  }
  std::string raw;
  bool ok = SSL_write(ssl.get(), request.data(), static_cast<int>(request.size())) > 0;
  // TLS 1.3 reports a refused client certificate after the handshake, at the first read.
  char buffer[4096];
  int n = 0;
  while (ok && (n = SSL_read(ssl.get(), buffer, sizeof(buffer))) > 0) {
    raw.append(buffer, static_cast<size_t>(n));
  }
  const int error = ok ? SSL_get_error(ssl.get(), n) : SSL_ERROR_SSL;
  std::string reason;
  if (error != SSL_ERROR_ZERO_RETURN && raw.empty()) reason = OpenSslError("TLS read");
  ERR_clear_error();
  close(fd);
  if (!reason.empty()) return absl::UnavailableError(reason);
  return ParseResponse(raw);
}

absl::StatusOr<HttpResponse> HttpGet(int port, const std::string& path, int timeout_ms) {
  return HttpExchange(
      port, absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
      timeout_ms);
}

}  // namespace pagoda::http::testing
