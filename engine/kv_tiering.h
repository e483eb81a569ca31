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
#include "block_manager/block_pool.h"
#include "block_manager/kv_cache_stats.h"
#include "kv_offload/cost_model.h"
#include "kv_offload/offload_store.h"
#include "runner/model_runner.h"
#include "scheduler/scheduler.h"

namespace pagoda::engine {

// The tiers below the device pool, as the engine configures them (docs/architecture.md,
// "KV offload").
struct KvTieringOptions {
  int64_t host_bytes = 0;  // host-memory tier; 0 = none
  std::string disk_dir;    // disk tier; "" = none
  int64_t disk_bytes = 0;
  kv_offload::ReloadPolicy policy = kv_offload::ReloadPolicy::kAuto;
  // What a stored block must match: the model, its weights, KV dtype, block size, tokenizer.
  kv_offload::ModelFingerprint fingerprint;
  int io_threads = 2;
  // The start-up estimate of the model's prefill speed; unset: measured on the runner.
  std::optional<double> prefill_tokens_per_second;
  std::function<void(const std::string&)> log;  // may be null

  bool enabled() const { return host_bytes > 0 || !disk_dir.empty(); }
};

// Spills the blocks the device pool evicts, finds a request's chain past its device hit in the
// tiers, and loads it asynchronously when the cost model says loading beats recomputing.
//
// Not thread-safe: the engine thread calls everything (the store's I/O threads only call the
// load-complete callback).
class KvTiering final : public scheduler::ExternalPrefixCache {
 public:
  // `runner` (not owned) must outlive this and copy blocks (kv_block_bytes() > 0).
  static absl::StatusOr<std::unique_ptr<KvTiering>> Create(const KvTieringOptions& options,
                                                           runner::ModelRunner* runner);

  int MatchForLoad(const scheduler::Request& request, int first_block, int max_blocks) override;
  // Issues the reads of the step's loads (after Schedule).
  void StartLoads(const std::vector<scheduler::LoadPlan>& loads);
  // Copies the blocks of completed loads into the device pool and hands their requests back to
  // the scheduler. An error is an engine failure (the runner could not copy).
  absl::Status FinishLoads(scheduler::Scheduler& scheduler);
  // Copies the evicted blocks out of the device pool (before the step overwrites them) and
  // queues them for the tiers.
  absl::Status Spill(std::vector<block_manager::EvictedContent> evicted);
  // At shutdown: writes the blocks the device pool still caches (`cached`, registration order;
  // at most what the bottom tier holds) to the tiers, and what the host-memory tier holds down
  // to the disk tier, and waits for the writes, so that a restart finds the hot prefixes too
  // (they are never evicted, so never spilled). Returns the blocks written.
  absl::StatusOr<int64_t> WriteBack(std::vector<block_manager::EvictedContent> cached);
  // A step that computed `prompt_tokens` prompt tokens of its `tokens` in `seconds`.
  void ObserveStep(int prompt_tokens, int tokens, double seconds);

  bool has_completed_loads();
  int num_in_flight() const { return static_cast<int>(in_flight_.size()); }
  void set_on_load_complete(std::function<void()> callback) {
    store_->set_on_load_complete(std::move(callback));
  }
  // The tiers' counters; load_seconds holds the loads finished since the last call.
  block_manager::KvOffloadStats TakeStats(int num_loading_requests);
  // The decision inputs, for the start-up log.
  std::string Describe() const;
  kv_offload::KvOffloadStore& store() { return *store_; }

 private:
  // Spill's work; with `wait_for_room`, a block the store's pending bound refuses waits for
  // the I/O threads instead of being dropped.
  absl::StatusOr<int64_t> SpillBlocks(std::vector<block_manager::EvictedContent> blocks,
                                      bool wait_for_room);
  struct Match {
    std::vector<kv_offload::BlockIdentity> blocks;
    std::vector<int> tiers;
  };
  struct InFlight {
    RequestId id;
    const scheduler::Request* request;
    std::vector<BlockId> device_blocks;
    absl::Time start;
  };

  KvTiering(runner::ModelRunner* runner, std::unique_ptr<kv_offload::KvOffloadStore> store,
            kv_offload::ReloadCostModel cost);

  runner::ModelRunner* runner_;
  std::unique_ptr<kv_offload::KvOffloadStore> store_;
  kv_offload::ReloadCostModel cost_;
  // MatchForLoad's answer per request, until StartLoads takes it (same step).
  absl::flat_hash_map<RequestId, Match> matches_;
  absl::flat_hash_map<uint64_t, InFlight> in_flight_;  // by ticket
  int64_t load_blocks_ = 0;
  int64_t recompute_blocks_ = 0;
  int64_t spilled_blocks_ = 0;
  std::vector<std::pair<int, double>> load_seconds_;
};

// The start-up measurement of a runner's prefill speed: tokens per second of one prompt of
// `num_tokens` tokens (written into its first blocks, which hold nothing yet).
absl::StatusOr<double> MeasurePrefillTokensPerSecond(runner::ModelRunner& runner, int num_tokens);

}  // namespace pagoda::engine
