// 8-bit KV caches (int8, FP8 E4M3 and E5M2) through the CUDA kernels' source on the CPU
// emulator (kernel_emulation.h):
//  - the quantizing reshape-and-cache kernel writes the very bytes and scales the CPU's
//    ReshapeAndCache writes (per-token scales, and FP8's static per-head scales);
//  - the decode and prefill kernels over a quantized cache match the CPU reference run on the
//    dequantized values with the 16-bit kernels' tolerance (attention_test_batch.h: the scales are
//    applied exactly, only the kernel's usual roundings remain), and the unquantized reference
//    within a looser, stated tolerance per type (the quantization error itself).
// Slots nobody owns keep NaN scales and NaN/127 elements, so reading one poisons the output.

#define PAGODA_CUDA_EMULATION 1
// clang-format off: first, it defines the emulated CUDA built-ins
#include "kernels/cuda/emulation/kernel_emulation.h"
// clang-format on
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
#include "kernels/cuda/testing/quantized_cache.h"

namespace pagoda::kernels::cuda {
namespace {

using testing::AttentionCase;
using testing::BuildBatch;
using testing::Decodes;
using testing::E4M3;
using testing::E5M2;
using testing::EmulatedBatch;
using testing::EmulateDecode;
using testing::EmulatePrefill;
using testing::ExpectMatches;
using testing::ExpectNearUnquantized;
using testing::HostBatch;
using testing::Int8;
using testing::MakeEmulatedBatch;
using testing::MaxContext;
using testing::Quantize;
using testing::QuantizedCache;
using testing::Reference;
using testing::SplitPlan;
using T16 = __nv_bfloat16;

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
    ExpectNearUnquantized<K>(c, b, e.output, exact, all, what);
  }
}

// The same for the prefill kernel (every request's queries).
template <typename K>
void CheckQuantizedPrefill(const AttentionCase& c, bool head_scales, uint32_t seed) {
  HostBatch b = BuildBatch<T16>(c, seed);
  QuantizedCache<K> q = Quantize<K>(c, b, head_scales);
  const std::vector<float> want = Reference(c, q.dequantized);
  const std::vector<float> exact = Reference(c, b);
  const std::vector<bool> all(b.num_tokens, true);
  EmulatedBatch<T16> e = MakeEmulatedBatch<T16>(c, b);
  ASSERT_NO_FATAL_FAILURE(EmulatePrefill(c, b, 0, static_cast<int>(c.requests.size()),
                                         q.template View<typename K::Gpu>(), &e));
  const std::string what =
      absl::StrCat("8-bit prefill (", head_scales ? "head" : "token", " scales)");
  ExpectMatches(c, b, e.output, want, all, what);
  ExpectNearUnquantized<K>(c, b, e.output, exact, all, what);
}

TYPED_TEST(QuantizedKvTest, PrefillMatchesTheDequantizedReference) {
  uint32_t seed = 500;
  for (const int head_dim : {64, 80, 256}) {
    const AttentionCase c{.head_dim = head_dim,
                          .num_kv_heads = 2,
                          .group = 2,
                          .block_size = 16,
                          .requests = {{1, 1}, {17, 17}, {40, 9}, {20, 0}, {70, 3}}};
    CheckQuantizedPrefill<TypeParam>(c, /*head_scales=*/false, ++seed);
    if (TypeParam::kFp8) CheckQuantizedPrefill<TypeParam>(c, /*head_scales=*/true, ++seed);
  }
  AttentionCase windowed{.head_dim = 64,
                         .num_kv_heads = 1,
                         .group = 4,
                         .block_size = 8,
                         .requests = {{90, 30}, {33, 33}}};
  windowed.window = common::AttentionWindow{.sliding_window = 20};
  CheckQuantizedPrefill<TypeParam>(windowed, false, 600);
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
