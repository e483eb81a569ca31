#pragma once

#include <cstddef>
#include <cstdint>

namespace pagoda::kernels {

// A non-owning view of one layer's paged KV cache, shared by the CPU kernels and the CUDA
// kernels (which get it in device memory). Both pools are laid out
//   [num_blocks, num_kv_heads, block_size, head_dim]
// so the tokens of one block of one KV head form one contiguous [block_size, head_dim] tile.
// Slot s (= block * block_size + offset) of head h starts at
//   ((block * num_kv_heads + h) * block_size + offset) * head_dim.
// The view does not own the memory; whoever made it keeps it alive.
//
// An 8-bit cache (T = int8_t, or an FP8 type: E4M3 or E5M2, one byte each) also has one scale
// per token and KV head for K and for V, bf16 bits, laid out [num_blocks, num_kv_heads,
// block_size] (ScaleIndex): element x of a token's head is decode(x) * scale. The scales are
// computed when the token is written (absmax / the type's largest value: 127, 448 or 57344), so
// no calibration is needed. Float and bf16 caches leave them null.
// An FP8 cache may instead use static scales, one per KV head for the whole layer (a
// checkpoint's calibrated k_scale/v_scale): key_scale and value_scale are then null and
// head_key_scale/head_value_scale point at [num_kv_heads] floats; no per-token scale is stored.
template <typename T>
struct PagedKvCacheView {
  T* key = nullptr;
  T* value = nullptr;
  int32_t num_blocks = 0;
  int32_t num_kv_heads = 0;
  int32_t block_size = 0;
  int32_t head_dim = 0;
  uint16_t* key_scale = nullptr;            // 8-bit types only
  uint16_t* value_scale = nullptr;          // 8-bit types only
  const float* head_key_scale = nullptr;    // FP8 with static scales only
  const float* head_value_scale = nullptr;  // FP8 with static scales only

  // Index of (block, head, offset-in-block) in the scale arrays.
  int64_t ScaleIndex(int64_t block, int64_t head, int64_t offset) const {
    return (block * num_kv_heads + head) * block_size + offset;
  }

  // Elements of one block of one KV head.
  int64_t tile_elements() const { return static_cast<int64_t>(block_size) * head_dim; }
  // Offset in elements of (block, head, offset-in-block).
  int64_t Offset(int64_t block, int64_t head, int64_t offset) const {
    return ((block * num_kv_heads + head) * block_size + offset) * head_dim;
  }
  int64_t num_elements() const {
    return static_cast<int64_t>(num_blocks) * num_kv_heads * block_size * head_dim;
  }
};

}  // namespace pagoda::kernels
