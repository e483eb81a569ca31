#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/cpu/bf16.h"
#include "kernels/cpu/fp8.h"
#include "kernels/paged_kv_cache.h"

// How the CPU attention kernels read a paged cache's rows and an 8-bit cache's scales
// (kernels/paged_kv_cache.h): one place for the per-query path (paged_attention.cc) and the query
// blocks (attention_blocks*.cc), the AVX2 decode kernels (paged_attention_avx2.cc,
// decode_whole_blocks_avx2.cc).
namespace pagoda::kernels::cpu {

// The K (or, with `value`, the V) pool of a cache.
template <typename T>
inline const T* PoolOf(const PagedKvCacheView<T>& c, bool value) {
  return value ? c.value : c.key;
}

// The per-token scales of the K (or, with `value`, the V) pool: null where the cache has none,
// and for float and bf16 caches whatever pointers their views carry.
template <typename T>
inline const uint16_t* TokenScalesOf(const PagedKvCacheView<T>& c, bool value) {
  if constexpr (!kScaled<T>) return nullptr;
  return value ? c.value_scale : c.key_scale;
}

// The factor a K (or V) row's elements take when the cache has no per-token scales: the head's
// static scale (FP8), or 1 (float and bf16 caches, whatever pointers their views carry).
template <typename T>
inline float FixedScale(const PagedKvCacheView<T>& c, bool value, int64_t head) {
  if constexpr (!kScaled<T>) return 1.0f;
  const float* head_scales = value ? c.head_value_scale : c.head_key_scale;
  return head_scales != nullptr ? head_scales[head] : 1.0f;
}

// The factor that turns a stored K (or, with `value`, V) element of (block, head, offset) back
// into a value: 1 for float and bf16 caches, the token's scale for the 8-bit ones, or the head's
// static scale where the view has those instead.
template <typename T>
inline float ElementScale(const PagedKvCacheView<T>& c, bool value, int64_t block, int64_t head,
                          int64_t offset) {
  const uint16_t* scales = TokenScalesOf(c, value);
  if (scales == nullptr) return FixedScale(c, value, head);
  return Bf16ToFloat(scales[c.ScaleIndex(block, head, offset)]);
}

// The rows of one KV head at positions [pos, pos + count), all in one block, and their scales
// (null where the cache has none per token, and for float and bf16 caches).
template <typename T>
struct Rows {
  const T* row;
  const uint16_t* scale;
  int32_t count;
};

// How many positions from `pos` lie in its block and before `end`.
template <typename T>
inline int32_t RunLength(const PagedKvCacheView<T>& c, int32_t pos, int32_t end) {
  return std::min(c.block_size - pos % c.block_size, end - pos);
}

// The rows of `kv_head` from `pos` to the end of its block or `end`, whichever comes first:
// kernels that read rows block by block, with one division per block rather than per position.
template <typename T>
inline Rows<T> RowsAt(const PagedKvCacheView<T>& c, bool value, const int32_t* table, int kv_head,
                      int32_t pos, int32_t end) {
  const int32_t block = table[pos / c.block_size];
  const int32_t offset = pos % c.block_size;
  const uint16_t* scales = TokenScalesOf(c, value);
  return {PoolOf(c, value) + c.Offset(block, kv_head, offset),
          scales != nullptr ? scales + c.ScaleIndex(block, kv_head, offset) : nullptr,
          RunLength(c, pos, end)};
}

// A walk over the K (or V) rows of one KV head at consecutive positions of a request: each row
// and the factor ElementScale gives it, found through the block table once per block rather
// than with a division and an offset product per position (which cost Zen 1 about a fifth of
// an int8 decode). A block is entered when a row of it is asked for: rows passed with Next()
// alone (outside the attended range) never touch their blocks, which may be gone.
template <typename T>
class RowWalk {
 public:
  RowWalk(const PagedKvCacheView<T>& c, bool value, const int32_t* table, int kv_head, int32_t pos)
      : c_(c),
        pool_(PoolOf(c, value)),
        scales_(TokenScalesOf(c, value)),
        table_(table),
        kv_head_(kv_head),
        index_(pos / c.block_size),
        offset_(pos % c.block_size) {
    if constexpr (kScaled<T>) {
      if (scales_ == nullptr) {
        head_scale_ = FixedScale(c, value, kv_head);
      }
    }
  }
  const T* row() {
    if (row_ == nullptr) Enter();
    return row_;
  }
  // ElementScale of the current row.
  float scale() {
    if constexpr (kScaled<T>) {
      if (scales_ == nullptr) return head_scale_;
      if (row_ == nullptr) Enter();
      return Bf16ToFloat(*scale_);
    } else {
      return 1.0f;
    }
  }
  void Next() {
    if (++offset_ == c_.block_size) {
      offset_ = 0;
      ++index_;
      row_ = nullptr;
    } else if (row_ != nullptr) {
      row_ += c_.head_dim;
      ++scale_;
    }
  }

 private:
  void Enter() {
    const int32_t block = table_[index_];
    row_ = pool_ + c_.Offset(block, kv_head_, offset_);
    if (scales_ != nullptr) scale_ = scales_ + c_.ScaleIndex(block, kv_head_, offset_);
  }

  const PagedKvCacheView<T>& c_;
  const T* pool_;
  const uint16_t* scales_;
  const int32_t* table_;
  int kv_head_;
  int32_t index_, offset_;
  const T* row_ = nullptr;
  const uint16_t* scale_ = nullptr;
  float head_scale_ = 1.0f;
};

}  // namespace pagoda::kernels::cpu
