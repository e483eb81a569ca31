#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cuda/attention_params_check.h"
#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/head_dim_dispatch.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/paged_attention_decode.h"
#include "kernels/cuda/paged_attention_decode_kernel.cuh"

namespace pagoda::kernels::cuda {
namespace {

using internal::Aligned;

using internal::CeilDiv;
using internal::DecodeConfig;
using internal::MergePartitionsKernel;
using internal::NumHeadChunks;
using internal::PagedDecodeKernel;

// The planner's choices (PlanPagedDecodeFor).
constexpr int32_t kPlanPartitionMultiple = 64;  // every warp of a block gets whole tiles
constexpr int32_t kMinPartitionTokens = 256;
constexpr int64_t kBlocksPerResidentSlot = 2;

template <typename T, typename C>
absl::Status Validate(const PagedDecodeParams<T, C>& p) {
  const PagedKvCacheView<C>& c = p.cache;
  PAGODA_RETURN_IF_ERROR(internal::CheckCommonAttentionParams(p));
  PAGODA_RETURN_IF_ERROR(internal::CheckKvScales(p));
  if (p.plan.partition_size <= 0 || p.plan.partition_size % kDecodePartitionAlignment != 0 ||
      p.plan.max_num_partitions < 1 || p.plan.max_num_partitions > kMaxDecodePartitions) {
    return absl::InvalidArgumentError(absl::StrCat("bad plan: partition_size ",
                                                   p.plan.partition_size, ", max_num_partitions ",
                                                   p.plan.max_num_partitions));
  }
  if (static_cast<int64_t>(c.num_kv_heads) * NumHeadChunks(p.num_heads, c.num_kv_heads) > 65535) {
    return absl::InvalidArgumentError("too many KV heads for one launch");
  }
  const int64_t needed = PagedDecodeWorkspaceBytes(p.plan, p.num_requests, p.num_heads, c.head_dim);
  if (needed > 0 &&
      (p.workspace == nullptr || p.workspace_bytes < needed || !Aligned(p.workspace, 16))) {
    return absl::InvalidArgumentError(
        absl::StrCat("decode workspace needs ", needed, " bytes, 16-byte aligned"));
  }
  return absl::OkStatus();
}

template <typename T, typename C, int kHeadDim>
absl::Status Launch(const PagedDecodeParams<T, C>& p, cudaStream_t stream) {
  using Cfg = DecodeConfig<kHeadDim, sizeof(C)>;
  auto* kernel = &PagedDecodeKernel<T, kHeadDim, C>;
  PAGODA_RETURN_IF_ERROR(internal::AllowDynamicSharedMemory(
      kernel, Cfg::kSmemBytes, "cudaFuncSetAttribute(PagedDecodeKernel)"));
  const int chunks = NumHeadChunks(p.num_heads, p.cache.num_kv_heads);
  PAGODA_RETURN_IF_ERROR(internal::LaunchKernel("PagedDecodeKernel", kernel,
                                                internal::DecodeGrid(p), Cfg::kThreads,
                                                Cfg::kSmemBytes, stream, p, chunks));
  if (p.plan.max_num_partitions > 1) {
    PAGODA_RETURN_IF_ERROR(internal::LaunchKernel(
        "MergePartitionsKernel", &MergePartitionsKernel<T, C>, internal::MergeGrid(p), kHeadDim,
        internal::MergeSharedBytes(p.plan), stream, p));
  }
  return absl::OkStatus();
}

// Decode thread blocks one multiprocessor holds at once, for the kernel of this head dim.
template <int kHeadDim>
absl::StatusOr<int> BlocksPerMultiprocessor() {
  using Cfg = DecodeConfig<kHeadDim>;
  auto* kernel = &PagedDecodeKernel<__nv_bfloat16, kHeadDim>;
  PAGODA_RETURN_IF_ERROR(internal::AllowDynamicSharedMemory(
      kernel, Cfg::kSmemBytes, "cudaFuncSetAttribute(PagedDecodeKernel)"));
  PAGODA_ASSIGN_OR_RETURN(const int blocks, internal::ResidentBlocksPerMultiprocessor(
                                                kernel, Cfg::kThreads, Cfg::kSmemBytes));
  return std::max(blocks, 1);
}

}  // namespace

PagedDecodePlan PlanPagedDecodeFor(const PagedDecodeShape& shape, int64_t resident_blocks) {
  const int32_t max_context = std::max(shape.max_context_len, 1);
  auto round_up = [](int64_t x, int64_t m) { return (x + m - 1) / m * m; };
  PagedDecodePlan plan{
      .partition_size = static_cast<int32_t>(round_up(max_context, kPlanPartitionMultiple)),
      .max_num_partitions = 1};
  if (shape.num_kv_heads <= 0 || shape.num_heads % shape.num_kv_heads != 0) return plan;
  const int64_t blocks = static_cast<int64_t>(std::max(shape.num_requests, 1)) *
                         shape.num_kv_heads * NumHeadChunks(shape.num_heads, shape.num_kv_heads);
  const int64_t target = kBlocksPerResidentSlot * std::max<int64_t>(resident_blocks, 1);
  if (blocks >= target || max_context <= kMinPartitionTokens) return plan;
  const int64_t wanted_partitions = (target + blocks - 1) / blocks;
  const int64_t size = std::max<int64_t>(
      kMinPartitionTokens,
      round_up((max_context + wanted_partitions - 1) / wanted_partitions, kPlanPartitionMultiple));
  plan.partition_size = static_cast<int32_t>(size);
  plan.max_num_partitions = static_cast<int32_t>(
      std::min<int64_t>((max_context + size - 1) / size, kMaxDecodePartitions));
  return plan;
}

absl::StatusOr<int64_t> PagedDecodeResidentBlocks(int head_dim) {
  PAGODA_ASSIGN_OR_RETURN(const DeviceProperties device, CurrentDeviceProperties());
  int per_multiprocessor = 0;
  PAGODA_RETURN_IF_ERROR(internal::DispatchHeadDim(head_dim, [&](auto dim) -> absl::Status {
    PAGODA_ASSIGN_OR_RETURN(per_multiprocessor, BlocksPerMultiprocessor<decltype(dim)::value>());
    return absl::OkStatus();
  }));
  return static_cast<int64_t>(per_multiprocessor) * device.multiprocessor_count;
}

absl::StatusOr<PagedDecodePlan> PlanPagedDecode(const PagedDecodeShape& shape) {
  PAGODA_ASSIGN_OR_RETURN(const int64_t resident_blocks, PagedDecodeResidentBlocks(shape.head_dim));
  return PlanPagedDecodeFor(shape, resident_blocks);
}

template <typename T, typename C>
absl::Status PagedAttentionDecode(const PagedDecodeParams<T, C>& params, cudaStream_t stream) {
  PAGODA_RETURN_IF_ERROR(Validate(params));
  if (params.num_requests == 0) return absl::OkStatus();
  return internal::DispatchHeadDim(params.cache.head_dim, [&](auto head_dim) {
    return Launch<T, C, decltype(head_dim)::value>(params, stream);
  });
}

#define PAGODA_INSTANTIATE_DECODE(T, C) \
  template absl::Status PagedAttentionDecode<T, C>(const PagedDecodeParams<T, C>&, cudaStream_t);
PAGODA_INSTANTIATE_DECODE(__nv_bfloat16, __nv_bfloat16)
PAGODA_INSTANTIATE_DECODE(__half, __half)
PAGODA_INSTANTIATE_DECODE(__nv_bfloat16, int8_t)
PAGODA_INSTANTIATE_DECODE(__nv_bfloat16, __nv_fp8_e4m3)
PAGODA_INSTANTIATE_DECODE(__nv_bfloat16, __nv_fp8_e5m2)
#undef PAGODA_INSTANTIATE_DECODE

}  // namespace pagoda::kernels::cuda
