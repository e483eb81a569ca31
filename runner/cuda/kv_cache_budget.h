#pragma once

// How many KV blocks the CUDA runner allocates (vLLM's rule): this instance may use
// gpu_memory_utilization x the device's memory; the KV pool gets what is left of that after the
// runner's own non-KV memory (weights, activation buffers, the peak of a profiling forward pass
// of max_num_batched_tokens, CUDA graphs), measured on the device. A pure function, tested
// without a GPU.

#include <cstdint>

#include "absl/status/statusor.h"

namespace pagoda::runner::cuda {

// Device memory readings taken by the runner (cudaMemGetInfo), in bytes.
struct GpuMemoryProfile {
  int64_t total_bytes = 0;
  // Used by anyone (other processes, this process's CUDA context) before the runner allocated.
  int64_t used_before_load_bytes = 0;
  // Used after the runner loaded the weights, allocated its buffers, ran the profiling forward
  // pass and captured its graphs, with the temporary KV pool of that pass still allocated.
  int64_t used_after_profile_bytes = 0;
  int64_t profile_kv_bytes = 0;  // that temporary pool, freed before the real one is allocated
  // Free then, with the temporary pool still allocated.
  int64_t free_after_profile_bytes = 0;
};

struct KvCacheBudgetOptions {
  double gpu_memory_utilization = 0.9;  // in (0, 1]
  int64_t bytes_per_block = 0;          // K and V of every layer, > 0
  // > 0: exactly this many bytes of KV cache (--kv-cache-memory), instead of the utilization
  // rule; it must still fit in free memory.
  int64_t kv_cache_memory_bytes = 0;
  // Kept free for what a step allocates beyond the profile (driver and library scratch).
  int64_t reserve_bytes = int64_t{256} << 20;
  int64_t max_num_blocks = int64_t{1} << 30;
};

struct KvCacheBudget {
  int64_t non_kv_bytes = 0;  // the runner's own memory besides the KV pool
  int64_t kv_bytes = 0;      // num_blocks x bytes_per_block
  int64_t num_blocks = 0;
  // The utilization rule asked for more than was free (another process holds memory): the pool
  // got what was free.
  bool limited_by_free_memory = false;
};

// RESOURCE_EXHAUSTED, naming --gpu-memory-utilization or --kv-cache-memory and the figures,
// when not even one block fits; INVALID_ARGUMENT for options out of range.
absl::StatusOr<KvCacheBudget> PlanKvCacheBudget(const GpuMemoryProfile& profile,
                                                const KvCacheBudgetOptions& options);

}  // namespace pagoda::runner::cuda
