#include "runner/cuda/kv_cache_budget.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace pagoda::runner::cuda {
namespace {

std::string GiB(int64_t bytes) {
  return absl::StrFormat("%.2f GiB", static_cast<double>(bytes) / (int64_t{1} << 30));
}

}  // namespace

absl::StatusOr<KvCacheBudget> PlanKvCacheBudget(const GpuMemoryProfile& p,
                                                const KvCacheBudgetOptions& o) {
  if (!(o.gpu_memory_utilization > 0 && o.gpu_memory_utilization <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--gpu-memory-utilization: must be in (0, 1], got ", o.gpu_memory_utilization));
  }
  if (o.bytes_per_block <= 0 || o.kv_cache_memory_bytes < 0 || p.total_bytes <= 0) {
    return absl::InvalidArgumentError("KV cache budget: sizes must be positive");
  }
  KvCacheBudget budget;
  budget.non_kv_bytes = std::max<int64_t>(
      0, p.used_after_profile_bytes - p.used_before_load_bytes - p.profile_kv_bytes);
  // What the real pool can actually get once the profiling pool is freed.
  const int64_t allocatable =
      std::max<int64_t>(0, p.free_after_profile_bytes + p.profile_kv_bytes - o.reserve_bytes);
  int64_t wanted = 0;
  if (o.kv_cache_memory_bytes > 0) {
    if (o.kv_cache_memory_bytes > allocatable) {
      return absl::ResourceExhaustedError(
          absl::StrCat("--kv-cache-memory: ", GiB(o.kv_cache_memory_bytes), " asked but only ",
                       GiB(allocatable), " of device memory is free after the model (",
                       GiB(budget.non_kv_bytes), ") and a ", GiB(o.reserve_bytes), " reserve"));
    }
    wanted = o.kv_cache_memory_bytes;
  } else {
    const auto requested = static_cast<int64_t>(
        std::floor(o.gpu_memory_utilization * static_cast<double>(p.total_bytes)));
    wanted = requested - budget.non_kv_bytes;
    if (wanted > allocatable) {
      wanted = allocatable;
      budget.limited_by_free_memory = true;
    }
  }
  budget.num_blocks = std::min(std::max<int64_t>(0, wanted) / o.bytes_per_block, o.max_num_blocks);
  if (budget.num_blocks < 1) {
    return absl::ResourceExhaustedError(
        absl::StrCat(o.kv_cache_memory_bytes > 0 ? "--kv-cache-memory" : "--gpu-memory-utilization",
                     ": no room for a KV block of ", o.bytes_per_block, " bytes: the device has ",
                     GiB(p.total_bytes), ", this instance may use ",
                     absl::StrFormat("%.2f", o.gpu_memory_utilization),
                     " of it, the model and its buffers take ", GiB(budget.non_kv_bytes), ", ",
                     GiB(p.free_after_profile_bytes + p.profile_kv_bytes),
                     " is free; raise --gpu-memory-utilization or free device memory"));
  }
  budget.kv_bytes = budget.num_blocks * o.bytes_per_block;
  return budget;
}

}  // namespace pagoda::runner::cuda
