#include "runner/cuda/step_layout.h"

#include <cstring>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/testing/forward_batch_builder.h"

namespace pagoda::runner::cuda {
namespace {

using model::testing::ForwardBatchBuilder;
using model::testing::StepRequest;
using ::testing::ElementsAre;

template <typename T>
std::vector<T> Read(const std::vector<std::byte>& packed, int64_t offset, int64_t count) {
  std::vector<T> out(static_cast<size_t>(count));
  std::memcpy(out.data(), packed.data() + offset, count * sizeof(T));
  return out;
}

TEST(SplitAttentionTest, DecodesOutsideThePrefillRangeGoToTheDecodeKernel) {
  // Tokens per request: 1, 1, 5, 1, 3, 1.
  const std::vector<int32_t> query_start = {0, 1, 2, 7, 8, 11, 12};
  const AttentionSplit split = SplitAttention(query_start);
  EXPECT_THAT(split.decode_requests, ElementsAre(0, 1, 5));
  EXPECT_EQ(split.prefill_begin, 2);
  EXPECT_EQ(split.prefill_end, 5);  // request 3 (one token) rides with the prefill kernel
  EXPECT_FALSE(split.decode_only());
}

TEST(SplitAttentionTest, DecodeOnlyAndPrefillOnlyBatches) {
  const AttentionSplit decode = SplitAttention(std::vector<int32_t>{0, 1, 2, 3});
  EXPECT_TRUE(decode.decode_only());
  EXPECT_THAT(decode.decode_requests, ElementsAre(0, 1, 2));
  const AttentionSplit prefill = SplitAttention(std::vector<int32_t>{0, 4});
  EXPECT_TRUE(prefill.decode_requests.empty());
  EXPECT_EQ(prefill.prefill_begin, 0);
  EXPECT_EQ(prefill.prefill_end, 1);
  const AttentionSplit empty = SplitAttention(std::vector<int32_t>{0});
  EXPECT_TRUE(empty.decode_only());
  EXPECT_TRUE(empty.decode_requests.empty());
}

TEST(LayoutForTest, ArraysAreAlignedDisjointAndInOrder) {
  const StepShape shape{.num_tokens = 5,
                        .num_decode_requests = 3,
                        .num_prefill_requests = 2,
                        .num_logits = 3,
                        .table_width = 7};
  const StepLayout l = LayoutFor(shape);
  const std::vector<std::pair<int64_t, int64_t>> arrays = {{l.token_ids, 5 * 4},
                                                           {l.positions, 5 * 4},
                                                           {l.slot_mapping, 5 * 8},
                                                           {l.logits_indices, 3 * 4},
                                                           {l.decode_rows, 3 * 4},
                                                           {l.decode_context_lens, 3 * 4},
                                                           {l.prefill_query_start, 3 * 4},
                                                           {l.prefill_context_lens, 2 * 4},
                                                           {l.prefill_block_tables, 14 * 4},
                                                           {l.decode_block_tables, 21 * 4}};
  int64_t end = 0;
  for (const auto& [offset, bytes] : arrays) {
    EXPECT_EQ(offset % 16, 0);
    EXPECT_GE(offset, end);
    end = offset + bytes;
  }
  EXPECT_GE(l.size_bytes, end);
  EXPECT_LT(l.size_bytes, end + 16);
  // Monotone in every size, so one buffer sized for the largest shape holds any step.
  StepShape bigger = shape;
  bigger.table_width = 12;
  EXPECT_GT(LayoutFor(bigger).size_bytes, l.size_bytes);
}

TEST(PackStepTest, MixedBatchPacksEachKernelsRequests) {
  // Block size 4. Request 0 decodes its 6th token, request 1 prefills 5 tokens after a 3-token
  // prefix hit, request 2 decodes its 9th token.
  const ForwardBatchBuilder builder(
      {StepRequest{.tokens = {1, 2, 3, 4, 5, 6}, .first = 5, .blocks = {10, 11}},
       StepRequest{.tokens = {7, 8, 9, 10, 11, 12, 13, 14}, .first = 3, .blocks = {20, 21}},
       StepRequest{.tokens = {1, 1, 1, 1, 1, 1, 1, 1, 9}, .first = 8, .blocks = {30, 31, 32}}},
      /*block_size=*/4);
  const model::ForwardBatch batch = builder.batch();
  std::vector<std::byte> packed_bytes;
  const PackedStep p = PackStep(batch, SplitAttention(batch.query_start), nullptr, &packed_bytes);
  // Without padding the packed bytes are the device image, the whole decode table included.
  EXPECT_EQ(p.decode_table_rows, 2);
  EXPECT_EQ(p.decode_table_width, 3);
  ASSERT_EQ(static_cast<int64_t>(packed_bytes.size()), p.layout.decode_block_tables + 2 * 3 * 4);
  EXPECT_LE(static_cast<int64_t>(packed_bytes.size()), p.layout.size_bytes);
  EXPECT_EQ(p.shape.num_tokens, 7);
  EXPECT_EQ(p.shape.num_decode_requests, 2);
  EXPECT_EQ(p.shape.num_prefill_requests, 1);
  EXPECT_EQ(p.shape.table_width, 3);
  EXPECT_EQ(p.num_prefill_tokens, 5);
  EXPECT_EQ(p.max_decode_context_len, 9);
  EXPECT_THAT(Read<int32_t>(packed_bytes, p.layout.token_ids, 7),
              ElementsAre(6, 10, 11, 12, 13, 14, 9));
  EXPECT_THAT(Read<int32_t>(packed_bytes, p.layout.positions, 7), ElementsAre(5, 3, 4, 5, 6, 7, 8));
  EXPECT_THAT(Read<int64_t>(packed_bytes, p.layout.slot_mapping, 7),
              ElementsAre(45, 83, 84, 85, 86, 87, 128));
  EXPECT_THAT(Read<int32_t>(packed_bytes, p.layout.logits_indices, 3), ElementsAre(0, 5, 6));
  EXPECT_THAT(Read<int32_t>(packed_bytes, p.layout.decode_rows, 2), ElementsAre(0, 6));
  EXPECT_THAT(Read<int32_t>(packed_bytes, p.layout.decode_context_lens, 2), ElementsAre(6, 9));
  const std::vector<int32_t> decode_tables =
      Read<int32_t>(packed_bytes, p.layout.decode_block_tables, 6);
  EXPECT_THAT(std::vector<int32_t>(decode_tables.begin(), decode_tables.begin() + 2),
              ElementsAre(10, 11));
  EXPECT_THAT(std::vector<int32_t>(decode_tables.begin() + 3, decode_tables.end()),
              ElementsAre(30, 31, 32));
  EXPECT_THAT(Read<int32_t>(packed_bytes, p.layout.prefill_query_start, 2), ElementsAre(1, 6));
  EXPECT_THAT(Read<int32_t>(packed_bytes, p.layout.prefill_context_lens, 1), ElementsAre(8));
  const std::vector<int32_t> prefill_table =
      Read<int32_t>(packed_bytes, p.layout.prefill_block_tables, 3);
  EXPECT_THAT(std::vector<int32_t>(prefill_table.begin(), prefill_table.begin() + 2),
              ElementsAre(20, 21));
}

TEST(PackStepTest, GraphPaddingGivesTheGraphsLayoutWithInertPadding) {
  const ForwardBatchBuilder builder(
      {StepRequest{.tokens = {1, 2, 3}, .first = 2, .blocks = {4}},
       StepRequest{.tokens = {5, 6, 7, 8, 9}, .first = 4, .blocks = {6, 2}}},
      /*block_size=*/4);
  const model::ForwardBatch batch = builder.batch();
  const StepPadding padding{.num_tokens = 4, .table_width = 5};
  std::vector<std::byte> packed_bytes;
  const PackedStep p = PackStep(batch, SplitAttention(batch.query_start), &padding, &packed_bytes);
  // The layout depends on the padding only, so every step replayed by one graph has it.
  EXPECT_EQ(p.layout, LayoutFor({.num_tokens = 4,
                                 .num_decode_requests = 4,
                                 .num_prefill_requests = 0,
                                 .num_logits = 4,
                                 .table_width = 5}));
  EXPECT_THAT(Read<int32_t>(packed_bytes, p.layout.token_ids, 4), ElementsAre(3, 9, 0, 0));
  EXPECT_THAT(Read<int32_t>(packed_bytes, p.layout.positions, 4), ElementsAre(2, 4, 0, 0));
  EXPECT_THAT(Read<int64_t>(packed_bytes, p.layout.slot_mapping, 4),
              ElementsAre(18, 8, -1, -1));  // padding is never written to the cache
  EXPECT_THAT(Read<int32_t>(packed_bytes, p.layout.logits_indices, 4), ElementsAre(0, 1, 2, 3));
  EXPECT_THAT(Read<int32_t>(packed_bytes, p.layout.decode_rows, 4), ElementsAre(0, 1, 2, 3));
  EXPECT_THAT(Read<int32_t>(packed_bytes, p.layout.decode_context_lens, 4),
              ElementsAre(3, 5, 0, 0));  // context 0: the kernel writes zeros to its own row
  // The decode table: only the real requests' rows, at the batch's width (2); the runner copies
  // them into the graph's rows of 5.
  EXPECT_EQ(p.decode_table_rows, 2);
  EXPECT_EQ(p.decode_table_width, 2);
  ASSERT_EQ(static_cast<int64_t>(packed_bytes.size()), p.layout.decode_block_tables + 2 * 2 * 4);
  EXPECT_THAT(Read<int32_t>(packed_bytes, p.layout.decode_block_tables, 4),
              ElementsAre(4, 1 << 20, 6, 2));
}

}  // namespace
}  // namespace pagoda::runner::cuda
