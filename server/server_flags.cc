#include "server/server_flags.h"

#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "kv_events/kv_events_config.h"
#include "model/model_weights.h"

namespace pagoda::server {
namespace {

// How a flag takes its value.
enum class FlagKind {
  kValue,  // --name VALUE or --name=VALUE
  kBool,   // --name, --no-name, --name=true|false
};

struct Flag {
  absl::string_view name;  // without the leading dashes
  FlagKind kind;
  absl::string_view value_name;  // for the usage text
  std::string help;              // the default is part of it
  std::function<absl::Status(absl::string_view value, ServerOptions&)> set;
};

absl::Status BadValue(absl::string_view flag, absl::string_view rule, absl::string_view value) {
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, ": must be ", rule, ", got '", value, "'"));
}

absl::StatusOr<int64_t> ParseInt(absl::string_view flag, absl::string_view value, int64_t min,
                                 int64_t max) {
  int64_t parsed = 0;
  if (!absl::SimpleAtoi(value, &parsed) || parsed < min || parsed > max) {
    return BadValue(flag, absl::StrCat("an integer in [", min, ", ", max, "]"), value);
  }
  return parsed;
}

// Parses a byte size of at least `min` ("512MiB", "2GiB") into `out`; `rule` says what is wanted.
absl::Status SetBytes(absl::string_view flag, absl::string_view value, int64_t min,
                      absl::string_view rule, int64_t& out) {
  absl::StatusOr<int64_t> bytes = ParseByteSize(value);
  if (!bytes.ok() || *bytes < min) return BadValue(flag, rule, value);
  out = *bytes;
  return absl::OkStatus();
}

// Parses seconds in [0, 1 week] into `out`; 0 means never (an infinite duration).
absl::Status SetSeconds(absl::string_view flag, absl::string_view value, absl::Duration& out) {
  double seconds = 0;
  if (!absl::SimpleAtod(value, &seconds) || !(seconds >= 0 && seconds <= 7 * 86400)) {
    return BadValue(flag, "a number of seconds in [0, 604800] (0 = never)", value);
  }
  out = seconds == 0 ? absl::InfiniteDuration() : absl::Seconds(seconds);
  return absl::OkStatus();
}

// A setter that parses an integer in [min, max] and hands it to `assign`.
// A port flag that also takes "off" (the member is then unset).
std::function<absl::Status(absl::string_view, ServerOptions&)> SetPortOrOff(
    const char* flag, std::optional<int> ServerOptions::*member) {
  return [flag, member](absl::string_view v, ServerOptions& o) -> absl::Status {
    if (v == "off") {
      (o.*member).reset();
      return absl::OkStatus();
    }
    PAGODA_ASSIGN_OR_RETURN(const int64_t port, ParseInt(flag, v, 0, 65535));
    o.*member = static_cast<int>(port);
    return absl::OkStatus();
  };
}

std::function<absl::Status(absl::string_view, ServerOptions&)> SetInt(
    absl::string_view flag, std::function<void(ServerOptions&, int64_t)> assign, int64_t min,
    int64_t max = std::numeric_limits<int32_t>::max()) {
  return [flag, assign = std::move(assign), min, max](absl::string_view value,
                                                      ServerOptions& options) -> absl::Status {
    PAGODA_ASSIGN_OR_RETURN(const int64_t parsed, ParseInt(flag, value, min, max));
    assign(options, parsed);
    return absl::OkStatus();
  };
}

// A setter for a flag whose value is a fraction in [0, 1].
std::function<absl::Status(absl::string_view, ServerOptions&)> SetUnitFraction(
    absl::string_view flag, std::function<void(ServerOptions&, double)> assign) {
  return [flag, assign = std::move(assign)](absl::string_view value,
                                            ServerOptions& options) -> absl::Status {
    double parsed = 0;
    if (!absl::SimpleAtod(value, &parsed) || !(parsed >= 0 && parsed <= 1)) {
      return BadValue(flag, "in [0, 1]", value);
    }
    assign(options, parsed);
    return absl::OkStatus();
  };
}

// A setter for a file path flag.
std::function<absl::Status(absl::string_view, ServerOptions&)> SetPath(
    std::optional<std::string>& (*field)(ServerOptions&)) {
  return [field](absl::string_view value, ServerOptions& options) -> absl::Status {
    if (value.empty()) return absl::InvalidArgumentError("a file path must not be empty");
    field(options) = std::string(value);
    return absl::OkStatus();
  };
}

// The flags that only make sense together.
absl::Status CheckTlsFlags(const ServerOptions& o) {
  if (o.tls_cert_file.has_value() != o.tls_key_file.has_value()) {
    return absl::InvalidArgumentError(o.tls_cert_file.has_value()
                                          ? "--tls-cert-file: needs --tls-key-file as well"
                                          : "--tls-key-file: needs --tls-cert-file as well");
  }
  if (o.tls_client_ca_file.has_value() && !o.tls_cert_file.has_value()) {
    return absl::InvalidArgumentError(
        "--tls-client-ca-file: needs --tls-cert-file and --tls-key-file (mTLS is TLS with "
        "client certificates)");
  }
  return absl::OkStatus();
}

absl::StatusOr<model::DType> ParseDType(absl::string_view flag, absl::string_view value) {
  const std::optional<model::DType> dtype =
      model::DTypeFromFlagValue(std::string_view(value.data(), value.size()));
  if (dtype == model::DType::kBF16 || dtype == model::DType::kF32) return *dtype;
  return BadValue(flag, "bf16 or f32", value);
}

absl::StatusOr<bool> ParseBool(absl::string_view flag, absl::string_view value) {
  const std::string lower = absl::AsciiStrToLower(value);
  if (lower == "true" || lower == "1" || lower == "yes") return true;
  if (lower == "false" || lower == "0" || lower == "no") return false;
  return BadValue(flag, "true or false", value);
}

const std::vector<Flag>& Flags() {
  static const std::vector<Flag>* const flags = new std::vector<Flag>{
      {"model", FlagKind::kValue, "MODEL",
       absl::StrCat("A Hugging Face model directory (config.json, *.safetensors, "
                    "tokenizer.json), or dummy:<preset> for random weights with the byte "
                    "tokenizer (presets: ",
                    absl::StrJoin(model::DummyPresetNames(), ", "),
                    "). Default: ", engine::kDefaultModel, ", the built-in model."),
       [](absl::string_view v, ServerOptions& o) {
         o.engine.model = std::string(v);
         return absl::OkStatus();
       }},
      {"host", FlagKind::kValue, "ADDRESS",
       "Address the gRPC, HTTP and metrics servers listen on. Default 127.0.0.1 (this machine "
       "only); 0.0.0.0 or :: for every interface.",
       [](absl::string_view v, ServerOptions& o) {
         if (v.empty()) return BadValue("host", "an address", v);
         o.host = std::string(v);
         return absl::OkStatus();
       }},
      {"port", FlagKind::kValue, "PORT",
       "gRPC port. Default 50051; 0 picks a free port (logged at start-up).",
       SetInt(
           "port", [](ServerOptions& o, int64_t v) { o.port = static_cast<int>(v); }, 0, 65535)},
      {"metrics-port", FlagKind::kValue, "PORT|off",
       "Port of the Prometheus endpoint http://HOST:PORT/metrics. Default 9400; 0 picks a "
       "free port (logged); off disables it.",
       SetPortOrOff("metrics-port", &ServerOptions::metrics_port)},
      {"http-port", FlagKind::kValue, "PORT|off",
       "Port of the OpenAI-compatible HTTP API (http://HOST:PORT/v1/completions, also "
       "/metrics). Default 8000; 0 picks a free port (logged); off disables it.",
       SetPortOrOff("http-port", &ServerOptions::http_port)},
      {"chat-template", FlagKind::kValue, "FILE|TEMPLATE",
       "The Jinja chat template of /v1/chat/completions: a file, or the template itself. "
       "Default: the model's (chat_template.jinja or tokenizer_config.json's chat_template).",
       [](absl::string_view v, ServerOptions& o) {
         if (v.empty()) return absl::InvalidArgumentError("--chat-template: empty");
         o.chat_template = std::string(v);
         return absl::OkStatus();
       }},
      {"device", FlagKind::kValue, "cpu|cuda|cuda:N",
       "Where the model runs: the CPU, or CUDA device N (cuda = cuda:0). Default cpu.",
       [](absl::string_view v, ServerOptions& o) {
         uint32_t ordinal = 0;
         const bool cuda_n =
             absl::StartsWith(v, "cuda:") && absl::SimpleAtoi(v.substr(5), &ordinal);
         if (v != "cpu" && v != "cuda" && !cuda_n) {
           return BadValue("device", "cpu, cuda or cuda:N", v);
         }
         o.engine.device = std::string(v);
         return absl::OkStatus();
       }},
      {"block-size", FlagKind::kValue, "TOKENS",
       "Tokens per KV-cache block (the unit of allocation and of prefix sharing). Default 16.",
       SetInt(
           "block-size",
           [](ServerOptions& o, int64_t v) { o.engine.block_size = static_cast<int>(v); }, 1,
           1024)},
      {"kv-cache-memory", FlagKind::kValue, "BYTES",
       "Memory for the KV cache of all layers, e.g. 512MiB or 2GiB (binary Ki/Mi/Gi, "
       "decimal K/M/G). Default on the CPU: enough for --max-num-seqs requests of "
       "--max-model-len tokens, at most 2 GiB; on CUDA: set by --gpu-memory-utilization.",
       [](absl::string_view v, ServerOptions& o) {
         return SetBytes("kv-cache-memory", v, 1, "a positive byte size such as 512MiB",
                         o.engine.kv_cache_memory_bytes);
       }},
      {"kv-cache-dtype", FlagKind::kValue, "bf16|f32|f16|int8|fp8|fp8_e4m3|fp8_e5m2",
       "Element type of the KV cache. Default bf16 (half the memory of f32). The CPU takes "
       "bf16, f32, int8, fp8_e4m3 (alias fp8) or fp8_e5m2 (the 8-bit ones with a bf16 scale "
       "per token and head: 1.94x bf16's tokens at head_dim 64; check your model with "
       "pagoda-kv-accuracy first); CUDA bf16 or f16, which is also its weights' and "
       "activations' type.",
       [](absl::string_view v, ServerOptions& o) -> absl::Status {
         const std::optional<model::DType> dtype =
             model::DTypeFromFlagValue(std::string_view(v.data(), v.size()));
         if (!dtype.has_value()) {
           return BadValue("kv-cache-dtype", "bf16, f32, f16, int8, fp8, fp8_e4m3 or fp8_e5m2", v);
         }
         o.engine.kv_cache_dtype = *dtype;
         return absl::OkStatus();
       }},
      {"kv-offload-dir", FlagKind::kValue, "DIR",
       "Disk tier of the KV cache: blocks the pool evicts are written here (one file per "
       "block) and read back for a later request with the same prefix when that beats "
       "recomputing it. Survives restarts; one directory per model (files of another model "
       "are deleted). Default: none.",
       [](absl::string_view v, ServerOptions& o) {
         if (v.empty()) return absl::InvalidArgumentError("--kv-offload-dir: empty");
         o.engine.kv_offload_dir = std::string(v);
         return absl::OkStatus();
       }},
      {"kv-offload-bytes", FlagKind::kValue, "BYTES",
       "The disk tier's size at most, e.g. 20GiB; least recently used blocks go first. "
       "Default 16GiB.",
       [](absl::string_view v, ServerOptions& o) {
         return SetBytes("kv-offload-bytes", v, 1, "a positive byte size such as 20GiB",
                         o.engine.kv_offload_bytes);
       }},
      {"kv-host-cache-bytes", FlagKind::kValue, "BYTES",
       "Host-memory tier of the KV cache (pinned memory with --device cuda), above the disk "
       "tier. Default 0: none.",
       [](absl::string_view v, ServerOptions& o) {
         return SetBytes("kv-host-cache-bytes", v, 0, "a byte size such as 8GiB",
                         o.engine.kv_host_cache_bytes);
       }},
      {"kv-offload-reload", FlagKind::kValue, "auto|always",
       "When blocks found in a tier are loaded: auto (default) when reading them is expected "
       "to beat recomputing them (measured at start-up and from every load and prefill); "
       "always, whatever the cost.",
       [](absl::string_view v, ServerOptions& o) -> absl::Status {
         if (v == "auto") {
           o.engine.kv_offload_reload = kv_offload::ReloadPolicy::kAuto;
         } else if (v == "always") {
           o.engine.kv_offload_reload = kv_offload::ReloadPolicy::kAlways;
         } else {
           return BadValue("kv-offload-reload", "auto or always", v);
         }
         return absl::OkStatus();
       }},
      {"weight-dtype", FlagKind::kValue, "bf16|f32",
       "Element type the weight matrices are computed in. Default: the checkpoint's (f16 "
       "becomes f32); bf16 for dummy models.",
       [](absl::string_view v, ServerOptions& o) -> absl::Status {
         PAGODA_ASSIGN_OR_RETURN(o.engine.weight_dtype, ParseDType("weight-dtype", v));
         return absl::OkStatus();
       }},
      {"gpu-memory-utilization", FlagKind::kValue, "FRACTION",
       "CUDA: fraction of the GPU's memory Pagoda may use (weights, activations, then the KV "
       "cache gets the rest). Default 0.9.",
       [](absl::string_view v, ServerOptions& o) {
         double fraction = 0;
         if (!absl::SimpleAtod(v, &fraction) || !(fraction > 0 && fraction <= 1)) {
           return BadValue("gpu-memory-utilization", "in (0, 1]", v);
         }
         o.engine.gpu_memory_utilization = fraction;
         return absl::OkStatus();
       }},
      {"max-num-seqs", FlagKind::kValue, "N",
       "Most requests running at once (the batch size of a decode step). Default 64.",
       SetInt(
           "max-num-seqs",
           [](ServerOptions& o, int64_t v) { o.engine.max_num_seqs = static_cast<int>(v); }, 1)},
      {"max-num-batched-tokens", FlagKind::kValue, "N",
       "Token budget of one engine step; longer prompts are prefilled in chunks of it (and of "
       "less beside running decodes: --step-time-ratio). Default 2048.",
       SetInt(
           "max-num-batched-tokens",
           [](ServerOptions& o,
              int64_t v) { o.engine.max_num_batched_tokens = static_cast<int>(v); },
           1)},
      {"step-time-ratio", FlagKind::kValue, "R",
       "A step that runs decodes adds prompt chunks only up to R times the time of a "
       "decode-only step, learned online from the step times, so that new prompts do not stall "
       "the streams already generating (steps without decodes still take "
       "--max-num-batched-tokens). 0 = off: every step fills the token budget. Default 2.",
       [](absl::string_view v, ServerOptions& o) -> absl::Status {
         double ratio = 0;
         if (!absl::SimpleAtod(v, &ratio) || !(ratio == 0 || (ratio > 1 && ratio <= 1000))) {
           return BadValue("step-time-ratio", "0 or in (1, 1000]", v);
         }
         o.engine.step_time_ratio = ratio;
         return absl::OkStatus();
       }},
      {"new-token-ratio", FlagKind::kValue, "R",
       "When the KV cache is full, admit a request only if the cache keeps room for R times "
       "the output tokens the running requests may still generate (their max_tokens left), so "
       "that growing outputs do not preempt (recompute) others. R is learned online: it decays "
       "to --min-new-token-ratio while no preemption happens and rises again on one. 0 = off: "
       "admit on the prompt alone (the default); 0.7 is the usual start.",
       SetUnitFraction("new-token-ratio",
                       [](ServerOptions& o, double v) { o.engine.new_token_ratio = v; })},
      {"min-new-token-ratio", FlagKind::kValue, "R",
       "The floor of --new-token-ratio's online decay (capped at it). Default 0.1.",
       SetUnitFraction("min-new-token-ratio",
                       [](ServerOptions& o, double v) { o.engine.min_new_token_ratio = v; })},
      {"max-model-len", FlagKind::kValue, "TOKENS",
       "Context length: prompt plus output of one request. Default: the model's "
       "max_position_embeddings, capped by what the KV cache holds.",
       SetInt(
           "max-model-len",
           [](ServerOptions& o, int64_t v) { o.engine.max_model_len = static_cast<int>(v); }, 1)},
      {"attention-sinks", FlagKind::kValue, "N",
       "StreamingLLM (CPU, full-attention models): every layer keeps the first N tokens of a "
       "request (the attention sinks) besides the last --streaming-window ones; the KV blocks "
       "in between return to the pool. Default 0.",
       SetInt(
           "attention-sinks",
           [](ServerOptions& o, int64_t v) { o.engine.attention_sinks = static_cast<int>(v); }, 0)},
      {"streaming-window", FlagKind::kValue, "TOKENS",
       "StreamingLLM: the recent tokens every layer attends (at most --max-model-len). A "
       "request's memory stays at the sinks plus this window, and it may generate past "
       "--max-model-len (max_tokens is then not capped by it). Default 0 = off.",
       SetInt(
           "streaming-window",
           [](ServerOptions& o, int64_t v) { o.engine.streaming_window = static_cast<int>(v); },
           0)},
      {"max-waiting-requests", FlagKind::kValue, "N",
       "Requests that may wait for a place in the batch; beyond it Generate fails with "
       "RESOURCE_EXHAUSTED (QUEUE_FULL). Default 1024; 0 = unbounded.",
       SetInt(
           "max-waiting-requests",
           [](ServerOptions& o, int64_t v) { o.engine.max_waiting_requests = static_cast<int>(v); },
           0)},
      {"enable-prefix-caching", FlagKind::kBool, "",
       "Reuse the KV blocks of earlier requests with the same prompt prefix. On by default; "
       "--no-enable-prefix-caching turns it off.",
       [](absl::string_view v, ServerOptions& o) -> absl::Status {
         PAGODA_ASSIGN_OR_RETURN(o.engine.enable_prefix_caching,
                                 ParseBool("enable-prefix-caching", v));
         return absl::OkStatus();
       }},
      {"enforce-eager", FlagKind::kBool, "",
       "CUDA: run every step eagerly, without the CUDA graphs that decode steps of up to 256 "
       "requests otherwise replay (less start-up time and memory, more per-step launch cost).",
       [](absl::string_view v, ServerOptions& o) -> absl::Status {
         PAGODA_ASSIGN_OR_RETURN(o.engine.enforce_eager, ParseBool("enforce-eager", v));
         return absl::OkStatus();
       }},
      {"repack-weights", FlagKind::kBool, "",
       "CPU with AMX tiles: repack the bf16 weight matrices at load into the order the tiles "
       "read (faster products of 4+ tokens; the same sums). On by default; "
       "--no-repack-weights keeps the checkpoint's layout.",
       [](absl::string_view v, ServerOptions& o) -> absl::Status {
         PAGODA_ASSIGN_OR_RETURN(o.engine.repack_weights, ParseBool("repack-weights", v));
         return absl::OkStatus();
       }},
      {"threads", FlagKind::kValue, "N",
       "CPU threads of the model's kernels. Default 0 = one per hardware thread.",
       SetInt(
           "threads",
           [](ServerOptions& o, int64_t v) { o.engine.num_threads = static_cast<int>(v); }, 0,
           4096)},
      {"seed", FlagKind::kValue, "N", "Seed of the dummy models' random weights. Default 0.",
       [](absl::string_view v, ServerOptions& o) {
         uint64_t seed = 0;
         if (!absl::SimpleAtoi(v, &seed)) return BadValue("seed", "an unsigned integer", v);
         o.engine.seed = seed;
         return absl::OkStatus();
       }},
      {"tls-cert-file", FlagKind::kValue, "FILE",
       "PEM certificate chain of the gRPC and HTTP ports (the server's certificate first). "
       "With --tls-key-file, both speak TLS only (--metrics-port stays plaintext). Default: "
       "none (plaintext).",
       SetPath([](ServerOptions & o) -> auto& { return o.tls_cert_file; })},
      {"tls-key-file", FlagKind::kValue, "FILE",
       "PEM private key of --tls-cert-file (unencrypted; keep it readable by pagodad only).",
       SetPath([](ServerOptions & o) -> auto& { return o.tls_key_file; })},
      {"tls-client-ca-file", FlagKind::kValue, "FILE",
       "PEM CA certificates: clients must present a certificate signed by one of them (mTLS). "
       "Needs --tls-cert-file and --tls-key-file. Default: no client certificate asked for.",
       SetPath([](ServerOptions & o) -> auto& { return o.tls_client_ca_file; })},
      {"api-key", FlagKind::kValue, "KEY",
       "A bearer token accepted beside those of --auth-token-file (vLLM's flag): the OpenAI "
       "API's /v1/* and gRPC's TextGeneration calls then need 'Authorization: Bearer KEY'. "
       "Visible on the process list: prefer --api-key-file.",
       [](absl::string_view v, ServerOptions& o) {
         o.api_key = std::string(v);
         return absl::OkStatus();
       }},
      {"api-key-file", FlagKind::kValue, "FILE", "The same as --auth-token-file.",
       SetPath([](ServerOptions & o) -> auto& { return o.auth_token_file; })},
      {"served-model-name", FlagKind::kValue, "NAME",
       "The model's name for clients: the `model` they send and see in /v1/models, "
       "GetModelInfo and metric labels. Default: the model directory's name.",
       [](absl::string_view v, ServerOptions& o) {
         if (v.empty()) return absl::InvalidArgumentError("--served-model-name: empty");
         o.engine.served_model_name = std::string(v);
         return absl::OkStatus();
       }},
      {"kv-events-config", FlagKind::kValue, "JSON",
       "KV-cache events for cache-aware routers (llm-d, the Gateway API Inference "
       "Extension), with vLLM's fields, e.g. '{\"enable_kv_cache_events\":true,"
       "\"endpoint\":\"tcp://*:5557\",\"replay_endpoint\":\"tcp://*:5558\"}' "
       "(docs/kv_events.md). Default: off.",
       [](absl::string_view v, ServerOptions& o) -> absl::Status {
         PAGODA_ASSIGN_OR_RETURN(o.kv_events, kv_events::ParseKvEventsConfig(v));
         return absl::OkStatus();
       }},
      {"metrics-compat", FlagKind::kValue, "vllm|none",
       "vllm: /metrics also exports vllm:num_requests_waiting, vllm:num_requests_running, "
       "vllm:kv_cache_usage_perc and vllm:cache_config_info, the names an endpoint picker "
       "reads by default. Default none.",
       [](absl::string_view v, ServerOptions& o) {
         if (v != "vllm" && v != "none") return BadValue("metrics-compat", "vllm or none", v);
         o.metrics_compat_vllm = v == "vllm";
         return absl::OkStatus();
       }},
      {"debug-endpoints", FlagKind::kBool, "",
       "Serve GET /debug/kv_cache_blocks on the HTTP port: every block of the prefix cache "
       "with its hash and tokens (for checking KV-event subscribers). Default off.",
       [](absl::string_view v, ServerOptions& o) -> absl::Status {
         PAGODA_ASSIGN_OR_RETURN(o.debug_endpoints, ParseBool("debug-endpoints", v));
         return absl::OkStatus();
       }},
      {"auth-token-file", FlagKind::kValue, "FILE",
       "Bearer tokens, one per line (# comments and blank lines ignored). Every "
       "pagoda.v1.TextGeneration call must then carry the metadata 'authorization: Bearer "
       "TOKEN' with one of them, or it fails with UNAUTHENTICATED; health checks and "
       "reflection need no token. Default: no authentication.",
       SetPath([](ServerOptions & o) -> auto& { return o.auth_token_file; })},
      {"grpc-max-concurrent-streams", FlagKind::kValue, "N",
       "Open gRPC calls per client connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS). "
       "Default 1024.",
       [](absl::string_view v, ServerOptions& o) -> absl::Status {
         PAGODA_ASSIGN_OR_RETURN(const int64_t n,
                                 ParseInt("grpc-max-concurrent-streams", v, 1, 1 << 20));
         o.grpc_limits.max_concurrent_streams = static_cast<int>(n);
         return absl::OkStatus();
       }},
      {"grpc-memory-limit", FlagKind::kValue, "BYTES",
       "Memory gRPC itself may hold for its transport buffers (a grpc::ResourceQuota): under "
       "pressure it shrinks them rather than grow. Calls queued by rapid reset are not "
       "covered (docs/operations.md). Default 256MiB.",
       [](absl::string_view v, ServerOptions& o) {
         return SetBytes("grpc-memory-limit", v, int64_t{16} << 20, "a byte size of at least 16MiB",
                         o.grpc_limits.memory_bytes);
       }},
      {"grpc-max-connection-idle", FlagKind::kValue, "SECONDS",
       "Close a client connection with no open call for this long (GOAWAY; clients reconnect). "
       "0 = never. Default 600.",
       [](absl::string_view v, ServerOptions& o) {
         return SetSeconds("grpc-max-connection-idle", v, o.grpc_limits.max_connection_idle);
       }},
      {"grpc-max-connection-age", FlagKind::kValue, "SECONDS",
       "Close a client connection this old with GOAWAY once its calls end (at most 30 s "
       "later), so that clients spread over replicas. 0 = never (the default).",
       [](absl::string_view v, ServerOptions& o) {
         return SetSeconds("grpc-max-connection-age", v, o.grpc_limits.max_connection_age);
       }},
      {"drain-timeout", FlagKind::kValue, "SECONDS",
       "On SIGTERM or SIGINT, how long running requests may take to finish before they are "
       "aborted. Default 30.",
       [](absl::string_view v, ServerOptions& o) {
         double seconds = 0;
         if (!absl::SimpleAtod(v, &seconds) || !(seconds >= 0 && seconds <= 86400)) {
           return BadValue("drain-timeout", "a number of seconds in [0, 86400]", v);
         }
         o.drain_timeout = absl::Seconds(seconds);
         return absl::OkStatus();
       }},
  };
  return *flags;
}

const Flag* FindFlag(absl::string_view name) {
  for (const Flag& flag : Flags()) {
    if (flag.name == name) return &flag;
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<ParsedFlags> ParseServerFlags(absl::Span<const std::string> args) {
  ParsedFlags parsed;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h" || arg == "-help") {
      parsed.help = true;
      continue;
    }
    if (!absl::StartsWith(arg, "--") || arg.size() == 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument '", arg, "' (flags start with --; see --help)"));
    }
    std::string name = absl::StrReplaceAll(arg.substr(2), {{"_", "-"}});
    std::optional<std::string> value;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = arg.substr(arg.find('=') + 1);  // as given: underscores stay
      name.resize(eq);
    }
    const Flag* flag = FindFlag(name);
    if (flag == nullptr && absl::StartsWith(name, "no-")) {
      const Flag* negated = FindFlag(absl::string_view(name).substr(3));
      if (negated != nullptr && negated->kind == FlagKind::kBool) {
        if (value.has_value()) {
          return absl::InvalidArgumentError(absl::StrCat("--", name, ": takes no value"));
        }
        PAGODA_RETURN_IF_ERROR(negated->set("false", parsed.options));
        continue;
      }
    }
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag '--", name, "' (see --help)"));
    }
    if (!value.has_value()) {
      if (flag->kind == FlagKind::kBool) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, ": needs a value (", flag->value_name, ")"));
      }
    }
    if (absl::Status status = flag->set(*value, parsed.options); !status.ok()) {
      if (absl::StartsWith(status.message(), "--")) return status;
      return absl::InvalidArgumentError(absl::StrCat("--", name, ": ", status.message()));
    }
  }
  PAGODA_RETURN_IF_ERROR(CheckTlsFlags(parsed.options));
  return parsed;
}

bool IsLoopbackHost(absl::string_view host) {
  host = absl::StripPrefix(absl::StripSuffix(host, "]"), "[");
  if (absl::EqualsIgnoreCase(host, "localhost") || host == "::1" ||
      absl::EqualsIgnoreCase(host, "0:0:0:0:0:0:0:1")) {
    return true;
  }
  // 127.x.y.z: four decimal octets, the first 127.
  const std::vector<absl::string_view> octets = absl::StrSplit(host, '.');
  if (octets.size() != 4 || octets[0] != "127") return false;
  for (absl::string_view octet : octets) {
    int value = 0;
    if (octet.empty() || !absl::SimpleAtoi(octet, &value) || value < 0 || value > 255) {
      return false;
    }
  }
  return true;
}

std::string ServerUsage() {
  std::string usage =
      "pagodad: serves a Llama-family model over gRPC (pagoda.v1.TextGeneration, health, "
      "reflection)\nwith continuous batching and a paged KV cache, and exports Prometheus "
      "metrics.\n\nUsage: pagodad [flags]\n\nFlags (--name VALUE or --name=VALUE):\n";
  for (const Flag& flag : Flags()) {
    std::string head = absl::StrCat("  --", flag.name);
    if (flag.kind == FlagKind::kValue) absl::StrAppend(&head, " ", flag.value_name);
    if (flag.kind == FlagKind::kBool) absl::StrAppend(&head, ", --no-", flag.name);
    absl::StrAppend(&usage, head, "\n");
    // Wrap the help text at 96 columns, indented.
    std::string line = "      ";
    for (absl::string_view word : absl::StrSplit(flag.help, ' ')) {
      if (line.size() + word.size() + 1 > 96 && line.size() > 6) {
        absl::StrAppend(&usage, line, "\n");
        line = "      ";
      }
      absl::StrAppend(&line, line.size() > 6 ? " " : "", word);
    }
    absl::StrAppend(&usage, line, "\n");
  }
  absl::StrAppend(&usage,
                  "  --help\n      Print this text and exit.\n\n"
                  "SIGTERM or SIGINT drains: health turns NOT_SERVING, new requests get "
                  "UNAVAILABLE, running\nones get --drain-timeout to finish, then pagodad exits 0. "
                  "A second signal exits at once.\n");
  return usage;
}

absl::StatusOr<int64_t> ParseByteSize(absl::string_view text) {
  const absl::string_view input = text;
  size_t number_end = 0;
  while (number_end < text.size() &&
         (absl::ascii_isdigit(static_cast<unsigned char>(text[number_end])) ||
          text[number_end] == '.')) {
    ++number_end;
  }
  double number = 0;
  if (number_end == 0 || !absl::SimpleAtod(text.substr(0, number_end), &number)) {
    return absl::InvalidArgumentError(absl::StrCat("not a byte size: '", input, "'"));
  }
  std::string unit(absl::StripAsciiWhitespace(text.substr(number_end)));
  if (absl::EndsWith(unit, "B") && unit.size() > 1) unit.pop_back();  // KiB -> Ki, KB -> K
  double multiplier = 0;
  if (unit.empty() || unit == "B") {
    multiplier = 1;
  } else {
    static constexpr absl::string_view kPrefixes = "KMGT";
    const char prefix = absl::ascii_toupper(static_cast<unsigned char>(unit[0]));
    const size_t power = kPrefixes.find(prefix);
    const bool binary = unit.size() == 2 && unit[1] == 'i';
    if (power == absl::string_view::npos || (unit.size() != 1 && !binary)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown unit in byte size '", input,
                                                     "' (use B, Ki, Mi, Gi, Ti, K, M, G, T)"));
    }
    multiplier = std::pow(binary ? 1024.0 : 1000.0, static_cast<double>(power + 1));
  }
  const double bytes = number * multiplier;
  if (!(bytes < 9.0e18)) {
    return absl::InvalidArgumentError(absl::StrCat("byte size too large: '", input, "'"));
  }
  return static_cast<int64_t>(bytes);
}

std::string FormatByteSize(int64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  if (unit == 0) return absl::StrCat(bytes, " B");
  return absl::StrFormat("%.2f %s", value, kUnits[unit]);
}

}  // namespace pagoda::server
