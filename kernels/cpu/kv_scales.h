#pragma once

#include <cstdint>
#include <type_traits>

#include "kernels/cpu/bf16.h"
#include "kernels/cpu/fp8.h"
#include "kernels/paged_kv_cache.h"

// How the CPU attention kernels read an 8-bit cache's scales (kernels/paged_kv_cache.h): one
// place for the per-query path (paged_attention.cc) and the query blocks (attention_blocks.cc).
namespace pagoda::kernels::cpu {

// The factor that turns a stored K (or, with `value`, V) element of (block, head, offset) back
// into a value: 1 for float and bf16 caches, the token's scale for the 8-bit ones, or the head's
// static scale where the view has those instead.
template <typename T>
inline float ElementScale(const PagedKvCacheView<T>& c, bool value, int64_t block, int64_t head,
                          int64_t offset) {
  if constexpr (kScaled<T>) {
    const uint16_t* scales = value ? c.value_scale : c.key_scale;
    if (scales == nullptr) return (value ? c.head_value_scale : c.head_key_scale)[head];
    return Bf16ToFloat(scales[c.ScaleIndex(block, head, offset)]);
  } else {
    (void)c, (void)value, (void)block, (void)head, (void)offset;
    return 1.0f;
  }
}

}  // namespace pagoda::kernels::cpu
