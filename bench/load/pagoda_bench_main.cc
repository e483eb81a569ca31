// pagoda-bench: a gRPC load generator for pagodad, in the spirit of vLLM's benchmark_serving.
//
//   pagoda-bench --num-prompts 200 --max-concurrency 16 --input-len 128 --output-len 128
//       --ignore-eos --result-json results.json
//
// Closed loop (--max-concurrency) or open loop (--request-rate, Poisson or gamma with
// --burstiness); synthetic prompts (--input-len/--output-len/--range-ratio, shared --prefix-len)
// or a JSON Lines --dataset. Reports throughput and TTFT/TPOT/ITL/E2E latency, failures by
// status code, and what pagodad's /metrics say about the run (peak KV usage, preemptions,
// prefix-cache hit rate). The JSON result uses vLLM's key names.

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "bench/load/load_runner.h"
#include "bench/load/metrics_scrape.h"
#include "bench/load/openai_client.h"
#include "bench/load/stats.h"
#include "bench/load/workload.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"
#include "pagoda/v1/text_generation_service.grpc.pb.h"

namespace pagoda::bench {
namespace {

struct Flags {
  LoadOptions load;
  std::string metrics_address;  // host:port of /metrics; empty = the gRPC host, port 9400
  bool address_set = false;
  std::string grpc_address = "127.0.0.1:50051";  // GetModelInfo with openai-completions
  bool no_metrics = false;
  int num_prompts = 100;
  int num_warmups = 2;
  SyntheticOptions synthetic;
  std::string dataset;
  std::string result_json;
  bool progress = true;
};

constexpr char kUsage[] = R"(usage: pagoda-bench [flags]
  --backend B                grpc (default), openai-completions (POST /v1/completions,
                             streamed) or openai-chat (POST /v1/chat/completions with one
                             user message, streamed; synthetic prompts are detokenized first)
  --address HOST:PORT        pagodad's gRPC address (default 127.0.0.1:50051), or its HTTP
                             API with openai-completions (default 127.0.0.1:8000)
  --grpc-address HOST:PORT   with openai-completions: where GetModelInfo asks for the
                             vocabulary (default 127.0.0.1:50051)
  --metrics-address H:P      pagodad's /metrics (default: the gRPC host, port 9400)
  --no-metrics               do not scrape /metrics
  --num-prompts N            requests to send (default 100)
  --num-warmups N            unmeasured requests sent first, one at a time (default 2)
  --max-concurrency N        closed loop: at most N requests in flight (default unbounded)
  --request-rate R           open loop: R requests/s on average (default inf: all at once)
  --burstiness B             gamma shape of the arrival gaps; 1 = Poisson (default 1)
  --input-len N              synthetic prompt tokens (default 128)
  --output-len N             output tokens asked for (max_tokens; default 128)
  --range-ratio F            lengths uniform in [N(1-F), N(1+F)] (default 0)
  --prefix-len N             a shared random prefix of N tokens before each prompt (default 0)
  --dataset FILE.jsonl       prompts from JSON Lines: {"prompt": "..."} or
                             {"prompt_token_ids": [...]}, optional "output_len"
  --ignore-eos               generate exactly max_tokens tokens
  --temperature T            sampling temperature (default 0: greedy)
  --max-duration S           stop sending new requests after S seconds
  --request-timeout S        per-request deadline (default 600)
  --seed N                   prompts and arrivals (default 0)
  --model NAME               GenerateRequest.model (default: the served model)
  --result-json FILE         write the results as JSON (vLLM's keys)
  --no-progress              no progress bar
)";

[[noreturn]] void Fail(const std::string& message) {
  std::fprintf(stderr, "pagoda-bench: %s\n", message.c_str());
  std::exit(2);
}

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_value = false;
    if (const size_t eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    const auto next = [&]() -> std::string {
      if (has_value) return value;
      if (i + 1 >= argc) Fail(arg + " needs a value");
      return argv[++i];
    };
    const auto integer = [&]() {
      int v = 0;
      if (!absl::SimpleAtoi(next(), &v)) Fail(arg + " needs an integer");
      return v;
    };
    const auto number = [&]() {
      const std::string text = next();
      if (text == "inf") return std::numeric_limits<double>::infinity();
      double v = 0;
      if (!absl::SimpleAtod(text, &v)) Fail(arg + " needs a number");
      return v;
    };
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (arg == "--backend") {
      const std::string backend = next();
      if (backend == "grpc") {
        f.load.backend = Backend::kGrpc;
      } else if (backend == "openai-completions") {
        f.load.backend = Backend::kOpenAiCompletions;
      } else if (backend == "openai-chat") {
        f.load.backend = Backend::kOpenAiChat;
      } else {
        Fail("--backend needs grpc, openai-completions or openai-chat");
      }
    } else if (arg == "--address") {
      f.load.address = next();
      f.address_set = true;
    } else if (arg == "--grpc-address") {
      f.grpc_address = next();
    } else if (arg == "--metrics-address") {
      f.metrics_address = next();
    } else if (arg == "--no-metrics") {
      f.no_metrics = true;
    } else if (arg == "--num-prompts") {
      f.num_prompts = integer();
    } else if (arg == "--num-warmups") {
      f.num_warmups = integer();
    } else if (arg == "--max-concurrency") {
      f.load.max_concurrency = integer();
    } else if (arg == "--request-rate") {
      f.load.request_rate = number();
    } else if (arg == "--burstiness") {
      f.load.burstiness = number();
    } else if (arg == "--input-len") {
      f.synthetic.input_len = integer();
    } else if (arg == "--output-len") {
      f.synthetic.output_len = integer();
    } else if (arg == "--range-ratio") {
      f.synthetic.range_ratio = number();
    } else if (arg == "--prefix-len") {
      f.synthetic.prefix_len = integer();
    } else if (arg == "--dataset") {
      f.dataset = next();
    } else if (arg == "--ignore-eos") {
      f.load.ignore_eos = true;
    } else if (arg == "--temperature") {
      f.load.temperature = static_cast<float>(number());
    } else if (arg == "--max-duration") {
      f.load.max_duration_seconds = number();
    } else if (arg == "--request-timeout") {
      f.load.request_timeout_seconds = number();
    } else if (arg == "--seed") {
      f.load.seed = static_cast<uint64_t>(integer());
    } else if (arg == "--model") {
      f.load.model = next();
    } else if (arg == "--result-json") {
      f.result_json = next();
    } else if (arg == "--no-progress") {
      f.progress = false;
    } else {
      Fail("unknown flag " + arg + " (see --help)");
    }
  }
  if (f.num_prompts <= 0) Fail("--num-prompts must be positive");
  if (f.num_warmups < 0) Fail("--num-warmups must be >= 0");
  if (f.load.max_concurrency < 0) Fail("--max-concurrency must be >= 0");
  if (!(f.load.request_rate > 0)) Fail("--request-rate must be positive");
  if (!(f.load.burstiness > 0)) Fail("--burstiness must be positive");
  if (!(f.load.max_duration_seconds > 0)) Fail("--max-duration must be positive");
  f.synthetic.num_prompts = f.num_prompts;
  f.synthetic.seed = f.load.seed;
  return f;
}

// Polls /metrics in the background for the peaks of the run.
class MetricsPoller {
 public:
  MetricsPoller(std::string host, int port) : host_(std::move(host)), port_(port) {
    thread_ = std::thread([this] {
      do {
        Poll();
      } while (!stop_.WaitForNotificationWithTimeout(absl::Milliseconds(200)));
    });
  }
  ~MetricsPoller() {
    stop_.Notify();
    thread_.join();
  }
  double peak(const std::string& name) {
    absl::MutexLock lock(&mu_);
    return peaks_[name];
  }

 private:
  void Poll() {
    const auto body = HttpGet(host_, port_, "/metrics");
    if (!body.ok()) return;
    const auto values = ParsePrometheusText(*body);
    absl::MutexLock lock(&mu_);
    for (const char* name : {"pagoda_kv_cache_usage_ratio", "pagoda_num_requests_running",
                             "pagoda_num_requests_waiting"}) {
      const auto it = values.find(name);
      if (it != values.end()) peaks_[name] = std::max(peaks_[name], it->second);
    }
  }

  std::string host_;
  int port_;
  absl::Mutex mu_;
  std::map<std::string, double> peaks_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread thread_;
};

void PrintProgress(int done, int failed, int total) {
  constexpr int kWidth = 40;
  const int filled = total > 0 ? done * kWidth / total : kWidth;
  std::fprintf(stderr, "\r[%s%s] %d/%d done, %d failed", std::string(filled, '#').c_str(),
               std::string(kWidth - filled, ' ').c_str(), done, total, failed);
  if (done == total) std::fputc('\n', stderr);
}

void AddSummary(nlohmann::json& j, const std::string& key, const std::vector<double>& seconds) {
  const Summary s = Summarize(seconds);
  j["mean_" + key + "_ms"] = s.mean * 1e3;
  j["median_" + key + "_ms"] = s.median * 1e3;
  j["std_" + key + "_ms"] = s.stddev * 1e3;
  j["p90_" + key + "_ms"] = s.p90 * 1e3;
  j["p99_" + key + "_ms"] = s.p99 * 1e3;
}

void PrintSummary(const char* title, const char* name, const std::vector<double>& seconds) {
  const Summary s = Summarize(seconds);
  std::printf("%s\n", title);
  std::printf("%-40s %.2f\n", absl::StrCat("Mean ", name, " (ms):").c_str(), s.mean * 1e3);
  std::printf("%-40s %.2f\n", absl::StrCat("Median ", name, " (ms):").c_str(), s.median * 1e3);
  std::printf("%-40s %.2f\n", absl::StrCat("P90 ", name, " (ms):").c_str(), s.p90 * 1e3);
  std::printf("%-40s %.2f\n", absl::StrCat("P99 ", name, " (ms):").c_str(), s.p99 * 1e3);
}

// Chat sends text: synthetic token prompts become their text (the server's /detokenize), as
// vLLM's benchmark decodes its random prompts. The chat template and the re-tokenization change
// each prompt's length by a few tokens; the usage the server reports counts the real ones.
void TextPromptsForChat(const std::string& address, std::vector<BenchRequest>& requests) {
  absl::StatusOr<std::unique_ptr<OpenAiClient>> client = OpenAiClient::Create(address);
  if (!client.ok()) Fail(std::string(client.status().message()));
  for (BenchRequest& r : requests) {
    if (r.prompt_text.has_value()) continue;
    absl::StatusOr<std::string> text = (*client)->Detokenize(r.prompt_token_ids);
    if (!text.ok()) Fail(std::string(text.status().message()));
    r.prompt_text = *std::move(text);
  }
}

int Main(int argc, char** argv) {
  Flags flags = ParseFlags(argc, argv);
  const bool openai = flags.load.backend != Backend::kGrpc;
  if (openai && !flags.address_set) flags.load.address = "127.0.0.1:8000";
  const std::string info_address = openai ? flags.grpc_address : flags.load.address;

  // The served model: its vocabulary bounds the synthetic token ids.
  const auto channel = grpc::CreateChannel(info_address, grpc::InsecureChannelCredentials());
  const auto stub = v1::TextGeneration::NewStub(channel);
  v1::ModelInfo info;
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    const grpc::Status status = stub->GetModelInfo(&context, v1::GetModelInfoRequest(), &info);
    if (!status.ok()) {
      Fail(absl::StrCat("GetModelInfo at ", info_address, ": ", status.error_message()));
    }
  }
  absl::StatusOr<std::vector<BenchRequest>> requests;
  if (!flags.dataset.empty()) {
    requests = LoadJsonlRequests(flags.dataset, flags.num_prompts, flags.synthetic.output_len);
  } else {
    flags.synthetic.vocab_size = static_cast<int>(info.vocab_size());
    requests = MakeSyntheticRequests(flags.synthetic);
  }
  if (!requests.ok()) Fail(std::string(requests.status().message()));
  for (const BenchRequest& r : *requests) {
    if (r.input_len + r.output_len > static_cast<int>(info.max_model_len())) {
      Fail(absl::StrCat("a request of ", r.input_len, " + ", r.output_len,
                        " tokens exceeds the server's max_model_len = ", info.max_model_len()));
    }
  }

  if (flags.load.backend == Backend::kOpenAiChat) TextPromptsForChat(flags.load.address, *requests);

  std::string metrics_host = info_address.substr(0, info_address.rfind(':'));
  int metrics_port = 9400;
  if (!flags.metrics_address.empty()) {
    const size_t colon = flags.metrics_address.rfind(':');
    metrics_host = flags.metrics_address.substr(0, colon);
    if (colon == std::string::npos ||
        !absl::SimpleAtoi(flags.metrics_address.substr(colon + 1), &metrics_port)) {
      Fail("--metrics-address must be HOST:PORT");
    }
  }
  const auto scrape = [&]() -> absl::flat_hash_map<std::string, double> {
    if (flags.no_metrics) return {};
    const auto body = HttpGet(metrics_host, metrics_port, "/metrics");
    if (!body.ok()) {
      std::fprintf(stderr, "pagoda-bench: /metrics: %s\n",
                   std::string(body.status().message()).c_str());
      return {};
    }
    return ParsePrometheusText(*body);
  };

  if (flags.num_warmups > 0) {
    std::vector<BenchRequest> warmups(
        requests->begin(),
        requests->begin() + std::min<size_t>(flags.num_warmups, requests->size()));
    LoadOptions warm = flags.load;
    warm.max_concurrency = 1;
    warm.request_rate = std::numeric_limits<double>::infinity();
    for (const RequestResult& r : RunLoad(warmups, warm)) {
      if (!r.success) Fail(absl::StrCat("warm-up request failed: ", r.error));
    }
  }

  const auto before = scrape();
  std::unique_ptr<MetricsPoller> poller;
  if (!flags.no_metrics) poller = std::make_unique<MetricsPoller>(metrics_host, metrics_port);
  const int total = static_cast<int>(requests->size());
  const absl::Time start = absl::Now();
  const std::vector<RequestResult> results =
      RunLoad(*requests, flags.load,
              flags.progress ? std::function<void(int, int)>([total](int done, int failed) {
                PrintProgress(done, failed, total);
              })
                             : nullptr);
  const double duration = absl::ToDoubleSeconds(absl::Now() - start);
  const double peak_kv = poller ? poller->peak("pagoda_kv_cache_usage_ratio") : 0;
  const double peak_running = poller ? poller->peak("pagoda_num_requests_running") : 0;
  poller.reset();
  const auto after = scrape();
  const auto delta = [&](const char* name) {
    const auto a = after.find(name);
    const auto b = before.find(name);
    return (a == after.end() ? 0 : a->second) - (b == before.end() ? 0 : b->second);
  };

  int completed = 0, sent = 0;
  int64_t input_tokens = 0, output_tokens = 0;
  std::vector<double> ttfts, tpots, itls, e2els;
  std::map<int, int> failures;
  nlohmann::json input_lens = nlohmann::json::array(), output_lens = nlohmann::json::array(),
                 ttft_list = nlohmann::json::array(), itl_list = nlohmann::json::array(),
                 errors = nlohmann::json::array();
  for (size_t i = 0; i < results.size(); ++i) {
    const RequestResult& r = results[i];
    if (!r.sent) continue;
    ++sent;
    if (!r.success) {
      ++failures[r.status_code];
      errors.push_back(r.error);
      continue;
    }
    ++completed;
    const int in = r.prompt_tokens > 0 ? r.prompt_tokens : (*requests)[i].input_len;
    input_tokens += in;
    output_tokens += r.output_tokens;
    input_lens.push_back(in);
    output_lens.push_back(r.output_tokens);
    ttfts.push_back(r.ttft);
    ttft_list.push_back(r.ttft);
    e2els.push_back(r.e2e);
    if (r.output_tokens > 1) tpots.push_back((r.e2e - r.ttft) / (r.output_tokens - 1));
    itls.insert(itls.end(), r.itls.begin(), r.itls.end());
    itl_list.push_back(r.itls);
  }

  const double queried = delta("pagoda_prefix_cache_queried_tokens_total");
  const double hits = delta("pagoda_prefix_cache_hit_tokens_total");
  std::printf("============ Serving Benchmark Result ============\n");
  std::printf("%-40s %s\n", "Model:", info.model_name().c_str());
  std::printf("%-40s %g\n", "Traffic request rate:", flags.load.request_rate);
  std::printf("%-40s %g\n", "Burstiness factor:", flags.load.burstiness);
  std::printf("%-40s %d\n", "Maximum request concurrency:", flags.load.max_concurrency);
  std::printf("%-40s %d\n", "Successful requests:", completed);
  std::printf("%-40s %d\n", "Failed requests:", sent - completed);
  for (const auto& [code, count] : failures) {
    std::printf("%-40s %d\n", absl::StrCat("  status code ", code, ":").c_str(), count);
  }
  std::printf("%-40s %d\n", "Not sent (time bound):", total - sent);
  std::printf("%-40s %.2f\n", "Benchmark duration (s):", duration);
  std::printf("%-40s %lld\n", "Total input tokens:", static_cast<long long>(input_tokens));
  std::printf("%-40s %lld\n", "Total generated tokens:", static_cast<long long>(output_tokens));
  std::printf("%-40s %.2f\n", "Request throughput (req/s):", completed / duration);
  std::printf("%-40s %.2f\n", "Output token throughput (tok/s):", output_tokens / duration);
  std::printf("%-40s %.2f\n",
              "Total token throughput (tok/s):", (input_tokens + output_tokens) / duration);
  PrintSummary("---------------Time to First Token----------------", "TTFT", ttfts);
  PrintSummary("-----Time per Output Token (excl. 1st token)------", "TPOT", tpots);
  PrintSummary("---------------Inter-token Latency----------------", "ITL", itls);
  PrintSummary("----------------End-to-end Latency----------------", "E2EL", e2els);
  if (!flags.no_metrics) {
    std::printf("-------------------Server side--------------------\n");
    std::printf("%-40s %.3f\n", "Peak KV cache usage (ratio):", peak_kv);
    std::printf("%-40s %.0f\n", "Peak running requests:", peak_running);
    std::printf("%-40s %.0f\n", "Preemptions:", delta("pagoda_num_preemptions_total"));
    std::printf("%-40s %.3f\n", "Prefix cache hit rate:", queried > 0 ? hits / queried : 0.0);
  }
  std::printf("==================================================\n");

  if (!flags.result_json.empty()) {
    nlohmann::json j;
    j["backend"] = "pagoda";
    j["model_id"] = info.model_name();
    j["num_prompts"] = flags.num_prompts;
    j["request_rate"] = std::isfinite(flags.load.request_rate)
                            ? nlohmann::json(flags.load.request_rate)
                            : nlohmann::json("inf");
    j["burstiness"] = flags.load.burstiness;
    j["max_concurrency"] = flags.load.max_concurrency > 0
                               ? nlohmann::json(flags.load.max_concurrency)
                               : nlohmann::json(nullptr);
    j["duration"] = duration;
    j["completed"] = completed;
    j["failed"] = sent - completed;
    nlohmann::json by_code = nlohmann::json::object();
    for (const auto& [code, count] : failures) by_code[std::to_string(code)] = count;
    j["failures_by_status_code"] = by_code;
    j["total_input_tokens"] = input_tokens;
    j["total_output_tokens"] = output_tokens;
    j["request_throughput"] = completed / duration;
    j["output_throughput"] = output_tokens / duration;
    j["total_token_throughput"] = (input_tokens + output_tokens) / duration;
    j["input_lens"] = input_lens;
    j["output_lens"] = output_lens;
    j["ttfts"] = ttft_list;
    j["itls"] = itl_list;
    j["errors"] = errors;
    AddSummary(j, "ttft", ttfts);
    AddSummary(j, "tpot", tpots);
    AddSummary(j, "itl", itls);
    AddSummary(j, "e2el", e2els);
    if (!flags.no_metrics) {
      j["peak_kv_cache_usage_ratio"] = peak_kv;
      j["peak_num_requests_running"] = peak_running;
      j["num_preemptions"] = delta("pagoda_num_preemptions_total");
      j["prefix_cache_hit_rate"] = queried > 0 ? hits / queried : 0.0;
    }
    std::ofstream(flags.result_json) << j.dump(2) << "\n";
  }
  return completed == sent ? 0 : 1;
}

}  // namespace
}  // namespace pagoda::bench

int main(int argc, char** argv) { return pagoda::bench::Main(argc, argv); }
