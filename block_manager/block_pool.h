#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "block_manager/block_hash.h"
#include "block_manager/free_block_queue.h"
#include "block_manager/kv_cache_events.h"
#include "common/ids.h"

namespace pagoda::block_manager {

// Identity of one cached content: "these block_size tokens, following exactly the content of
// entry `parent`". Entry ids are never reused, so comparing (parent entry, tokens) at every
// block of a lookup proves, by induction from the first block, that a hit's whole prefix equals
// the request's, whatever the hashes did.
struct CacheEntryIdTag {};
using CacheEntryId = common::StrongId<CacheEntryIdTag, uint64_t>;

// A block found in the prefix cache.
struct CachedBlock {
  BlockId block;
  CacheEntryId entry;
};

// The identity of cached content that eviction dropped (BlockPool::EnableEvictionCapture): what
// a lower tier needs to keep the block's K/V under the same chained hash. The K/V are still in
// `block` until the step that reuses it runs.
struct EvictedContent {
  BlockId block;
  BlockHash hash;
  std::optional<BlockHash> parent_hash;  // none for a sequence's first block
  std::string extra_key;                 // a salted first block's
  std::vector<TokenId> tokens;
};

// Each block is in exactly one of these states (docs/architecture.md, "A block's life").
enum class BlockState {
  kFree,    // ref count 0, no cached content: in the free list
  kCached,  // ref count 0, holds registered content: in the free list, evictable (LRU)
  kUsed,    // ref count > 0: in at least one block table; may also hold registered content
};

// The fixed set of KV-cache blocks, their ref counts, the free list and the prefix-cache index.
// All block descriptors are made at construction; blocks are indices 0..num_blocks-1.
//
// Eviction is lazy: a block whose ref count drops to 0 keeps its cached content and goes to the
// free list; the content is dropped only when Allocate() hands the block out again, least
// recently freed first. Releasing a block without content puts it at the front of the free list
// (it is worth nothing), a cached one at the back.
//
// Bookkeeping only: no tensors. Not thread-safe: confined to the engine thread.
class BlockPool {
 public:
  // `num_blocks` >= 0 blocks of `block_size` > 0 tokens each.
  BlockPool(int num_blocks, int block_size);

  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  int num_blocks() const { return num_blocks_; }
  int block_size() const { return block_size_; }

  // Blocks that Allocate() may hand out: free plus cached-evictable.
  int num_available_blocks() const { return free_queue_.size(); }
  int num_used_blocks() const { return num_blocks_ - free_queue_.size(); }
  int num_cached_evictable_blocks() const { return num_cached_evictable_; }
  int num_free_blocks() const { return free_queue_.size() - num_cached_evictable_; }
  // Cached content dropped to reuse a block, since construction.
  int64_t num_evictions() const { return num_evictions_; }

  BlockState state(BlockId block) const;
  int ref_count(BlockId block) const { return meta(block).ref_count; }
  bool IsCached(BlockId block) const { return meta(block).entry.has_value(); }

  // Takes `n` blocks from the front of the free list, drops any cached content they hold, and
  // sets their ref count to 1. Appends them to `out`. Precondition: n <= num_available_blocks().
  void Allocate(int n, std::vector<BlockId>* out);

  // Adds one reference to each block. A cached block with ref count 0 leaves the free list.
  void Touch(absl::Span<const BlockId> blocks);

  // Drops one reference from each block, in order; blocks that reach 0 return to the free list
  // in that order, so give them in the order they should be evicted. Precondition: every ref
  // count is > 0.
  void Release(absl::Span<const BlockId> blocks);

  // Looks up the block holding `tokens` (block_size() of them) right after the content of
  // `parent` (nullopt for the first block), under `hash`. Confirms the tokens and the parent,
  // so a wrong or colliding hash can only cause a miss, never a false hit.
  std::optional<CachedBlock> FindCached(const BlockHash& hash, std::optional<CacheEntryId> parent,
                                        absl::Span<const TokenId> tokens) const;

  // Registers the content of full block `block` (ref count > 0): `tokens` after `parent`'s
  // content, under `hash`. Returns the entry that now stands for this content, to be passed as
  // the parent of the next block. When another block already holds the same content, that entry
  // is returned and `block` stays unregistered (block tables are append-only, so the duplicate
  // lives on uncached). Anything else indexed under `hash` (a collision, or content orphaned by
  // its parent's eviction) is unregistered in favour of `block`.
  // `parent_hash` (the parent content's hash) and `extra_key` (what the first block's hash
  // folded in) are only reported: in KV events and ListCachedBlocks().
  CacheEntryId Register(BlockId block, const BlockHash& hash, std::optional<CacheEntryId> parent,
                        absl::Span<const TokenId> tokens, const BlockHash* parent_hash = nullptr,
                        absl::string_view extra_key = {});

  // Drops the registered content of `block` (ref count > 0), if any: it was registered before
  // its K/V were written, and they never will be (the request was preempted in that step).
  void DropContent(BlockId block);

  // Drops every cached content. Only possible when no block is in use; returns false otherwise.
  [[nodiscard]] bool ResetPrefixCache();

  // Evicted identities, for windowed lookups (KvCacheManager with a window): while `capacity` >
  // 0, the identity of content that eviction drops, (entry, parent entry, tokens) under its
  // hash, is kept, the last `capacity` of them. A lookup can then prove a chain of entries
  // through blocks whose K/V are gone, as it proves a cached one: by parent and tokens. 0 (the
  // default) keeps none.
  void KeepEvictedIdentities(int capacity);
  // The entry of the evicted content that was `tokens` after `parent`'s content under `hash`,
  // confirmed like FindCached; nullopt when none is kept.
  std::optional<CacheEntryId> FindEvicted(const BlockHash& hash, std::optional<CacheEntryId> parent,
                                          absl::Span<const TokenId> tokens) const;
  int num_evicted_identities() const { return static_cast<int>(evicted_.size()); }

  // While enabled, the identity of each cached content that Allocate() evicts is recorded
  // until TakeEvictedContent() (for spilling to a lower tier before the block is rewritten).
  void EnableEvictionCapture(bool enable);
  std::vector<EvictedContent> TakeEvictedContent();

  // KV events (kv_cache_events.h). While enabled, every change to the cached contents is
  // recorded, in order, until TakeEvents(); consecutive stores of one chain share an event, and
  // so do consecutive removals. Disabled (the default), nothing is recorded.
  void EnableEvents(bool enable);
  bool events_enabled() const { return events_enabled_; }
  std::vector<KvCacheEvent> TakeEvents();

  // Every block holding registered content, in registration order except that a block's
  // parent, when cached, always comes before it (a child may have been registered first, while
  // its parent's content was not cached). O(num_blocks).
  std::vector<CachedBlockInfo> ListCachedBlocks() const;
  // Every block holding cached content, as eviction would report it (for writing the cache back
  // to a lower tier at shutdown), in registration order: a chain's first blocks first.
  std::vector<EvictedContent> ListCachedContent() const;

  // The free list from next-to-allocate to last; O(num_blocks), for tests.
  std::vector<BlockId> FreeListForTesting() const { return free_queue_.ToVector(); }
  int num_indexed_hashes() const { return static_cast<int>(index_.size()); }

 private:
  // What eviction reports of `block`, which holds cached content.
  EvictedContent ContentOf(BlockId block) const;
  // The blocks holding cached content, in the order their content was registered.
  std::vector<BlockId> CachedBlocksInRegistrationOrder() const;
  struct BlockMeta {
    int32_t ref_count = 0;
    // Set while the block holds registered content.
    std::optional<CacheEntryId> entry;
    std::optional<CacheEntryId> parent;
    BlockHash hash;
    // Reported only (events, ListCachedBlocks, evicted content).
    std::optional<BlockHash> parent_hash;
    std::string extra_key;
  };

  const BlockMeta& meta(BlockId block) const;
  BlockMeta& meta(BlockId block);
  absl::Span<const TokenId> cached_tokens(BlockId block) const;
  bool Holds(BlockId block, std::optional<CacheEntryId> parent,
             absl::Span<const TokenId> tokens) const;
  // Forgets `block`'s registered content (keeps its place in the free list, if any), and
  // records its removal unless `record` is false.
  void Unregister(BlockId block, bool record = true);
  void RecordStored(BlockId block);

  const int num_blocks_;
  const int block_size_;
  std::vector<BlockMeta> blocks_;
  // Token ids of each block's registered content: [num_blocks, block_size].
  std::vector<TokenId> tokens_;
  FreeBlockQueue free_queue_;
  absl::flat_hash_map<BlockHash, BlockId> index_;
  int num_cached_evictable_ = 0;
  int64_t num_evictions_ = 0;
  uint64_t next_entry_ = 1;
  bool events_enabled_ = false;
  std::vector<KvCacheEvent> events_;
  bool capture_evictions_ = false;
  std::vector<EvictedContent> evicted_content_;

  struct EvictedIdentity {
    CacheEntryId entry;
    std::optional<CacheEntryId> parent;
    std::vector<TokenId> tokens;
  };
  void RememberEvicted(BlockId block);
  int evicted_capacity_ = 0;
  absl::flat_hash_map<BlockHash, EvictedIdentity> evicted_;
  std::deque<std::pair<BlockHash, CacheEntryId>> evicted_order_;  // oldest first
};

}  // namespace pagoda::block_manager
