#include "server/pagoda_server.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <limits>
#include <mutex>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "engine/engine_factory.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "http/http_server.h"
#include "kv_events/zmq_publisher.h"
#include "model/dtype.h"
#include "model/llama_model.h"
#include "openai/openai_service.h"
#include "openai/responses.h"
#include "server/authenticator.h"
#include "server/chat_template_loading.h"
#include "server/error_reason.h"
#include "server/log.h"
#include "server/metrics_http_server.h"
#include "server/prometheus_metrics.h"
#include "server/server_flags.h"
#include "server/text_generation_service.h"
#include "server/tls_files.h"

#ifndef PAGODA_VERSION
#define PAGODA_VERSION "0.0.0"
#endif

namespace pagoda::server {
namespace {

constexpr char kServiceName[] = "pagoda.v1.TextGeneration";
constexpr absl::Duration kShutdownGrace = absl::Seconds(5);
// After the drain timeout, how long aborted requests get to deliver their last message.
constexpr absl::Duration kAbortGrace = absl::Seconds(5);
// Threads of the OpenAI API's HTTP server: one per core, from 2 to 4. One of them is always left
// to small requests and health checks (OpenAiService::Options::max_large_requests). More threads
// than cores cost throughput: each piece the engine hands over wakes one (measured on 2 cores,
// c=64: HTTP at 0.84x gRPC with 4 threads, 0.98x with 2; docs/benchmarks.md).
int HttpThreads() {
  return std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 2, 4);
}

// "[::1]:50051" for IPv6 literals, "host:port" otherwise.
std::string HostPort(const std::string& host, int port) {
  if (absl::StrContains(host, ':') && !absl::StartsWith(host, "[")) {
    return absl::StrCat("[", host, "]:", port);
  }
  return absl::StrCat(host, ":", port);
}

void InitGrpcOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  });
}

std::string KvDtypeLabel(model::DType dtype) {
  switch (dtype) {
    case model::DType::kF32:
      return "f32";
    case model::DType::kBF16:
      return "bf16";
    case model::DType::kF16:
      return "f16";
    case model::DType::kInt8:
      return "int8";
    case model::DType::kFp8E4M3:
      return "fp8_e4m3";
    case model::DType::kFp8E5M2:
      return "fp8_e5m2";
  }
  return "unknown";
}

void LogEngine(const engine::EngineInfo& info, int max_waiting_requests) {
  const model::ModelConfig& c = info.config;
  LogLine(absl::StrFormat(
      "model %s: %d layers, hidden %d, %d heads (%d KV heads, head_dim %d), vocab %d, weights "
      "%s, backend %s, tokenizer %s",
      info.model_name, c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim,
      info.vocab_size, model::DTypeName(info.weight_dtype), info.backend,
      info.has_tokenizer ? "yes" : "none (token ids only)"));
  if (!info.backend_details.empty()) LogLine(info.backend_details);
  const int64_t bytes_per_token =
      model::KvBytesPerToken(c, info.kv_dtype, /*per_token_scales=*/!info.kv_static_scales);
  const int64_t pool_tokens = int64_t{info.num_kv_blocks} * info.block_size;
  LogLine(absl::StrFormat(
      "KV cache: %d blocks of %d tokens = %d tokens, %s (%s, %d bytes per token); prefix "
      "caching %s",
      info.num_kv_blocks, info.block_size, pool_tokens,
      FormatByteSize(pool_tokens * bytes_per_token), model::DTypeName(info.kv_dtype),
      bytes_per_token, info.prefix_caching ? "on" : "off"));
  LogLine(absl::StrFormat(
      "max_model_len %d: maximum concurrency at max_model_len %.2fx; max_num_seqs %d, "
      "max_num_batched_tokens %d (%s), max_waiting_requests %d",
      info.max_model_len, static_cast<double>(pool_tokens) / std::max(1, info.max_model_len),
      info.max_num_seqs, info.max_num_batched_tokens,
      info.step_time_ratio > 0
          ? absl::StrFormat("steps with decodes capped at %gx a decode-only step's time",
                            info.step_time_ratio)
          : std::string("fixed"),
      max_waiting_requests));
  if (!info.kv_offload_details.empty()) LogLine(info.kv_offload_details);
}

// Milliseconds for a channel argument; an infinite duration is INT_MAX (gRPC's "never").
int ChannelMillis(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return std::numeric_limits<int>::max();
  return static_cast<int>(
      std::min<int64_t>(absl::ToInt64Milliseconds(d), std::numeric_limits<int>::max()));
}

// What one client can make the server hold (docs/operations.md, "Limits"). Debian's gRPC 1.51
// predates the upstream fix for HTTP/2 rapid reset (CVE-2023-44487): none of these bounds the
// calls gRPC queues for streams a client resets faster than the handlers retire them (measured
// in docs/benchmarks.md, "Hardening").
void ApplyGrpcLimits(const ServerOptions::GrpcLimits& limits, grpc::ServerBuilder& builder) {
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, limits.max_concurrent_streams);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                             ChannelMillis(limits.max_connection_idle));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                             ChannelMillis(limits.max_connection_age));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                             ChannelMillis(limits.max_connection_age_grace));
  grpc::ResourceQuota quota("pagodad");
  quota.Resize(static_cast<size_t>(limits.memory_bytes));
  builder.SetResourceQuota(quota);
}

// `status` with its message prefixed by the flag it concerns ("--http-port: bind ...").
absl::Status NamingFlag(absl::string_view flag, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(flag, ": ", status.message()));
}

// The files of the TLS flags, read and checked once for both front ends (none without them).
absl::StatusOr<std::optional<TlsFiles>> LoadTlsFlags(const ServerOptions& options) {
  if (!options.tls_cert_file.has_value()) return std::nullopt;
  return LoadTlsFiles({.cert_file = *options.tls_cert_file,
                       .key_file = options.tls_key_file.value_or(""),
                       .client_ca_file = options.tls_client_ca_file});
}

// The gRPC port's credentials from the TLS files (plaintext without them), and a log line.
std::shared_ptr<grpc::ServerCredentials> GrpcCredentials(const std::optional<TlsFiles>& tls) {
  if (!tls.has_value()) {
    LogLine("TLS off: the gRPC and HTTP ports are plaintext");
    return grpc::InsecureServerCredentials();
  }
  const TlsFiles& files = *tls;
  grpc::SslServerCredentialsOptions ssl(
      files.client_ca_pem.has_value() ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                      : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  ssl.pem_key_cert_pairs.push_back({files.private_key_pem, files.cert_chain_pem});
  if (files.client_ca_pem.has_value()) ssl.pem_root_certs = *files.client_ca_pem;
  LogLine(absl::StrCat(files.client_ca_pem.has_value()
                           ? "mTLS on (gRPC and HTTP ports): clients need a certificate signed "
                             "by --tls-client-ca-file"
                           : "TLS on (gRPC and HTTP ports)",
                       "; certificate ", files.subject, ", valid until ",
                       absl::FormatTime("%Y-%m-%d", files.not_after, absl::UTCTimeZone())));
  if (files.not_after < absl::Now()) {
    LogLine("WARNING: the --tls-cert-file certificate has EXPIRED: clients will refuse it");
  }
  return grpc::SslServerCredentials(ssl);
}

// The bearer tokens of --auth-token-file (--api-key-file) and --api-key, in one store for both
// front ends.
absl::StatusOr<std::unique_ptr<Authenticator>> LoadAuthenticator(const ServerOptions& options) {
  std::string tokens;
  if (options.auth_token_file.has_value()) {
    // Read and checked through the file's own errors first.
    PAGODA_RETURN_IF_ERROR(Authenticator::FromFile(*options.auth_token_file).status());
    std::ifstream file(*options.auth_token_file, std::ios::binary);
    std::stringstream contents;
    contents << file.rdbuf();
    tokens = contents.str();
  }
  if (options.api_key.has_value()) {
    const std::string& key = *options.api_key;
    if (key.empty() ||
        std::any_of(key.begin(), key.end(), [](char c) { return c <= ' ' || c > '~'; })) {
      return absl::InvalidArgumentError(
          "--api-key: must be visible ASCII, without spaces, and not empty");
    }
    absl::StrAppend(&tokens, "\n", key, "\n");
  }
  return Authenticator::FromText(tokens);
}

}  // namespace

PagodaServer::PagodaServer(const ServerOptions& options) : options_(options) {}

absl::StatusOr<std::unique_ptr<PagodaServer>> PagodaServer::Start(const ServerOptions& options) {
  InitGrpcOnce();
  std::unique_ptr<PagodaServer> server(new PagodaServer(options));
  PagodaServer* raw = server.get();
  PAGODA_ASSIGN_OR_RETURN(const std::optional<TlsFiles> tls, LoadTlsFlags(options));
  const std::shared_ptr<grpc::ServerCredentials> credentials = GrpcCredentials(tls);
  if (options.auth_token_file.has_value() || options.api_key.has_value()) {
    PAGODA_ASSIGN_OR_RETURN(server->authenticator_, LoadAuthenticator(options));
    LogLine(absl::StrCat("auth on: TextGeneration calls need one of ",
                         server->authenticator_->num_tokens(),
                         " bearer tokens (health and reflection need none)"));
  } else {
    LogLine("auth off: no --auth-token-file");
  }
  if (!IsLoopbackHost(options.host) && !options.tls_cert_file.has_value() &&
      server->authenticator_ == nullptr) {
    LogLine(absl::StrCat("WARNING: --host ", options.host,
                         " exposes the gRPC and HTTP ports beyond this machine with neither "
                         "TLS nor "
                         "authentication; anyone who can reach it can generate. Use "
                         "--tls-cert-file/--tls-key-file and --auth-token-file, or make sure a "
                         "mesh or network policy protects it (docs/operations.md)"));
  }
  server->service_ = std::make_unique<TextGenerationService>(TextGenerationService::Options{
      .version = PAGODA_VERSION,
      .start_time = absl::Now(),
      .max_waiting_requests = options.engine.max_waiting_requests,
      .queue_full_retry_after = options.queue_full_retry_after,
      .authenticator = server->authenticator_.get(),
      .on_engine_failure = [raw] { raw->ReportEngineFailure(); },
  });

  grpc::ServerBuilder builder;
  builder.AddListeningPort(HostPort(options.host, options.port), credentials, &server->port_);
  builder.RegisterService(server->service_.get());
  // As vLLM's gRPC server: tolerate client keepalive pings every 10 s, also between calls.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // gRPC sets SO_REUSEPORT by default, so a second daemon on a taken port would start and
  // share it silently; a taken port must be an error.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  ApplyGrpcLimits(options.grpc_limits, builder);
  server->grpc_server_ = builder.BuildAndStart();
  if (server->grpc_server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("--port: cannot listen on ", HostPort(options.host, options.port)));
  }
  server->SetServing(false);

  PAGODA_RETURN_IF_ERROR(server->StartOpenAiApi(tls));
  PAGODA_RETURN_IF_ERROR(server->StartMetricsEndpoint());
  LogLine(absl::StrCat("gRPC listening on ", server->address(),
                       " (health NOT_SERVING until "
                       "the model is loaded)"));
  if (server->http_port_.has_value()) {
    LogLine(absl::StrCat("OpenAI API at ", tls.has_value() ? "https://" : "http://",
                         HostPort(options.host, *server->http_port_),
                         "/v1 (completions, models; /health, /metrics)"));
  }
  if (server->metrics_port_.has_value()) {
    LogLine(absl::StrCat("metrics at http://", HostPort(options.host, *server->metrics_port_),
                         "/metrics"));
  }
  return server;
}

absl::Status PagodaServer::StartMetricsEndpoint() {
  if (!options_.metrics_port.has_value()) return absl::OkStatus();
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> http = MetricsHttpServer::Start(
      {.host = options_.host, .port = *options_.metrics_port, .render = [this] {
         return RenderMetrics();
       }});
  if (!http.ok()) return NamingFlag("--metrics-port", http.status());
  metrics_http_ = *std::move(http);
  metrics_port_ = metrics_http_->port();
  return absl::OkStatus();
}

absl::Status PagodaServer::StartOpenAiApi(const std::optional<TlsFiles>& tls) {
  openai_service_ = std::make_unique<openai::OpenAiService>(openai::OpenAiService::Options{
      .version = PAGODA_VERSION,
      .start_time = absl::Now(),
      .queue_full_retry_after = options_.queue_full_retry_after,
      .authenticate =
          authenticator_ == nullptr
              ? std::function<absl::Status(const std::string*)>()
              : [auth = authenticator_.get()](const std::string* header) {
                  return auth->Check(header == nullptr
                                         ? std::nullopt
                                         : std::optional<absl::string_view>(*header));
                },
      .render_metrics = [this] { return RenderMetrics(); },
      .on_refused =
          [this](const absl::Status& status) {
            if (PrometheusMetrics* metrics = loaded_metrics_.load()) {
              metrics->OnRequestRejected(RejectionLabel(status));
            }
          },
      .on_engine_failure = [this] { ReportEngineFailure(); },
      .log = [](absl::string_view line) { LogLine(line); },
      .max_large_requests = HttpThreads() - 1,
      .debug_endpoints = options_.debug_endpoints,
  });
  if (!options_.http_port.has_value()) return absl::OkStatus();
  std::optional<http::HttpServer::Options::Tls> http_tls;
  if (tls.has_value()) {
    http_tls = http::HttpServer::Options::Tls{.cert_chain_pem = tls->cert_chain_pem,
                                              .private_key_pem = tls->private_key_pem,
                                              .client_ca_pem = tls->client_ca_pem};
  }
  absl::StatusOr<std::unique_ptr<http::HttpServer>> http = http::HttpServer::Start(
      {.host = options_.host,
       .port = *options_.http_port,
       .num_threads = HttpThreads(),
       .tls = std::move(http_tls),
       .handler =
           [service = openai_service_.get()](const http::Request& request,
                                             std::shared_ptr<http::Responder> responder) {
             service->Handle(request, std::move(responder));
           },
       .error_response =
           [](int /*status*/, const std::string& message) {
             http::Response response;
             response.body = openai::ErrorJson(absl::InvalidArgumentError(message));
             return response;
           }});
  if (!http.ok()) return NamingFlag("--http-port", http.status());
  openai_http_ = *std::move(http);
  http_port_ = openai_http_->port();
  return absl::OkStatus();
}

absl::Status PagodaServer::StartKvEvents(const engine::EngineInfo& info) {
  const kv_events::KvEventsConfig& config = options_.kv_events;
  if (!config.publishes()) return absl::OkStatus();
  std::string topic = config.topic;
  if (topic.empty()) {
    // vLLM's and llm-d's kv@<pod>@<model>, the pod named by the address routers send to.
    std::string host = options_.host;
    if (host == "0.0.0.0" || host == "::" || host == "[::]") {
      char name[256] = {};
      if (gethostname(name, sizeof(name) - 1) == 0) host = name;
    }
    topic = absl::StrCat("kv@", HostPort(host, http_port_.value_or(port_)), "@", info.model_name);
  }
  absl::StatusOr<std::unique_ptr<kv_events::ZmqEventPublisher>> publisher =
      kv_events::ZmqEventPublisher::Create(
          {.config = config, .topic = topic, .encoding = {.block_size = info.block_size}});
  if (!publisher.ok()) return NamingFlag("--kv-events-config", publisher.status());
  kv_event_publisher_ = *std::move(publisher);
  LogLine(absl::StrCat("KV events: topic ", topic, " on ", kv_event_publisher_->endpoint(),
                       kv_events::BindsEndpoint(config.endpoint) ? " (bound)" : " (connected)",
                       kv_event_publisher_->replay_endpoint().has_value()
                           ? absl::StrCat(", replay on ", *kv_event_publisher_->replay_endpoint())
                           : std::string(", no replay"),
                       "; schema: docs/kv_events.md"));
  return absl::OkStatus();
}

void PagodaServer::ReportEngineFailure() {
  engine_failed_.store(true);
  SetServing(false);
  LogLine("engine failure: health is NOT_SERVING; restart the server");
}

PagodaServer::~PagodaServer() {
  Shutdown();
  openai_http_.reset();
  metrics_http_.reset();
  grpc_server_.reset();
}

std::string PagodaServer::address() const { return HostPort(options_.host, port_); }

void PagodaServer::SetServing(bool serving) {
  if (grpc_server_ == nullptr) return;
  grpc::HealthCheckServiceInterface* health = grpc_server_->GetHealthCheckService();
  if (health == nullptr) return;
  const bool value = serving && !engine_failed_.load();
  health->SetServingStatus("", value);
  health->SetServingStatus(kServiceName, value);
}

absl::Status PagodaServer::LoadEngine() {
  const absl::Time start = absl::Now();
  const std::string model_spec =
      options_.engine.model.empty() ? engine::DefaultModelSpec() : options_.engine.model;
  PAGODA_ASSIGN_OR_RETURN(std::shared_ptr<const chat_template::ChatTemplates> templates,
                          LoadChatTemplates(model_spec, options_.chat_template));
  LogLine(
      absl::StrCat("loading model ",
                   options_.engine.model.empty() ? engine::kDefaultModel : options_.engine.model,
                   " on ", options_.engine.device));
  engine::EngineConfig engine_config = options_.engine;
  if (!engine_config.log) engine_config.log = [](const std::string& line) { LogLine(line); };
  PAGODA_ASSIGN_OR_RETURN(std::unique_ptr<engine::EngineCore> core,
                          options_.engine_core_factory ? options_.engine_core_factory(engine_config)
                                                       : engine::CreateEngineCore(engine_config));
  const engine::EngineInfo& info = core->info();
  metrics_ = std::make_unique<PrometheusMetrics>(
      PrometheusMetrics::Options{.model_name = info.model_name,
                                 .block_size = info.block_size,
                                 .num_kv_blocks = info.num_kv_blocks,
                                 .kv_cache_dtype = KvDtypeLabel(info.kv_dtype),
                                 .max_model_len = info.max_model_len,
                                 .vllm_compat = options_.metrics_compat_vllm,
                                 .kv_offload_media = info.kv_offload_media});
  PAGODA_RETURN_IF_ERROR(StartKvEvents(info));
  PAGODA_ASSIGN_OR_RETURN(
      engine_, engine::Engine::Create(std::move(core),
                                      {.max_waiting_requests = options_.engine.max_waiting_requests,
                                       .metrics_observer = metrics_.get(),
                                       .kv_event_sink = kv_event_publisher_.get()}));
  LogEngine(engine_->info(), options_.engine.max_waiting_requests);
  service_->SetEngine(engine_.get(), metrics_.get());
  LogLine(DescribeChatTemplates(*templates, options_.chat_template));
  openai_service_->SetEngine(engine_.get(), std::move(templates));
  loaded_metrics_.store(metrics_.get());
  loaded_engine_.store(engine_.get());
  SetServing(true);
  LogLine(absl::StrFormat("ready in %.1f s: health SERVING",
                          absl::ToDoubleSeconds(absl::Now() - start)));
  return absl::OkStatus();
}

void PagodaServer::StartDrain() {
  service_->StartDrain();
  if (openai_service_ != nullptr) openai_service_->StartDrain();
  SetServing(false);
  if (engine::Engine* engine = loaded_engine_.load()) engine->StartDrain();
}

void PagodaServer::Shutdown() {
  absl::MutexLock lock(&shutdown_mu_);
  if (shut_down_) return;
  shut_down_ = true;
  if (grpc_server_ == nullptr) return;  // Start failed to listen: nothing runs
  StartDrain();
  if (engine_ != nullptr) {
    const engine::EngineSnapshot snapshot = engine_->Snapshot();
    LogLine(absl::StrFormat("draining: %d running and %d waiting requests get up to %.1f s",
                            snapshot.num_running, snapshot.num_waiting,
                            absl::ToDoubleSeconds(options_.drain_timeout)));
    if (!engine_->WaitUntilIdle(options_.drain_timeout)) {
      LogLine("drain timeout: aborting the remaining requests");
      engine_->AbortAll();
      engine_->WaitUntilIdle(kAbortGrace);
    }
  }
  grpc_server_->Shutdown(std::chrono::system_clock::now() +
                         absl::ToChronoMilliseconds(kShutdownGrace));
  // Its requests end now (their clients see the connection close), and none comes after.
  openai_http_.reset();
  {
    // A scrape in progress finishes with the engine before it goes.
    absl::MutexLock render_lock(&render_mu_);
    loaded_engine_.store(nullptr);
  }
  openai_service_->SetEngine(nullptr);
  engine_.reset();
  LogLine("stopped");
}

std::string PagodaServer::RenderMetrics() {
  absl::MutexLock lock(&render_mu_);
  PrometheusMetrics* metrics = loaded_metrics_.load();
  if (metrics == nullptr) return std::string();
  // After Shutdown the engine is gone; the gauges keep their last values.
  if (const engine::Engine* engine = loaded_engine_.load()) {
    engine::EngineSnapshot snapshot = engine->Snapshot();
    // The service may learn of a failure (from a request's completion) before the snapshot.
    if (engine_failed_.load()) snapshot.healthy = false;
    metrics->SetEngineState(snapshot);
  }
  if (kv_event_publisher_ != nullptr) {
    const kv_events::ZmqEventPublisher::Stats stats = kv_event_publisher_->stats();
    metrics->SetKvEventCounts({.batches_published = stats.batches_published,
                               .batches_dropped = stats.batches_dropped,
                               .replay_requests = stats.replay_requests});
  }
  return metrics->Render();
}

engine::Engine* PagodaServer::engine() const { return loaded_engine_.load(); }

int PagodaServer::num_unfinished_requests() const { return service_->num_unfinished_requests(); }

}  // namespace pagoda::server
