#include "bench/load/openai_client.h"

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "boost/asio/connect.hpp"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/strand.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "nlohmann/json.hpp"

namespace pagoda::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using nlohmann::json;

std::string RequestBody(const BenchRequest& r, const LoadOptions& options) {
  const bool chat = options.backend == Backend::kOpenAiChat;
  json body = {{chat ? "max_completion_tokens" : "max_tokens", r.output_len},
               {"temperature", options.temperature},
               {"ignore_eos", options.ignore_eos},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}}};
  if (!options.model.empty()) body["model"] = options.model;
  if (chat) {
    // The caller made every prompt text (OpenAiClient::Detokenize) before the run.
    body["messages"] = json::array({{{"role", "user"}, {"content", r.prompt_text.value_or("")}}});
  } else if (r.prompt_text.has_value()) {
    body["prompt"] = *r.prompt_text;
  } else {
    body["prompt"] = r.prompt_token_ids;
  }
  return body.dump();
}

// One streamed completion on its own connection; deletes itself when done.
class Call {
 public:
  Call(asio::io_context& io, const tcp::resolver::results_type& endpoints, std::string request,
       double timeout_seconds, absl::Time run_start, RequestResult* result,
       std::function<void(const RequestResult&)> on_done)
      : stream_(asio::make_strand(io)),
        request_(std::move(request)),
        result_(result),
        on_done_(std::move(on_done)) {
    start_ = absl::Now();
    result_->sent = true;
    result_->start = absl::ToDoubleSeconds(start_ - run_start);
    parser_.body_limit(std::numeric_limits<uint64_t>::max());
    on_chunk_ = [this](uint64_t, beast::string_view data, beast::error_code&) {
      events_.append(data.data(), data.size());
      Consume();
      return data.size();
    };
    parser_.on_chunk_body(on_chunk_);  // the parser keeps a reference
    stream_.expires_after(std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1e3)));
    stream_.async_connect(endpoints, [this](beast::error_code error, const tcp::endpoint&) {
      if (error) return Finish(error);
      asio::async_write(stream_, asio::buffer(request_),
                        [this](beast::error_code e, size_t) { e ? Finish(e) : Read(); });
    });
  }

 private:
  void Read() {
    bhttp::async_read_some(stream_, buffer_, parser_, [this](beast::error_code error, size_t) {
      if (error) return Finish(error);
      if (parser_.is_done()) return Finish({});
      Read();
    });
  }

  // Handles every complete "data: ..." event in events_.
  void Consume() {
    size_t end;
    while ((end = events_.find("\n\n")) != std::string::npos) {
      std::string event = events_.substr(0, end);
      events_.erase(0, end + 2);
      if (event.rfind("data: ", 0) != 0) continue;
      event.erase(0, 6);
      if (event == "[DONE]") {
        done_ = true;
        continue;
      }
      OnEvent(json::parse(event, nullptr, false));
    }
  }

  void OnEvent(const json& event) {
    if (!event.is_object()) return;
    if (event.contains("error")) {
      error_ = event["error"].value("message", std::string("error event"));
      return;
    }
    const json& choices = event.value("choices", json::array());
    // A completion chunk's text, or a chat chunk's delta.content.
    const json* piece = nullptr;
    if (!choices.empty() && choices[0].contains("text")) piece = &choices[0]["text"];
    if (!choices.empty() && choices[0].contains("delta") && choices[0]["delta"].is_object() &&
        choices[0]["delta"].contains("content")) {
      piece = &choices[0]["delta"]["content"];
    }
    if (piece != nullptr && piece->is_string()) {
      const std::string& text = piece->get_ref<const std::string&>();
      if (!text.empty()) {
        const absl::Time now = absl::Now();
        if (!saw_text_) {
          result_->ttft = absl::ToDoubleSeconds(now - start_);
          saw_text_ = true;
        } else {
          result_->itls.push_back(absl::ToDoubleSeconds(now - last_text_));
        }
        last_text_ = now;
        result_->text += text;
      }
    }
    if (event.contains("usage") && event["usage"].is_object()) {
      result_->prompt_tokens = event["usage"].value("prompt_tokens", 0);
      result_->output_tokens = event["usage"].value("completion_tokens", 0);
    }
  }

  void Finish(beast::error_code error) {
    result_->e2e = absl::ToDoubleSeconds(absl::Now() - start_);
    result_->status_code = parser_.is_header_done() ? parser_.get().result_int() : 0;
    if (error) {
      result_->error = error.message();
    } else if (result_->status_code != 200) {
      result_->error = absl::StrCat("HTTP ", result_->status_code, ": ", parser_.get().body());
    } else if (!error_.empty()) {
      result_->error = error_;
    } else if (!done_) {
      result_->error = "the stream ended without [DONE]";
    }
    result_->success = result_->error.empty();
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    const std::function<void(const RequestResult&)> on_done = std::move(on_done_);
    const RequestResult* result = result_;
    delete this;
    on_done(*result);
  }

  beast::tcp_stream stream_;
  std::string request_;
  beast::flat_buffer buffer_;
  std::function<size_t(uint64_t, beast::string_view, beast::error_code&)> on_chunk_;
  bhttp::response_parser<bhttp::string_body> parser_;
  std::string events_;
  absl::Time start_;
  absl::Time last_text_;
  bool saw_text_ = false;
  bool done_ = false;
  std::string error_;
  RequestResult* result_;
  std::function<void(const RequestResult&)> on_done_;
};

}  // namespace

class OpenAiClient::Impl {
 public:
  Impl(std::string host, tcp::resolver::results_type endpoints)
      : host_(std::move(host)), endpoints_(std::move(endpoints)) {
    thread_ = std::thread([this] { io_.run(); });
  }
  ~Impl() {
    work_.reset();
    thread_.join();
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  const std::string host_;
  const tcp::resolver::results_type endpoints_;
  std::thread thread_;
};

absl::StatusOr<std::unique_ptr<OpenAiClient>> OpenAiClient::Create(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("not HOST:PORT: ", address));
  }
  asio::io_context resolve_io;
  tcp::resolver resolver(resolve_io);
  beast::error_code error;
  auto endpoints = resolver.resolve(address.substr(0, colon), address.substr(colon + 1), error);
  if (error)
    return absl::UnavailableError(absl::StrCat("resolve ", address, ": ", error.message()));
  return std::unique_ptr<OpenAiClient>(
      new OpenAiClient(std::make_unique<Impl>(address, std::move(endpoints))));
}

absl::StatusOr<std::string> OpenAiClient::Detokenize(const std::vector<uint32_t>& token_ids) {
  const std::string body = json{{"tokens", token_ids}}.dump();
  try {
    asio::io_context io;
    beast::tcp_stream stream(io);
    stream.expires_after(std::chrono::seconds(30));
    stream.connect(impl_->endpoints_);
    bhttp::request<bhttp::string_body> request{bhttp::verb::post, "/detokenize", 11};
    request.set(bhttp::field::host, impl_->host_);
    request.set(bhttp::field::content_type, "application/json");
    request.body() = body;
    request.prepare_payload();
    bhttp::write(stream, request);
    beast::flat_buffer buffer;
    bhttp::response<bhttp::string_body> response;
    bhttp::read(stream, buffer, response);
    const json answer = json::parse(response.body(), nullptr, false);
    if (response.result_int() != 200 || !answer.contains("prompt") ||
        !answer["prompt"].is_string()) {
      return absl::UnavailableError(absl::StrCat("/detokenize: HTTP ", response.result_int(), ": ",
                                                 response.body().substr(0, 200)));
    }
    return answer["prompt"].get<std::string>();
  } catch (const std::exception& e) {  // Beast's synchronous calls throw system_error
    return absl::UnavailableError(absl::StrCat("/detokenize: ", e.what()));
  }
}

OpenAiClient::OpenAiClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

OpenAiClient::~OpenAiClient() = default;

void OpenAiClient::Start(const BenchRequest& request, const LoadOptions& options,
                         absl::Time run_start, RequestResult* result,
                         std::function<void(const RequestResult&)> on_done) {
  const std::string body = RequestBody(request, options);
  const char* path =
      options.backend == Backend::kOpenAiChat ? "/v1/chat/completions" : "/v1/completions";
  std::string http_request = absl::StrCat(
      "POST ", path, " HTTP/1.1\r\nHost: ", impl_->host_,
      "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: ", body.size(),
      "\r\n\r\n", body);
  asio::post(impl_->io_, [this, http_request = std::move(http_request),
                          timeout = options.request_timeout_seconds, run_start, result,
                          on_done = std::move(on_done)]() mutable {
    new Call(impl_->io_, impl_->endpoints_, std::move(http_request), timeout, run_start, result,
             std::move(on_done));
  });
}

}  // namespace pagoda::bench
