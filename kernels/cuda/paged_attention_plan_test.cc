// The host side of the attention kernels, which needs no GPU: the decode planner's split
// decisions, workspace sizes, and argument validation (which runs before any device call).

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "gtest/gtest.h"
#include "kernels/cuda/paged_attention_decode.h"
#include "kernels/cuda/paged_attention_prefill.h"

namespace pagoda::kernels::cuda {
namespace {

// An H100: 132 multiprocessors, 3 decode blocks each (head dim 128).
constexpr int64_t kH100Resident = 132 * 3;

PagedDecodeShape Llama3(int32_t num_requests, int32_t max_context_len) {
  return {.num_requests = num_requests,
          .num_heads = 32,
          .num_kv_heads = 8,
          .head_dim = 128,
          .max_context_len = max_context_len};
}

void ExpectCovers(const PagedDecodePlan& plan, int32_t context_len) {
  EXPECT_EQ(plan.partition_size % kDecodePartitionAlignment, 0);
  EXPECT_GE(plan.max_num_partitions, 1);
  EXPECT_LE(plan.max_num_partitions, kMaxDecodePartitions);
  EXPECT_GE(static_cast<int64_t>(plan.partition_size) * plan.max_num_partitions, context_len);
}

TEST(PagedDecodePlanTest, LargeBatchesDoNotSplit) {
  const PagedDecodePlan plan = PlanPagedDecodeFor(Llama3(256, 4096), kH100Resident);
  EXPECT_EQ(plan.max_num_partitions, 1);
  ExpectCovers(plan, 4096);
  EXPECT_EQ(PagedDecodeWorkspaceBytes(plan, 256, 32, 128), 0);
}

TEST(PagedDecodePlanTest, SmallBatchesSplitLongContextsToFillTheGpu) {
  for (const auto& [requests, context] :
       std::vector<std::pair<int32_t, int32_t>>{{1, 32768}, {16, 4096}, {64, 2048}}) {
    const PagedDecodePlan plan = PlanPagedDecodeFor(Llama3(requests, context), kH100Resident);
    ExpectCovers(plan, context);
    EXPECT_GT(plan.max_num_partitions, 1) << requests << "x" << context;
    EXPECT_GE(plan.partition_size, 256) << requests << "x" << context;
    const int64_t blocks = static_cast<int64_t>(requests) * 8 * plan.max_num_partitions;
    EXPECT_GE(blocks, kH100Resident) << requests << "x" << context;
    EXPECT_EQ(PagedDecodeWorkspaceBytes(plan, requests, 32, 128),
              int64_t{requests} * 32 * plan.max_num_partitions * 129 * 4);
  }
}

TEST(PagedDecodePlanTest, ShortContextsDoNotSplit) {
  const PagedDecodePlan plan = PlanPagedDecodeFor(Llama3(1, 200), kH100Resident);
  EXPECT_EQ(plan.max_num_partitions, 1);
  ExpectCovers(plan, 200);
}

TEST(PagedDecodePlanTest, DegenerateShapesGiveAValidPlan) {
  ExpectCovers(PlanPagedDecodeFor(Llama3(0, 0), kH100Resident), 1);
  ExpectCovers(PlanPagedDecodeFor(Llama3(1, 1 << 24), 1), 1 << 24);
  ExpectCovers(PlanPagedDecodeFor({.num_requests = 1,
                                   .num_heads = 3,
                                   .num_kv_heads = 2,
                                   .head_dim = 64,
                                   .max_context_len = 5000},
                                  kH100Resident),
               5000);
}

TEST(PagedAttentionValidationTest, SupportedHeadDims) {
  for (const int d : {32, 64, 80, 96, 128, 256}) EXPECT_TRUE(IsSupportedHeadDim(d));
  for (const int d : {0, 16, 48, 112, 100, 512}) EXPECT_FALSE(IsSupportedHeadDim(d));
}

// Arguments that pass validation, with fake (never dereferenced) device pointers.
PagedDecodeParams<__nv_bfloat16> ValidDecode() {
  alignas(16) static __nv_bfloat16 fake[64];
  static int32_t ints[4];
  return {.query = fake,
          .query_token_stride = 4 * 64,
          .output = fake,
          .output_token_stride = 4 * 64,
          .num_requests = 1,
          .num_heads = 4,
          .cache = {fake, fake, 10, 2, 16, 64},
          .query_start = ints,
          .context_lens = ints,
          .block_tables = ints,
          .max_blocks_per_request = 4,
          .scale = 0.125f,
          .plan = {.partition_size = 64, .max_num_partitions = 1}};
}

absl::StatusCode DecodeCode(const PagedDecodeParams<__nv_bfloat16>& p) {
  return PagedAttentionDecode(p, nullptr).code();
}

TEST(PagedAttentionValidationTest, DecodeRejectsArgumentsOutsideTheContract) {
  auto p = ValidDecode();
  p.cache.head_dim = 100;
  EXPECT_EQ(DecodeCode(p), absl::StatusCode::kInvalidArgument);
  p = ValidDecode();
  p.num_heads = 5;  // not a multiple of num_kv_heads
  EXPECT_EQ(DecodeCode(p), absl::StatusCode::kInvalidArgument);
  p = ValidDecode();
  p.plan.partition_size = 40;  // not a multiple of 16
  EXPECT_EQ(DecodeCode(p), absl::StatusCode::kInvalidArgument);
  p = ValidDecode();
  p.plan.max_num_partitions = 4;  // a split needs a workspace
  EXPECT_EQ(DecodeCode(p), absl::StatusCode::kInvalidArgument);
  p = ValidDecode();
  p.query_token_stride = 100;  // shorter than a token's heads
  EXPECT_EQ(DecodeCode(p), absl::StatusCode::kInvalidArgument);
  p = ValidDecode();
  p.cache.key = reinterpret_cast<__nv_bfloat16*>(reinterpret_cast<uintptr_t>(p.cache.key) + 2);
  EXPECT_EQ(DecodeCode(p), absl::StatusCode::kInvalidArgument);
  p = ValidDecode();
  p.num_requests = 0;  // nothing to do: no launch, no device needed
  EXPECT_TRUE(PagedAttentionDecode(p, nullptr).ok());
}

// The built-in model's attention (models/pagoda-kjv: 8 query heads, 4 KV heads, head dim 32)
// passes validation; without requests no device is needed.
TEST(PagedAttentionValidationTest, HeadDim32PassesValidation) {
  auto p = ValidDecode();
  p.num_heads = 8;
  p.cache.num_kv_heads = 4;
  p.cache.head_dim = 32;
  p.query_token_stride = 8 * 32;
  p.output_token_stride = 8 * 32;
  p.num_requests = 0;
  EXPECT_TRUE(PagedAttentionDecode(p, nullptr).ok());
  p.query_token_stride = 8 * 32 - 2;  // the stride check uses head dim 32
  EXPECT_EQ(DecodeCode(p), absl::StatusCode::kInvalidArgument);
  const PagedDecodePlan split{.partition_size = 256, .max_num_partitions = 4};
  EXPECT_EQ(PagedDecodeWorkspaceBytes(split, 3, 8, 32), int64_t{3} * 8 * 4 * 33 * 4);
}

TEST(PagedAttentionValidationTest, PrefillRejectsArgumentsOutsideTheContract) {
  alignas(16) static __half fake[64];
  static int32_t ints[4];
  PagedPrefillParams<__half> p{.query = fake,
                               .query_token_stride = 2 * 128,
                               .output = fake,
                               .output_token_stride = 2 * 128,
                               .num_requests = 1,
                               .num_query_tokens = 3,
                               .num_heads = 2,
                               .cache = {fake, fake, 10, 1, 16, 128},
                               .query_start = ints,
                               .context_lens = ints,
                               .block_tables = ints,
                               .max_blocks_per_request = 4,
                               .scale = 0.1f};
  EXPECT_EQ(PagedAttentionPrefill(p, nullptr).code(), absl::StatusCode::kInvalidArgument)
      << "no workspace";
  p.workspace = ints;
  p.workspace_bytes = PagedPrefillWorkspaceBytes(1);
  p.cache.head_dim = 48;
  EXPECT_EQ(PagedAttentionPrefill(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
  p.cache.head_dim = 128;
  p.num_requests = 0;
  EXPECT_TRUE(PagedAttentionPrefill(p, nullptr).ok());
}

}  // namespace
}  // namespace pagoda::kernels::cuda
