#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace pagoda::block_manager {

// A snapshot of the KV cache for metrics and logs. Block counts satisfy
// num_used_blocks + num_cached_blocks + num_free_blocks == num_blocks.
struct KvCacheStats {
  int num_blocks = 0;         // capacity
  int num_used_blocks = 0;    // in at least one block table
  int num_cached_blocks = 0;  // not in use, holding reusable prefix content (evictable)
  int num_free_blocks = 0;    // not in use, holding nothing
  // num_used_blocks / num_blocks, in [0, 1]. Cached blocks count as free, as in vLLM's
  // kv_cache_usage_perc; num_cached_blocks gives the rest of the picture.
  double usage_ratio = 0.0;

  // Cumulative since start-up. Lookups of requests resumed after preemption are counted apart:
  // their hits on their own old blocks would otherwise inflate the hit rate.
  int64_t prefix_queried_tokens = 0;
  int64_t prefix_hit_tokens = 0;
  int64_t preempted_prefix_queried_tokens = 0;
  int64_t preempted_prefix_hit_tokens = 0;
  int64_t num_evictions = 0;  // cached contents dropped to reuse their block
};

// One tier below the device pool (kv_offload/): counters cumulative since start-up, gauges
// current.
struct KvTierStats {
  int64_t queries = 0;        // blocks looked up in this tier
  int64_t hits = 0;           // of those, found (identity confirmed)
  int64_t loads = 0;          // blocks read back successfully
  int64_t read_bytes = 0;     // bytes read by loads
  int64_t written_bytes = 0;  // bytes written by stores
  int64_t stored_blocks = 0;
  int64_t evicted_blocks = 0;
  int64_t corrupt_blocks = 0;  // damaged files skipped and deleted (disk)
  int64_t write_errors = 0;
  int64_t used_bytes = 0;  // gauge
  int64_t capacity_bytes = 0;
  int64_t num_blocks = 0;  // gauge
};

// The tiers below the device pool, as the engine reports them per step.
struct KvOffloadStats {
  std::vector<std::string> media;  // per tier, top first: "cpu" (host memory), "disk"
  std::vector<KvTierStats> tiers;
  // Cumulative: blocks found below the pool that the cost model chose to load, and those it
  // chose to recompute; blocks spilled, and spills dropped (I/O queue full).
  int64_t load_blocks = 0;
  int64_t recompute_blocks = 0;
  int64_t spilled_blocks = 0;
  int64_t spills_dropped = 0;
  int num_loading_requests = 0;  // gauge
  // Loads that completed in this step: (tier index, seconds from issue to completion).
  std::vector<std::pair<int, double>> load_seconds;
};

}  // namespace pagoda::block_manager
