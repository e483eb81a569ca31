// The GPU paged-attention kernels (decode and prefill) against the CPU reference
// (cpu::PagedAttention) on random inputs, with the edge cases of
// research/paged-attention-kernels.md section 6; inputs, NaN poisoning and tolerances are
// described in attention_test_batch.h. Queries and outputs are strided with padding (as in a
// fused QKV activation); query padding is NaN and output padding must keep its sentinel bits.
// Skips without a CUDA device.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda_buffer.h"
#include "kernels/cuda/half_types.h"
#include "kernels/cuda/paged_attention_decode.h"
#include "kernels/cuda/paged_attention_prefill.h"
#include "kernels/cuda/testing/attention_test_batch.h"
#include "kernels/cuda/testing/device_array.h"
#include "kernels/cuda/testing/quantized_cache.h"
#include "kernels/paged_kv_cache.h"

namespace pagoda::kernels::cuda {

using testing::DeviceArray;
namespace {

using testing::AttentionCase;
using testing::BuildBatch;
using testing::Decodes;
using testing::ExpectMatches;
using testing::HostBatch;
using testing::MaxContext;
using testing::Reference;
using testing::SentinelOutput;
using testing::SplitPlan;
using testing::StridedQuery;
using testing::TestRequest;
using testing::TokenStride;

// A batch in device memory; the output holds the sentinel until a kernel writes it.
template <typename T>
struct DeviceBatch {
  DeviceArray<T> key_cache, value_cache, query, output;
  DeviceArray<int32_t> tables, query_start, context_lens;
  int64_t token_stride = 0;
  PagedKvCacheView<T> view;
};

template <typename T>
void Upload(const AttentionCase& c, const HostBatch& b, DeviceBatch<T>* dev) {
  dev->token_stride = TokenStride(c, b);
  auto key = DeviceArray<T>::FromHost(ToDeviceType<T>(b.key_cache));
  auto value = DeviceArray<T>::FromHost(ToDeviceType<T>(b.value_cache));
  auto q = DeviceArray<T>::FromHost(StridedQuery<T>(c, b));
  auto out = DeviceArray<T>::FromHost(SentinelOutput<T>(c, b));
  auto tables = DeviceArray<int32_t>::FromHost(b.tables);
  auto query_start = DeviceArray<int32_t>::FromHost(b.query_start);
  auto context_lens = DeviceArray<int32_t>::FromHost(b.context_lens);
  ASSERT_TRUE(key.ok() && value.ok() && q.ok() && out.ok() && tables.ok() && query_start.ok() &&
              context_lens.ok())
      << key.status() << value.status() << out.status();
  dev->key_cache = std::move(*key);
  dev->value_cache = std::move(*value);
  dev->query = std::move(*q);
  dev->output = std::move(*out);
  dev->tables = std::move(*tables);
  dev->query_start = std::move(*query_start);
  dev->context_lens = std::move(*context_lens);
  dev->view = PagedKvCacheView<T>{dev->key_cache.data(), dev->value_cache.data(),
                                  b.num_blocks,          c.num_kv_heads,
                                  c.block_size,          c.head_dim};
}

template <typename T>
void ExpectOutputMatches(const AttentionCase& c, const HostBatch& b, const DeviceBatch<T>& dev,
                         const std::vector<float>& want, const std::vector<bool>& checked_tokens,
                         const std::string& what) {
  auto got = dev.output.ToHost();
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectMatches(c, b, *got, want, checked_tokens, what);
}

template <typename T>
void ResetOutput(const AttentionCase& c, const HostBatch& b, DeviceBatch<T>* dev) {
  ASSERT_TRUE(dev->output.CopyFromHost(SentinelOutput<T>(c, b)).ok());
}

void ExpectDeviceOk() {
  const cudaError_t error = cudaDeviceSynchronize();
  ASSERT_EQ(error, cudaSuccess) << cudaGetErrorString(error);
}

// Runs the decode kernel over `view`: dev's cache, or an 8-bit one.
template <typename T, typename C>
void RunDecode(const AttentionCase& c, const HostBatch& b, DeviceBatch<T>* dev,
               const PagedDecodePlan& plan, const PagedKvCacheView<C>& view) {
  const int64_t workspace_bytes = PagedDecodeWorkspaceBytes(
      plan, static_cast<int32_t>(c.requests.size()), b.num_heads, c.head_dim);
  auto workspace = DeviceBuffer::Create(static_cast<size_t>(workspace_bytes));
  ASSERT_TRUE(workspace.ok()) << workspace.status();
  const PagedDecodeParams<T, C> params{.query = dev->query.data(),
                                       .query_token_stride = dev->token_stride,
                                       .output = dev->output.data(),
                                       .output_token_stride = dev->token_stride,
                                       .num_requests = static_cast<int32_t>(c.requests.size()),
                                       .num_heads = b.num_heads,
                                       .cache = view,
                                       .query_start = dev->query_start.data(),
                                       .context_lens = dev->context_lens.data(),
                                       .block_tables = dev->tables.data(),
                                       .max_blocks_per_request = b.max_blocks,
                                       .scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim)),
                                       .window = c.window,
                                       .plan = plan,
                                       .workspace = workspace->data(),
                                       .workspace_bytes = workspace_bytes};
  const absl::Status status = PagedAttentionDecode(params, nullptr);
  ASSERT_TRUE(status.ok()) << status;
  ExpectDeviceOk();
}

// Runs the prefill kernels for requests [first_request, end_request) over `view`.
template <typename T, typename C>
void RunPrefill(const AttentionCase& c, const HostBatch& b, DeviceBatch<T>* dev, int first_request,
                int end_request, const PagedKvCacheView<C>& view) {
  const int32_t num_requests = end_request - first_request;
  auto workspace = DeviceBuffer::Create(PagedPrefillWorkspaceBytes(num_requests));
  ASSERT_TRUE(workspace.ok()) << workspace.status();
  const PagedPrefillParams<T, C> params{
      .query = dev->query.data(),
      .query_token_stride = dev->token_stride,
      .output = dev->output.data(),
      .output_token_stride = dev->token_stride,
      .num_requests = num_requests,
      .num_query_tokens = b.query_start[end_request] - b.query_start[first_request],
      .num_heads = b.num_heads,
      .cache = view,
      .query_start = dev->query_start.data() + first_request,
      .context_lens = dev->context_lens.data() + first_request,
      .block_tables = dev->tables.data() + static_cast<int64_t>(first_request) * b.max_blocks,
      .max_blocks_per_request = b.max_blocks,
      .scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim)),
      .window = c.window,
      .workspace = workspace->data(),
      .workspace_bytes = PagedPrefillWorkspaceBytes(num_requests)};
  const absl::Status status = PagedAttentionPrefill(params, nullptr);
  ASSERT_TRUE(status.ok()) << status;
  ExpectDeviceOk();
}

PagedDecodePlan DevicePlan(const AttentionCase& c) {
  const PagedDecodeShape shape{.num_requests = static_cast<int32_t>(c.requests.size()),
                               .num_heads = c.num_kv_heads * c.group,
                               .num_kv_heads = c.num_kv_heads,
                               .head_dim = c.head_dim,
                               .max_context_len = MaxContext(c)};
  auto plan = PlanPagedDecode(shape);
  EXPECT_TRUE(plan.ok()) << plan.status();
  return plan.ok() ? *plan : SplitPlan(c, 256);
}

// Decode of every request of `c` (all with one query) under each of `plans`.
template <typename T>
void CheckDecode(const AttentionCase& c, const std::vector<PagedDecodePlan>& plans, uint32_t seed) {
  for (const TestRequest& r : c.requests) ASSERT_EQ(r.num_queries, 1);
  HostBatch b = BuildBatch<T>(c, seed);
  const std::vector<float> want = Reference(c, b);
  DeviceBatch<T> dev;
  ASSERT_NO_FATAL_FAILURE(Upload(c, b, &dev));
  const std::vector<bool> all(b.num_tokens, true);
  for (const PagedDecodePlan& plan : plans) {
    ASSERT_NO_FATAL_FAILURE(ResetOutput(c, b, &dev));
    ASSERT_NO_FATAL_FAILURE(RunDecode(c, b, &dev, plan, dev.view));
    ExpectOutputMatches(c, b, dev, want, all,
                        absl::StrCat("decode(partition ", plan.partition_size, " x ",
                                     plan.max_num_partitions, ")"));
  }
}

template <typename T>
void CheckDecodeBothPlans(const AttentionCase& c, uint32_t seed) {
  CheckDecode<T>(c, {DevicePlan(c), SplitPlan(c, 64)}, seed);
}

// Prefill of requests [first, end) of `c`; the other requests' outputs must stay untouched.
template <typename T>
void CheckPrefillRange(const AttentionCase& c, uint32_t seed, int first, int end) {
  HostBatch b = BuildBatch<T>(c, seed);
  const std::vector<float> want = Reference(c, b);
  DeviceBatch<T> dev;
  ASSERT_NO_FATAL_FAILURE(Upload(c, b, &dev));
  std::vector<bool> checked(b.num_tokens, false);
  for (int t = b.query_start[first]; t < b.query_start[end]; ++t) checked[t] = true;
  ASSERT_NO_FATAL_FAILURE(RunPrefill(c, b, &dev, first, end, dev.view));
  ExpectOutputMatches(c, b, dev, want, checked, "prefill");
}

template <typename T>
void CheckPrefill(const AttentionCase& c, uint32_t seed) {
  CheckPrefillRange<T>(c, seed, 0, static_cast<int>(c.requests.size()));
}

class PagedAttentionGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (VisibleDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

// ---- Decode ---------------------------------------------------------------------------------

TEST_F(PagedAttentionGpuTest, DecodeMatchesCpuForEveryHeadDimBlockSizeAndType) {
  uint32_t seed = 1;
  for (const int d : kSupportedHeadDims) {
    for (const int bs : {8, 16, 32}) {
      for (const int group : {1, 4, 8}) {
        const AttentionCase c{.head_dim = d,
                              .num_kv_heads = 2,
                              .group = group,
                              .block_size = bs,
                              // Context 1, block boundaries +-1, and a few blocks and partitions.
                              .requests = Decodes({1, bs - 1, bs, bs + 1, 3 * bs - 1, 200, 1000})};
        CheckDecodeBothPlans<__nv_bfloat16>(c, ++seed);
        CheckDecodeBothPlans<__half>(c, ++seed);
      }
    }
  }
}

TEST_F(PagedAttentionGpuTest, DecodeGqaRatiosOneToEightAndGroupsWiderThanABlock) {
  uint32_t seed = 100;
  for (const int group : {1, 2, 3, 4, 5, 6, 7, 8, 16, 24}) {
    const AttentionCase c{.head_dim = 128,
                          .num_kv_heads = 3,
                          .group = group,
                          .block_size = 16,
                          .requests = Decodes({1, 15, 16, 17, 333, 2048})};
    CheckDecodeBothPlans<__nv_bfloat16>(c, ++seed);
    CheckDecodeBothPlans<__half>(c, ++seed);
  }
}

TEST_F(PagedAttentionGpuTest, DecodeSplitBoundaries) {
  uint32_t seed = 200;
  for (const int partition : {16, 64, 256, 512}) {
    const AttentionCase c{
        .head_dim = 128,
        .num_kv_heads = 2,
        .group = 4,
        .block_size = 16,
        .requests = Decodes({partition - 1, partition, partition + 1, 2 * partition - 1,
                             2 * partition, 2 * partition + 1, 5 * partition + 3, 1})};
    CheckDecode<__nv_bfloat16>(c, {SplitPlan(c, partition)}, ++seed);
    CheckDecode<__half>(c, {SplitPlan(c, partition)}, ++seed);
  }
}

TEST_F(PagedAttentionGpuTest, DecodeIsCorrectWithTooFewPartitionsInThePlan) {
  // The plan's partitions cannot hold these contexts; the kernels widen them per request.
  const AttentionCase c{.head_dim = 128,
                        .num_kv_heads = 2,
                        .group = 4,
                        .block_size = 16,
                        .requests = Decodes({1000, 4097, 17, 64})};
  CheckDecode<__nv_bfloat16>(c,
                             {{.partition_size = 16, .max_num_partitions = 4},
                              {.partition_size = 64, .max_num_partitions = 1}},
                             300);
}

TEST_F(PagedAttentionGpuTest, DecodeRaggedBatchUpTo32k) {
  const AttentionCase c{.head_dim = 128,
                        .num_kv_heads = 8,
                        .group = 4,
                        .block_size = 16,
                        .requests = Decodes({1, 17, 4095, 32768, 32767, 1000, 8193, 2})};
  CheckDecodeBothPlans<__nv_bfloat16>(c, 400);
  CheckDecodeBothPlans<__half>(c, 401);
}

TEST_F(PagedAttentionGpuTest, DecodeManyShortRequests) {
  std::vector<int> contexts(300);
  for (size_t i = 0; i < contexts.size(); ++i) contexts[i] = 1 + static_cast<int>(i % 40);
  const AttentionCase c{.head_dim = 64,
                        .num_kv_heads = 4,
                        .group = 2,
                        .block_size = 8,
                        .requests = Decodes(contexts)};
  CheckDecodeBothPlans<__nv_bfloat16>(c, 500);
}

TEST_F(PagedAttentionGpuTest, DecodeSharedPrefixBlockAndSaturatedSoftmax) {
  for (const float q_scale : {1.0f, 30.0f}) {
    const AttentionCase c{.head_dim = 96,
                          .num_kv_heads = 2,
                          .group = 4,
                          .block_size = 16,
                          .requests = Decodes({40, 33, 700}),
                          .share_first_block = true,
                          .query_scale = q_scale,
                          .token_stride_padding = 2 * 2 * 96};  // a fused QKV row's K and V
    CheckDecodeBothPlans<__nv_bfloat16>(c, 600);
    CheckDecodeBothPlans<__half>(c, 601);
  }
}

// Head dim 32, the built-in model's (models/pagoda-kjv: 8 query heads, 4 KV heads): GQA 1-8
// under the device's plan and at split boundaries +-1, in both types.
TEST_F(PagedAttentionGpuTest, DecodeHeadDim32GqaAndSplitBoundaries) {
  uint32_t seed = 650;
  for (const int group : {1, 2, 4, 8}) {
    const AttentionCase c{
        .head_dim = 32,
        .num_kv_heads = 4,
        .group = group,
        .block_size = 16,
        .requests = Decodes({1, 15, 16, 17, 63, 64, 65, 255, 256, 257, 1000, 4097})};
    const std::vector<PagedDecodePlan> plans = {DevicePlan(c), SplitPlan(c, 16), SplitPlan(c, 64),
                                                SplitPlan(c, 256)};
    CheckDecode<__nv_bfloat16>(c, plans, ++seed);
    CheckDecode<__half>(c, plans, ++seed);
  }
}

TEST_F(PagedAttentionGpuTest, DecodeIsDeterministic) {
  const AttentionCase c{.head_dim = 128,
                        .num_kv_heads = 8,
                        .group = 4,
                        .block_size = 16,
                        .requests = Decodes({5000, 123, 9000})};
  HostBatch b = BuildBatch<__nv_bfloat16>(c, 700);
  DeviceBatch<__nv_bfloat16> dev;
  ASSERT_NO_FATAL_FAILURE(Upload(c, b, &dev));
  const PagedDecodePlan plan = SplitPlan(c, 256);
  ASSERT_NO_FATAL_FAILURE(RunDecode(c, b, &dev, plan, dev.view));
  auto first = dev.output.ToHost();
  ASSERT_NO_FATAL_FAILURE(ResetOutput(c, b, &dev));
  ASSERT_NO_FATAL_FAILURE(RunDecode(c, b, &dev, plan, dev.view));
  auto second = dev.output.ToHost();
  ASSERT_TRUE(first.ok() && second.ok());
  ASSERT_EQ(first->size(), second->size());
  EXPECT_EQ(std::memcmp(first->data(), second->data(), first->size() * sizeof(__nv_bfloat16)), 0);
}

// ---- Prefill --------------------------------------------------------------------------------

// Sliding windows (Mistral-style): decode with and without split, prefill rows whose windows
// start in different tiles; blocks no query attends have null table entries.
TEST_F(PagedAttentionGpuTest, SlidingWindowDecodeAndPrefillMatchCpu) {
  uint32_t seed = 900;
  for (const int window : {5, 16, 40, 100, 4096}) {
    for (const int bs : {8, 16}) {
      const AttentionCase decode{.head_dim = 128,
                                 .num_kv_heads = 8,
                                 .group = 4,
                                 .block_size = bs,
                                 .requests = Decodes({1, window, window + 1, 1500, 5000}),
                                 .window = {.sliding_window = window}};
      CheckDecodeBothPlans<__nv_bfloat16>(decode, ++seed);
      const AttentionCase prefill{.head_dim = 128,
                                  .num_kv_heads = 2,
                                  .group = 4,
                                  .block_size = bs,
                                  .requests = {{300, 300}, {700, 129}, {window + 3, 2}, {60, 1}},
                                  .window = {.sliding_window = window}};
      CheckPrefill<__nv_bfloat16>(prefill, ++seed);
    }
  }
}

TEST_F(PagedAttentionGpuTest, PrefillMatchesCpuForEveryHeadDimBlockSizeAndType) {
  uint32_t seed = 1000;
  for (const int d : kSupportedHeadDims) {
    for (const int bs : {8, 16, 32}) {
      for (const int group : {1, 4, 8}) {
        // Whole prompts, chunks after a cached prefix, decodes and a request with no queries,
        // at block boundaries +-1 and across 64-token tiles.
        const AttentionCase c{.head_dim = d,
                              .num_kv_heads = 2,
                              .group = group,
                              .block_size = bs,
                              .requests = {{1, 1},
                                           {17, 17},
                                           {100, 37},
                                           {4 * bs + 1, 5},
                                           {300, 1},
                                           {50, 0},
                                           {bs, bs},
                                           {bs - 1, bs - 1},
                                           {129, 129},
                                           {200, 65}}};
        CheckPrefill<__nv_bfloat16>(c, ++seed);
        CheckPrefill<__half>(c, ++seed);
      }
    }
  }
}

TEST_F(PagedAttentionGpuTest, PrefillGqaRatios) {
  uint32_t seed = 2000;
  for (const int group : {1, 2, 3, 4, 5, 6, 7, 8, 16}) {
    const AttentionCase c{.head_dim = 128,
                          .num_kv_heads = 2,
                          .group = group,
                          .block_size = 16,
                          .requests = {{70, 70}, {300, 45}, {16, 1}, {33, 33}}};
    CheckPrefill<__nv_bfloat16>(c, ++seed);
    CheckPrefill<__half>(c, ++seed);
  }
}

TEST_F(PagedAttentionGpuTest, PrefillLongPromptAndChunkAtTheEndOf32k) {
  const AttentionCase c{.head_dim = 128,
                        .num_kv_heads = 1,
                        .group = 4,
                        .block_size = 16,
                        .requests = {{4096, 4096}, {32768, 128}, {32767, 1}, {5000, 999}}};
  CheckPrefill<__nv_bfloat16>(c, 3000);
  CheckPrefill<__half>(c, 3001);
}

TEST_F(PagedAttentionGpuTest, PrefillSharedPrefixBlockStridedQueryAndSaturatedSoftmax) {
  for (const float q_scale : {1.0f, 30.0f}) {
    const AttentionCase c{.head_dim = 80,
                          .num_kv_heads = 2,
                          .group = 3,
                          .block_size = 16,
                          .requests = {{40, 40}, {90, 20}, {7, 7}},
                          .share_first_block = true,
                          .query_scale = q_scale,
                          .token_stride_padding = 2 * 2 * 80};
    CheckPrefill<__nv_bfloat16>(c, 4000);
    CheckPrefill<__half>(c, 4001);
  }
}

// Head dim 32 (models/pagoda-kjv): whole prompts and chunks at block and 64-token tile
// boundaries +-1, prefix hits (request 1 shares request 0's first block), a chunk at the end of
// an 8k context, decodes and an idle request, GQA 1-8, both types, q/out as QKV slices.
TEST_F(PagedAttentionGpuTest, PrefillHeadDim32BlockBoundariesAndPrefixHits) {
  uint32_t seed = 4500;
  for (const int group : {1, 2, 4, 8}) {
    for (const int bs : {8, 16}) {
      const AttentionCase c{.head_dim = 32,
                            .num_kv_heads = 4,
                            .group = group,
                            .block_size = bs,
                            .requests = {{100, 100},
                                         {bs + 40, 40},
                                         {bs - 1, bs - 1},
                                         {bs, bs},
                                         {bs + 1, bs + 1},
                                         {63, 63},
                                         {64, 64},
                                         {65, 65},
                                         {8192, 129},
                                         {300, 1},
                                         {50, 0},
                                         {2 * bs + 1, bs + 1}},
                            .share_first_block = true,
                            .token_stride_padding = 2 * 4 * 32};
      CheckPrefill<__nv_bfloat16>(c, ++seed);
      CheckPrefill<__half>(c, ++seed);
    }
  }
}

TEST_F(PagedAttentionGpuTest, PrefillOfASubRangeOfRequestsTouchesOnlyTheirTokens) {
  const AttentionCase c{.head_dim = 64,
                        .num_kv_heads = 2,
                        .group = 4,
                        .block_size = 8,
                        .requests = {{10, 1}, {20, 1}, {64, 64}, {100, 30}, {9, 9}, {30, 1}}};
  CheckPrefillRange<__nv_bfloat16>(c, 5000, 2, 5);
}

TEST_F(PagedAttentionGpuTest, PrefillAlsoServesPureDecodeBatches) {
  const AttentionCase c{.head_dim = 128,
                        .num_kv_heads = 8,
                        .group = 4,
                        .block_size = 16,
                        .requests = Decodes({1, 16, 17, 2049, 777})};
  CheckPrefill<__nv_bfloat16>(c, 6000);
}

// ---- 8-bit caches ----------------------------------------------------------------------------

// A quantized cache (testing::Quantize) in device memory.
template <typename K>
struct DeviceQuantizedCache {
  DeviceArray<uint8_t> key, value;
  DeviceArray<uint16_t> key_scale, value_scale;
  DeviceArray<float> head_key_scale, head_value_scale;
  PagedKvCacheView<typename K::Gpu> view;
};

template <typename K>
void UploadQuantized(testing::QuantizedCache<K>& q, DeviceQuantizedCache<K>* dev) {
  using C = typename K::Gpu;
  auto key = DeviceArray<uint8_t>::FromHost(q.key);
  auto value = DeviceArray<uint8_t>::FromHost(q.value);
  ASSERT_TRUE(key.ok() && value.ok()) << key.status();
  dev->key = std::move(*key);
  dev->value = std::move(*value);
  dev->view = q.template View<C>();
  dev->view.key = reinterpret_cast<C*>(dev->key.data());
  dev->view.value = reinterpret_cast<C*>(dev->value.data());
  if (!q.key_scale.empty()) {
    auto ks = DeviceArray<uint16_t>::FromHost(q.key_scale);
    auto vs = DeviceArray<uint16_t>::FromHost(q.value_scale);
    ASSERT_TRUE(ks.ok() && vs.ok());
    dev->key_scale = std::move(*ks);
    dev->value_scale = std::move(*vs);
    dev->view.key_scale = dev->key_scale.data();
    dev->view.value_scale = dev->value_scale.data();
  } else {
    auto ks = DeviceArray<float>::FromHost(q.head_key_scale);
    auto vs = DeviceArray<float>::FromHost(q.head_value_scale);
    ASSERT_TRUE(ks.ok() && vs.ok());
    dev->head_key_scale = std::move(*ks);
    dev->head_value_scale = std::move(*vs);
    dev->view.head_key_scale = dev->head_key_scale.data();
    dev->view.head_value_scale = dev->head_value_scale.data();
  }
}

// Decode (every plan) and prefill over a quantized copy of the batch's cache: within the 16-bit
// tolerance of the CPU reference on the dequantized values, and within the type's loose bound
// of the unquantized reference (testing/quantized_cache.h).
template <typename K>
void CheckQuantized(const AttentionCase& c, bool head_scales, bool decode, uint32_t seed) {
  using T = __nv_bfloat16;
  HostBatch b = BuildBatch<T>(c, seed);
  testing::QuantizedCache<K> q = testing::Quantize<K>(c, b, head_scales);
  const std::vector<float> want = Reference(c, q.dequantized);
  const std::vector<float> exact = Reference(c, b);
  DeviceBatch<T> dev;
  ASSERT_NO_FATAL_FAILURE(Upload(c, b, &dev));
  DeviceQuantizedCache<K> cache;
  ASSERT_NO_FATAL_FAILURE(UploadQuantized(q, &cache));
  const std::vector<bool> all(b.num_tokens, true);
  const std::vector<PagedDecodePlan> plans =
      decode ? std::vector<PagedDecodePlan>{DevicePlan(c), SplitPlan(c, 64)}
             : std::vector<PagedDecodePlan>{PagedDecodePlan{}};
  for (const PagedDecodePlan& plan : plans) {
    ASSERT_NO_FATAL_FAILURE(ResetOutput(c, b, &dev));
    if (decode) {
      ASSERT_NO_FATAL_FAILURE(RunDecode(c, b, &dev, plan, cache.view));
    } else {
      ASSERT_NO_FATAL_FAILURE(
          RunPrefill(c, b, &dev, 0, static_cast<int>(c.requests.size()), cache.view));
    }
    auto got = dev.output.ToHost();
    ASSERT_TRUE(got.ok()) << got.status();
    const std::string what = absl::StrCat(decode ? "8-bit decode" : "8-bit prefill",
                                          head_scales ? " (head scales)" : " (token scales)");
    ExpectMatches(c, b, *got, want, all, what);
    testing::ExpectNearUnquantized<K>(c, b, *got, exact, all, what);
  }
}

template <typename K>
void CheckQuantizedEverywhere(uint32_t seed) {
  for (const int d : {64, 128, 256}) {
    const AttentionCase decode{.head_dim = d,
                               .num_kv_heads = 2,
                               .group = 4,
                               .block_size = 16,
                               .requests = Decodes({1, 16, 17, 300, 2049})};
    const AttentionCase prefill{.head_dim = d,
                                .num_kv_heads = 2,
                                .group = 4,
                                .block_size = 16,
                                .requests = {{1, 1}, {200, 200}, {700, 37}, {20, 0}}};
    for (const bool head_scales : {false, true}) {
      if (head_scales && !K::kFp8) continue;
      CheckQuantized<K>(decode, head_scales, /*decode=*/true, ++seed);
      CheckQuantized<K>(prefill, head_scales, /*decode=*/false, ++seed);
    }
  }
}

TEST_F(PagedAttentionGpuTest, Int8CacheDecodeAndPrefillMatchTheDequantizedReference) {
  CheckQuantizedEverywhere<testing::Int8>(700);
}
TEST_F(PagedAttentionGpuTest, Fp8E4M3CacheDecodeAndPrefillMatchTheDequantizedReference) {
  CheckQuantizedEverywhere<testing::E4M3>(800);
}
TEST_F(PagedAttentionGpuTest, Fp8E5M2CacheDecodeAndPrefillMatchTheDequantizedReference) {
  CheckQuantizedEverywhere<testing::E5M2>(900);
}

}  // namespace
}  // namespace pagoda::kernels::cuda
