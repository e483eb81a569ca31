// The CUDA kernels' source run on the CPU emulator (kernel_emulation.h) against the CPU
// reference: paged attention with the inputs, NaN poisoning and tolerances of
// attention_test_batch.h, and the per-token kernels with those of elementwise_test.cc. Needs no
// GPU, so CI checks the kernels' indexing, masking, partition merges and barriers on every
// change; the GPU tests check the real thing. Cases are small: the emulator switches between a
// block's threads at every warp collective.

#define PAGODA_CUDA_EMULATION 1
#include "kernels/cuda/emulation/kernel_emulation.h"  // first: it defines the emulated CUDA built-ins

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/rope.h"
#include "kernels/cuda/elementwise_kernels.cuh"
#include "kernels/cuda/emulation/emulated_attention.h"
#include "kernels/cuda/head_dim_dispatch.h"
#include "kernels/cuda/paged_attention_decode_kernel.cuh"
#include "kernels/cuda/paged_attention_prefill_kernel.cuh"
#include "kernels/cuda/reshape_and_cache_kernel.cuh"
#include "kernels/cuda/rope_kernel.cuh"
#include "kernels/cuda/testing/attention_test_batch.h"
#include "sampling/sampler.h"

namespace pagoda::kernels::cuda {
namespace {

using testing::AttentionCase;
using testing::BuildBatch;
using testing::Decodes;
using testing::EmulatedBatch;
using testing::EmulateDecode;
using testing::EmulatePrefill;
using testing::ExpectMatches;
using testing::HostBatch;
using testing::MakeEmulatedBatch;
using testing::MaxContext;
using testing::Reference;
using testing::Scale;
using testing::SentinelOutput;
using testing::SplitPlan;
using testing::StridedQuery;
using testing::TokenStride;

template <typename T>
void CheckDecode(const AttentionCase& c, const std::vector<PagedDecodePlan>& plans, uint32_t seed) {
  HostBatch b = BuildBatch<T>(c, seed);
  const std::vector<float> want = Reference(c, b);
  const std::vector<bool> all(b.num_tokens, true);
  for (const PagedDecodePlan& plan : plans) {
    EmulatedBatch<T> e = MakeEmulatedBatch<T>(c, b);
    ASSERT_NO_FATAL_FAILURE(EmulateDecode(c, b, plan, e.view, &e));
    ExpectMatches(c, b, e.output, want, all,
                  absl::StrCat("emulated decode(partition ", plan.partition_size, " x ",
                               plan.max_num_partitions, ")"));
  }
}

// No split, and partitions of 16 tokens (so every case merges several).
template <typename T>
void CheckDecodeBothWays(const AttentionCase& c, uint32_t seed) {
  const int whole = (MaxContext(c) + 63) / 64 * 64;
  CheckDecode<T>(c, {{.partition_size = whole, .max_num_partitions = 1}, SplitPlan(c, 16)}, seed);
}

template <typename T>
void CheckPrefillRange(const AttentionCase& c, uint32_t seed, int first, int end) {
  HostBatch b = BuildBatch<T>(c, seed);
  const std::vector<float> want = Reference(c, b);
  std::vector<bool> checked(b.num_tokens, false);
  for (int t = b.query_start[first]; t < b.query_start[end]; ++t) checked[t] = true;
  EmulatedBatch<T> e = MakeEmulatedBatch<T>(c, b);
  ASSERT_NO_FATAL_FAILURE(EmulatePrefill(c, b, first, end, e.view, &e));
  ExpectMatches(c, b, e.output, want, checked, "emulated prefill");
}

template <typename T>
void CheckPrefill(const AttentionCase& c, uint32_t seed) {
  CheckPrefillRange<T>(c, seed, 0, static_cast<int>(c.requests.size()));
}

TEST(KernelEmulationTest, DecodeEveryHeadDim) {
  uint32_t seed = 1;
  for (const int d : kSupportedHeadDims) {
    const AttentionCase c{.head_dim = d,
                          .num_kv_heads = 1,
                          .group = 4,
                          .block_size = 16,
                          .requests = Decodes({1, 15, 16, 17, 50})};
    CheckDecodeBothWays<__nv_bfloat16>(c, ++seed);
  }
}

TEST(KernelEmulationTest, DecodeBlockSizesTypesAndGroups) {
  uint32_t seed = 100;
  for (const int bs : {8, 32}) {
    const AttentionCase c{.head_dim = 64,
                          .num_kv_heads = 2,
                          .group = 2,
                          .block_size = bs,
                          .requests = Decodes({bs - 1, bs + 1, 3 * bs})};
    CheckDecodeBothWays<__half>(c, ++seed);
  }
  for (const int group : {1, 5, 20}) {  // 20: two blocks of query heads per KV head
    const AttentionCase c{.head_dim = 64,
                          .num_kv_heads = 2,
                          .group = group,
                          .block_size = 16,
                          .requests = Decodes({3, 40})};
    CheckDecodeBothWays<__nv_bfloat16>(c, ++seed);
  }
}

TEST(KernelEmulationTest, DecodeWithTooFewPartitionsAndASharedBlock) {
  const AttentionCase c{.head_dim = 64,
                        .num_kv_heads = 1,
                        .group = 3,
                        .block_size = 8,
                        .requests = Decodes({70, 9, 33}),
                        .share_first_block = true,
                        .query_scale = 20.0f};
  CheckDecode<__nv_bfloat16>(c, {{.partition_size = 16, .max_num_partitions = 2}}, 200);
}

// Head dim 32 (models/pagoda-kjv: 8 query heads, 4 KV heads): 4 vectors of 16 bytes per row,
// so a warp's 16-token tile is two vectors per lane and the merge kernel runs one warp.
TEST(KernelEmulationTest, DecodeHeadDim32GqaGroupsWithAndWithoutSplit) {
  uint32_t seed = 250;
  for (const int group : {1, 2, 4, 8}) {
    const AttentionCase c{.head_dim = 32,
                          .num_kv_heads = 1,
                          .group = group,
                          .block_size = 16,
                          // Block (and 16-token partition) boundaries +-1, several tiles.
                          .requests = Decodes({1, 15, 16, 17, 64, 65})};
    CheckDecodeBothWays<__nv_bfloat16>(c, ++seed);
  }
  // The model's shape (4 KV heads, group 2), fp16, a shared first block, a sharp softmax.
  const AttentionCase fp16{.head_dim = 32,
                           .num_kv_heads = 4,
                           .group = 2,
                           .block_size = 8,
                           .requests = Decodes({7, 8, 9, 40}),
                           .share_first_block = true,
                           .query_scale = 20.0f};
  CheckDecodeBothWays<__half>(fp16, ++seed);
}

// The CUDA runner pads a CUDA graph's decode batch with requests of context 0 (runner/cuda):
// each must get zeros in its own row, with and without a split, and leave every other row as
// the real requests' attention.
TEST(KernelEmulationTest, DecodeOfContextZeroWritesZerosForGraphPadding) {
  for (const int head_dim : {32, 128}) {
    const AttentionCase c{.head_dim = head_dim,
                          .num_kv_heads = 2,
                          .group = 4,
                          .block_size = 16,
                          .requests = Decodes({5, 33, 0, 17, 0, 0})};
    HostBatch b = BuildBatch<__nv_bfloat16>(c, 300 + head_dim);
    // The reference refuses a query without context: give padding one (its row is replaced).
    HostBatch with_context = b;
    for (int32_t& len : with_context.context_lens) len = std::max(len, 1);
    std::vector<float> want = Reference(c, with_context);
    const int64_t row = static_cast<int64_t>(b.num_heads) * c.head_dim;
    for (size_t r = 0; r < b.context_lens.size(); ++r) {
      if (b.context_lens[r] != 0) continue;
      std::fill_n(want.begin() + b.query_start[r] * row, row, 0.0f);
    }
    const std::vector<bool> all(b.num_tokens, true);
    for (const PagedDecodePlan& plan :
         {PagedDecodePlan{.partition_size = 64, .max_num_partitions = 1}, SplitPlan(c, 16)}) {
      EmulatedBatch<__nv_bfloat16> e = MakeEmulatedBatch<__nv_bfloat16>(c, b);
      ASSERT_NO_FATAL_FAILURE(EmulateDecode(c, b, plan, e.view, &e));
      ExpectMatches(c, b, e.output, want, all,
                    absl::StrCat("padded decode (", plan.max_num_partitions, " partitions)"));
    }
  }
}

TEST(KernelEmulationTest, PrefillEveryHeadDim) {
  uint32_t seed = 300;
  for (const int d : kSupportedHeadDims) {
    const AttentionCase c{.head_dim = d,
                          .num_kv_heads = 1,
                          .group = 2,
                          .block_size = 16,
                          .requests = {{1, 1}, {17, 17}, {40, 9}, {20, 0}, {70, 1}}};
    CheckPrefill<__nv_bfloat16>(c, ++seed);
  }
}

TEST(KernelEmulationTest, PrefillHeadDim32BlockBoundariesAndAPrefixHit) {
  uint32_t seed = 350;
  for (const int group : {1, 2, 4}) {
    const int bs = 16;
    // Whole prompts at block boundaries +-1 and across the 64-token K/V tile, chunks after a
    // cached prefix (request 1 shares request 0's first block), a decode and an idle request.
    const AttentionCase c{.head_dim = 32,
                          .num_kv_heads = 1,
                          .group = group,
                          .block_size = bs,
                          .requests = {{40, 40},
                                       {bs + 20, 20},
                                       {bs - 1, bs - 1},
                                       {bs, bs},
                                       {bs + 1, bs + 1},
                                       {65, 65},
                                       {70, 1},
                                       {30, 0},
                                       {2 * bs + 1, bs + 1}},
                          .share_first_block = true};
    CheckPrefill<__nv_bfloat16>(c, ++seed);
  }
  // The model's shape (4 KV heads, group 2), fp16, a sharp softmax.
  const AttentionCase fp16{.head_dim = 32,
                           .num_kv_heads = 4,
                           .group = 2,
                           .block_size = 8,
                           .requests = {{24, 24}, {17, 9}, {7, 7}, {9, 2}},
                           .share_first_block = true,
                           .query_scale = 8.0f,
                           .token_stride_padding = 2 * 4 * 32};  // a fused QKV row's K and V
  CheckPrefill<__half>(fp16, ++seed);
}

TEST(KernelEmulationTest, PrefillRowTilesAcrossQueriesAndGqa) {
  // group 3: 96 rows span two 64-row tiles, and a tile's rows mix query tokens.
  const AttentionCase c{.head_dim = 64,
                        .num_kv_heads = 2,
                        .group = 3,
                        .block_size = 8,
                        .requests = {{32, 32}, {100, 5}},
                        .query_scale = 4.0f};
  CheckPrefill<__half>(c, 400);
}

TEST(KernelEmulationTest, PrefillOfASubRangeOfRequests) {
  const AttentionCase c{.head_dim = 64,
                        .num_kv_heads = 1,
                        .group = 1,
                        .block_size = 32,
                        .requests = {{10, 1}, {12, 12}, {0, 0}, {65, 3}, {9, 9}}};
  CheckPrefillRange<__nv_bfloat16>(c, 500, 1, 4);
}

// ---- Per-token kernels -----------------------------------------------------------------------

using T16 = __nv_bfloat16;

std::vector<float> RandomBf16Values(size_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = RoundToHost<T16>(normal(rng));
  return v;
}

std::vector<float> ToFloats(const std::vector<T16>& v) {
  std::vector<float> out;
  for (const T16 x : v) out.push_back(ToFloatHost(x));
  return out;
}

// bf16 rounding of fp32 results: a couple of half-ulps (elementwise_test.cc).
void ExpectNear(const std::vector<float>& got, const std::vector<float>& want, float atol,
                float rtol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(std::fabs(got[i] - want[i]) <= atol + rtol * std::fabs(want[i])) && ++bad <= 5) {
      ADD_FAILURE() << what << ": element " << i << " got " << got[i] << " want " << want[i];
    }
  }
  EXPECT_EQ(bad, 0) << what;
}

// Sliding windows: smaller than a block, not a multiple of it or of the 64-token prefill tile,
// larger than some contexts; decode with and without split-K, prefill chunks whose rows start
// their windows in different tiles. Dead blocks have null table entries and NaN contents.
TEST(KernelEmulationTest, SlidingWindowDecodeAndPrefillMatchTheCpuKernel) {
  for (const int window : {5, 16, 40, 100}) {
    for (const int bs : {4, 16}) {
      const AttentionCase decode{.head_dim = 64,
                                 .num_kv_heads = 2,
                                 .group = 2,
                                 .block_size = bs,
                                 .requests = Decodes({1, window, window + 1, 150, 77}),
                                 .window = {.sliding_window = window}};
      CheckDecodeBothWays<__nv_bfloat16>(decode, static_cast<uint32_t>(window + bs));
      const AttentionCase prefill{.head_dim = 64,
                                  .num_kv_heads = 1,
                                  .group = 4,
                                  .block_size = bs,
                                  .requests = {{90, 90}, {150, 70}, {window + 3, 2}, {30, 1}},
                                  .window = {.sliding_window = window}};
      CheckPrefill<__nv_bfloat16>(prefill, static_cast<uint32_t>(window * 7 + bs));
    }
  }
}

TEST(KernelEmulationTest, ReshapeAndCacheWritesSlotsAndSkipsPadding) {
  const int head_dim = 80;
  const int num_kv_heads = 2;
  const int block_size = 8;
  const int num_blocks = 5;
  const int64_t kv_row = num_kv_heads * head_dim;
  const int64_t stride = kv_row + 16;  // as a slice of a wider activation
  const std::vector<int64_t> slots = {3, 17, -1, 39, 8};
  const int64_t num_tokens = static_cast<int64_t>(slots.size());
  const std::vector<float> key = RandomBf16Values(num_tokens * stride, 1);
  const std::vector<float> value = RandomBf16Values(num_tokens * stride, 2);
  const size_t cache_elements = static_cast<size_t>(num_blocks) * block_size * kv_row;
  std::vector<float> want_key(cache_elements, -7.0f);
  std::vector<float> want_value(cache_elements, -7.0f);
  std::vector<float> dense_key, dense_value;
  std::vector<int64_t> real_slots;
  for (int64_t t = 0; t < num_tokens; ++t) {
    if (slots[t] < 0) continue;
    real_slots.push_back(slots[t]);
    dense_key.insert(dense_key.end(), key.begin() + t * stride, key.begin() + t * stride + kv_row);
    dense_value.insert(dense_value.end(), value.begin() + t * stride,
                       value.begin() + t * stride + kv_row);
  }
  cpu::ReshapeAndCache<float>(
      dense_key.data(), dense_value.data(), real_slots,
      PagedKvCacheView<float>{want_key.data(), want_value.data(), num_blocks, num_kv_heads,
                              block_size, head_dim});
  std::vector<T16> key_t = ToDeviceType<T16>(key);
  std::vector<T16> value_t = ToDeviceType<T16>(value);
  std::vector<T16> key_cache = ToDeviceType<T16>(std::vector<float>(cache_elements, -7.0f));
  std::vector<T16> value_cache = key_cache;
  const ReshapeAndCacheParams<T16> p{.key = key_t.data(),
                                     .key_token_stride = stride,
                                     .value = value_t.data(),
                                     .value_token_stride = stride,
                                     .slot_mapping = slots.data(),
                                     .num_tokens = static_cast<int32_t>(num_tokens),
                                     .cache = {key_cache.data(), value_cache.data(), num_blocks,
                                               num_kv_heads, block_size, head_dim}};
  emulation::Launch(dim3(static_cast<unsigned>(num_tokens)), dim3(internal::kReshapeThreads), 0,
                    &internal::ReshapeAndCacheKernel<T16>, p);
  ExpectNear(ToFloats(key_cache), want_key, 0.0f, 0.0f, "key cache");
  ExpectNear(ToFloats(value_cache), want_value, 0.0f, 0.0f, "value cache");
}

TEST(KernelEmulationTest, RopeRotatesQueriesAndKeys) {
  const int head_dim = 64;
  const int num_heads = 2;
  const int num_kv_heads = 1;
  const std::vector<int32_t> positions = {0, 9, 32767};
  const int64_t n = static_cast<int64_t>(positions.size());
  const std::vector<float> q = RandomBf16Values(n * num_heads * head_dim, 3);
  const std::vector<float> k = RandomBf16Values(n * num_kv_heads * head_dim, 4);
  const std::vector<float> inv_freq =
      cpu::RopeInverseFrequencies(head_dim, 500000.0f, cpu::Llama3RopeScaling{});
  cpu::RopeAngles angles;
  cpu::ComputeRopeAngles(positions, inv_freq, &angles);
  std::vector<float> want_q = q;
  std::vector<float> want_k = k;
  cpu::ApplyRope(want_q.data(), n, num_heads, head_dim, angles.cos.data(), angles.sin.data());
  cpu::ApplyRope(want_k.data(), n, num_kv_heads, head_dim, angles.cos.data(), angles.sin.data());
  std::vector<T16> q_t = ToDeviceType<T16>(q);
  std::vector<T16> k_t = ToDeviceType<T16>(k);
  const RopeParams<T16> p{.query = q_t.data(),
                          .query_token_stride = num_heads * head_dim,
                          .key = k_t.data(),
                          .key_token_stride = num_kv_heads * head_dim,
                          .positions = positions.data(),
                          .inv_freq = inv_freq.data(),
                          .num_tokens = static_cast<int32_t>(n),
                          .num_heads = num_heads,
                          .num_kv_heads = num_kv_heads,
                          .head_dim = head_dim};
  emulation::Launch(dim3(static_cast<unsigned>(n)), dim3(internal::kRopeThreads),
                    sizeof(float) * head_dim, &internal::RopeKernel<T16>, p);
  ExpectNear(ToFloats(q_t), want_q, 4e-3f, 8e-3f, "rope q");
  ExpectNear(ToFloats(k_t), want_k, 4e-3f, 8e-3f, "rope k");
}

TEST(KernelEmulationTest, RmsNormVectorAndScalarPaths) {
  for (const int32_t dim : {4096, 100}) {
    const int32_t rows = 2;
    const std::vector<float> x = RandomBf16Values(static_cast<size_t>(rows) * dim, 5, 3.0f);
    const std::vector<float> weight = RandomBf16Values(dim, 6);
    std::vector<float> want(x.size());
    cpu::RmsNorm(x.data(), weight.data(), rows, dim, 1e-5f, want.data());
    std::vector<T16> x_t = ToDeviceType<T16>(x);
    std::vector<T16> w_t = ToDeviceType<T16>(weight);
    const RmsNormParams<T16> p{
        .x = x_t.data(), .weight = w_t.data(), .out = x_t.data(), .rows = rows, .dim = dim};
    if (dim % 8 == 0) {
      emulation::Launch(dim3(rows), dim3(internal::kNormThreads), 0,
                        &internal::RmsNormKernel<T16, 8>, p);
    } else {
      emulation::Launch(dim3(rows), dim3(internal::kNormThreads), 0,
                        &internal::RmsNormKernel<T16, 1>, p);
    }
    ExpectNear(ToFloats(x_t), want, 1e-3f, 8e-3f, "rmsnorm in place, dim " + std::to_string(dim));
  }
}

TEST(KernelEmulationTest, SiluAndMulAddInPlaceAndEmbedding) {
  const int32_t rows = 3;
  const int32_t dim = 24;
  const std::vector<float> gate_up = RandomBf16Values(static_cast<size_t>(rows) * 2 * dim, 7);
  std::vector<float> gate, up;
  for (int32_t r = 0; r < rows; ++r) {
    gate.insert(gate.end(), gate_up.begin() + r * 2 * dim, gate_up.begin() + r * 2 * dim + dim);
    up.insert(up.end(), gate_up.begin() + r * 2 * dim + dim, gate_up.begin() + (r + 1) * 2 * dim);
  }
  std::vector<float> want(gate.size());
  cpu::SiluAndMul(gate.data(), up.data(), static_cast<int64_t>(want.size()), want.data());
  std::vector<T16> gate_up_t = ToDeviceType<T16>(gate_up);
  std::vector<T16> out_t(want.size());
  const SiluAndMulParams<T16> silu{.gate = gate_up_t.data(),
                                   .gate_row_stride = 2 * dim,
                                   .up = gate_up_t.data() + dim,
                                   .up_row_stride = 2 * dim,
                                   .out = out_t.data(),
                                   .out_row_stride = dim,
                                   .rows = rows,
                                   .dim = dim};
  // Few threads, so the grid-stride loops go round.
  emulation::Launch(dim3(2), dim3(4), 0, &internal::SiluAndMulKernel<T16, 8>, silu);
  ExpectNear(ToFloats(out_t), want, 1e-3f, 8e-3f, "silu_and_mul");

  std::vector<T16> y_t = ToDeviceType<T16>(gate);
  emulation::Launch(
      dim3(2), dim3(3), 0, &internal::AddInPlaceKernel<T16, 1>,
      AddInPlaceParams<T16>{
          .y = y_t.data(), .x = gate_up_t.data(), .n = static_cast<int64_t>(gate.size())});
  std::vector<float> want_sum(gate.size());
  for (size_t i = 0; i < gate.size(); ++i) want_sum[i] = RoundToHost<T16>(gate[i] + gate_up[i]);
  ExpectNear(ToFloats(y_t), want_sum, 0.0f, 0.0f, "add_in_place");

  const std::vector<int32_t> ids = {2, -1, 0};
  std::vector<T16> rows_t(ids.size() * 2 * dim);
  emulation::Launch(dim3(3), dim3(5), 0, &internal::EmbeddingKernel<T16, 8>,
                    EmbeddingParams<T16>{.token_ids = ids.data(),
                                         .table = gate_up_t.data(),
                                         .vocab_size = rows,
                                         .dim = 2 * dim,
                                         .num_tokens = 3,
                                         .out = rows_t.data()});
  std::vector<float> want_rows(rows_t.size(), 0.0f);
  for (int64_t i = 0; i < 2 * dim; ++i) {
    want_rows[i] = gate_up[2 * 2 * dim + i];
    want_rows[2 * 2 * dim + i] = gate_up[i];
  }
  ExpectNear(ToFloats(rows_t), want_rows, 0.0f, 0.0f, "embedding");
}

TEST(KernelEmulationTest, ArgmaxIsTheCpuSamplersGreedyChoice) {
  // Rows of a padded vocabulary (stride 1032, 1027 real tokens) with ties, NaN, +-inf and a
  // maximum in the scalar tail; the padding holds a larger value that must be ignored.
  const int64_t vocab = 1027;
  const int64_t stride = 1032;
  const int32_t rows = 6;
  std::vector<float> logits = RandomBf16Values(static_cast<size_t>(rows * stride), 11, 4.0f);
  for (int32_t r = 0; r < rows; ++r) {
    for (int64_t i = vocab; i < stride; ++i) logits[r * stride + i] = 100.0f;
  }
  const float nan = std::nanf("");
  const float inf = INFINITY;
  logits[0 * stride + 17] = 40.0f;  // a tie: the lower id wins
  logits[0 * stride + 900] = 40.0f;
  logits[1 * stride + 3] = nan;       // NaN is never chosen
  logits[1 * stride + 1025] = 45.0f;  // in the scalar tail
  logits[2 * stride + 600] = inf;     // +inf wins (the CPU allows it when greedy)
  for (int64_t i = 0; i < vocab; ++i) logits[3 * stride + i] = i % 2 == 0 ? -inf : nan;
  logits[4 * stride + 1026] = 50.0f;  // the last token
  logits[4 * stride + 5] = 50.0f;
  std::vector<T16> logits_t = ToDeviceType<T16>(logits);
  std::vector<float> rounded = ToFloats(logits_t);

  for (const int vec : {8, 1}) {
    std::vector<int32_t> tokens(rows, -7);
    const ArgmaxParams<T16> p{.logits = logits_t.data(),
                              .row_stride = stride,
                              .vocab_size = vocab,
                              .rows = rows,
                              .tokens = tokens.data()};
    emulation::Launch(dim3(rows), dim3(internal::kArgmaxThreads), 0,
                      vec == 8 ? &internal::ArgmaxKernel<T16, 8> : &internal::ArgmaxKernel<T16, 1>,
                      p);
    EXPECT_EQ(tokens[3], -1) << "a row of NaN and -inf has no samplable token";
    const sampling::SamplingParams greedy{.temperature = 0.0f};
    for (int32_t r = 0; r < rows; ++r) {
      if (r == 3) continue;
      std::vector<float> row(rounded.begin() + r * stride, rounded.begin() + r * stride + vocab);
      sampling::SamplerState state(std::nullopt, {});
      EXPECT_EQ(tokens[r], sampling::Sample(absl::MakeSpan(row), greedy, state).value_or(-1))
          << "row " << r << ", vector width " << vec;
    }
    EXPECT_EQ(tokens[0], 17);
    EXPECT_EQ(tokens[1], 1025);
    EXPECT_EQ(tokens[2], 600);
    EXPECT_EQ(tokens[4], 5);
  }
}

}  // namespace
}  // namespace pagoda::kernels::cuda
