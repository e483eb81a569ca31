// 8-bit KV caches (int8, FP8 E4M3 and E5M2) through the CUDA kernels' source on the CPU
// emulator (kernel_emulation.h):
//  - the quantizing reshape-and-cache kernel writes the very bytes and scales the CPU's
//    ReshapeAndCache writes (per-token scales, and FP8's static per-head scales);
//  - the decode kernel over a quantized cache matches the CPU reference run on the dequantized
//    values with the 16-bit kernels' tolerance (attention_test_batch.h: the scales are applied
//    exactly, only the kernel's usual roundings remain), and the unquantized reference within a
//    looser, stated tolerance per type (the quantization error itself).
// Slots nobody owns keep NaN scales and NaN/127 elements, so reading one poisons the output.

#define PAGODA_CUDA_EMULATION 1
#include "kernels/cuda/emulation/kernel_emulation.h"  // first: it defines the emulated CUDA built-ins

#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "gtest/gtest.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cpu/fp8.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cuda/emulation/emulated_attention.h"
#include "kernels/cuda/kv_quant.cuh"
#include "kernels/cuda/reshape_and_cache_kernel.cuh"

namespace pagoda::kernels::cuda {
namespace {

using testing::AttentionCase;
using testing::BuildBatch;
using testing::Decodes;
using testing::EmulatedBatch;
using testing::EmulateDecode;
using testing::ExpectMatches;
using testing::HostBatch;
using testing::MakeEmulatedBatch;
using testing::MaxContext;
using testing::Reference;
using testing::SplitPlan;
using T16 = __nv_bfloat16;

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

template <typename K>
class QuantizedKvTest : public ::testing::Test {};
using Kinds = ::testing::Types<Int8, E4M3, E5M2>;
TYPED_TEST_SUITE(QuantizedKvTest, Kinds);

// Decode over the quantized cache: tight against the dequantized reference, loose against the
// unquantized one.
template <typename K>
void CheckQuantizedDecode(const AttentionCase& c, bool head_scales, uint32_t seed) {
  HostBatch b = BuildBatch<T16>(c, seed);
  QuantizedCache<K> q = Quantize<K>(c, b, head_scales);
  const std::vector<float> want = Reference(c, q.dequantized);
  const std::vector<float> exact = Reference(c, b);
  const std::vector<bool> all(b.num_tokens, true);
  const int whole = (MaxContext(c) + 63) / 64 * 64;
  for (const PagedDecodePlan& plan :
       {PagedDecodePlan{.partition_size = whole, .max_num_partitions = 1}, SplitPlan(c, 16)}) {
    EmulatedBatch<T16> e = MakeEmulatedBatch<T16>(c, b);
    ASSERT_NO_FATAL_FAILURE(EmulateDecode(c, b, plan, q.template View<typename K::Gpu>(), &e));
    const std::string what = absl::StrCat("8-bit decode (", head_scales ? "head" : "token",
                                          " scales, partitions ", plan.max_num_partitions, ")");
    ExpectMatches(c, b, e.output, want, all, what);
    const int64_t stride = testing::TokenStride(c, b);
    const int64_t row = static_cast<int64_t>(b.num_heads) * c.head_dim;
    float worst = 0.0f;
    for (int64_t t = 0; t < b.num_tokens; ++t) {
      for (int64_t i = 0; i < row; ++i) {
        const float error = std::fabs(ToFloatHost(e.output[t * stride + i]) - exact[t * row + i]);
        worst = std::max(worst, std::isnan(error) ? INFINITY : error);
      }
    }
    EXPECT_LE(worst, K::kLoose) << what << " against the unquantized reference, " << c.Describe();
  }
}

TYPED_TEST(QuantizedKvTest, DecodeMatchesTheDequantizedReference) {
  uint32_t seed = 300;
  for (const int head_dim : {64, 80, 128}) {
    for (const int block_size : {8, 16}) {
      const AttentionCase c{.head_dim = head_dim,
                            .num_kv_heads = 2,
                            .group = 4,
                            .block_size = block_size,
                            .requests = Decodes({1, 15, 16, 17, 50})};
      CheckQuantizedDecode<TypeParam>(c, /*head_scales=*/false, ++seed);
      if (TypeParam::kFp8) CheckQuantizedDecode<TypeParam>(c, /*head_scales=*/true, ++seed);
    }
  }
}

TYPED_TEST(QuantizedKvTest, DecodeWithAWindowAndLargeGroups) {
  AttentionCase c{.head_dim = 64,
                  .num_kv_heads = 1,
                  .group = 20,  // two head chunks per KV head
                  .block_size = 16,
                  .requests = Decodes({3, 40, 77})};
  CheckQuantizedDecode<TypeParam>(c, false, 400);
  c.window = common::AttentionWindow{.sliding_window = 24};
  CheckQuantizedDecode<TypeParam>(c, false, 401);
}

// The quantizing reshape kernel against the CPU's ReshapeAndCache: the same bytes and scales.
template <typename K>
void CheckQuantizingReshape(bool head_scales) {
  using CpuC = typename K::Cpu;
  const int head_dim = 80;
  const int num_kv_heads = 2;
  const int block_size = 8;
  const int num_blocks = 5;
  const int64_t kv_row = num_kv_heads * head_dim;
  const int64_t stride = kv_row + 16;  // as a slice of a wider activation
  const std::vector<int64_t> slots = {3, 17, -1, 39, 8};
  const int64_t num_tokens = static_cast<int64_t>(slots.size());
  std::mt19937 rng(head_scales ? 11 : 12);
  std::normal_distribution<float> normal(0.0f, 1.5f);
  std::vector<float> key(num_tokens * stride), value(num_tokens * stride);
  for (float& x : key) x = RoundToHost<T16>(normal(rng));
  for (float& x : value) x = RoundToHost<T16>(normal(rng));
  std::fill_n(key.begin() + 3 * stride, head_dim, 0.0f);  // a zero head: scale 0, elements 0
  const size_t rows = static_cast<size_t>(num_blocks) * block_size * num_kv_heads;
  QuantizedCache<K> want{.key = std::vector<uint8_t>(rows * head_dim, 0xab),
                         .value = std::vector<uint8_t>(rows * head_dim, 0xab),
                         .num_blocks = num_blocks,
                         .num_kv_heads = num_kv_heads,
                         .block_size = block_size,
                         .head_dim = head_dim};
  if (head_scales) {
    want.head_key_scale = {3.0f / cpu::ScaledMax<CpuC>(), 5.0f / cpu::ScaledMax<CpuC>()};
    want.head_value_scale = {4.0f / cpu::ScaledMax<CpuC>(), 6.0f / cpu::ScaledMax<CpuC>()};
  } else {
    want.key_scale.assign(rows, 0x1234);
    want.value_scale = want.key_scale;
  }
  QuantizedCache<K> got = want;
  std::vector<float> dense_key, dense_value;
  std::vector<int64_t> real_slots;
  for (int64_t t = 0; t < num_tokens; ++t) {
    if (slots[t] < 0) continue;
    real_slots.push_back(slots[t]);
    dense_key.insert(dense_key.end(), key.begin() + t * stride, key.begin() + t * stride + kv_row);
    dense_value.insert(dense_value.end(), value.begin() + t * stride,
                       value.begin() + t * stride + kv_row);
  }
  cpu::ReshapeAndCache<CpuC>(dense_key.data(), dense_value.data(), real_slots,
                             want.template View<CpuC>());
  const std::vector<T16> key_t = ToDeviceType<T16>(key);
  const std::vector<T16> value_t = ToDeviceType<T16>(value);
  using GpuC = typename K::Gpu;
  const ReshapeAndCacheParams<T16, GpuC> p{.key = key_t.data(),
                                           .key_token_stride = stride,
                                           .value = value_t.data(),
                                           .value_token_stride = stride,
                                           .slot_mapping = slots.data(),
                                           .num_tokens = static_cast<int32_t>(num_tokens),
                                           .cache = got.template View<GpuC>()};
  emulation::Launch(dim3(static_cast<unsigned>(num_tokens)), dim3(internal::kReshapeThreads), 0,
                    &internal::ReshapeAndQuantizeKernel<T16, GpuC>, p);
  EXPECT_EQ(got.key, want.key);
  EXPECT_EQ(got.value, want.value);
  EXPECT_EQ(got.key_scale, want.key_scale);
  EXPECT_EQ(got.value_scale, want.value_scale);
  EXPECT_NE(want.key, std::vector<uint8_t>(want.key.size(), 0xab)) << "the CPU wrote nothing";
}

TYPED_TEST(QuantizedKvTest, ReshapeQuantizesLikeTheCpu) {
  CheckQuantizingReshape<TypeParam>(/*head_scales=*/false);
  if (TypeParam::kFp8) CheckQuantizingReshape<TypeParam>(/*head_scales=*/true);
}

}  // namespace
}  // namespace pagoda::kernels::cuda
