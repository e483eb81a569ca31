#include "server/metrics_http_server.h"

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/dispatch.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/strand.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"

namespace pagoda::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr uint32_t kHeaderLimitBytes = 8 << 10;

// What the connections share: the options and the count of open connections. Touched by the
// serving thread only; owned jointly by the server and its connections, since a connection whose
// handler is still queued when the server stops is destroyed with the io_context, after it.
struct Shared {
  MetricsHttpServer::Options options;
  int open_connections = 0;
};

http::response<http::string_body> Respond(const http::request<http::empty_body>& request,
                                          const Shared& shared) {
  const bool head = request.method() == http::verb::head;
  auto reply = [&](http::status status, const char* type, std::string body) {
    http::response<http::string_body> response(status, request.version());
    response.set(http::field::content_type, type);
    // Errors close the connection: a client that sends wrong requests gets no more of ours.
    response.keep_alive(request.keep_alive() && status == http::status::ok);
    response.body() = std::move(body);
    response.prepare_payload();  // Content-Length of the body, also for HEAD
    if (head) response.body().clear();
    return response;
  };
  if (request.method() != http::verb::get && !head) {
    auto response = reply(http::status::method_not_allowed, "text/plain", "use GET\n");
    response.set(http::field::allow, "GET, HEAD");
    return response;
  }
  const beast::string_view target = request.target();
  const beast::string_view path = target.substr(0, target.find('?'));
  if (path != "/metrics") {
    return reply(http::status::not_found, "text/plain", "metrics are at /metrics\n");
  }
  return reply(http::status::ok, "text/plain; version=0.0.4; charset=utf-8",
               shared.options.render ? shared.options.render() : std::string());
}

// One client connection: read a request head (bounded in size and time), answer, and again
// while the client keeps the connection alive.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, std::shared_ptr<Shared> shared)
      : stream_(std::move(socket)), shared_(std::move(shared)) {
    ++shared_->open_connections;
  }
  ~Connection() { --shared_->open_connections; }

  void ReadRequest(int timeout_ms) {
    parser_.emplace();
    parser_->header_limit(kHeaderLimitBytes);
    parser_->body_limit(kHeaderLimitBytes);
    stream_.expires_after(std::chrono::milliseconds(timeout_ms));
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code error, size_t) {
                       self->OnRead(error);
                     });
  }

 private:
  void OnRead(beast::error_code error) {
    if (error == http::error::end_of_stream || error == beast::error::timeout ||
        error == asio::error::operation_aborted) {
      return Close();
    }
    if (error) {
      // Malformed or too large: say so and close.
      http::response<http::string_body> response(http::status::bad_request, 11);
      response.set(http::field::content_type, "text/plain");
      response.body() = "bad request\n";
      response.keep_alive(false);
      return Send(std::move(response));
    }
    Send(Respond(parser_->get(), *shared_));
  }

  void Send(http::response<http::string_body> response) {
    response_ = std::move(response);
    stream_.expires_after(std::chrono::milliseconds(shared_->options.io_timeout_ms));
    http::async_write(stream_, response_,
                      [self = shared_from_this()](beast::error_code error, size_t) {
                        if (error || !self->response_.keep_alive()) return self->Close();
                        // The first byte of the next request may take the idle timeout; the
                        // rest of its head shares it (a slow client holds one socket, no more).
                        self->ReadRequest(self->shared_->options.idle_timeout_ms);
                      });
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.socket().close(ignored);
  }

  beast::tcp_stream stream_;
  const std::shared_ptr<Shared> shared_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::empty_body>> parser_;
  http::response<http::string_body> response_;
};

}  // namespace

class MetricsHttpServer::Impl {
 public:
  explicit Impl(Options options) : acceptor_(io_), shared_(std::make_shared<Shared>()) {
    shared_->options = std::move(options);
  }

  absl::Status Listen() {
    beast::error_code error;
    tcp::resolver resolver(io_);
    const auto endpoints = resolver.resolve(shared_->options.host,
                                            std::to_string(shared_->options.port),
                                            tcp::resolver::passive, error);
    if (error || endpoints.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot resolve host '", shared_->options.host, "': ", error.message()));
    }
    std::string last_error;
    for (const auto& entry : endpoints) {
      beast::error_code e;
      acceptor_.open(entry.endpoint().protocol(), e);
      if (!e) acceptor_.set_option(asio::socket_base::reuse_address(true), e);
      if (!e) acceptor_.bind(entry.endpoint(), e);
      if (!e) acceptor_.listen(asio::socket_base::max_listen_connections, e);
      if (!e) return absl::OkStatus();
      last_error = absl::StrCat("bind ", shared_->options.host, ":", shared_->options.port, ": ",
                                e.message());
      beast::error_code ignored;
      acceptor_.close(ignored);
    }
    return absl::UnavailableError(last_error);
  }

  int port() const { return acceptor_.local_endpoint().port(); }

  void Run() {
    Accept();
    thread_ = std::thread([this] { io_.run(); });
  }

  ~Impl() {
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Accept() {
    acceptor_.async_accept(asio::make_strand(io_), [this](beast::error_code error,
                                                           tcp::socket socket) {
      if (error == asio::error::operation_aborted) return;
      if (!error) {
        if (shared_->open_connections >= shared_->options.max_connections) {
          beast::error_code ignored;
          socket.close(ignored);  // over the limit: refused at once, the others keep going
        } else {
          std::make_shared<Connection>(std::move(socket), shared_)
              ->ReadRequest(shared_->options.io_timeout_ms);
        }
      }
      Accept();
    });
  }

  asio::io_context io_{1};
  tcp::acceptor acceptor_;
  const std::shared_ptr<Shared> shared_;
  std::thread thread_;
};

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(Options options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  if (absl::Status status = impl->Listen(); !status.ok()) return status;
  impl->Run();
  return std::unique_ptr<MetricsHttpServer>(new MetricsHttpServer(std::move(impl)));
}

MetricsHttpServer::MetricsHttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsHttpServer::~MetricsHttpServer() = default;

int MetricsHttpServer::port() const { return impl_->port(); }

}  // namespace pagoda::server
