#pragma once

#include <cstdint>

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

}  // namespace pagoda::block_manager
