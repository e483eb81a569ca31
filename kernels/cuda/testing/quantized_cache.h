#pragma once

// 8-bit KV caches for the kernel tests (tests only; emulation and GPU): a test batch's cache
// (attention_test_batch.h) quantized by the CPU's ReshapeAndCache, the values it decodes to,
// and the loose comparison with the unquantized reference.

#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/types/span.h"
#include "gtest/gtest.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cpu/fp8.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cuda/half_types.h"
#include "kernels/cuda/testing/attention_test_batch.h"
#include "kernels/paged_kv_cache.h"

namespace pagoda::kernels::cuda::testing {

// A cache type on the CPU and on the GPU (the same bits), with the largest error its
// quantization may add to an attention output of N(0, 1) values: the loose tolerance.
struct Int8 {
  using Cpu = int8_t;
  using Gpu = int8_t;
  static constexpr float kLoose = 0.05f;  // 1/254 of a head's absmax per element
  static constexpr bool kFp8 = false;
};
struct E4M3 {
  using Cpu = cpu::Fp8E4M3;
  using Gpu = __nv_fp8_e4m3;
  // 3 mantissa bits: half a step is 1/16 of the top binade, 0.16 for the static scales' top of
  // 4.5 (a context of one token outputs that value itself), plus the kernel's roundings.
  static constexpr float kLoose = 0.2f;
  static constexpr bool kFp8 = true;
};
struct E5M2 {
  using Cpu = cpu::Fp8E5M2;
  using Gpu = __nv_fp8_e5m2;
  static constexpr float kLoose = 0.3f;  // 2 mantissa bits: 1/8 relative per element
  static constexpr bool kFp8 = true;
};

template <typename C>
float DecodeElement(uint8_t bits) {
  if constexpr (std::is_same_v<C, int8_t>) {
    return static_cast<float>(static_cast<int8_t>(bits));
  } else {
    return cpu::ToFloat(C{bits});
  }
}

constexpr uint16_t kNanBf16 = 0x7fc0;

// A quantized copy of a test batch's cache, and the batch with the values it decodes to.
template <typename K>
struct QuantizedCache {
  std::vector<uint8_t> key, value;
  std::vector<uint16_t> key_scale, value_scale;  // per token (empty with head scales)
  std::vector<float> head_key_scale, head_value_scale;
  int32_t num_blocks = 0, num_kv_heads = 0, block_size = 0, head_dim = 0;
  HostBatch dequantized;

  template <typename C>
  PagedKvCacheView<C> View() {
    PagedKvCacheView<C> v{reinterpret_cast<C*>(key.data()),
                          reinterpret_cast<C*>(value.data()),
                          num_blocks,
                          num_kv_heads,
                          block_size,
                          head_dim};
    if (head_key_scale.empty()) {
      v.key_scale = key_scale.data();
      v.value_scale = value_scale.data();
    } else {
      v.head_key_scale = head_key_scale.data();
      v.head_value_scale = head_value_scale.data();
    }
    return v;
  }
};

// Quantizes every written slot of b's cache with the CPU's ReshapeAndCache: per-token scales,
// or static per-head ones (FP8). Slots nobody wrote (NaN in b) keep the poison.
template <typename K>
QuantizedCache<K> Quantize(const AttentionCase& c, const HostBatch& b, bool head_scales) {
  using C = typename K::Cpu;
  QuantizedCache<K> q{.num_blocks = b.num_blocks,
                      .num_kv_heads = c.num_kv_heads,
                      .block_size = c.block_size,
                      .head_dim = c.head_dim};
  const int64_t rows = static_cast<int64_t>(b.num_blocks) * c.num_kv_heads * c.block_size;
  const int d = c.head_dim;
  q.key.assign(rows * d, 0x7f);  // NaN in both FP8 formats
  q.value = q.key;
  if (head_scales) {
    for (int h = 0; h < c.num_kv_heads; ++h) {
      q.head_key_scale.push_back((4.0f + 0.5f * h) / cpu::ScaledMax<C>());
      q.head_value_scale.push_back((4.5f + 0.5f * h) / cpu::ScaledMax<C>());
    }
  } else {
    q.key_scale.assign(rows, kNanBf16);
    q.value_scale = q.key_scale;
  }
  const PagedKvCacheView<C> view = q.template View<C>();
  std::vector<float> k(static_cast<size_t>(c.num_kv_heads) * d), v(k.size());
  for (int64_t block = 0; block < b.num_blocks; ++block) {
    for (int64_t off = 0; off < c.block_size; ++off) {
      bool written = true;
      for (int h = 0; h < c.num_kv_heads; ++h) {
        const int64_t base = view.Offset(block, h, off);
        std::copy_n(b.key_cache.begin() + base, d, k.begin() + h * d);
        std::copy_n(b.value_cache.begin() + base, d, v.begin() + h * d);
        written = written && !std::isnan(b.key_cache[base]);
      }
      if (!written) continue;
      const int64_t slot = block * c.block_size + off;
      cpu::ReshapeAndCache<C>(k.data(), v.data(), absl::MakeConstSpan(&slot, 1), view);
    }
  }
  q.dequantized = b;
  for (int64_t r = 0; r < rows; ++r) {
    const int h = static_cast<int>((r / c.block_size) % c.num_kv_heads);
    const float ks = head_scales ? q.head_key_scale[h] : cpu::Bf16ToFloat(q.key_scale[r]);
    const float vs = head_scales ? q.head_value_scale[h] : cpu::Bf16ToFloat(q.value_scale[r]);
    for (int64_t i = r * d; i < (r + 1) * d; ++i) {
      if (std::isnan(b.key_cache[i])) continue;
      q.dequantized.key_cache[i] = DecodeElement<C>(q.key[i]) * ks;
      q.dequantized.value_cache[i] = DecodeElement<C>(q.value[i]) * vs;
    }
  }
  return q;
}

// The outputs of `checked` tokens against the unquantized reference: within the type's loose
// bound (the quantization error itself).
template <typename K, typename T>
void ExpectNearUnquantized(const AttentionCase& c, const HostBatch& b, const std::vector<T>& output,
                           const std::vector<float>& exact, const std::vector<bool>& checked,
                           const std::string& what) {
  const int64_t stride = TokenStride(c, b);
  const int64_t row = static_cast<int64_t>(b.num_heads) * c.head_dim;
  float worst = 0.0f;
  for (int64_t t = 0; t < b.num_tokens; ++t) {
    for (int64_t i = 0; checked[t] && i < row; ++i) {
      const float error = std::fabs(ToFloatHost(output[t * stride + i]) - exact[t * row + i]);
      worst = std::max(worst, std::isnan(error) ? INFINITY : error);
    }
  }
  EXPECT_LE(worst, K::kLoose) << what << " against the unquantized reference, " << c.Describe();
}

}  // namespace pagoda::kernels::cuda::testing
