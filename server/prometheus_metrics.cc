#include "server/prometheus_metrics.h"

#include <algorithm>
#include <string>

#include "prometheus/text_serializer.h"
#include "server/error_reason.h"

namespace pagoda::server {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;
using prometheus::Labels;
using prometheus::Registry;

// Buckets follow vLLM's where it has them, extended downwards: a small model on a CPU answers
// in milliseconds.
const Histogram::BucketBoundaries kTtftBuckets = {
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
    1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
const Histogram::BucketBoundaries kTokenLatencyBuckets = {
    0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1,  0.15, 0.2,  0.3, 0.4,
    0.5,   0.75,  1.0,  2.5,   5.0,  7.5,   10.0, 20.0, 40.0, 80.0};
const Histogram::BucketBoundaries kRequestLatencyBuckets = {
    0.01, 0.025, 0.05, 0.1,  0.3,  0.5,  0.8,   1.0,   1.5,   2.0,   2.5,    5.0,   10.0,
    15.0, 20.0,  30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
const Histogram::BucketBoundaries kStepDurationBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                          0.05,   0.075, 0.1,    0.15,  0.2,  0.3,
                                                          0.5,    0.75,  1.0,    2.5,   5.0,  10.0};

// 1, 2, 5, 10, 20, 50, ... up to the first value >= `max` (vLLM's build_1_2_5_buckets).
Histogram::BucketBoundaries OneTwoFiveBuckets(int max) {
  Histogram::BucketBoundaries buckets;
  for (double decade = 1;; decade *= 10) {
    for (double mantissa : {1.0, 2.0, 5.0}) {
      buckets.push_back(mantissa * decade);
      if (buckets.back() >= max) return buckets;
    }
  }
}

// 1, 8, 16, 32, ..., 16384 tokens per step.
Histogram::BucketBoundaries IterationTokenBuckets() {
  Histogram::BucketBoundaries buckets = {1};
  for (double b = 8; b <= 16384; b *= 2) buckets.push_back(b);
  return buckets;
}

// Registers families that all carry the constant label model_name.
class FamilyMaker {
 public:
  FamilyMaker(Registry& registry, const std::string& model_name)
      : registry_(registry), labels_{{"model_name", model_name}} {}

  Family<Gauge>& GaugeFamily(const std::string& name, const std::string& help) {
    return prometheus::BuildGauge().Name(name).Help(help).Labels(labels_).Register(registry_);
  }
  Family<Counter>& CounterFamily(const std::string& name, const std::string& help) {
    return prometheus::BuildCounter().Name(name).Help(help).Labels(labels_).Register(registry_);
  }
  Gauge* NewGauge(const std::string& name, const std::string& help) {
    return &GaugeFamily(name, help).Add({});
  }
  Counter* NewCounter(const std::string& name, const std::string& help) {
    return &CounterFamily(name, help).Add({});
  }
  Histogram* NewHistogram(const std::string& name, const std::string& help,
                          const Histogram::BucketBoundaries& buckets) {
    return &prometheus::BuildHistogram()
                .Name(name)
                .Help(help)
                .Labels(labels_)
                .Register(registry_)
                .Add({}, buckets);
  }

 private:
  Registry& registry_;
  const Labels labels_;
};

// Advances `counter` to the cumulative value `now`. A value that went down (not expected) only
// moves the reference, so the counter never decreases.
void AdvanceTo(Counter& counter, int64_t now, int64_t& last) {
  if (now > last) counter.Increment(static_cast<double>(now - last));
  last = now;
}

void ObserveAll(Histogram& histogram, const std::vector<double>& values) {
  for (double value : values) histogram.Observe(value);
}

}  // namespace

PrometheusMetrics::PrometheusMetrics(const Options& o) {
  FamilyMaker make(registry_, o.model_name);
  num_requests_running_ =
      make.NewGauge("pagoda_num_requests_running",
                    "Requests running: admitted by the scheduler and holding KV-cache blocks.");
  num_requests_waiting_ =
      make.NewGauge("pagoda_num_requests_waiting",
                    "Requests accepted but not running yet (queued or preempted).");
  kv_cache_usage_ratio_ = make.NewGauge(
      "pagoda_kv_cache_usage_ratio",
      "Fraction of KV-cache blocks held by unfinished requests, 0 to 1 (cached blocks count "
      "as free).");
  Family<Gauge>& blocks = make.GaugeFamily(
      "pagoda_kv_cache_blocks",
      "KV-cache blocks by state: used (held by requests), cached (evictable prefix content), "
      "free (empty). The states add up to the capacity.");
  kv_blocks_used_ = &blocks.Add({{"state", "used"}});
  kv_blocks_cached_ = &blocks.Add({{"state", "cached"}});
  kv_blocks_free_ = &blocks.Add({{"state", "free"}});
  kv_capacity_blocks_ =
      make.NewGauge("pagoda_kv_cache_capacity_blocks", "KV-cache blocks in the pool.");
  kv_capacity_blocks_->Set(o.num_kv_blocks);
  engine_healthy_ = make.NewGauge(
      "pagoda_engine_healthy",
      "1 while the engine is healthy, 0 after an engine failure (the server then refuses "
      "every request and needs a restart).");
  engine_healthy_->Set(1);
  new_token_ratio_ = make.NewGauge(
      "pagoda_new_token_ratio",
      "The growth reserve's ratio (--new-token-ratio): the share of the running requests' "
      "remaining max_tokens an admission keeps free; learned, it falls while nothing is "
      "preempted and rises on a preemption. 0 when off.");
  kv_blocks_free_->Set(o.num_kv_blocks);
  make.GaugeFamily("pagoda_cache_config_info",
                   "KV-cache configuration, in the labels; the value is always 1.")
      .Add({{"block_size", std::to_string(o.block_size)},
            {"num_blocks", std::to_string(o.num_kv_blocks)},
            {"kv_cache_dtype", o.kv_cache_dtype}})
      .Set(1);

  if (!o.kv_offload_media.empty()) {
    kv_offload_ = std::make_unique<KvOffloadMetrics>(registry_, o.model_name, o.kv_offload_media);
  }
  kv_evictions_ =
      make.NewCounter("pagoda_kv_cache_evictions_total",
                      "Cached KV blocks whose prefix content was dropped to reuse the block.");
  prefix_queried_tokens_ =
      make.NewCounter("pagoda_prefix_cache_queried_tokens_total",
                      "Prompt tokens looked up in the prefix cache (first admissions only).");
  prefix_hit_tokens_ =
      make.NewCounter("pagoda_prefix_cache_hit_tokens_total",
                      "Prompt tokens found in the prefix cache (first admissions only).");
  num_preemptions_ =
      make.NewCounter("pagoda_num_preemptions_total",
                      "Preemptions: a running request's blocks were freed to be recomputed later.");
  Family<Counter>& success =
      make.CounterFamily("pagoda_request_success_total", "Finished requests by finish reason.");
  success_stop_ = &success.Add({{"finished_reason", "stop"}});
  success_length_ = &success.Add({{"finished_reason", "length"}});
  success_abort_ = &success.Add({{"finished_reason", "abort"}});
  rejected_ = &make.CounterFamily(
      "pagoda_requests_rejected_total",
      "Generate calls refused before they ran, by reason (the pagoda-error-reason lowercased, "
      "or the status code lowercased); reason unauthenticated counts every TextGeneration "
      "call refused for a missing or wrong bearer token, reason cancelled the calls their "
      "client cancelled before the request arrived.");
  for (ErrorReason reason :
       {ErrorReason::kInvalidField, ErrorReason::kPromptTooLong, ErrorReason::kQueueFull,
        ErrorReason::kKvCacheTooSmall, ErrorReason::kDraining, ErrorReason::kEngineFailure}) {
    rejected_->Add({{"reason", RejectionLabel(WithErrorReason(absl::UnknownError(""), reason))}});
  }
  rejected_->Add({{"reason", RejectionLabel(absl::UnauthenticatedError(""))}});
  rejected_->Add({{"reason", RejectionLabel(absl::CancelledError(""))}});
  prompt_tokens_ =
      make.NewCounter("pagoda_prompt_tokens_total",
                      "Prompt tokens of finished requests (the sum of their Usage.prompt_tokens).");
  generation_tokens_ = make.NewCounter("pagoda_generation_tokens_total",
                                       "Output tokens generated, counted as they are produced.");

  time_to_first_token_ = make.NewHistogram(
      "pagoda_time_to_first_token_seconds",
      "Time from a request's arrival at the engine to its first output token.", kTtftBuckets);
  inter_token_latency_ = make.NewHistogram(
      "pagoda_inter_token_latency_seconds",
      "Time between two successive output tokens of a request.", kTokenLatencyBuckets);
  time_per_output_token_ = make.NewHistogram(
      "pagoda_request_time_per_output_token_seconds",
      "Per finished request with 2+ output tokens: (e2e - ttft) / (output tokens - 1).",
      kTokenLatencyBuckets);
  e2e_latency_ = make.NewHistogram("pagoda_e2e_request_latency_seconds",
                                   "Time from a request's arrival at the engine to its completion.",
                                   kRequestLatencyBuckets);
  queue_time_ = make.NewHistogram(
      "pagoda_request_queue_time_seconds",
      "Time from a request's arrival at the engine to the first step that scheduled it.",
      kRequestLatencyBuckets);
  prompt_tokens_per_request_ =
      make.NewHistogram("pagoda_request_prompt_tokens", "Prompt length of finished requests.",
                        OneTwoFiveBuckets(std::max(o.max_model_len, 1)));
  generation_tokens_per_request_ =
      make.NewHistogram("pagoda_request_generation_tokens", "Output length of finished requests.",
                        OneTwoFiveBuckets(std::max(o.max_model_len, 1)));
  iteration_tokens_ = make.NewHistogram("pagoda_iteration_tokens",
                                        "Tokens computed per engine step (prefill and decode).",
                                        IterationTokenBuckets());
  step_duration_ = make.NewHistogram(
      "pagoda_engine_step_duration_seconds",
      "Duration of one engine step: schedule, model, sampling, outputs.", kStepDurationBuckets);

  kv_events_published_ = make.NewCounter(
      "pagoda_kv_events_published_total",
      "KV-event batches sent on the ZeroMQ PUB socket (--kv-events-config; one per engine step "
      "that changed the prefix cache).");
  kv_events_dropped_ = make.NewCounter(
      "pagoda_kv_events_dropped_total",
      "KV-event batches dropped because the publisher's queue was full; the engine then "
      "re-announces its whole cache (AllBlocksCleared, then BlockStored of every block).");
  kv_events_replay_requests_ =
      make.NewCounter("pagoda_kv_events_replay_requests_total",
                      "Replay requests served on the KV-event ROUTER socket.");
  if (o.vllm_compat) {
    vllm_num_requests_running_ =
        make.NewGauge("vllm:num_requests_running", "pagoda_num_requests_running, vLLM's name.");
    vllm_num_requests_waiting_ =
        make.NewGauge("vllm:num_requests_waiting", "pagoda_num_requests_waiting, vLLM's name.");
    vllm_kv_cache_usage_perc_ = make.NewGauge("vllm:kv_cache_usage_perc",
                                              "pagoda_kv_cache_usage_ratio (0 to 1), vLLM's name.");
    make.GaugeFamily("vllm:cache_config_info",
                     "KV-cache configuration in vLLM's labels; the value is always 1.")
        .Add({{"block_size", std::to_string(o.block_size)},
              {"num_gpu_blocks", std::to_string(o.num_kv_blocks)},
              {"cache_dtype", o.kv_cache_dtype}})
        .Set(1);
  }
}

void PrometheusMetrics::SetEngineState(const engine::EngineSnapshot& snapshot) {
  num_requests_running_->Set(snapshot.num_running);
  num_requests_waiting_->Set(snapshot.num_waiting);
  kv_cache_usage_ratio_->Set(snapshot.kv.usage_ratio);
  kv_blocks_used_->Set(snapshot.kv.num_used_blocks);
  kv_blocks_cached_->Set(snapshot.kv.num_cached_blocks);
  kv_blocks_free_->Set(snapshot.kv.num_free_blocks);
  kv_capacity_blocks_->Set(snapshot.kv.num_blocks);
  engine_healthy_->Set(snapshot.healthy ? 1 : 0);
  if (vllm_num_requests_running_ != nullptr) {
    vllm_num_requests_running_->Set(snapshot.num_running);
    vllm_num_requests_waiting_->Set(snapshot.num_waiting);
    vllm_kv_cache_usage_perc_->Set(snapshot.kv.usage_ratio);
  }
}

void PrometheusMetrics::SetKvEventCounts(const KvEventCounts& counts) {
  AdvanceTo(*kv_events_published_, counts.batches_published, last_kv_events_.batches_published);
  AdvanceTo(*kv_events_dropped_, counts.batches_dropped, last_kv_events_.batches_dropped);
  AdvanceTo(*kv_events_replay_requests_, counts.replay_requests, last_kv_events_.replay_requests);
}

void PrometheusMetrics::OnStep(const engine::StepMetrics& step) {
  AdvanceTo(*kv_evictions_, step.kv.num_evictions, last_evictions_);
  AdvanceTo(*prefix_queried_tokens_, step.kv.prefix_queried_tokens, last_prefix_queried_tokens_);
  AdvanceTo(*prefix_hit_tokens_, step.kv.prefix_hit_tokens, last_prefix_hit_tokens_);
  if (step.num_preemptions > 0) num_preemptions_->Increment(step.num_preemptions);
  new_token_ratio_->Set(step.new_token_ratio);
  if (step.num_generation_tokens > 0) generation_tokens_->Increment(step.num_generation_tokens);
  if (step.num_scheduled_tokens > 0) {
    iteration_tokens_->Observe(step.num_scheduled_tokens);
    step_duration_->Observe(step.step_seconds);
  }
  ObserveAll(*time_to_first_token_, step.ttft_seconds);
  ObserveAll(*inter_token_latency_, step.inter_token_seconds);
  ObserveAll(*queue_time_, step.queue_seconds);
  if (kv_offload_ != nullptr && step.kv_offload.has_value()) kv_offload_->Update(*step.kv_offload);
}

void PrometheusMetrics::OnRequestFinished(const engine::FinishedRequestMetrics& request) {
  switch (request.finish_reason) {
    case engine::FinishReason::kStop:
      success_stop_->Increment();
      break;
    case engine::FinishReason::kLength:
      success_length_->Increment();
      break;
    case engine::FinishReason::kAbort:
      success_abort_->Increment();
      break;
  }
  prompt_tokens_->Increment(request.prompt_tokens);
  e2e_latency_->Observe(request.e2e_seconds);
  prompt_tokens_per_request_->Observe(request.prompt_tokens);
  generation_tokens_per_request_->Observe(request.generation_tokens);
  if (request.time_per_output_token_seconds.has_value()) {
    time_per_output_token_->Observe(*request.time_per_output_token_seconds);
  }
}

void PrometheusMetrics::OnRequestRejected(const std::string& reason) {
  rejected_->Add({{"reason", reason}}).Increment();
}

std::string PrometheusMetrics::Render() const {
  return prometheus::TextSerializer().Serialize(registry_.Collect());
}

}  // namespace pagoda::server
