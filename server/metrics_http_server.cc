#include "server/metrics_http_server.h"

#include <memory>
#include <string>
#include <utility>

#include "http/http_server.h"

namespace pagoda::server {
namespace {

http::Response Reply(int status, std::string content_type, std::string body) {
  http::Response response;
  response.status = status;
  response.content_type = std::move(content_type);
  response.body = std::move(body);
  // Errors close the connection: a client that sends wrong requests gets no more of ours.
  response.close_connection = status != 200;
  return response;
}

http::Response Respond(const http::Request& request, const std::function<std::string()>& render) {
  if (request.method != "GET" && request.method != "HEAD") {
    http::Response response = Reply(405, "text/plain", "use GET\n");
    response.headers.emplace_back("Allow", "GET, HEAD");
    return response;
  }
  if (request.path != "/metrics") return Reply(404, "text/plain", "metrics are at /metrics\n");
  return Reply(200, "text/plain; version=0.0.4; charset=utf-8", render ? render() : "");
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(Options options) {
  http::HttpServer::Options http_options;
  http_options.host = options.host;
  http_options.port = options.port;
  http_options.io_timeout_ms = options.io_timeout_ms;
  http_options.idle_timeout_ms = options.idle_timeout_ms;
  http_options.max_connections = options.max_connections;
  http_options.max_header_bytes = 8 << 10;
  http_options.max_body_bytes = 8 << 10;
  http_options.handler = [render = std::move(options.render)](
                             const http::Request& request,
                             std::shared_ptr<http::Responder> responder) {
    responder->Send(Respond(request, render));
  };
  absl::StatusOr<std::unique_ptr<http::HttpServer>> server =
      http::HttpServer::Start(std::move(http_options));
  if (!server.ok()) return server.status();
  return std::unique_ptr<MetricsHttpServer>(new MetricsHttpServer(*std::move(server)));
}

MetricsHttpServer::MetricsHttpServer(std::unique_ptr<http::HttpServer> server)
    : server_(std::move(server)) {}

MetricsHttpServer::~MetricsHttpServer() = default;

int MetricsHttpServer::port() const { return server_->port(); }

}  // namespace pagoda::server
