#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "block_manager/kv_cache_events.h"
#include "block_manager/kv_cache_manager.h"
#include "common/clock.h"
#include "common/ids.h"
#include "engine/engine_info.h"
#include "engine/engine_metrics.h"
#include "engine/engine_request.h"
#include "engine/kv_tiering.h"
#include "runner/model_runner.h"
#include "scheduler/scheduler.h"
#include "tokenizer/incremental_detokenizer.h"
#include "tokenizer/stop_string_matcher.h"
#include "tokenizer/tokenizer.h"

namespace pagoda::engine {

struct EngineCoreOptions {
  // max_model_len must not exceed the model's max_position_embeddings.
  scheduler::SchedulerOptions scheduler;
  bool enable_prefix_caching = true;
  // See block_manager::KvCacheManagerOptions::watermark_ratio.
  double watermark_ratio = 0.01;
  // Tiers below the device pool (host memory, disk); none by default. Needs prefix caching, a
  // runner that copies blocks and full attention (no KV-cache window).
  KvTieringOptions kv_tiering;
};

// The engine step of ARCHITECTURE.md, synchronous: one Step() drains nothing (the threaded
// Engine feeds it), schedules, builds the flat batch, runs the model, samples, detokenizes,
// checks stop conditions and hands outputs to the sinks. Finished requests free their blocks in
// the step that ends them.
//
// Not thread-safe: one thread (the engine thread, or a test) calls everything.
class EngineCore {
 public:
  // `tokenizer` may be null (token ids only: text prompts and stop strings are refused).
  // `clock` (not owned, may be null for the real clock) times the requests.
  static absl::StatusOr<std::unique_ptr<EngineCore>> Create(
      std::string model_name, std::unique_ptr<runner::ModelRunner> runner,
      std::unique_ptr<tokenizer::Tokenizer> tokenizer, const EngineCoreOptions& options,
      const common::Clock* clock = nullptr);
  ~EngineCore();

  const EngineInfo& info() const { return info_; }
  // Null when the model has no tokenizer. Immutable: any thread may use it.
  const tokenizer::Tokenizer* tokenizer() const { return tokenizer_.get(); }

  // ValidateEngineRequest (engine/request_validation.h) against this engine's info. Reads only
  // immutable state: safe from any thread.
  absl::Status ValidateRequest(const EngineRequest& request) const;

  // Ends every request now with FinishReason::kAbort.
  void AbortAll();

  // Queues a request that passed ValidateRequest (which is not repeated here: Engine::Submit
  // validated it on the caller's thread); `sink` receives its output. Fails (without calling
  // the sink) only when `id` is already in use (AlreadyExists).
  absl::Status AddRequest(RequestId id, EngineRequest request, std::shared_ptr<RequestSink> sink);

  // Ends a request now with FinishReason::kAbort (its sink gets OnComplete at once) and frees
  // its blocks. False for an unknown or finished id.
  bool Abort(RequestId id);

  // Runs one step. With nothing to run, it only reports (to the metrics observer) the requests
  // that ended since the last step, e.g. by Abort(); with nothing to report either, it returns
  // at once. A non-OK status is an engine failure: every request was completed with it (and
  // reported), and the engine must not be used further.
  absl::Status Step();

  bool has_requests() const { return scheduler_->has_requests(); }
  // A step may do something now: a request to schedule, or a finished load to take in. False
  // when every request waits for its blocks to load (the caller may sleep until the
  // load-complete callback).
  bool has_work() const;
  // Called on an I/O thread when a load finishes (may be null). Set before the first Step.
  void set_load_notifier(std::function<void()> notify);
  int num_running() const { return scheduler_->num_running(); }
  int num_waiting() const { return scheduler_->num_waiting(); }
  int64_t num_preemptions() const { return scheduler_->num_preemptions(); }
  // Blocks until the KV tiers' queued spills and loads have run (tests and benchmarks that must
  // find what a step spilled; a spill still in flight is not yet matched); no-op without tiers.
  void WaitForKvOffload() {
    if (tiering_ != nullptr) tiering_->store().WaitIdle();
  }
  block_manager::KvCacheStats kv_stats() const { return scheduler_->kv_cache().Stats(); }

  // Not owned; may be null. Called from Step().
  void set_metrics_observer(MetricsObserver* observer) { observer_ = observer; }

  // KV events (block_manager/kv_cache_events.h): each Step() hands the prefix cache's changes
  // to `sink` as one batch. Not owned; may be null (the default), and then nothing is recorded.
  // When the sink drops a batch, the next batch it takes re-announces the whole cache.
  void set_kv_event_sink(block_manager::KvEventSink* sink);
  // A dropped batch is waiting to be made good (the engine should step again soon).
  bool kv_resync_pending() const { return kv_resync_pending_; }
  // Every block holding prefix-cache content, parents first (the debug endpoint's view).
  std::vector<block_manager::CachedBlockInfo> ListCachedBlocks() const {
    return scheduler_->kv_cache().pool().ListCachedBlocks();
  }

 private:
  struct RequestState;

  EngineCore(std::string model_name, std::unique_ptr<runner::ModelRunner> runner,
             std::unique_ptr<tokenizer::Tokenizer> tokenizer, const EngineCoreOptions& options,
             const common::Clock* clock);

  static RequestState& StateOf(scheduler::Request& request);

  absl::Status RunStep(const scheduler::StepPlan& plan, StepMetrics& metrics);
  // The tiers' part of a step, after Schedule: spills what it evicted, starts its loads.
  absl::Status TierStep(const scheduler::StepPlan& plan);
  void BuildBatch(const scheduler::StepPlan& plan);
  // How the runner answers each logits row of the built batch (batch_rows_).
  void BuildSamplingRows();
  // The runner's answer has one valid token per row; otherwise an engine failure.
  absl::Status CheckStepTokens() const;
  // Appends `token` to the request, checks the stop conditions and hands the output to the
  // sink; a request that ends is finished (and its state destroyed).
  void ProcessToken(RequestState& state, TokenId token, absl::Time now, StepMetrics& metrics);
  // The token joins the request's sequence, sampler history and the step's metrics.
  void RecordToken(RequestState& state, TokenId token, absl::Time now, StepMetrics& metrics);
  // EOS (unless ignored) or a stop token id.
  StopKind CheckStopToken(const RequestState& state, TokenId token) const;
  // The text the token adds, after detokenization and stop strings (which may set `stop`).
  std::string EmitText(RequestState& state, TokenId token, bool stops_checked, bool length,
                       StopKind& stop);
  // One chunk to the sink, then Finish() if the request stopped or reached its length.
  void Emit(RequestState& state, TokenId token, std::string text, absl::Time now, StopKind stop,
            bool length);
  // Completes the request (sink, metrics), frees its blocks and destroys its state.
  void Finish(RequestState& state, FinishReason reason, absl::Time now, absl::Status status);
  static absl::Span<const TokenId> BannedTokens(const RequestState& state);
  // Finishes every request with `status` (kAbort).
  void FailAll(const absl::Status& status);
  // Hands this step's KV events (or a resync after a drop) to the sink.
  void PublishKvEvents();

  EngineInfo info_;
  std::unique_ptr<runner::ModelRunner> runner_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  // Owns the KV-cache manager and every request's record (RequestState).
  std::unique_ptr<scheduler::Scheduler> scheduler_;
  const common::Clock* clock_;
  MetricsObserver* observer_ = nullptr;
  block_manager::KvEventSink* kv_event_sink_ = nullptr;
  std::unique_ptr<KvTiering> tiering_;  // null without tiers
  bool kv_resync_pending_ = false;
  std::vector<FinishedRequestMetrics> finished_metrics_;  // of the current step

  // The flat batch of the current step, its memory reused.
  model::ForwardBatchBuilder batch_builder_;
  std::vector<RequestState*> batch_sampled_;  // the request of each logits row
  // Per logits row: the prompt position it scores (prompt_logprobs), or -1 for a row that
  // samples; and where a scoring row's answer goes.
  std::vector<int> batch_score_positions_;
  std::vector<sampling::TokenLogprobs> batch_scores_;
  std::vector<runner::SamplingRow> batch_rows_;       // how to choose each logits row's token
  std::vector<absl::StatusOr<TokenId>> step_tokens_;  // the runner's answer
};

}  // namespace pagoda::engine
