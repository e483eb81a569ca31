#include "kv_events/event_encoding.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kv_events/testing/msgpack_tree.h"

namespace pagoda::kv_events {
namespace {

using block_manager::KvCacheEvent;
using testing::DecodeMsgpack;
using ::testing::ElementsAre;
using testing::MsgNode;

std::vector<uint64_t> Uints(const MsgNode& array) {
  std::vector<uint64_t> values;
  for (const MsgNode& item : array.items) {
    EXPECT_EQ(item.type, MsgNode::Type::kUint);
    values.push_back(item.uint_value);
  }
  return values;
}

TEST(EventEncodingTest, BatchIsVllmsArrayOfMapsKeyedByType) {
  KvCacheEvent stored{.kind = KvCacheEvent::Kind::kBlockStored,
                      .block_hashes = {0xfedcba9876543210ull, 7},
                      .parent_block_hash = std::nullopt,
                      .token_ids = {1, 2, 3, 4, 5, 6, 7, 8},
                      .extra_keys = {std::string("tenant-a"), std::nullopt}};
  KvCacheEvent chained{.kind = KvCacheEvent::Kind::kBlockStored,
                       .block_hashes = {9},
                       .parent_block_hash = 7,
                       .token_ids = {9, 10, 11, 12},
                       .extra_keys = {std::nullopt}};
  KvCacheEvent removed{.kind = KvCacheEvent::Kind::kBlockRemoved, .block_hashes = {7, 9}};
  KvCacheEvent cleared{.kind = KvCacheEvent::Kind::kAllBlocksCleared};
  const std::string payload = EncodeEventBatch(1789095808.25, {stored, chained, removed, cleared},
                                               {.block_size = 4, .medium = "GPU"});

  const std::optional<MsgNode> batch = DecodeMsgpack(payload);
  ASSERT_TRUE(batch.has_value()) << "not one well-formed msgpack value";
  ASSERT_EQ(batch->type, MsgNode::Type::kArray);
  ASSERT_EQ(batch->items.size(), 3u);
  EXPECT_EQ(batch->items[0].type, MsgNode::Type::kDouble);
  EXPECT_DOUBLE_EQ(batch->items[0].double_value, 1789095808.25);
  EXPECT_EQ(batch->items[2].type, MsgNode::Type::kUint);
  EXPECT_EQ(batch->items[2].uint_value, 0u) << "data_parallel_rank";
  const std::vector<MsgNode>& events = batch->items[1].items;
  ASSERT_EQ(events.size(), 4u);

  // Field order as vLLM declares it.
  const MsgNode& s = events[0];
  ASSERT_EQ(s.type, MsgNode::Type::kMap);
  EXPECT_THAT(s.Keys(), ElementsAre("type", "block_hashes", "parent_block_hash", "token_ids",
                                    "block_size", "lora_id", "medium", "lora_name", "extra_keys",
                                    "group_idx", "kv_cache_spec_kind"));
  EXPECT_EQ(s.Find("type")->str, "BlockStored");
  EXPECT_THAT(Uints(*s.Find("block_hashes")), ElementsAre(0xfedcba9876543210ull, 7u));
  EXPECT_EQ(s.Find("parent_block_hash")->type, MsgNode::Type::kNil);
  EXPECT_THAT(Uints(*s.Find("token_ids")), ElementsAre(1, 2, 3, 4, 5, 6, 7, 8));
  EXPECT_EQ(s.Find("block_size")->uint_value, 4u);
  EXPECT_EQ(s.Find("lora_id")->type, MsgNode::Type::kNil);
  EXPECT_EQ(s.Find("medium")->str, "GPU");
  EXPECT_EQ(s.Find("lora_name")->type, MsgNode::Type::kNil);
  const MsgNode& extra = *s.Find("extra_keys");
  ASSERT_EQ(extra.items.size(), 2u);
  ASSERT_EQ(extra.items[0].type, MsgNode::Type::kArray);
  ASSERT_EQ(extra.items[0].items.size(), 1u);
  EXPECT_EQ(extra.items[0].items[0].str, "tenant-a");
  EXPECT_EQ(extra.items[1].type, MsgNode::Type::kNil);
  EXPECT_EQ(s.Find("group_idx")->uint_value, 0u);
  EXPECT_EQ(s.Find("kv_cache_spec_kind")->str, "full_attention");

  EXPECT_EQ(events[1].Find("parent_block_hash")->uint_value, 7u);
  EXPECT_THAT(events[2].Keys(), ElementsAre("type", "block_hashes", "medium", "group_idx"));
  EXPECT_EQ(events[2].Find("type")->str, "BlockRemoved");
  EXPECT_THAT(Uints(*events[2].Find("block_hashes")), ElementsAre(7u, 9u));
  EXPECT_THAT(events[3].Keys(), ElementsAre("type"));
  EXPECT_EQ(events[3].Find("type")->str, "AllBlocksCleared");
}

TEST(EventEncodingTest, TierEventsCarryTheirOwnMedium) {
  // The offload tiers' events name their tier; the pool's take the publisher's medium.
  std::vector<KvCacheEvent> events;
  block_manager::AppendBlockStored(5, std::nullopt, {1, 2}, "", &events, "DISK");
  block_manager::AppendBlockStored(6, 5, {3, 4}, "", &events);  // the pool: a new event
  block_manager::AppendBlockRemoved(5, &events, "CPU");
  block_manager::AppendBlockRemoved(6, &events, "CPU");
  block_manager::AppendBlockRemoved(7, &events);
  ASSERT_EQ(events.size(), 4u);
  const std::optional<MsgNode> batch =
      DecodeMsgpack(EncodeEventBatch(1.0, events, {.block_size = 2, .medium = "GPU"}));
  ASSERT_TRUE(batch.has_value());
  const std::vector<MsgNode>& e = batch->items[1].items;
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[0].Find("medium")->str, "DISK");
  EXPECT_EQ(e[1].Find("medium")->str, "GPU");
  EXPECT_EQ(e[2].Find("medium")->str, "CPU");
  EXPECT_THAT(Uints(*e[2].Find("block_hashes")), ElementsAre(5u, 6u));
  EXPECT_EQ(e[3].Find("medium")->str, "GPU");
}

TEST(EventEncodingTest, EmptyBatchAndNilRank) {
  const std::optional<MsgNode> batch =
      DecodeMsgpack(EncodeEventBatch(0.5, {}, {.data_parallel_rank = std::nullopt}));
  ASSERT_TRUE(batch.has_value());
  ASSERT_EQ(batch->items.size(), 3u);
  EXPECT_TRUE(batch->items[1].items.empty());
  EXPECT_EQ(batch->items[2].type, MsgNode::Type::kNil);
}

TEST(EventEncodingTest, LargeEventsUseWideLengths) {
  // 70,000 tokens and hashes need msgpack's 32-bit array headers.
  KvCacheEvent stored{.kind = KvCacheEvent::Kind::kBlockStored};
  for (int i = 0; i < 70000; ++i) {
    stored.block_hashes.push_back(static_cast<uint64_t>(i) << 40);
    stored.token_ids.push_back(i);
    stored.extra_keys.push_back(std::nullopt);
  }
  const std::optional<MsgNode> batch =
      DecodeMsgpack(EncodeEventBatch(1.0, {stored}, {.block_size = 1}));
  ASSERT_TRUE(batch.has_value());
  const MsgNode& event = batch->items[1].items[0];
  EXPECT_EQ(event.Find("token_ids")->items.size(), 70000u);
  EXPECT_EQ(event.Find("block_hashes")->items.back().uint_value, uint64_t{69999} << 40);
}

}  // namespace
}  // namespace pagoda::kv_events
