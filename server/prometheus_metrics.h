#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine_metrics.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "server/kv_offload_metrics.h"

namespace pagoda::server {

// The daemon's Prometheus metrics (docs/metrics.md lists every one): the engine's per-step and
// per-request figures (as its engine::MetricsObserver) and the server's rejections. Every
// series carries the constant label model_name.
//
// pagoda_engine_healthy is 1 until a snapshot says the engine failed, then 0 for good (the
// engine does not recover; after shutdown it keeps its last value).
//
// Counters and histograms come from the engine's per-step reports. Gauges (requests running and
// waiting, KV blocks by state, usage ratio) are set from the engine's published snapshot when a
// scrape renders the page, so that they also reflect what changed outside steps (an abort frees
// blocks without a step) and are never older than the snapshot.
//
// Thread rules: OnStep and OnRequestFinished come from the engine thread only (they keep the
// previous step's cumulative KV figures to advance counters by deltas); SetEngineState is for
// one thread at a time (the scraper); OnRequestRejected and Render may be called from any
// thread at any time (prometheus-cpp metrics are atomic and its registry locks).
class PrometheusMetrics final : public engine::MetricsObserver {
 public:
  struct Options {
    std::string model_name;
    // For pagoda_cache_config_info.
    int block_size = 0;
    int num_kv_blocks = 0;
    std::string kv_cache_dtype;  // e.g. "bf16"
    // Upper end of the token-count histograms' buckets.
    int max_model_len = 0;
    // --metrics-compat vllm: also export the gauges under the names the Gateway API Inference
    // Extension's endpoint picker reads by default (vllm:num_requests_waiting,
    // vllm:num_requests_running, vllm:kv_cache_usage_perc, vllm:cache_config_info).
    bool vllm_compat = false;
    // The tiers below the KV pool, top first (EngineInfo::kv_offload_media); empty: none.
    std::vector<std::string> kv_offload_media;
  };

  // The KV-event publisher's cumulative figures (kv_events::ZmqEventPublisher::Stats).
  struct KvEventCounts {
    int64_t batches_published = 0;
    int64_t batches_dropped = 0;
    int64_t replay_requests = 0;
  };

  explicit PrometheusMetrics(const Options& options);
  PrometheusMetrics(const PrometheusMetrics&) = delete;
  PrometheusMetrics& operator=(const PrometheusMetrics&) = delete;

  void OnStep(const engine::StepMetrics& step) override;
  void OnRequestFinished(const engine::FinishedRequestMetrics& request) override;

  // Counts a Generate call refused before it reached the engine or by the engine's Submit;
  // `reason` is RejectionLabel() of its status.
  void OnRequestRejected(const std::string& reason);

  // Sets the gauges from the engine's current state.
  void SetEngineState(const engine::EngineSnapshot& snapshot);
  // Advances the KV-event counters; same thread rule as SetEngineState.
  void SetKvEventCounts(const KvEventCounts& counts);

  // Every metric in the Prometheus text exposition format, version 0.0.4.
  std::string Render() const;

 private:
  prometheus::Registry registry_;                 // owns the families below
  std::unique_ptr<KvOffloadMetrics> kv_offload_;  // null without tiers

  // Series owned by registry_; set by the constructor, never null afterwards.
  prometheus::Gauge* num_requests_running_ = nullptr;
  prometheus::Gauge* num_requests_waiting_ = nullptr;
  prometheus::Gauge* kv_cache_usage_ratio_ = nullptr;
  prometheus::Gauge* kv_blocks_used_ = nullptr;
  prometheus::Gauge* kv_blocks_cached_ = nullptr;
  prometheus::Gauge* kv_blocks_free_ = nullptr;
  prometheus::Gauge* kv_capacity_blocks_ = nullptr;
  prometheus::Gauge* engine_healthy_ = nullptr;
  prometheus::Gauge* new_token_ratio_ = nullptr;

  prometheus::Counter* kv_evictions_ = nullptr;
  prometheus::Counter* prefix_queried_tokens_ = nullptr;
  prometheus::Counter* prefix_hit_tokens_ = nullptr;
  prometheus::Counter* num_preemptions_ = nullptr;
  prometheus::Counter* success_stop_ = nullptr;
  prometheus::Counter* success_length_ = nullptr;
  prometheus::Counter* success_abort_ = nullptr;
  prometheus::Family<prometheus::Counter>* rejected_ = nullptr;
  prometheus::Counter* prompt_tokens_ = nullptr;
  prometheus::Counter* generation_tokens_ = nullptr;
  prometheus::Counter* kv_events_published_ = nullptr;
  prometheus::Counter* kv_events_dropped_ = nullptr;
  prometheus::Counter* kv_events_replay_requests_ = nullptr;
  // --metrics-compat vllm only; null otherwise.
  prometheus::Gauge* vllm_num_requests_running_ = nullptr;
  prometheus::Gauge* vllm_num_requests_waiting_ = nullptr;
  prometheus::Gauge* vllm_kv_cache_usage_perc_ = nullptr;

  prometheus::Histogram* time_to_first_token_ = nullptr;
  prometheus::Histogram* inter_token_latency_ = nullptr;
  prometheus::Histogram* time_per_output_token_ = nullptr;
  prometheus::Histogram* e2e_latency_ = nullptr;
  prometheus::Histogram* queue_time_ = nullptr;
  prometheus::Histogram* prompt_tokens_per_request_ = nullptr;
  prometheus::Histogram* generation_tokens_per_request_ = nullptr;
  prometheus::Histogram* iteration_tokens_ = nullptr;
  prometheus::Histogram* step_duration_ = nullptr;

  // Engine thread only: the cumulative KV figures of the previous step.
  int64_t last_evictions_ = 0;
  int64_t last_prefix_queried_tokens_ = 0;
  int64_t last_prefix_hit_tokens_ = 0;
  // The scraper's: the KV-event counts of the previous scrape.
  KvEventCounts last_kv_events_;
};

}  // namespace pagoda::server
