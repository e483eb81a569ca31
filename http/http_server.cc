#include "http/http_server.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/dispatch.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "boost/asio/write.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "boost/beast/ssl.hpp"
#include "common/status_macros.h"

namespace pagoda::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

constexpr size_t kWatchBytes = 4096;
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

// What the server and its connections share. `options` and `tls` are immutable after Start;
// `open_connections` is counted by the accept loop and by destructors on any thread.
struct Shared {
  HttpServer::Options options;
  std::optional<asio::ssl::context> tls;  // set with options.tls
  std::atomic<int> open_connections{0};
};

using TlsStream = beast::ssl_stream<beast::tcp_stream>;

std::string FormatHead(int status, const Response& response, bool keep_alive, bool chunked) {
  std::string head = absl::StrCat("HTTP/1.1 ", status, " ", ReasonPhrase(status), "\r\n");
  absl::StrAppend(&head, "Content-Type: ", response.content_type, "\r\n");
  for (const auto& [name, value] : response.headers) {
    absl::StrAppend(&head, name, ": ", value, "\r\n");
  }
  if (chunked) {
    absl::StrAppend(&head, "Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n");
  } else {
    absl::StrAppend(&head, "Content-Length: ", response.body.size(), "\r\n");
  }
  absl::StrAppend(&head,
                  keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n");
  return head;
}

// The server's TLS context from PEM material: TLS 1.2 or later; with a client CA, clients must
// present a certificate it signed. Errors name what OpenSSL refused.
absl::Status MakeTlsContext(const HttpServer::Options::Tls& tls,
                            std::optional<asio::ssl::context>& out) {
  asio::ssl::context& context = out.emplace(asio::ssl::context::tls_server);
  beast::error_code error;
  context.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                          asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                          asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use,
                      error);
  const auto failed = [&error](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("TLS ", what, ": ", error.message()));
  };
  if (error) return failed("options");
  context.use_certificate_chain(asio::buffer(tls.cert_chain_pem), error);
  if (error) return failed("certificate chain");
  context.use_private_key(asio::buffer(tls.private_key_pem), asio::ssl::context::pem, error);
  if (error) return failed("private key");
  if (tls.client_ca_pem.has_value()) {
    context.add_certificate_authority(asio::buffer(*tls.client_ca_pem), error);
    if (error) return failed("client CA");
    context.set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert, error);
    if (error) return failed("verify mode");
  }
  return absl::OkStatus();
}

std::string Chunk(absl::string_view data) {
  return absl::StrCat(absl::Hex(data.size()), "\r\n", data, "\r\n");
}

// What a responder and the server see of a connection, whatever its stream (plain or TLS).
// Every method is called on the connection's strand (executor()).
class ConnectionBase : public std::enable_shared_from_this<ConnectionBase> {
 public:
  virtual ~ConnectionBase() = default;
  virtual asio::any_io_executor executor() = 0;
  // Starts serving: the TLS handshake if any, then the first request.
  virtual void Start() = 0;
  // The responder's operations; `exchange` names the request they answer.
  virtual void Send(uint64_t exchange, Response response) = 0;
  virtual void StartStream(uint64_t exchange, Response head) = 0;
  virtual void Write(uint64_t exchange, std::string data) = 0;
  virtual void End(uint64_t exchange) = 0;
  virtual void SetOnDisconnect(uint64_t exchange, std::function<void()> callback) = 0;
  // The server stops: the client is gone as far as the handler is concerned.
  virtual void Stop() = 0;

 protected:
  std::shared_ptr<Responder> MakeResponder(uint64_t exchange);
};

// One client connection over `Stream` (beast::tcp_stream, or TlsStream): read a request
// (bounded in size and time), hand it to the handler, write its answer, and again while the
// client keeps the connection alive. While an answer is pending, a read watches the socket so
// that a client going away is noticed at once. Every member is touched on the connection's
// strand only, except `shared_`'s counter.
template <typename Stream>
class Connection final : public ConnectionBase {
 public:
  template <typename... Args>
  Connection(std::shared_ptr<Shared> shared, Args&&... stream_args)
      : stream_(std::forward<Args>(stream_args)...), shared_(std::move(shared)) {
    ++shared_->open_connections;
  }
  ~Connection() override { --shared_->open_connections; }

  asio::any_io_executor executor() override { return stream_.get_executor(); }

  void Start() override {
    if constexpr (std::is_same_v<Stream, TlsStream>) {
      // A handshake must complete within the timeout of a request, as a slow request must.
      Lowest().expires_after(std::chrono::milliseconds(shared_->options.io_timeout_ms));
      stream_.async_handshake(asio::ssl::stream_base::server,
                              [self = Self()](beast::error_code error) {
                                if (error) return self->Close();
                                self->ReadRequest(self->shared_->options.io_timeout_ms);
                              });
    } else {
      ReadRequest(shared_->options.io_timeout_ms);
    }
  }

  void Send(uint64_t exchange, Response response) override {
    if (!Current(exchange) || streaming_ || finished_) return;
    finished_ = true;
    if (response.close_connection) keep_alive_ = false;
    std::string bytes = FormatHead(response.status, response, keep_alive_, /*chunked=*/false);
    if (!head_request_) bytes += response.body;
    Queue(std::move(bytes));
  }
  void StartStream(uint64_t exchange, Response head) override {
    if (!Current(exchange) || streaming_ || finished_) return;
    streaming_ = true;
    if (head.close_connection) keep_alive_ = false;
    Queue(FormatHead(head.status, head, keep_alive_, /*chunked=*/true));
    if (!head.body.empty()) Queue(Chunk(head.body));
  }
  void Write(uint64_t exchange, std::string data) override {
    if (!Current(exchange) || !streaming_ || finished_ || data.empty()) return;
    Queue(Chunk(data));
  }
  void End(uint64_t exchange) override {
    if (!Current(exchange) || !streaming_ || finished_) return;
    finished_ = true;
    Queue("0\r\n\r\n");
  }
  void SetOnDisconnect(uint64_t exchange, std::function<void()> callback) override {
    if (exchange != exchange_ || !in_response_) return;  // answered already
    if (closed_) return callback();                      // the client left before this
    on_disconnect_ = std::move(callback);
  }
  void Stop() override { Disconnect(); }

 private:
  std::shared_ptr<Connection> Self() {
    return std::static_pointer_cast<Connection>(shared_from_this());
  }
  beast::tcp_stream& Lowest() { return beast::get_lowest_layer(stream_); }

  void ReadRequest(int timeout_ms) {
    if (closed_) return;
    parser_.emplace();
    parser_->header_limit(shared_->options.max_header_bytes);
    parser_->body_limit(shared_->options.max_body_bytes);
    Lowest().expires_after(std::chrono::milliseconds(timeout_ms));
    bhttp::async_read_header(
        stream_, buffer_, *parser_,
        [self = Self()](beast::error_code error, size_t) { self->OnHeader(error); });
  }

  bool Current(uint64_t exchange) const {
    return exchange == exchange_ && in_response_ && !closed_;
  }

  // A client that sent `Expect: 100-continue` (curl does for bodies over 1 KiB) waits for a
  // 100 before it sends the body; then the body is read within what is left of the timeout.
  void OnHeader(beast::error_code error) {
    if (error || closed_) return OnRead(error);
    const auto read_body = [self = Self()] {
      bhttp::async_read(self->stream_, self->buffer_, *self->parser_,
                        [self](beast::error_code e, size_t) { self->OnRead(e); });
    };
    if (!beast::iequals(parser_->get()[bhttp::field::expect], "100-continue") ||
        parser_->is_done()) {
      return read_body();
    }
    asio::async_write(stream_, asio::buffer(kContinue),
                      [self = Self(), read_body](beast::error_code e, size_t) {
                        if (e) return self->OnRead(e);
                        read_body();
                      });
  }

  void OnRead(beast::error_code error) {
    if (closed_) return;
    if (error == bhttp::error::body_limit) {
      return Reject(413, absl::StrCat("the request body is over ", shared_->options.max_body_bytes,
                                      " bytes"));
    }
    if (error == bhttp::error::header_limit) {
      return Reject(431, absl::StrCat("the request head is over ",
                                      shared_->options.max_header_bytes, " bytes"));
    }
    // A request that does not arrive in time (a slowloris client) is dropped: on a timeout the
    // stream has already closed the socket.
    if (error == bhttp::error::end_of_stream || error == beast::error::timeout ||
        error == asio::error::operation_aborted || error == asio::error::eof ||
        error == asio::error::connection_reset ||
        error.category() == asio::error::get_ssl_category() ||
        error == asio::ssl::error::stream_truncated) {
      return Close();
    }
    if (error) return Reject(400, absl::StrCat("malformed HTTP request: ", error.message()));
    Dispatch();
  }

  void Dispatch() {
    bhttp::request<bhttp::string_body> message = parser_->release();
    Request request;
    request.method = std::string(message.method_string());
    request.target = std::string(message.target());
    request.path = request.target.substr(0, request.target.find('?'));
    for (const auto& field : message) {
      request.headers.emplace_back(absl::AsciiStrToLower(std::string(field.name_string())),
                                   std::string(field.value()));
    }
    request.body = std::move(message.body());
    keep_alive_ = message.keep_alive();
    head_request_ = message.method() == bhttp::verb::head;
    BeginResponse();
    shared_->options.handler(request, MakeResponder(exchange_));
  }

  void BeginResponse() {
    ++exchange_;
    in_response_ = true;
    self_ = Self();  // alive until answered, whatever else holds it
    Lowest().expires_never();
    // With a pipelined request already read, there is nothing to watch: the next request is
    // read once this one is answered.
    if (buffer_.size() == 0) Watch();
  }

  // An answer the server gives itself, without the handler; the connection then closes.
  void Reject(int status, std::string message) {
    keep_alive_ = false;
    head_request_ = false;
    BeginResponse();
    Response response;
    if (shared_->options.error_response) {
      response = shared_->options.error_response(status, message);
    } else {
      response.content_type = "text/plain";
      response.body = message + "\n";
    }
    response.status = status;
    Send(exchange_, std::move(response));
  }

  void Watch() {
    if (watching_ || closed_) return;
    watching_ = true;
    stream_.async_read_some(
        buffer_.prepare(kWatchBytes),
        [self = Self()](beast::error_code error, size_t n) { self->OnWatch(error, n); });
  }

  void OnWatch(beast::error_code error, size_t n) {
    watching_ = false;
    if (closed_) return;
    if (error) return in_response_ ? Disconnect() : Close();
    buffer_.commit(n);
    // Bytes of the next request: read it now, or once this answer is out.
    if (!in_response_) ReadRequest(shared_->options.io_timeout_ms);
  }

  void Queue(std::string bytes) {
    if (closed_) return;
    out_.push_back(std::move(bytes));
    Flush();
  }

  void Flush() {
    if (writing_ || out_.empty() || closed_) return;
    writing_ = true;
    Lowest().expires_after(std::chrono::milliseconds(shared_->options.io_timeout_ms));
    asio::async_write(stream_, asio::buffer(out_.front()),
                      [self = Self()](beast::error_code error, size_t) { self->OnWritten(error); });
  }

  void OnWritten(beast::error_code error) {
    writing_ = false;
    if (closed_) return;
    if (error) return Disconnect();  // a client that does not read is dropped
    out_.pop_front();
    if (!out_.empty()) return Flush();
    if (finished_) return EndResponse();
    Lowest().expires_never();  // a stream waits for its next piece as long as it takes
  }

  void EndResponse() {
    in_response_ = false;
    streaming_ = false;
    finished_ = false;
    on_disconnect_ = nullptr;
    const std::shared_ptr<Connection> hold = std::move(self_);
    if (!keep_alive_) return Close();
    if (watching_) {
      // The watch read is now the wait for the next request.
      Lowest().expires_after(std::chrono::milliseconds(shared_->options.idle_timeout_ms));
    } else {
      ReadRequest(buffer_.size() > 0 ? shared_->options.io_timeout_ms
                                     : shared_->options.idle_timeout_ms);
    }
  }

  void Disconnect() {
    std::function<void()> callback = std::move(on_disconnect_);
    on_disconnect_ = nullptr;
    Close();
    if (callback) callback();
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    out_.clear();
    beast::error_code ignored;
    // TLS: no close_notify; HTTP/1.1's framing (Content-Length, the last chunk) tells a client
    // the answer is whole, and a client going away is not waited for.
    Lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
    Lowest().socket().close(ignored);
    self_.reset();  // callers hold a reference of their own
  }

  Stream stream_;
  const std::shared_ptr<Shared> shared_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  uint64_t exchange_ = 0;     // the request being answered (or last answered)
  bool in_response_ = false;  // from the request's dispatch to the answer's last byte written
  bool streaming_ = false;
  bool finished_ = false;  // the answer's last byte is queued
  bool keep_alive_ = false;
  bool head_request_ = false;
  bool watching_ = false;
  bool writing_ = false;
  bool closed_ = false;
  std::deque<std::string> out_;
  std::function<void()> on_disconnect_;
  std::shared_ptr<Connection> self_;
};

// Posts each call to its connection's strand. Holds the connection weakly: once the connection
// is gone (closed and unreferenced), calls do nothing.
class ConnectionResponder final : public Responder {
 public:
  ConnectionResponder(std::weak_ptr<ConnectionBase> connection, uint64_t exchange)
      : connection_(std::move(connection)), exchange_(exchange) {}

  void Send(Response response) override {
    Post([e = exchange_, r = std::move(response)](ConnectionBase& c) mutable {
      c.Send(e, std::move(r));
    });
  }
  void StartStream(Response head) override {
    Post([e = exchange_, h = std::move(head)](ConnectionBase& c) mutable {
      c.StartStream(e, std::move(h));
    });
  }
  void Write(std::string data) override {
    Post([e = exchange_, d = std::move(data)](ConnectionBase& c) mutable {
      c.Write(e, std::move(d));
    });
  }
  void End() override {
    Post([e = exchange_](ConnectionBase& c) { c.End(e); });
  }
  void OnDisconnect(std::function<void()> callback) override {
    Post([e = exchange_, cb = std::move(callback)](ConnectionBase& c) mutable {
      c.SetOnDisconnect(e, std::move(cb));
    });
  }

 private:
  template <typename F>
  void Post(F f) {
    std::shared_ptr<ConnectionBase> connection = connection_.lock();
    if (connection == nullptr) return;
    asio::any_io_executor executor = connection->executor();
    asio::post(executor, [connection = std::move(connection), f = std::move(f)]() mutable {
      f(*connection);
    });
  }

  const std::weak_ptr<ConnectionBase> connection_;
  const uint64_t exchange_;
};

std::shared_ptr<Responder> ConnectionBase::MakeResponder(uint64_t exchange) {
  return std::make_shared<ConnectionResponder>(weak_from_this(), exchange);
}

}  // namespace

const std::string* Request::Header(absl::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key == name) return &value;
  }
  return nullptr;
}

class HttpServer::Impl {
 public:
  explicit Impl(Options options)
      : io_(std::max(1, options.num_threads)),
        acceptor_(asio::make_strand(io_)),
        retry_(acceptor_.get_executor()),
        shared_(std::make_shared<Shared>()) {
    shared_->options = std::move(options);
  }

  absl::Status Listen() {
    if (shared_->options.tls.has_value()) {
      PAGODA_RETURN_IF_ERROR(MakeTlsContext(*shared_->options.tls, shared_->tls));
    }
    beast::error_code error;
    tcp::resolver resolver(io_);
    const auto endpoints =
        resolver.resolve(shared_->options.host, std::to_string(shared_->options.port),
                         tcp::resolver::passive, error);
    if (error || endpoints.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot resolve host '", shared_->options.host, "': ", error.message()));
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

  int port() const { return port_; }

  void Run() {
    port_ = acceptor_.local_endpoint().port();
    Accept();
    for (int i = 0; i < std::max(1, shared_->options.num_threads); ++i) {
      threads_.emplace_back([this] { io_.run(); });
    }
  }

  // Closes the acceptor and every connection (their disconnect callbacks run), lets their
  // handlers finish, and joins the thread; after 2 s it stops whatever is left.
  ~Impl() {
    if (threads_.empty()) return;
    asio::post(acceptor_.get_executor(), [this] { StopAll(); });
    for (int i = 0; i < 200 && !io_.stopped(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    io_.stop();
    for (std::thread& thread : threads_) thread.join();
  }

 private:
  void Accept() {
    acceptor_.async_accept(asio::make_strand(io_), [this](beast::error_code error,
                                                          tcp::socket socket) {
      if (error == asio::error::operation_aborted || !acceptor_.is_open()) return;
      if (error) {
        // Out of file descriptors (or another transient failure): retrying at once would spin.
        retry_.expires_after(std::chrono::milliseconds(100));
        retry_.async_wait([this](beast::error_code e) {
          if (!e && acceptor_.is_open()) Accept();
        });
        return;
      }
      if (shared_->open_connections.load() >= shared_->options.max_connections) {
        beast::error_code ignored;
        socket.close(ignored);  // over the limit: refused at once, the others keep going
      } else {
        std::shared_ptr<ConnectionBase> connection;
        if (shared_->tls.has_value()) {
          connection =
              std::make_shared<Connection<TlsStream>>(shared_, std::move(socket), *shared_->tls);
        } else {
          connection = std::make_shared<Connection<beast::tcp_stream>>(shared_, std::move(socket));
        }
        Track(connection);
        connection->Start();
      }
      Accept();
    });
  }

  void Track(const std::shared_ptr<ConnectionBase>& connection) {
    if (connections_.size() > 64 &&
        connections_.size() > 2 * static_cast<size_t>(shared_->open_connections)) {
      std::erase_if(connections_, [](const auto& weak) { return weak.expired(); });
    }
    connections_.push_back(connection);
  }

  void StopAll() {
    beast::error_code ignored;
    acceptor_.close(ignored);
    retry_.cancel();
    for (const auto& weak : connections_) {
      if (std::shared_ptr<ConnectionBase> connection = weak.lock()) {
        asio::post(connection->executor(), [connection] { connection->Stop(); });
      }
    }
    connections_.clear();
  }

  asio::io_context io_;
  tcp::acceptor acceptor_;    // on its own strand, with retry_ and connections_
  asio::steady_timer retry_;  // the accept loop's pause after an error
  const std::shared_ptr<Shared> shared_;
  std::vector<std::weak_ptr<ConnectionBase>> connections_;  // the acceptor's strand only
  int port_ = 0;
  std::vector<std::thread> threads_;
};

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(Options options) {
  if (!options.handler) return absl::InvalidArgumentError("HttpServer needs a handler");
  auto impl = std::make_unique<Impl>(std::move(options));
  if (absl::Status status = impl->Listen(); !status.ok()) return status;
  impl->Run();
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() = default;

int HttpServer::port() const { return impl_->port(); }

absl::string_view ReasonPhrase(int status) {
  if (status < 100 || status > 599) return "Unknown";
  const beast::string_view phrase = bhttp::obsolete_reason(static_cast<bhttp::status>(status));
  return absl::string_view(phrase.data(), phrase.size());
}

}  // namespace pagoda::http
