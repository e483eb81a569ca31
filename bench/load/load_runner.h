#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench/load/workload.h"

namespace pagoda::bench {

// The outcome of one request, times in seconds.
struct RequestResult {
  bool sent = false;  // false when the run's time bound stopped it from being sent
  bool success = false;
  int status_code = 0;  // grpc::StatusCode
  std::string error;    // the status message when it failed
  double start = 0;     // since the run started
  double ttft = 0;      // to the first chunk with tokens
  double e2e = 0;
  std::vector<double> itls;  // between consecutive chunks with tokens
  int prompt_tokens = 0;     // from the server's usage
  int output_tokens = 0;
  std::string text;
};

// Which front end the requests go through.
enum class Backend {
  kGrpc,               // pagoda.v1.TextGeneration/Generate, streamed
  kOpenAiCompletions,  // POST /v1/completions, streamed as server-sent events
  kOpenAiChat,         // POST /v1/chat/completions (one user message), streamed
};

struct LoadOptions {
  Backend backend = Backend::kGrpc;
  std::string address = "127.0.0.1:50051";  // gRPC, or the HTTP API with kOpenAiCompletions
  std::string model;                        // GenerateRequest.model; empty = the served one
  double request_rate = std::numeric_limits<double>::infinity();
  double burstiness = 1.0;
  int max_concurrency = 0;  // 0 = unbounded
  bool ignore_eos = false;
  float temperature = 0.0f;
  double max_duration_seconds = std::numeric_limits<double>::infinity();  // stop sending after
  double request_timeout_seconds = 600;                                   // per-request deadline
  uint64_t seed = 0;
};

// Sends `requests` through `options.backend` with the arrival process and concurrency bound of
// `options` and waits for all of them. `progress(done, failed)` is called after each completion,
// from gRPC's threads (serialized). Thread-compatible; one run at a time.
std::vector<RequestResult> RunLoad(const std::vector<BenchRequest>& requests,
                                   const LoadOptions& options,
                                   const std::function<void(int, int)>& progress = nullptr);

}  // namespace pagoda::bench
