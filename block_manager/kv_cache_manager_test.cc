#include "block_manager/kv_cache_manager.h"

#include <algorithm>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pagoda::block_manager {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::IsEmpty;

// A request as the scheduler holds it: tokens, their block hashes, computed count.
struct TestSequence {
  RequestId id;
  std::vector<TokenId> tokens;
  std::string salt;
  std::vector<BlockHash> hashes;
  int num_computed = 0;

  SequenceView View(const BlockHasher& hasher) {
    hasher.Extend(tokens, salt, &hashes);
    return SequenceView{.id = id,
                        .tokens = tokens,
                        .block_hashes = hashes,
                        .extra_key = salt,
                        .num_computed_tokens = num_computed};
  }
};

std::vector<TokenId> Iota(int n, TokenId first = 100) {
  std::vector<TokenId> tokens(n);
  std::iota(tokens.begin(), tokens.end(), first);
  return tokens;
}

class KvCacheManagerTest : public ::testing::Test {
 protected:
  void Init(int num_blocks, int block_size, double watermark_ratio = 0.0,
            bool enable_prefix_caching = true, common::AttentionWindow window = {}) {
    auto manager = KvCacheManager::Create({.num_blocks = num_blocks,
                                           .block_size = block_size,
                                           .enable_prefix_caching = enable_prefix_caching,
                                           .watermark_ratio = watermark_ratio,
                                           .window = window});
    ASSERT_TRUE(manager.ok()) << manager.status();
    manager_ = std::move(manager).value();
    hasher_ = std::make_unique<BlockHasher>(block_size);
  }

  // Admits `seq` for `chunk` tokens after its prefix hit, as the scheduler does.
  bool Admit(TestSequence& seq, int chunk, int reserved_blocks = 0) {
    const PrefixHit hit = manager_->GetComputedBlocks(seq.View(*hasher_));
    const int n = std::min<int>(chunk, seq.tokens.size() - hit.num_tokens);
    if (!manager_->AllocateSlots(seq.View(*hasher_), hit,
                                 {.num_new_tokens = n,
                                  .admission = Admission::kNewRequest,
                                  .num_reserved_blocks = reserved_blocks})) {
      return false;
    }
    seq.num_computed = hit.num_tokens + n;
    return true;
  }

  // Admits `seq` and computes all its tokens in chunks of `chunk`, checking after each that it
  // holds at most `max_live_blocks` live blocks.
  void ComputeInChunks(TestSequence& seq, int chunk, int max_live_blocks = 1 << 30) {
    ASSERT_TRUE(Admit(seq, chunk));
    while (seq.num_computed < static_cast<int>(seq.tokens.size())) {
      const int n = std::min<int>(chunk, seq.tokens.size() - seq.num_computed);
      ASSERT_TRUE(manager_->AllocateSlots(seq.View(*hasher_), {}, {.num_new_tokens = n}));
      seq.num_computed += n;
      EXPECT_LE(manager_->NumLiveBlocks(seq.id), max_live_blocks);
    }
  }

  // One decode step: sample a token, then make room for it.
  bool Decode(TestSequence& seq, TokenId token) {
    seq.tokens.push_back(token);
    if (!manager_->AllocateSlots(seq.View(*hasher_), {}, {.num_new_tokens = 1})) return false;
    seq.num_computed += 1;
    return true;
  }

  std::unique_ptr<KvCacheManager> manager_;
  std::unique_ptr<BlockHasher> hasher_;
};

TEST_F(KvCacheManagerTest, CreateRejectsBadOptions) {
  EXPECT_EQ(KvCacheManager::Create({.num_blocks = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KvCacheManager::Create({.num_blocks = 4, .block_size = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KvCacheManager::Create({.num_blocks = 4, .watermark_ratio = 1.0}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(KvCacheManagerTest, TablesGrowOneBlockPerBlockSizeTokens) {
  Init(8, 4);
  TestSequence seq{.id = RequestId(1), .tokens = Iota(6)};
  ASSERT_TRUE(Admit(seq, 6));
  EXPECT_EQ(manager_->GetBlockTable(seq.id).size(), 2u);
  ASSERT_TRUE(Decode(seq, 1));  // 7 tokens
  ASSERT_TRUE(Decode(seq, 2));  // 8 tokens
  EXPECT_EQ(manager_->GetBlockTable(seq.id).size(), 2u);
  ASSERT_TRUE(Decode(seq, 3));  // 9 tokens: a third block
  EXPECT_EQ(manager_->GetBlockTable(seq.id).size(), 3u);
  EXPECT_EQ(manager_->Stats().num_used_blocks, 3);
  EXPECT_DOUBLE_EQ(manager_->Stats().usage_ratio, 3.0 / 8.0);
  manager_->Free(seq.id);
  EXPECT_EQ(manager_->Stats().num_used_blocks, 0);
  EXPECT_THAT(manager_->GetBlockTable(seq.id), IsEmpty());
}

TEST_F(KvCacheManagerTest, ChunkedPrefillAppendsToTheTable) {
  Init(8, 4);
  TestSequence seq{.id = RequestId(1), .tokens = Iota(10)};
  ASSERT_TRUE(Admit(seq, 3));
  const std::vector<BlockId> first(manager_->GetBlockTable(seq.id).begin(),
                                   manager_->GetBlockTable(seq.id).end());
  ASSERT_EQ(first.size(), 1u);
  ASSERT_TRUE(manager_->AllocateSlots(seq.View(*hasher_), {}, {.num_new_tokens = 7}));
  EXPECT_EQ(manager_->GetBlockTable(seq.id).size(), 3u);
  EXPECT_EQ(manager_->GetBlockTable(seq.id)[0], first[0]);
}

TEST_F(KvCacheManagerTest, FinishedPromptIsReusedUpToTheLastToken) {
  Init(16, 4);
  TestSequence a{.id = RequestId(1), .tokens = Iota(10)};
  ASSERT_TRUE(Admit(a, 10));
  const std::vector<BlockId> a_table(manager_->GetBlockTable(a.id).begin(),
                                     manager_->GetBlockTable(a.id).end());
  manager_->Free(a.id);
  EXPECT_EQ(manager_->Stats().num_cached_blocks, 2);  // two full blocks; the partial is free

  TestSequence b{.id = RequestId(2), .tokens = Iota(10)};
  const PrefixHit hit = manager_->GetComputedBlocks(b.View(*hasher_));
  EXPECT_EQ(hit.num_tokens, 8);
  EXPECT_THAT(hit.blocks, ElementsAre(a_table[0], a_table[1]));

  // An 8-token prompt is two full blocks, but its last token must be computed: one block hits.
  TestSequence c{.id = RequestId(3), .tokens = Iota(8)};
  EXPECT_EQ(manager_->GetComputedBlocks(c.View(*hasher_)).num_tokens, 4);

  // Lookups count when their request is admitted: so far only a's.
  EXPECT_EQ(manager_->Stats().prefix_queried_tokens, 10);
  ASSERT_TRUE(Admit(b, 10));
  ASSERT_TRUE(Admit(c, 8));
  const KvCacheStats stats = manager_->Stats();
  EXPECT_EQ(stats.prefix_queried_tokens, 10 + 10 + 8);
  EXPECT_EQ(stats.prefix_hit_tokens, 8 + 4);
}

// A request at the head of the queue is looked up every step until it fits: its lookup counts
// once, when it is admitted (else the hit rate would weigh it by its wait).
TEST_F(KvCacheManagerTest, ALookupCountsOnceWhenItsRequestIsAdmitted) {
  Init(4, 4);
  TestSequence a{.id = RequestId(1), .tokens = Iota(12)};
  ASSERT_TRUE(Admit(a, 12));                                   // 3 of the 4 blocks
  TestSequence b{.id = RequestId(2), .tokens = Iota(8, 500)};  // shares nothing with a
  for (int step = 0; step < 3; ++step) ASSERT_FALSE(Admit(b, 8)) << step;
  EXPECT_EQ(manager_->Stats().prefix_queried_tokens, 12);
  manager_->Free(a.id);
  ASSERT_TRUE(Admit(b, 8));
  EXPECT_EQ(manager_->Stats().prefix_queried_tokens, 12 + 8);
  EXPECT_EQ(manager_->Stats().prefix_hit_tokens, 0);
}

TEST_F(KvCacheManagerTest, APreemptionInTheAllocatingStepUncachesTheUncomputedBlocks) {
  Init(16, 4);
  // Computed 4 tokens earlier; this step allocates for 8 more, registering blocks 1 and 2,
  // then the request is preempted before the step runs: only block 0 has K/V.
  TestSequence a{.id = RequestId(1), .tokens = Iota(14)};
  ASSERT_TRUE(Admit(a, 4));
  ASSERT_TRUE(manager_->AllocateSlots(a.View(*hasher_), {}, {.num_new_tokens = 8}));
  EXPECT_EQ(manager_->GetBlockTable(a.id).size(), 3u);
  manager_->FreeUncomputed(a.id, 4);
  EXPECT_EQ(manager_->Stats().num_cached_blocks, 1);
  TestSequence b{.id = RequestId(2), .tokens = Iota(14)};
  EXPECT_EQ(manager_->GetComputedBlocks(b.View(*hasher_)).num_tokens, 4);
  // The content registered before the step stays: a partial block computed earlier is not.
  TestSequence c{.id = RequestId(3), .tokens = Iota(14, 500)};
  ASSERT_TRUE(Admit(c, 6));
  ASSERT_TRUE(manager_->AllocateSlots(c.View(*hasher_), {}, {.num_new_tokens = 4}));
  manager_->FreeUncomputed(c.id, 6);  // block 1 (tokens 4..7) was filled in this step
  TestSequence d{.id = RequestId(4), .tokens = Iota(14, 500)};
  EXPECT_EQ(manager_->GetComputedBlocks(d.View(*hasher_)).num_tokens, 4);
}

TEST_F(KvCacheManagerTest, EvictedContentIsCapturedForTheTiersBelow) {
  Init(4, 4);
  manager_->EnableEvictionCapture(true);
  TestSequence a{.id = RequestId(1), .tokens = Iota(9), .salt = "s"};
  ASSERT_TRUE(Admit(a, 9));
  const BlockId first = manager_->GetBlockTable(a.id)[0];
  manager_->Free(a.id);
  EXPECT_TRUE(manager_->TakeEvictedContent().empty());
  TestSequence b{.id = RequestId(2), .tokens = Iota(16, 900)};
  ASSERT_TRUE(Admit(b, 16));  // takes all four blocks: both of a's cached ones are evicted
  std::vector<EvictedContent> evicted = manager_->TakeEvictedContent();
  ASSERT_EQ(evicted.size(), 2u);
  std::sort(evicted.begin(), evicted.end(), [](const auto& x, const auto& y) {
    return x.parent_hash.has_value() < y.parent_hash.has_value();
  });
  EXPECT_EQ(evicted[0].block, first);
  EXPECT_EQ(evicted[0].hash, a.hashes[0]);
  EXPECT_FALSE(evicted[0].parent_hash.has_value());
  EXPECT_EQ(evicted[0].extra_key, "s");
  EXPECT_THAT(evicted[0].tokens, ElementsAre(100, 101, 102, 103));
  EXPECT_EQ(evicted[1].hash, a.hashes[1]);
  EXPECT_EQ(evicted[1].parent_hash, a.hashes[0]);
  EXPECT_EQ(evicted[1].extra_key, "");
  EXPECT_TRUE(manager_->TakeEvictedContent().empty());
}

TEST_F(KvCacheManagerTest, DeferredRegistrationWaitsForTheLoad) {
  Init(16, 4);
  TestSequence a{.id = RequestId(1), .tokens = Iota(13)};
  ASSERT_TRUE(manager_->AllocateSlots(
      a.View(*hasher_), {},
      {.num_new_tokens = 8, .admission = Admission::kNewRequest, .defer_registration = true}));
  TestSequence b{.id = RequestId(2), .tokens = Iota(13)};
  EXPECT_EQ(manager_->GetComputedBlocks(b.View(*hasher_)).num_tokens, 0);
  manager_->CommitLoadedBlocks(a.View(*hasher_), 8);
  EXPECT_EQ(manager_->GetComputedBlocks(b.View(*hasher_)).num_tokens, 8);
}

TEST_F(KvCacheManagerTest, RunningRequestsShareCachedBlocks) {
  Init(16, 4);
  TestSequence a{.id = RequestId(1), .tokens = Iota(9)};
  ASSERT_TRUE(Admit(a, 9));
  TestSequence b{.id = RequestId(2), .tokens = Iota(9)};
  b.tokens.back() = 7;  // same first two blocks, different ninth token
  ASSERT_TRUE(Admit(b, 9));
  const auto ta = manager_->GetBlockTable(a.id);
  const auto tb = manager_->GetBlockTable(b.id);
  ASSERT_EQ(tb.size(), 3u);
  EXPECT_EQ(ta[0], tb[0]);
  EXPECT_EQ(ta[1], tb[1]);
  EXPECT_NE(ta[2], tb[2]);
  EXPECT_EQ(manager_->pool().ref_count(ta[0]), 2);
  EXPECT_EQ(manager_->Stats().num_used_blocks, 4);
  manager_->Free(a.id);
  EXPECT_EQ(manager_->pool().ref_count(tb[0]), 1);
  manager_->Free(b.id);
  EXPECT_EQ(manager_->Stats().num_used_blocks, 0);
}

TEST_F(KvCacheManagerTest, CacheSaltIsolatesTenants) {
  Init(16, 4);
  TestSequence a{.id = RequestId(1), .tokens = Iota(9), .salt = "tenant-a"};
  ASSERT_TRUE(Admit(a, 9));
  TestSequence b{.id = RequestId(2), .tokens = Iota(9), .salt = "tenant-b"};
  EXPECT_EQ(manager_->GetComputedBlocks(b.View(*hasher_)).num_tokens, 0);
  TestSequence c{.id = RequestId(3), .tokens = Iota(9), .salt = "tenant-a"};
  EXPECT_EQ(manager_->GetComputedBlocks(c.View(*hasher_)).num_tokens, 8);
}

TEST_F(KvCacheManagerTest, FailedAllocationChangesNothing) {
  Init(4, 4);
  TestSequence a{.id = RequestId(1), .tokens = Iota(12)};
  ASSERT_TRUE(Admit(a, 12));
  TestSequence b{.id = RequestId(2), .tokens = Iota(8, 500)};
  const KvCacheStats before = manager_->Stats();
  const PrefixHit hit = manager_->GetComputedBlocks(b.View(*hasher_));
  EXPECT_FALSE(manager_->AllocateSlots(b.View(*hasher_), hit,
                                       {.num_new_tokens = 8, .admission = Admission::kNewRequest}));
  EXPECT_THAT(manager_->GetBlockTable(b.id), IsEmpty());
  EXPECT_EQ(manager_->num_requests(), 1);
  EXPECT_EQ(manager_->Stats().num_free_blocks, before.num_free_blocks);
  // a can still grow into its last free block, but not beyond.
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Decode(a, i));
  const std::vector<BlockId> table(manager_->GetBlockTable(a.id).begin(),
                                   manager_->GetBlockTable(a.id).end());
  EXPECT_FALSE(Decode(a, 9));
  EXPECT_THAT(manager_->GetBlockTable(a.id), ElementsAreArray(table));
}

TEST_F(KvCacheManagerTest, AdmissionNeedsTheWholeSequenceAndTheWatermark) {
  Init(10, 4, /*watermark_ratio=*/0.2);  // 2 blocks of headroom
  TestSequence a{.id = RequestId(1), .tokens = Iota(8, 900)};
  ASSERT_TRUE(Admit(a, 8));  // 2 blocks, 8 left
  // 20 tokens = 5 blocks; a first chunk of 4 tokens fits, the whole sequence + watermark (7)
  // fits too.
  TestSequence b{.id = RequestId(2), .tokens = Iota(20)};
  ASSERT_TRUE(Admit(b, 4));
  EXPECT_EQ(manager_->GetBlockTable(b.id).size(), 1u);  // only the chunk is allocated
  // 7 left. 24 tokens = 6 blocks + 2 watermark > 7, although its first chunk would fit.
  TestSequence c{.id = RequestId(3), .tokens = Iota(24, 300)};
  EXPECT_FALSE(Admit(c, 4));
  // Running requests may use the watermark.
  ASSERT_TRUE(manager_->AllocateSlots(b.View(*hasher_), {}, {.num_new_tokens = 16}));
  EXPECT_EQ(manager_->Stats().num_free_blocks, 3);
}

TEST_F(KvCacheManagerTest, AnAdmissionLeavesTheReservedBlocksFree) {
  Init(10, 4, /*watermark_ratio=*/0.1);  // 1 block of headroom
  TestSequence a{.id = RequestId(1), .tokens = Iota(8, 900)};
  // 2 blocks + 1 watermark + 7 reserved = 10: fits exactly; 8 reserved would not.
  EXPECT_FALSE(Admit(a, 8, /*reserved_blocks=*/8));
  EXPECT_EQ(manager_->Stats().num_free_blocks, 10);  // a failed admission changes nothing
  ASSERT_TRUE(Admit(a, 8, /*reserved_blocks=*/7));
  // 8 blocks are free now: 1 for b, 1 watermark and at most 6 reserved.
  TestSequence b{.id = RequestId(2), .tokens = Iota(4, 300)};
  EXPECT_FALSE(Admit(b, 4, /*reserved_blocks=*/7));
  ASSERT_TRUE(Admit(b, 4, /*reserved_blocks=*/6));
  EXPECT_EQ(manager_->Stats().num_free_blocks, 7);
}

TEST_F(KvCacheManagerTest, RevivedHitBlocksCountAgainstTheFreeBlocks) {
  Init(4, 2);
  TestSequence a{.id = RequestId(1), .tokens = {1, 2, 3, 4}};
  ASSERT_TRUE(Admit(a, 4));
  manager_->Free(a.id);  // both blocks cached, evictable
  TestSequence x{.id = RequestId(2), .tokens = {9, 9, 9, 9}};
  ASSERT_TRUE(Admit(x, 4));  // takes the two uncached blocks
  EXPECT_EQ(manager_->Stats().num_cached_blocks, 2);
  EXPECT_EQ(manager_->Stats().num_free_blocks, 0);
  // b hits both cached blocks and needs one more. Reviving the hits takes them off the free
  // list, so nothing would be left for the new block: admission must fail, changing nothing.
  TestSequence b{.id = RequestId(3), .tokens = {1, 2, 3, 4, 5, 6}};
  const PrefixHit hit = manager_->GetComputedBlocks(b.View(*hasher_));
  ASSERT_EQ(hit.num_tokens, 4);
  EXPECT_FALSE(manager_->AllocateSlots(b.View(*hasher_), hit,
                                       {.num_new_tokens = 2, .admission = Admission::kNewRequest}));
  EXPECT_EQ(manager_->Stats().num_cached_blocks, 2);
  EXPECT_EQ(manager_->pool().ref_count(hit.blocks[0]), 0);
  manager_->Free(x.id);
  ASSERT_TRUE(Admit(b, 2));
  EXPECT_THAT(manager_->GetBlockTable(b.id).subspan(0, 2), ElementsAreArray(hit.blocks));
}

TEST_F(KvCacheManagerTest, LookaheadReservesExtraSlots) {
  Init(8, 4);
  TestSequence a{.id = RequestId(1), .tokens = Iota(4)};
  ASSERT_TRUE(manager_->AllocateSlots(a.View(*hasher_), {},
                                      {.num_new_tokens = 4, .num_lookahead_tokens = 3}));
  EXPECT_EQ(manager_->GetBlockTable(a.id).size(), 2u);
}

TEST_F(KvCacheManagerTest, TailBlocksAreEvictedBeforeHeadBlocks) {
  Init(4, 2);
  TestSequence a{.id = RequestId(1), .tokens = Iota(8)};
  ASSERT_TRUE(Admit(a, 8));
  manager_->Free(a.id);
  EXPECT_EQ(manager_->Stats().num_cached_blocks, 4);
  // A new 2-token request takes one block: the tail block of a, so a's head still hits.
  TestSequence b{.id = RequestId(2), .tokens = Iota(2, 700)};
  ASSERT_TRUE(Admit(b, 2));
  EXPECT_EQ(manager_->Stats().num_evictions, 1);
  TestSequence c{.id = RequestId(3), .tokens = Iota(8)};
  EXPECT_EQ(manager_->GetComputedBlocks(c.View(*hasher_)).num_tokens, 6);
}

TEST_F(KvCacheManagerTest, ResumedRequestsAreCountedApart) {
  Init(8, 4);
  TestSequence a{.id = RequestId(1), .tokens = Iota(9)};
  ASSERT_TRUE(Admit(a, 9));
  manager_->Free(a.id);  // preempted
  a.num_computed = 0;
  const PrefixHit hit =
      manager_->GetComputedBlocks(a.View(*hasher_), LookupKind::kResumedAfterPreemption);
  EXPECT_EQ(hit.num_tokens, 8);
  ASSERT_TRUE(manager_->AllocateSlots(a.View(*hasher_), hit,
                                      {.num_new_tokens = 1, .admission = Admission::kNewRequest}));
  const KvCacheStats stats = manager_->Stats();
  EXPECT_EQ(stats.prefix_queried_tokens, 9);
  EXPECT_EQ(stats.prefix_hit_tokens, 0);
  EXPECT_EQ(stats.preempted_prefix_queried_tokens, 9);
  EXPECT_EQ(stats.preempted_prefix_hit_tokens, 8);
}

TEST_F(KvCacheManagerTest, PrefixCachingCanBeTurnedOff) {
  Init(8, 4, 0.0, /*enable_prefix_caching=*/false);
  TestSequence a{.id = RequestId(1), .tokens = Iota(9)};
  ASSERT_TRUE(Admit(a, 9));
  manager_->Free(a.id);
  EXPECT_EQ(manager_->Stats().num_cached_blocks, 0);
  TestSequence b{.id = RequestId(2), .tokens = Iota(9)};
  EXPECT_EQ(manager_->GetComputedBlocks(b.View(*hasher_)).num_tokens, 0);
  EXPECT_EQ(manager_->Stats().prefix_queried_tokens, 0);
}

TEST_F(KvCacheManagerTest, ResetPrefixCacheRefusesWhileBlocksAreUsed) {
  Init(8, 4);
  TestSequence a{.id = RequestId(1), .tokens = Iota(9)};
  ASSERT_TRUE(Admit(a, 9));
  EXPECT_FALSE(manager_->ResetPrefixCache());
  manager_->Free(a.id);
  EXPECT_TRUE(manager_->ResetPrefixCache());
  TestSequence b{.id = RequestId(2), .tokens = Iota(9)};
  EXPECT_EQ(manager_->GetComputedBlocks(b.View(*hasher_)).num_tokens, 0);
}

TEST_F(KvCacheManagerTest, EventsFollowTheCacheInOrder) {
  Init(/*num_blocks=*/4, /*block_size=*/2);
  manager_->EnableEvents(true);
  TestSequence a{.id = RequestId(1), .tokens = Iota(5), .salt = "tenant"};
  ASSERT_TRUE(Admit(a, 5));
  // Blocks 0 and 1 fill (the last token's block is partial): one event for the chain, the
  // first block carrying the salt.
  std::vector<KvCacheEvent> events = manager_->TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, KvCacheEvent::Kind::kBlockStored);
  EXPECT_THAT(events[0].block_hashes, ElementsAre(a.hashes[0].low, a.hashes[1].low));
  EXPECT_EQ(events[0].parent_block_hash, std::nullopt);
  EXPECT_THAT(events[0].token_ids, ElementsAre(100, 101, 102, 103));
  EXPECT_THAT(events[0].extra_keys,
              ElementsAre(std::optional<std::string>("tenant"), std::nullopt));
  EXPECT_THAT(manager_->TakeEvents(), IsEmpty()) << "taken once";

  // The decode that fills block 2 stores it under its parent.
  a.tokens.push_back(7);
  ASSERT_TRUE(manager_->AllocateSlots(a.View(*hasher_), {}, {.num_new_tokens = 1}));
  a.num_computed = 6;
  events = manager_->TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_THAT(events[0].block_hashes, ElementsAre(a.hashes[2].low));
  EXPECT_EQ(events[0].parent_block_hash, a.hashes[1].low);
  EXPECT_THAT(events[0].extra_keys, ElementsAre(std::nullopt));

  // Freed, then evicted by another request: removed, in eviction order (tail first).
  manager_->Free(a.id);
  TestSequence b{.id = RequestId(2), .tokens = Iota(8, 500)};
  ASSERT_TRUE(Admit(b, 8));
  events = manager_->TakeEvents();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, KvCacheEvent::Kind::kBlockRemoved);
  EXPECT_THAT(events[0].block_hashes,
              ElementsAre(a.hashes[2].low, a.hashes[1].low, a.hashes[0].low));
  EXPECT_EQ(events[1].kind, KvCacheEvent::Kind::kBlockStored);
  EXPECT_EQ(events[1].block_hashes.size(), 4u);

  const std::vector<CachedBlockInfo> cached = manager_->pool().ListCachedBlocks();
  ASSERT_EQ(cached.size(), 4u);
  EXPECT_EQ(cached[0].block_hash, b.hashes[0].low);
  EXPECT_EQ(cached[2].parent_block_hash, b.hashes[1].low);
  EXPECT_TRUE(cached[0].in_use);

  manager_->Free(b.id);
  ASSERT_TRUE(manager_->ResetPrefixCache());
  events = manager_->TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, KvCacheEvent::Kind::kAllBlocksCleared);
  EXPECT_THAT(manager_->pool().ListCachedBlocks(), IsEmpty());
}

TEST_F(KvCacheManagerTest, NoEventsUnlessEnabled) {
  Init(/*num_blocks=*/4, /*block_size=*/2);
  TestSequence a{.id = RequestId(1), .tokens = Iota(5)};
  ASSERT_TRUE(Admit(a, 5));
  EXPECT_THAT(manager_->TakeEvents(), IsEmpty());
  manager_->EnableEvents(true);
  manager_->Free(a.id);
  ASSERT_TRUE(manager_->ResetPrefixCache());
  EXPECT_EQ(manager_->TakeEvents().size(), 1u);
  manager_->EnableEvents(false);
  EXPECT_THAT(manager_->TakeEvents(), IsEmpty());
}

TEST(KvCacheEventsTest, ResyncClearsThenStoresEveryBlockByChain) {
  const std::vector<CachedBlockInfo> blocks = {
      {.block_hash = 1, .token_ids = {1, 2}, .extra_key = "s"},
      {.block_hash = 2, .parent_block_hash = 1, .token_ids = {3, 4}},
      {.block_hash = 9, .parent_block_hash = 5, .token_ids = {7, 8}},  // an orphan
      {.block_hash = 3, .parent_block_hash = 2, .token_ids = {5, 6}},
  };
  const std::vector<KvCacheEvent> events = ResyncEvents(blocks);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].kind, KvCacheEvent::Kind::kAllBlocksCleared);
  EXPECT_THAT(events[1].block_hashes, ElementsAre(1u, 2u));
  EXPECT_THAT(events[1].extra_keys, ElementsAre(std::optional<std::string>("s"), std::nullopt));
  EXPECT_EQ(events[2].parent_block_hash, 5u);
  EXPECT_EQ(events[3].parent_block_hash, 2u);
  EXPECT_THAT(events[3].token_ids, ElementsAre(5, 6));
}

// A sliding window of 6 tokens over blocks of 4: once the first query of a step is at q, the
// blocks wholly before q - 5 are freed and their entries nulled; the table keeps its length.
TEST_F(KvCacheManagerTest, SlidingWindowFreesBlocksWhollyBeforeTheWindow) {
  Init(/*num_blocks=*/8, /*block_size=*/4, 0.0, true, {.sliding_window = 6});
  TestSequence seq{.id = RequestId(1), .tokens = Iota(10)};
  ASSERT_TRUE(Admit(seq, 10));  // positions 0-9, three blocks, nothing dead yet
  EXPECT_EQ(manager_->NumLiveBlocks(seq.id), 3);
  // Query 10 attends [5, 10]: block 0 (0-3) is dead.
  ASSERT_TRUE(Decode(seq, 1));
  absl::Span<const BlockId> table = manager_->GetBlockTable(seq.id);
  ASSERT_EQ(table.size(), 3u);
  EXPECT_EQ(table[0], kNullBlock);
  EXPECT_EQ(manager_->NumLiveBlocks(seq.id), 2);
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(Decode(seq, 2 + i));
  // 51 tokens: 13 table entries, at most ceil(6/4) + 1 live.
  EXPECT_EQ(manager_->GetBlockTable(seq.id).size(), 13u);
  EXPECT_LE(manager_->NumLiveBlocks(seq.id), 3);
  EXPECT_EQ(manager_->Stats().num_used_blocks, manager_->NumLiveBlocks(seq.id));
  manager_->Free(seq.id);
  EXPECT_EQ(manager_->Stats().num_used_blocks, 0);
}

// Sinks: the blocks holding the first S tokens stay; the middle goes.
TEST_F(KvCacheManagerTest, AttentionSinksKeepTheirBlocks) {
  Init(/*num_blocks=*/8, /*block_size=*/4, 0.0, false, {.sliding_window = 4, .sink_tokens = 5});
  TestSequence seq{.id = RequestId(1), .tokens = Iota(3)};
  ASSERT_TRUE(Admit(seq, 3));
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(Decode(seq, i));
  const absl::Span<const BlockId> table = manager_->GetBlockTable(seq.id);
  ASSERT_EQ(table.size(), 9u);  // 33 tokens
  EXPECT_NE(table[0], kNullBlock);
  EXPECT_NE(table[1], kNullBlock);  // token 4 is a sink
  for (int i = 2; i < 7; ++i) EXPECT_EQ(table[i], kNullBlock) << i;
  EXPECT_NE(table[8], kNullBlock);
  EXPECT_LE(manager_->NumLiveBlocks(seq.id), 2 + 2 + 1);
}

// Admission under a window asks for the blocks the window keeps alive, not the whole sequence;
// a prefix hit's blocks before the window go straight back (still cached for others).
TEST_F(KvCacheManagerTest, WindowedAdmissionCountsTheWindowAndReleasesADeadHit) {
  Init(/*num_blocks=*/12, /*block_size=*/4, 0.0, true, {.sliding_window = 4});
  // The window's 4 positions before a 4-token chunk span 7 tokens: 2 blocks, or 3 unaligned.
  EXPECT_EQ(manager_->MaxLiveBlocks(1000, 4), 3);
  EXPECT_EQ(manager_->MaxLiveBlocks(6, 4), 2);  // never more than the whole sequence
  TestSequence first{.id = RequestId(1), .tokens = Iota(40)};
  ComputeInChunks(first, 4, /*max_live_blocks=*/3);
  manager_->Free(first.id);
  EXPECT_EQ(manager_->Stats().num_cached_blocks, 10);  // all still cached, none in use
  // The same 40 tokens: a 36-token hit, of which only the block inside the window of query 36
  // ([33, 36]) is taken; the 8 before it go back to the free list, cached.
  TestSequence second{.id = RequestId(2), .tokens = Iota(40)};
  const PrefixHit hit = manager_->GetComputedBlocks(second.View(*hasher_));
  ASSERT_EQ(hit.num_tokens, 36);
  ASSERT_TRUE(manager_->AllocateSlots(second.View(*hasher_), hit,
                                      {.num_new_tokens = 4, .admission = Admission::kNewRequest}));
  const absl::Span<const BlockId> table = manager_->GetBlockTable(second.id);
  ASSERT_EQ(table.size(), 10u);
  for (size_t i = 0; i < 8; ++i) EXPECT_EQ(table[i], kNullBlock) << i;
  EXPECT_EQ(table[8], hit.blocks[8]);
  EXPECT_EQ(manager_->Stats().num_used_blocks, 2);
  // The 8 dead ones and the first request's last block (the hit stops short of it).
  EXPECT_EQ(manager_->Stats().num_cached_blocks, 9);
}

// vLLM's sliding-window hit: a prefix whose early blocks were evicted still hits when the blocks
// its window reads are cached. The evicted part of the chain is proven by the identities the
// pool kept (parent entry and tokens), never by a hash alone: a request that differs in its
// first token, whose blocks hash differently, and one whose first block's tokens differ under
// the same hashes (a forced collision) both miss.
TEST_F(KvCacheManagerTest, WindowedHitSpansEvictedBlocksProvenByTheirIdentities) {
  Init(/*num_blocks=*/5, /*block_size=*/4, 0.0, true, {.sliding_window = 4});
  TestSequence first{.id = RequestId(1), .tokens = Iota(40)};
  ComputeInChunks(first, 4);
  manager_->Free(first.id);
  // 10 blocks went through a pool of 5: the early ones were evicted by the later ones.
  EXPECT_GE(manager_->Stats().num_evictions, 5);
  EXPECT_GE(manager_->pool().num_evicted_identities(), 5);

  TestSequence same{.id = RequestId(2), .tokens = Iota(40)};
  const PrefixHit hit = manager_->GetComputedBlocks(same.View(*hasher_));
  ASSERT_EQ(hit.num_tokens, 36);  // the last token is always computed
  ASSERT_EQ(hit.blocks.size(), 9u);
  for (size_t i = 0; i < 8; ++i) EXPECT_EQ(hit.blocks[i], kNullBlock) << i;
  EXPECT_NE(hit.blocks[8], kNullBlock);  // positions 32-35, read by query 36's window [33, 36]
  ASSERT_TRUE(manager_->AllocateSlots(same.View(*hasher_), hit,
                                      {.num_new_tokens = 4, .admission = Admission::kNewRequest}));
  EXPECT_EQ(manager_->NumLiveBlocks(same.id), 2);
  manager_->Free(same.id);

  std::vector<TokenId> other_start = Iota(40);
  other_start[0] = 7;
  TestSequence other{.id = RequestId(3), .tokens = other_start};
  EXPECT_EQ(manager_->GetComputedBlocks(other.View(*hasher_)).num_tokens, 0);
  // Same hashes as `same`, different first block: the identity check, not the hash, refuses.
  TestSequence forged{.id = RequestId(4), .tokens = other_start};
  forged.hashes = same.hashes;
  EXPECT_EQ(manager_->GetComputedBlocks(forged.View(*hasher_)).num_tokens, 0);
}

}  // namespace
}  // namespace pagoda::block_manager
