// The paged-attention kernels' CUDA source run on the CPU emulator (kernel_emulation.h) against
// the CPU reference, with the inputs, NaN poisoning and tolerances of attention_test_batch.h.
// Needs no GPU, so CI checks the kernels' indexing, masking, partition merges and barriers on
// every change; the GPU tests (paged_attention_test.cc) check the real thing. Cases are small:
// the emulator switches between a block's threads at every warp collective.

#define PAGODA_CUDA_EMULATION 1
#include "kernels/cuda/kernel_emulation.h"  // first: it defines the emulated CUDA built-ins

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/cuda/attention_test_batch.h"
#include "kernels/cuda/head_dim_dispatch.h"
#include "kernels/cuda/paged_attention_decode_kernel.cuh"
#include "kernels/cuda/paged_attention_prefill_kernel.cuh"

namespace pagoda::kernels::cuda {
namespace {

using attention_testing::AttentionCase;
using attention_testing::BuildBatch;
using attention_testing::Decodes;
using attention_testing::ExpectMatches;
using attention_testing::HostBatch;
using attention_testing::MaxContext;
using attention_testing::Reference;
using attention_testing::SentinelOutput;
using attention_testing::SplitPlan;
using attention_testing::StridedQuery;
using attention_testing::ToDeviceType;
using attention_testing::TokenStride;

// The batch's arrays in the kernels' types; "device" pointers are these host arrays.
template <typename T>
struct EmulatedBatch {
  std::vector<T> key, value, query, output;
  PagedKvCacheView<T> view;
};

template <typename T>
EmulatedBatch<T> MakeEmulatedBatch(const AttentionCase& c, const HostBatch& b) {
  EmulatedBatch<T> e{ToDeviceType<T>(b.key_cache),
                     ToDeviceType<T>(b.value_cache),
                     StridedQuery<T>(c, b),
                     SentinelOutput<T>(c, b),
                     {}};
  e.view = PagedKvCacheView<T>{e.key.data(),   e.value.data(), b.num_blocks,
                               c.num_kv_heads, c.block_size,   c.head_dim};
  return e;
}

float Scale(const AttentionCase& c) { return 1.0f / std::sqrt(static_cast<float>(c.head_dim)); }

template <typename T>
void EmulateDecode(const AttentionCase& c, HostBatch& b, const PagedDecodePlan& plan,
                   EmulatedBatch<T>* e) {
  const int32_t num_requests = static_cast<int32_t>(c.requests.size());
  const int64_t workspace_bytes =
      PagedDecodeWorkspaceBytes(plan, num_requests, b.num_heads, c.head_dim);
  std::vector<uint4> workspace(static_cast<size_t>(workspace_bytes / 16 + 1),
                               uint4{~0u, ~0u, ~0u, ~0u});
  const PagedDecodeParams<T> p{.query = e->query.data(),
                               .query_token_stride = TokenStride(c, b),
                               .output = e->output.data(),
                               .output_token_stride = TokenStride(c, b),
                               .num_requests = num_requests,
                               .num_heads = b.num_heads,
                               .cache = e->view,
                               .query_start = b.query_start.data(),
                               .context_lens = b.context_lens.data(),
                               .block_tables = b.tables.data(),
                               .max_blocks_per_request = b.max_blocks,
                               .scale = Scale(c),
                               .plan = plan,
                               .workspace = workspace.data(),
                               .workspace_bytes = workspace_bytes};
  const absl::Status status = internal::DispatchHeadDim(c.head_dim, [&](auto head_dim) {
    constexpr int kHeadDim = decltype(head_dim)::value;
    using Cfg = internal::DecodeConfig<kHeadDim>;
    emulation::Launch(internal::DecodeGrid(p), dim3(Cfg::kThreads), Cfg::kSmemBytes,
                      &internal::PagedDecodeKernel<T, kHeadDim>, p,
                      internal::NumHeadChunks(p.num_heads, c.num_kv_heads));
    if (plan.max_num_partitions > 1) {
      emulation::Launch(internal::MergeGrid(p), dim3(kHeadDim), internal::MergeSharedBytes(plan),
                        &internal::MergePartitionsKernel<T>, p);
    }
    return absl::OkStatus();
  });
  ASSERT_TRUE(status.ok()) << status;
}

template <typename T>
void EmulatePrefill(const AttentionCase& c, HostBatch& b, int first, int end, EmulatedBatch<T>* e) {
  const int32_t num_requests = end - first;
  std::vector<int32_t> tile_offsets(num_requests + 1, -1);
  const PagedPrefillParams<T> p{
      .query = e->query.data(),
      .query_token_stride = TokenStride(c, b),
      .output = e->output.data(),
      .output_token_stride = TokenStride(c, b),
      .num_requests = num_requests,
      .num_query_tokens = b.query_start[end] - b.query_start[first],
      .num_heads = b.num_heads,
      .cache = e->view,
      .query_start = b.query_start.data() + first,
      .context_lens = b.context_lens.data() + first,
      .block_tables = b.tables.data() + static_cast<int64_t>(first) * b.max_blocks,
      .max_blocks_per_request = b.max_blocks,
      .scale = Scale(c),
      .workspace = tile_offsets.data(),
      .workspace_bytes = PagedPrefillWorkspaceBytes(num_requests)};
  emulation::Launch(dim3(1), dim3(internal::kScanThreads), 0, &internal::PrefillTileScanKernel,
                    p.query_start, p.num_requests, c.group, tile_offsets.data());
  const absl::Status status = internal::DispatchHeadDim(c.head_dim, [&](auto head_dim) {
    constexpr int kHeadDim = decltype(head_dim)::value;
    const int32_t* offsets = tile_offsets.data();
    emulation::Launch(dim3(static_cast<unsigned>(internal::PrefillMaxWorkItems(p)),
                           static_cast<unsigned>(c.num_kv_heads)),
                      dim3(internal::kPrefillThreads),
                      internal::PrefillConfig<kHeadDim>::kSmemBytes,
                      &internal::PagedPrefillKernel<T, kHeadDim>, p, offsets);
    return absl::OkStatus();
  });
  ASSERT_TRUE(status.ok()) << status;
}

template <typename T>
void CheckDecode(const AttentionCase& c, const std::vector<PagedDecodePlan>& plans, uint32_t seed) {
  HostBatch b = BuildBatch<T>(c, seed);
  const std::vector<float> want = Reference(c, b);
  const std::vector<bool> all(b.num_tokens, true);
  for (const PagedDecodePlan& plan : plans) {
    EmulatedBatch<T> e = MakeEmulatedBatch<T>(c, b);
    ASSERT_NO_FATAL_FAILURE(EmulateDecode(c, b, plan, &e));
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
  ASSERT_NO_FATAL_FAILURE(EmulatePrefill(c, b, first, end, &e));
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

}  // namespace
}  // namespace pagoda::kernels::cuda
