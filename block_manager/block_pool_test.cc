#include "block_manager/block_pool.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pagoda::block_manager {
namespace {

using ::testing::ElementsAre;

constexpr BlockHash kHashA{.low = 1, .high = 1};
constexpr BlockHash kHashB{.low = 2, .high = 2};

std::vector<BlockId> Allocate(BlockPool& pool, int n) {
  std::vector<BlockId> blocks;
  pool.Allocate(n, &blocks);
  return blocks;
}

TEST(BlockPoolTest, AllocatesInIdOrderAndCountsStates) {
  BlockPool pool(4, 2);
  EXPECT_THAT(Allocate(pool, 3), ElementsAre(BlockId(0), BlockId(1), BlockId(2)));
  EXPECT_EQ(pool.num_used_blocks(), 3);
  EXPECT_EQ(pool.num_free_blocks(), 1);
  EXPECT_EQ(pool.num_available_blocks(), 1);
  EXPECT_EQ(pool.state(BlockId(0)), BlockState::kUsed);
  EXPECT_EQ(pool.state(BlockId(3)), BlockState::kFree);
  EXPECT_EQ(pool.ref_count(BlockId(1)), 1);
}

TEST(BlockPoolTest, ReleasedCachedBlocksStayFindableUntilEvicted) {
  BlockPool pool(2, 2);
  const std::vector<TokenId> tokens = {7, 8};
  const std::vector<BlockId> blocks = Allocate(pool, 1);
  const CacheEntryId entry = pool.Register(blocks[0], kHashA, std::nullopt, tokens);
  pool.Release(blocks);
  EXPECT_EQ(pool.state(blocks[0]), BlockState::kCached);
  EXPECT_EQ(pool.num_cached_evictable_blocks(), 1);
  EXPECT_EQ(pool.num_available_blocks(), 2);
  const auto found = pool.FindCached(kHashA, std::nullopt, tokens);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->block, blocks[0]);
  EXPECT_EQ(found->entry, entry);

  // Uncached block 1 is handed out first; the cached block goes only when nothing else is left.
  EXPECT_THAT(Allocate(pool, 1), ElementsAre(BlockId(1)));
  EXPECT_EQ(pool.num_evictions(), 0);
  EXPECT_THAT(Allocate(pool, 1), ElementsAre(BlockId(0)));
  EXPECT_EQ(pool.num_evictions(), 1);
  EXPECT_FALSE(pool.FindCached(kHashA, std::nullopt, tokens).has_value());
  EXPECT_EQ(pool.num_indexed_hashes(), 0);
}

TEST(BlockPoolTest, TouchRevivesACachedBlockFromTheMiddleOfTheFreeList) {
  BlockPool pool(3, 1);
  const std::vector<BlockId> blocks = Allocate(pool, 3);
  pool.Register(blocks[1], kHashA, std::nullopt, std::vector<TokenId>{5});
  pool.Release(blocks);
  EXPECT_THAT(pool.FreeListForTesting(), ElementsAre(BlockId(2), BlockId(0), BlockId(1)));
  pool.Touch(std::vector<BlockId>{BlockId(1)});
  EXPECT_EQ(pool.state(BlockId(1)), BlockState::kUsed);
  EXPECT_THAT(pool.FreeListForTesting(), ElementsAre(BlockId(2), BlockId(0)));
  pool.Touch(std::vector<BlockId>{BlockId(1)});
  EXPECT_EQ(pool.ref_count(BlockId(1)), 2);
}

TEST(BlockPoolTest, ReleaseOrderIsEvictionOrderForCachedBlocks) {
  BlockPool pool(4, 1);
  const std::vector<BlockId> blocks = Allocate(pool, 4);
  std::optional<CacheEntryId> parent;
  for (int i = 0; i < 4; ++i) {
    parent = pool.Register(blocks[i], BlockHash{.low = static_cast<uint64_t>(i) + 10}, parent,
                           std::vector<TokenId>{i});
  }
  pool.Release(std::vector<BlockId>{BlockId(3), BlockId(2), BlockId(1), BlockId(0)});
  EXPECT_THAT(pool.FreeListForTesting(),
              ElementsAre(BlockId(3), BlockId(2), BlockId(1), BlockId(0)));
}

TEST(BlockPoolTest, HitsAreConfirmedByTokensAndParent) {
  BlockPool pool(4, 2);
  const std::vector<BlockId> blocks = Allocate(pool, 2);
  const CacheEntryId first = pool.Register(blocks[0], kHashA, std::nullopt, std::vector{1, 2});
  pool.Register(blocks[1], kHashB, first, std::vector{3, 4});
  EXPECT_TRUE(pool.FindCached(kHashB, first, std::vector{3, 4}).has_value());
  // Same hash, other tokens: a collision, which must miss.
  EXPECT_FALSE(pool.FindCached(kHashB, first, std::vector{3, 5}).has_value());
  // Same hash and tokens after another parent: must miss.
  EXPECT_FALSE(pool.FindCached(kHashB, std::nullopt, std::vector{3, 4}).has_value());
  EXPECT_FALSE(pool.FindCached(kHashB, CacheEntryId(999), std::vector{3, 4}).has_value());
}

TEST(BlockPoolTest, DuplicateContentKeepsTheFirstEntry) {
  BlockPool pool(2, 2);
  const std::vector<BlockId> blocks = Allocate(pool, 2);
  const CacheEntryId a = pool.Register(blocks[0], kHashA, std::nullopt, std::vector{1, 2});
  const CacheEntryId b = pool.Register(blocks[1], kHashA, std::nullopt, std::vector{1, 2});
  EXPECT_EQ(a, b);
  EXPECT_TRUE(pool.IsCached(blocks[0]));
  EXPECT_FALSE(pool.IsCached(blocks[1]));
  // The uncached duplicate goes to the front of the free list: it is worth nothing.
  pool.Release(blocks);
  EXPECT_THAT(pool.FreeListForTesting(), ElementsAre(BlockId(1), BlockId(0)));
}

TEST(BlockPoolTest, CollidingContentReplacesTheIndexedBlock) {
  BlockPool pool(2, 2);
  const std::vector<BlockId> blocks = Allocate(pool, 2);
  pool.Register(blocks[0], kHashA, std::nullopt, std::vector{1, 2});
  pool.Release(std::vector<BlockId>{blocks[0]});
  EXPECT_EQ(pool.num_cached_evictable_blocks(), 1);
  const CacheEntryId b = pool.Register(blocks[1], kHashA, std::nullopt, std::vector{9, 9});
  EXPECT_FALSE(pool.IsCached(blocks[0]));
  EXPECT_EQ(pool.num_cached_evictable_blocks(), 0);
  const auto found = pool.FindCached(kHashA, std::nullopt, std::vector{9, 9});
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->entry, b);
  EXPECT_FALSE(pool.FindCached(kHashA, std::nullopt, std::vector{1, 2}).has_value());
}

TEST(BlockPoolTest, ResetPrefixCacheOnlyWhenNothingIsUsed) {
  BlockPool pool(2, 1);
  const std::vector<BlockId> blocks = Allocate(pool, 1);
  pool.Register(blocks[0], kHashA, std::nullopt, std::vector{1});
  EXPECT_FALSE(pool.ResetPrefixCache());
  pool.Release(blocks);
  EXPECT_TRUE(pool.ResetPrefixCache());
  EXPECT_EQ(pool.num_cached_evictable_blocks(), 0);
  EXPECT_EQ(pool.num_free_blocks(), 2);
  EXPECT_FALSE(pool.FindCached(kHashA, std::nullopt, std::vector{1}).has_value());
}

TEST(BlockPoolDeathTest, CatchesBookkeepingBugs) {
  BlockPool pool(2, 1);
  EXPECT_DEATH(pool.Allocate(3, nullptr), "checked by the caller");
  EXPECT_DEATH(pool.Release(std::vector<BlockId>{BlockId(0)}), "double release");
  EXPECT_DEATH(pool.Touch(std::vector<BlockId>{BlockId(1)}), "touching free block");
  EXPECT_DEATH(pool.ref_count(BlockId(2)), "no block 2");
}

TEST(BlockPoolTest, ListCachedBlocksPutsACachedParentFirstWhateverTheRegistrationOrder) {
  // A child registered while its parent's content was not cached (a request held its own copy
  // of the parent after the cached one was evicted), then the parent registered again, then a
  // grandchild and an unrelated root.
  BlockPool pool(5, 2);
  const std::vector<BlockId> b = Allocate(pool, 5);
  constexpr BlockHash kHashC{.low = 3, .high = 3};
  constexpr BlockHash kHashD{.low = 4, .high = 4};
  constexpr BlockHash kHashE{.low = 5, .high = 5};
  const CacheEntryId child = pool.Register(b[1], kHashB, CacheEntryId(99), {3, 4}, &kHashA);
  pool.Register(b[2], kHashC, child, {5, 6}, &kHashB);
  pool.Register(b[3], kHashD, std::nullopt, {9, 9});
  pool.Register(b[0], kHashA, std::nullopt, {1, 2}, nullptr, "salt");
  pool.Register(b[4], kHashE, std::nullopt, {8, 8});
  std::vector<uint64_t> order;
  for (const CachedBlockInfo& info : pool.ListCachedBlocks()) order.push_back(info.block_hash);
  EXPECT_THAT(order, ElementsAre(kHashA.low, kHashB.low, kHashC.low, kHashD.low, kHashE.low));
  EXPECT_EQ(pool.ListCachedBlocks()[0].extra_key, "salt");
  EXPECT_EQ(pool.ListCachedBlocks()[1].parent_block_hash, kHashA.low);
}

}  // namespace
}  // namespace pagoda::block_manager
