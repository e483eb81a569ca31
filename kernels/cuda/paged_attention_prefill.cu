#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/head_dim_dispatch.h"
#include "kernels/cuda/paged_attention_decode.h"
#include "kernels/cuda/paged_attention_prefill.h"
#include "kernels/cuda/paged_attention_prefill_kernel.cuh"

namespace pagoda::kernels::cuda {
namespace {

bool Aligned(const void* p, uintptr_t alignment) {
  return reinterpret_cast<uintptr_t>(p) % alignment == 0;
}

template <typename T>
absl::Status Validate(const PagedPrefillParams<T>& p) {
  const PagedKvCacheView<T>& c = p.cache;
  if (!IsSupportedHeadDim(c.head_dim)) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported head_dim ", c.head_dim));
  }
  if (p.num_requests < 0 || p.num_query_tokens < 0 || c.num_kv_heads <= 0 || p.num_heads <= 0 ||
      p.num_heads % c.num_kv_heads != 0 || c.num_kv_heads > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("bad head counts: num_heads ", p.num_heads,
                                                   ", num_kv_heads ", c.num_kv_heads));
  }
  if (c.block_size <= 0 || c.num_blocks <= 0 || p.max_blocks_per_request <= 0) {
    return absl::InvalidArgumentError(
        "block_size, num_blocks and max_blocks_per_request must be > 0");
  }
  const int64_t row = static_cast<int64_t>(p.num_heads) * c.head_dim;
  if (p.query_token_stride < row || p.output_token_stride < row || p.query_token_stride % 2 != 0 ||
      p.output_token_stride % 2 != 0) {
    return absl::InvalidArgumentError("token strides must be even and >= num_heads * head_dim");
  }
  if (p.num_requests > 0 &&
      (p.query == nullptr || p.output == nullptr || c.key == nullptr || c.value == nullptr ||
       p.query_start == nullptr || p.context_lens == nullptr || p.block_tables == nullptr)) {
    return absl::InvalidArgumentError("null device pointer");
  }
  if (!Aligned(c.key, 16) || !Aligned(c.value, 16) || !Aligned(p.query, 4) ||
      !Aligned(p.output, 4)) {
    return absl::InvalidArgumentError("cache pools must be 16-byte and q/out 4-byte aligned");
  }
  if (p.workspace == nullptr || p.workspace_bytes < PagedPrefillWorkspaceBytes(p.num_requests) ||
      !Aligned(p.workspace, 4)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prefill workspace needs ", PagedPrefillWorkspaceBytes(p.num_requests), " bytes"));
  }
  return absl::OkStatus();
}

template <typename T, int kHeadDim>
absl::Status Launch(const PagedPrefillParams<T>& p, cudaStream_t stream) {
  using Cfg = internal::PrefillConfig<kHeadDim>;
  const int group = p.num_heads / p.cache.num_kv_heads;
  const int64_t max_items = internal::PrefillMaxWorkItems(p);
  if (max_items > 0x7fffffff) return absl::InvalidArgumentError("batch too large for one launch");
  int32_t* tile_offsets = static_cast<int32_t*>(p.workspace);
  internal::PrefillTileScanKernel<<<1, internal::kScanThreads, 0, stream>>>(
      p.query_start, p.num_requests, group, tile_offsets);
  PAGODA_RETURN_IF_ERROR(LaunchStatus("PrefillTileScanKernel"));
  auto* kernel = &internal::PagedPrefillKernel<T, kHeadDim>;
  PAGODA_RETURN_IF_ERROR(CudaStatus(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes),
      "cudaFuncSetAttribute(PagedPrefillKernel)"));
  const dim3 grid(static_cast<unsigned>(max_items), p.cache.num_kv_heads);
  kernel<<<grid, internal::kPrefillThreads, Cfg::kSmemBytes, stream>>>(p, tile_offsets);
  return LaunchStatus("PagedPrefillKernel");
}

}  // namespace

template <typename T>
absl::Status PagedAttentionPrefill(const PagedPrefillParams<T>& params, cudaStream_t stream) {
  PAGODA_RETURN_IF_ERROR(Validate(params));
  if (params.num_requests == 0) return absl::OkStatus();
  return internal::DispatchHeadDim(params.cache.head_dim, [&](auto head_dim) {
    return Launch<T, decltype(head_dim)::value>(params, stream);
  });
}

template absl::Status PagedAttentionPrefill<__nv_bfloat16>(const PagedPrefillParams<__nv_bfloat16>&,
                                                           cudaStream_t);
template absl::Status PagedAttentionPrefill<__half>(const PagedPrefillParams<__half>&,
                                                    cudaStream_t);

}  // namespace pagoda::kernels::cuda
