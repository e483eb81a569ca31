#pragma once

// pagoda-bench's client of the OpenAI API (--backend openai-completions or openai-chat): each
// request is one streamed POST /v1/completions or /v1/chat/completions (include_usage) on its own connection, timed the
// way `vllm bench serve --backend openai` times it (TTFT at the first event with text, ITL
// between such events, token counts from the final usage event). Beast and Asio are included by
// openai_client.cc alone.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bench/load/load_runner.h"
#include "bench/load/workload.h"

namespace pagoda::bench {

// Thread-safe: Start may be called from any thread; completions are reported on the client's
// own thread. Destroy it only once every request it started has been reported done.
class OpenAiClient {
 public:
  // `address` is HOST:PORT of pagodad's HTTP API.
  static absl::StatusOr<std::unique_ptr<OpenAiClient>> Create(const std::string& address);
  ~OpenAiClient();

  // The text of `token_ids` (POST /detokenize), so that a chat benchmark can send synthetic
  // prompts as messages. Blocking.
  absl::StatusOr<std::string> Detokenize(const std::vector<uint32_t>& token_ids);

  // Sends `request` and fills `result` as it streams; `on_done(*result)` once it ends.
  void Start(const BenchRequest& request, const LoadOptions& options, absl::Time run_start,
             RequestResult* result, std::function<void(const RequestResult&)> on_done);

 private:
  class Impl;
  explicit OpenAiClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pagoda::bench
