#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cuda/attention_params_check.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/head_dim_dispatch.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/paged_attention_decode.h"
#include "kernels/cuda/paged_attention_prefill.h"
#include "kernels/cuda/paged_attention_prefill_kernel.cuh"

namespace pagoda::kernels::cuda {
namespace {

using internal::Aligned;

template <typename T, typename C>
absl::Status Validate(const PagedPrefillParams<T, C>& p) {
  const PagedKvCacheView<C>& c = p.cache;
  if (p.num_query_tokens < 0 || c.num_kv_heads > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad sizes: num_query_tokens ", p.num_query_tokens, ", num_kv_heads ", c.num_kv_heads));
  }
  PAGODA_RETURN_IF_ERROR(internal::CheckCommonAttentionParams(p));
  PAGODA_RETURN_IF_ERROR(internal::CheckKvScales(p));
  if (p.workspace == nullptr || p.workspace_bytes < PagedPrefillWorkspaceBytes(p.num_requests) ||
      !Aligned(p.workspace, 4)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prefill workspace needs ", PagedPrefillWorkspaceBytes(p.num_requests), " bytes"));
  }
  return absl::OkStatus();
}

template <typename T, typename C, int kHeadDim>
absl::Status Launch(const PagedPrefillParams<T, C>& p, cudaStream_t stream) {
  using Cfg = internal::PrefillConfig<kHeadDim, sizeof(C)>;
  const int group = p.num_heads / p.cache.num_kv_heads;
  const int64_t max_items = internal::PrefillMaxWorkItems(p);
  if (max_items > 0x7fffffff) return absl::InvalidArgumentError("batch too large for one launch");
  int32_t* tile_offsets = static_cast<int32_t*>(p.workspace);
  PAGODA_RETURN_IF_ERROR(internal::LaunchKernel(
      "PrefillTileScanKernel", &internal::PrefillTileScanKernel, 1, internal::kScanThreads, 0,
      stream, p.query_start, p.num_requests, group, tile_offsets));
  auto* kernel = &internal::PagedPrefillKernel<T, kHeadDim, C>;
  PAGODA_RETURN_IF_ERROR(internal::AllowDynamicSharedMemory(
      kernel, Cfg::kSmemBytes, "cudaFuncSetAttribute(PagedPrefillKernel)"));
  const dim3 grid(static_cast<unsigned>(max_items), p.cache.num_kv_heads);
  const int32_t* offsets = tile_offsets;
  return internal::LaunchKernel("PagedPrefillKernel", kernel, grid, internal::kPrefillThreads,
                                Cfg::kSmemBytes, stream, p, offsets);
}

}  // namespace

template <typename T, typename C>
absl::Status PagedAttentionPrefill(const PagedPrefillParams<T, C>& params, cudaStream_t stream) {
  PAGODA_RETURN_IF_ERROR(Validate(params));
  if (params.num_requests == 0) return absl::OkStatus();
  return internal::DispatchHeadDim(params.cache.head_dim, [&](auto head_dim) {
    return Launch<T, C, decltype(head_dim)::value>(params, stream);
  });
}

#define PAGODA_INSTANTIATE_PREFILL(T, C) \
  template absl::Status PagedAttentionPrefill<T, C>(const PagedPrefillParams<T, C>&, cudaStream_t);
PAGODA_INSTANTIATE_PREFILL(__nv_bfloat16, __nv_bfloat16)
PAGODA_INSTANTIATE_PREFILL(__half, __half)
PAGODA_INSTANTIATE_PREFILL(__nv_bfloat16, int8_t)
PAGODA_INSTANTIATE_PREFILL(__nv_bfloat16, __nv_fp8_e4m3)
PAGODA_INSTANTIATE_PREFILL(__nv_bfloat16, __nv_fp8_e5m2)
#undef PAGODA_INSTANTIATE_PREFILL

}  // namespace pagoda::kernels::cuda
