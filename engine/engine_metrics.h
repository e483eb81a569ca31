#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "block_manager/kv_cache_stats.h"
#include "engine/engine_request.h"

namespace pagoda::engine {

// What one engine step did, reported once per step (ARCHITECTURE.md "Metrics"). Durations in
// seconds.
struct StepMetrics {
  double step_seconds = 0;      // the whole step: schedule, model, sample, outputs
  double schedule_seconds = 0;  // Scheduler::Schedule() alone
  double model_seconds = 0;     // ModelRunner::Execute() alone
  int num_scheduled_tokens = 0;
  int num_prompt_tokens = 0;      // prompt tokens computed (prefill work; recompute included)
  int num_generation_tokens = 0;  // output tokens produced
  int num_preemptions = 0;
  // After the step.
  int num_running = 0;
  int num_waiting = 0;
  block_manager::KvCacheStats kv;
  // Tokens whose K/V the running requests hold; kv.num_used_blocks * block_size minus this is
  // the KV memory allocated but not filled (the waste paging keeps to one partial block each).
  int64_t num_computed_tokens_running = 0;
  // The growth reserve's ratio (scheduler::GrowthReserve, --new-token-ratio); 0 when off.
  double new_token_ratio = 0;
  // The tiers below the device pool; unset without any.
  std::optional<block_manager::KvOffloadStats> kv_offload;
  // One entry per request that received its first token in this step: arrival to first token.
  std::vector<double> ttft_seconds;
  // One entry per later token produced in this step: the time since the request's previous one.
  std::vector<double> inter_token_seconds;
  // One entry per request scheduled for the first time in this step: arrival to that step.
  std::vector<double> queue_seconds;
};

// A request that ended (any reason), reported in the step that ended it.
struct FinishedRequestMetrics {
  FinishReason finish_reason = FinishReason::kAbort;
  int prompt_tokens = 0;
  int generation_tokens = 0;
  int cached_prompt_tokens = 0;
  double e2e_seconds = 0;
  double queue_seconds = 0;
  // Mean time per output token after the first: (e2e - ttft) / (generation_tokens - 1); unset
  // with fewer than two tokens.
  std::optional<double> time_per_output_token_seconds;
  int num_preemptions = 0;
};

// Receives the engine's metrics. Called on the engine thread, once per step (OnStep after the
// OnRequestFinished calls of that step). Must not block. The server implements it with
// Prometheus; the engine itself never depends on an exporter.
class MetricsObserver {
 public:
  virtual ~MetricsObserver() = default;
  virtual void OnStep(const StepMetrics& step) = 0;
  virtual void OnRequestFinished(const FinishedRequestMetrics& request) = 0;
};

// A consistent view of the engine, published after every step.
struct EngineSnapshot {
  int num_running = 0;
  int num_waiting = 0;  // inbox included
  int64_t num_preemptions = 0;
  int64_t num_steps = 0;
  block_manager::KvCacheStats kv;
  bool healthy = true;  // false after an engine failure
};

}  // namespace pagoda::engine
