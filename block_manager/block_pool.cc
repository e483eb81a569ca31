#include "block_manager/block_pool.h"

#include <algorithm>

#include "common/check.h"

namespace pagoda::block_manager {

BlockPool::BlockPool(int num_blocks, int block_size)
    : num_blocks_(num_blocks),
      block_size_(block_size),
      blocks_(num_blocks),
      tokens_(static_cast<size_t>(num_blocks) * block_size),
      free_queue_(num_blocks) {
  PAGODA_CHECK_GE(num_blocks, 0);
  PAGODA_CHECK_GT(block_size, 0);
  index_.reserve(num_blocks);
}

const BlockPool::BlockMeta& BlockPool::meta(BlockId block) const {
  PAGODA_CHECK(block.value() >= 0 && block.value() < num_blocks_) << "no block " << block;
  return blocks_[block.value()];
}

BlockPool::BlockMeta& BlockPool::meta(BlockId block) {
  PAGODA_CHECK(block.value() >= 0 && block.value() < num_blocks_) << "no block " << block;
  return blocks_[block.value()];
}

absl::Span<const TokenId> BlockPool::cached_tokens(BlockId block) const {
  return absl::MakeConstSpan(tokens_).subspan(static_cast<size_t>(block.value()) * block_size_,
                                              block_size_);
}

BlockState BlockPool::state(BlockId block) const {
  const BlockMeta& m = meta(block);
  if (m.ref_count > 0) return BlockState::kUsed;
  return m.entry.has_value() ? BlockState::kCached : BlockState::kFree;
}

void BlockPool::Allocate(int n, std::vector<BlockId>* out) {
  PAGODA_CHECK_LE(n, num_available_blocks()) << "allocation must be checked by the caller";
  for (int i = 0; i < n; ++i) {
    const BlockId block = free_queue_.PopFront();
    BlockMeta& m = meta(block);
    if (m.entry.has_value()) {
      // Lazy eviction: the content survived until the block was needed.
      --num_cached_evictable_;
      if (evicted_capacity_ > 0) RememberEvicted(block);
      if (capture_evictions_) evicted_content_.push_back(ContentOf(block));
      Unregister(block);
      ++num_evictions_;
    }
    m.ref_count = 1;
    out->push_back(block);
  }
}

void BlockPool::Touch(absl::Span<const BlockId> blocks) {
  for (const BlockId block : blocks) {
    BlockMeta& m = meta(block);
    if (m.ref_count == 0) {
      PAGODA_CHECK(m.entry.has_value()) << "touching free block " << block;
      free_queue_.Remove(block);
      --num_cached_evictable_;
    }
    ++m.ref_count;
  }
}

void BlockPool::Release(absl::Span<const BlockId> blocks) {
  for (const BlockId block : blocks) {
    BlockMeta& m = meta(block);
    PAGODA_CHECK_GT(m.ref_count, 0) << "double release of block " << block;
    if (--m.ref_count > 0) continue;
    if (m.entry.has_value()) {
      free_queue_.PushBack(block);
      ++num_cached_evictable_;
    } else {
      free_queue_.PushFront(block);
    }
  }
}

bool BlockPool::Holds(BlockId block, std::optional<CacheEntryId> parent,
                      absl::Span<const TokenId> tokens) const {
  const BlockMeta& m = meta(block);
  return m.entry.has_value() && m.parent == parent &&
         std::equal(tokens.begin(), tokens.end(), cached_tokens(block).begin());
}

std::optional<CachedBlock> BlockPool::FindCached(const BlockHash& hash,
                                                 std::optional<CacheEntryId> parent,
                                                 absl::Span<const TokenId> tokens) const {
  PAGODA_CHECK_EQ(static_cast<int>(tokens.size()), block_size_);
  const auto it = index_.find(hash);
  if (it == index_.end() || !Holds(it->second, parent, tokens)) return std::nullopt;
  return CachedBlock{.block = it->second, .entry = *meta(it->second).entry};
}

CacheEntryId BlockPool::Register(BlockId block, const BlockHash& hash,
                                 std::optional<CacheEntryId> parent,
                                 absl::Span<const TokenId> tokens, const BlockHash* parent_hash,
                                 absl::string_view extra_key) {
  PAGODA_CHECK_EQ(static_cast<int>(tokens.size()), block_size_);
  BlockMeta& m = meta(block);
  PAGODA_CHECK_GT(m.ref_count, 0) << "registering unowned block " << block;
  PAGODA_CHECK(!m.entry.has_value()) << "block " << block << " is already registered";
  if (const auto it = index_.find(hash); it != index_.end()) {
    if (Holds(it->second, parent, tokens)) return *meta(it->second).entry;
    const BlockId other = it->second;
    if (state(other) == BlockState::kCached) --num_cached_evictable_;
    Unregister(other);
  }
  m.entry = CacheEntryId(next_entry_++);
  m.parent = parent;
  m.hash = hash;
  m.parent_hash = parent_hash == nullptr ? std::nullopt : std::optional<BlockHash>(*parent_hash);
  m.extra_key.assign(extra_key.data(), extra_key.size());
  std::copy(tokens.begin(), tokens.end(),
            tokens_.begin() + static_cast<size_t>(block.value()) * block_size_);
  index_.emplace(hash, block);
  if (events_enabled_) RecordStored(block);
  return *m.entry;
}

void BlockPool::Unregister(BlockId block, bool record) {
  BlockMeta& m = meta(block);
  PAGODA_CHECK(m.entry.has_value());
  const auto it = index_.find(m.hash);
  PAGODA_CHECK(it != index_.end() && it->second == block) << "index lost block " << block;
  index_.erase(it);
  m.entry.reset();
  m.parent.reset();
  m.parent_hash.reset();
  m.extra_key.clear();
  if (events_enabled_ && record) AppendBlockRemoved(m.hash.low, &events_);
}

void BlockPool::RecordStored(BlockId block) {
  const BlockMeta& m = meta(block);
  const std::optional<uint64_t> parent =
      m.parent_hash.has_value() ? std::optional<uint64_t>(m.parent_hash->low) : std::nullopt;
  AppendBlockStored(m.hash.low, parent, cached_tokens(block), m.extra_key, &events_);
}

void BlockPool::DropContent(BlockId block) {
  BlockMeta& m = meta(block);
  PAGODA_CHECK_GT(m.ref_count, 0) << "dropping the content of unowned block " << block;
  if (m.entry.has_value()) Unregister(block);
}

void BlockPool::KeepEvictedIdentities(int capacity) {
  PAGODA_CHECK_GE(capacity, 0);
  evicted_capacity_ = capacity;
  while (static_cast<int>(evicted_order_.size()) > capacity) {
    const auto [hash, entry] = evicted_order_.front();
    evicted_order_.pop_front();
    if (const auto it = evicted_.find(hash); it != evicted_.end() && it->second.entry == entry) {
      evicted_.erase(it);
    }
  }
}

void BlockPool::RememberEvicted(BlockId block) {
  const BlockMeta& m = meta(block);
  const absl::Span<const TokenId> tokens = cached_tokens(block);
  evicted_[m.hash] = {*m.entry, m.parent, std::vector<TokenId>(tokens.begin(), tokens.end())};
  evicted_order_.emplace_back(m.hash, *m.entry);
  KeepEvictedIdentities(evicted_capacity_);  // trims to the capacity
}

std::optional<CacheEntryId> BlockPool::FindEvicted(const BlockHash& hash,
                                                   std::optional<CacheEntryId> parent,
                                                   absl::Span<const TokenId> tokens) const {
  PAGODA_CHECK_EQ(static_cast<int>(tokens.size()), block_size_);
  const auto it = evicted_.find(hash);
  if (it == evicted_.end() || it->second.parent != parent ||
      !std::equal(tokens.begin(), tokens.end(), it->second.tokens.begin(),
                  it->second.tokens.end())) {
    return std::nullopt;
  }
  return it->second.entry;
}

bool BlockPool::ResetPrefixCache() {
  if (num_used_blocks() > 0) return false;
  evicted_.clear();
  evicted_order_.clear();
  for (int32_t b = 0; b < num_blocks_; ++b) {
    if (blocks_[b].entry.has_value()) Unregister(BlockId(b), /*record=*/false);
  }
  num_cached_evictable_ = 0;
  if (events_enabled_) events_.push_back({.kind = KvCacheEvent::Kind::kAllBlocksCleared});
  return true;
}

void BlockPool::EnableEvictionCapture(bool enable) {
  capture_evictions_ = enable;
  if (!enable) evicted_content_.clear();
}

std::vector<EvictedContent> BlockPool::TakeEvictedContent() {
  std::vector<EvictedContent> content;
  content.swap(evicted_content_);
  return content;
}

void BlockPool::EnableEvents(bool enable) {
  events_enabled_ = enable;
  if (!enable) events_.clear();
}

std::vector<KvCacheEvent> BlockPool::TakeEvents() {
  std::vector<KvCacheEvent> events;
  events.swap(events_);
  return events;
}

EvictedContent BlockPool::ContentOf(BlockId block) const {
  const BlockMeta& m = meta(block);
  const absl::Span<const TokenId> tokens = cached_tokens(block);
  return {.block = block,
          .hash = m.hash,
          .parent_hash = m.parent_hash,
          .extra_key = m.extra_key,
          .tokens = std::vector<TokenId>(tokens.begin(), tokens.end())};
}

std::vector<BlockId> BlockPool::CachedBlocksInRegistrationOrder() const {
  std::vector<BlockId> blocks;
  blocks.reserve(index_.size());
  for (int32_t b = 0; b < num_blocks_; ++b) {
    if (blocks_[b].entry.has_value()) blocks.push_back(BlockId(b));
  }
  std::sort(blocks.begin(), blocks.end(), [this](BlockId a, BlockId b) {
    return meta(a).entry->value() < meta(b).entry->value();
  });
  return blocks;
}

std::vector<EvictedContent> BlockPool::ListCachedContent() const {
  std::vector<EvictedContent> content;
  for (const BlockId block : CachedBlocksInRegistrationOrder()) {
    content.push_back(ContentOf(block));
  }
  return content;
}

std::vector<CachedBlockInfo> BlockPool::ListCachedBlocks() const {
  // Registration order, except that a cached parent always comes first: a child can be
  // registered while its parent's content is not cached (a request kept its own copy of the
  // parent after the cached one was evicted), and the parent registered again later.
  std::vector<CachedBlockInfo> blocks;
  for (const BlockId block : CachedBlocksInRegistrationOrder()) {
    const BlockMeta& m = meta(block);
    const absl::Span<const TokenId> tokens = cached_tokens(block);
    blocks.push_back({.block = block,
                      .block_hash = m.hash.low,
                      .parent_block_hash = m.parent_hash.has_value()
                                               ? std::optional<uint64_t>(m.parent_hash->low)
                                               : std::nullopt,
                      .token_ids = std::vector<TokenId>(tokens.begin(), tokens.end()),
                      .extra_key = m.extra_key,
                      .in_use = m.ref_count > 0});
  }
  absl::flat_hash_map<uint64_t, size_t> position;
  position.reserve(blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) position.emplace(blocks[i].block_hash, i);
  std::vector<bool> placed(blocks.size(), false);
  std::vector<size_t> order;
  order.reserve(blocks.size());
  std::vector<size_t> chain;
  for (size_t i = 0; i < blocks.size(); ++i) {
    // Climb to the highest ancestor not yet placed, then place the chain top down. `placed`
    // is set while climbing, so a (practically impossible) cycle of 64-bit hashes ends too.
    chain.clear();
    for (size_t at = i; !placed[at];) {
      placed[at] = true;
      chain.push_back(at);
      const std::optional<uint64_t>& parent = blocks[at].parent_block_hash;
      const auto it = parent.has_value() ? position.find(*parent) : position.end();
      if (it == position.end()) break;
      at = it->second;
    }
    order.insert(order.end(), chain.rbegin(), chain.rend());
  }
  std::vector<CachedBlockInfo> sorted;
  sorted.reserve(blocks.size());
  for (const size_t i : order) sorted.push_back(std::move(blocks[i]));
  return sorted;
}

}  // namespace pagoda::block_manager
