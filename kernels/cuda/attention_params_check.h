#pragma once

// Host-side argument checks shared by the paged-attention kernels (decode and prefill): both
// Params structs carry the same cache view, head counts, strides and pointers.

#include <cstdint>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/paged_attention_decode.h"

namespace pagoda::kernels::cuda::internal {

inline bool Aligned(const void* p, uintptr_t alignment) {
  return reinterpret_cast<uintptr_t>(p) % alignment == 0;
}

// The checks every paged-attention Params must pass: a supported head dim, consistent GQA head
// counts, positive block geometry, even token strides covering a row, non-null device pointers
// when there is work, 16-byte aligned cache pools and 4-byte aligned query/output.
template <typename Params>
absl::Status CheckCommonAttentionParams(const Params& p) {
  const auto& c = p.cache;
  if (!IsSupportedHeadDim(c.head_dim)) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported head_dim ", c.head_dim));
  }
  if (p.num_requests < 0 || c.num_kv_heads <= 0 || p.num_heads <= 0 ||
      p.num_heads % c.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("bad head counts: num_heads ", p.num_heads,
                                                   ", num_kv_heads ", c.num_kv_heads));
  }
  if (p.window.sliding_window < 0 || p.window.sink_tokens != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the CUDA kernels take a sliding window >= 0 and no attention sinks, got window ",
        p.window.sliding_window, ", sinks ", p.window.sink_tokens));
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
  return absl::OkStatus();
}

// The scales an 8-bit cache needs (kernels/paged_kv_cache.h): per token for K and V, or static
// per KV head for both (FP8 only). A 16-bit cache takes none.
template <typename Params>
absl::Status CheckKvScales(const Params& p) {
  const auto& c = p.cache;
  using C = std::remove_cv_t<std::remove_pointer_t<decltype(c.key)>>;
  const bool per_token = c.key_scale != nullptr && c.value_scale != nullptr;
  const bool per_head = c.head_key_scale != nullptr && c.head_value_scale != nullptr;
  const bool any = c.key_scale != nullptr || c.value_scale != nullptr ||
                   c.head_key_scale != nullptr || c.head_value_scale != nullptr;
  if constexpr (sizeof(C) == 1) {
    if (per_token == per_head || (per_head && std::is_same_v<C, int8_t>)) {
      return absl::InvalidArgumentError(
          "an 8-bit KV cache takes K and V scales per token, or (FP8) per KV head: one kind");
    }
  } else if (any) {
    return absl::InvalidArgumentError("a 16-bit KV cache takes no scales");
  }
  return absl::OkStatus();
}

}  // namespace pagoda::kernels::cuda::internal
