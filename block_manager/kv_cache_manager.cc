#include "block_manager/kv_cache_manager.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace pagoda::block_manager {

absl::StatusOr<std::unique_ptr<KvCacheManager>> KvCacheManager::Create(
    const KvCacheManagerOptions& options) {
  if (options.num_blocks <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_blocks must be positive, got ", options.num_blocks));
  }
  if (options.block_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("block_size must be positive, got ", options.block_size));
  }
  if (!(options.watermark_ratio >= 0.0 && options.watermark_ratio < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("watermark_ratio must be in [0, 1), got ", options.watermark_ratio));
  }
  return std::unique_ptr<KvCacheManager>(new KvCacheManager(options));
}

KvCacheManager::KvCacheManager(const KvCacheManagerOptions& options)
    : options_(options),
      watermark_blocks_(static_cast<int>(std::floor(options.watermark_ratio * options.num_blocks))),
      pool_(options.num_blocks, options.block_size) {
  // A windowed hit may span blocks whose content was evicted: their identities prove the chain.
  if (!options.window.full() && options.enable_prefix_caching) {
    pool_.KeepEvictedIdentities(options.num_blocks);
  }
}

int KvCacheManager::BlocksForTokens(int num_tokens) const {
  return (num_tokens + block_size() - 1) / block_size();
}

int KvCacheManager::MaxLiveBlocks(int num_tokens, int chunk) const {
  const common::AttentionWindow& w = options_.window;
  const int all = BlocksForTokens(num_tokens);
  if (w.full()) return all;
  // The sink blocks, and the window before a chunk plus the chunk, straddling one more block.
  return std::min(all, BlocksForTokens(w.sink_tokens) +
                           BlocksForTokens(w.sliding_window - 1 + std::max(chunk, 1)) + 1);
}

int KvCacheManager::NumLiveBlocks(RequestId id) const {
  const absl::Span<const BlockId> table = GetBlockTable(id);
  return static_cast<int>(
      std::count_if(table.begin(), table.end(), [](BlockId b) { return b != kNullBlock; }));
}

bool KvCacheManager::IsDeadBlock(int index, int first_query) const {
  const int bs = block_size();
  return options_.window.IsDead(index * bs, first_query) &&
         options_.window.IsDead((index + 1) * bs - 1, first_query);
}

void KvCacheManager::FreeDeadBlocks(int first_query, RequestBlocks* request) {
  if (options_.window.full()) return;
  // Dead blocks form one run after the sink blocks; it only grows as queries move on. Freed in
  // table order, so the oldest content is evicted first.
  std::vector<BlockId> freed;
  const int first = BlocksForTokens(options_.window.sink_tokens);
  int i = std::max(first, request->num_dead_blocks);
  for (; i < static_cast<int>(request->table.size()) && IsDeadBlock(i, first_query); ++i) {
    if (request->table[i] != kNullBlock) freed.push_back(request->table[i]);
    request->table[i] = kNullBlock;
  }
  request->num_dead_blocks = std::max(request->num_dead_blocks, i);
  pool_.Release(freed);
}

PrefixHit KvCacheManager::GetComputedBlocks(const SequenceView& seq, LookupKind kind) {
  PrefixHit hit;
  if (!options_.enable_prefix_caching) return hit;
  PAGODA_CHECK(GetBlockTable(seq.id).empty())
      << "lookup for request " << seq.id << " which holds blocks";
  const int bs = block_size();
  // The last token is always computed, so that its logits exist.
  const int max_hit_blocks = std::max(0, static_cast<int>(seq.tokens.size()) - 1) / bs;
  PAGODA_CHECK_GE(static_cast<int>(seq.block_hashes.size()), max_hit_blocks);
  if (!options_.window.full()) {
    FindWindowedHit(seq, max_hit_blocks, &hit);
  } else {
    for (int i = 0; i < max_hit_blocks; ++i) {
      const std::optional<CachedBlock> cached = pool_.FindCached(
          seq.block_hashes[i], hit.last_entry, seq.tokens.subspan(static_cast<size_t>(i) * bs, bs));
      if (!cached.has_value()) break;
      hit.blocks.push_back(cached->block);
      hit.last_entry = cached->entry;
    }
  }
  hit.num_tokens = static_cast<int>(hit.blocks.size()) * bs;
  hit.num_queried_tokens = static_cast<int>(seq.tokens.size());
  hit.kind = kind;
  return hit;
}

void KvCacheManager::CountLookup(const PrefixHit& hit) {
  if (hit.num_queried_tokens == 0) return;
  if (hit.kind == LookupKind::kNewRequest) {
    lookups_.prefix_queried_tokens += hit.num_queried_tokens;
    lookups_.prefix_hit_tokens += hit.num_tokens;
  } else {
    lookups_.preempted_prefix_queried_tokens += hit.num_queried_tokens;
    lookups_.preempted_prefix_hit_tokens += hit.num_tokens;
  }
}

void KvCacheManager::FindWindowedHit(const SequenceView& seq, int max_hit_blocks,
                                     PrefixHit* hit) const {
  // The chain as far as it is proven, block by block, by cached content or by the identity of
  // evicted content (parent entry and tokens, as for a cached block).
  const int bs = block_size();
  std::vector<std::optional<CachedBlock>> found;  // nullopt: evicted, proven by its identity
  std::vector<CacheEntryId> entries;
  std::optional<CacheEntryId> parent;
  for (int i = 0; i < max_hit_blocks; ++i) {
    const absl::Span<const TokenId> tokens = seq.tokens.subspan(static_cast<size_t>(i) * bs, bs);
    if (std::optional<CachedBlock> cached = pool_.FindCached(seq.block_hashes[i], parent, tokens)) {
      found.push_back(cached);
      parent = cached->entry;
    } else if (std::optional<CacheEntryId> evicted =
                   pool_.FindEvicted(seq.block_hashes[i], parent, tokens)) {
      found.push_back(std::nullopt);
      parent = evicted;
    } else {
      break;
    }
    entries.push_back(*parent);
  }
  // The longest proven prefix whose blocks still attended from its end (the sinks' and the
  // window's) are all cached; the others' K/V are never read, so they may be gone.
  const int sink_blocks = BlocksForTokens(options_.window.sink_tokens);
  for (int n = static_cast<int>(found.size()); n > 0; --n) {
    const int first_query = n * bs;
    bool usable = true;
    for (int i = 0; i < std::min(n, sink_blocks) && usable; ++i) usable = found[i].has_value();
    for (int i = n - 1; i >= sink_blocks && usable && !IsDeadBlock(i, first_query); --i) {
      usable = found[i].has_value();
    }
    if (!usable) continue;
    for (int i = 0; i < n; ++i) {
      hit->blocks.push_back(IsDeadBlock(i, first_query) ? kNullBlock : found[i]->block);
    }
    hit->last_entry = entries[n - 1];
    return;
  }
}

bool KvCacheManager::AllocateSlots(const SequenceView& seq, const PrefixHit& hit,
                                   const SlotRequest& slots) {
  PAGODA_CHECK_GE(slots.num_new_tokens, 0);
  PAGODA_CHECK_GE(slots.num_lookahead_tokens, 0);
  PAGODA_CHECK_GE(slots.num_reserved_blocks, 0);
  const auto it = requests_.find(seq.id);
  const int num_held = it == requests_.end() ? 0 : static_cast<int>(it->second.table.size());
  const int num_hit = static_cast<int>(hit.blocks.size());
  PAGODA_CHECK(num_hit == 0 || (num_held == 0 && seq.num_computed_tokens == 0))
      << "prefix hit for request " << seq.id << " which already computed tokens";
  const int computed = seq.num_computed_tokens + hit.num_tokens;
  PAGODA_CHECK_LE(computed + slots.num_new_tokens, static_cast<int>(seq.tokens.size()))
      << "request " << seq.id << " schedules tokens it does not have";
  // Blocks no query from this step on attends go back first: they are dead whatever happens.
  if (it != requests_.end()) FreeDeadBlocks(seq.num_computed_tokens, &it->second);

  // Everything is counted before anything changes: a failed allocation changes nothing.
  const int needed_blocks =
      BlocksForTokens(computed + slots.num_new_tokens + slots.num_lookahead_tokens);
  const int num_new_blocks = std::max(0, needed_blocks - num_held - num_hit);
  // Hit blocks nobody uses sit in the free list; touching them takes them out of it.
  const int num_revived =
      static_cast<int>(std::count_if(hit.blocks.begin(), hit.blocks.end(), [&](BlockId b) {
        return b != kNullBlock && pool_.ref_count(b) == 0;
      }));
  int required = num_new_blocks + num_revived;
  if (slots.admission == Admission::kNewRequest) {
    // The whole sequence must fit, or what of it a window keeps alive at once.
    const int seq_tokens = static_cast<int>(seq.tokens.size());
    const int whole_sequence_blocks =
        options_.window.full()
            ? BlocksForTokens(seq_tokens) - num_held - num_hit
            : MaxLiveBlocks(seq_tokens, slots.num_new_tokens) - NumLiveBlocks(seq.id);
    required = std::max(num_new_blocks, whole_sequence_blocks) + num_revived + watermark_blocks_ +
               slots.num_reserved_blocks;
  }
  if (required > pool_.num_available_blocks()) return false;

  RequestBlocks& request = requests_[seq.id];
  if (num_hit > 0) {
    std::vector<BlockId> live;  // a windowed hit has null entries for blocks it never reads
    for (const BlockId b : hit.blocks) {
      if (b == kNullBlock) continue;
      PAGODA_CHECK(pool_.IsCached(b)) << "stale prefix hit: block " << b << " was evicted";
      live.push_back(b);
    }
    pool_.Touch(live);
    request.table.insert(request.table.end(), hit.blocks.begin(), hit.blocks.end());
    request.num_registered_blocks = num_hit;
    request.last_entry = hit.last_entry;
  }
  pool_.Allocate(num_new_blocks, &request.table);
  if (options_.enable_prefix_caching) {
    RegisterFullBlocks(seq, slots.defer_registration ? computed : computed + slots.num_new_tokens,
                       &request);
  }
  // A hit's blocks before the window were taken with it: those go back at once.
  FreeDeadBlocks(computed, &request);
  if (slots.admission == Admission::kNewRequest) CountLookup(hit);
  return true;
}

void KvCacheManager::RegisterFullBlocks(const SequenceView& seq, int num_tokens,
                                        RequestBlocks* request) {
  // Blocks fill as this step computes them; later requests of the same step may already hit
  // them, since every layer writes all new K/V before attention reads any.
  const int bs = block_size();
  const int num_full = num_tokens / bs;
  PAGODA_CHECK_GE(static_cast<int>(seq.block_hashes.size()), num_full)
      << "request " << seq.id << " lacks block hashes";
  for (int i = request->num_registered_blocks; i < num_full; ++i) {
    request->last_entry = pool_.Register(
        request->table[i], seq.block_hashes[i], request->last_entry,
        seq.tokens.subspan(static_cast<size_t>(i) * bs, bs),
        i == 0 ? nullptr : &seq.block_hashes[i - 1], i == 0 ? seq.extra_key : absl::string_view());
  }
  request->num_registered_blocks = std::max(request->num_registered_blocks, num_full);
}

void KvCacheManager::CommitLoadedBlocks(const SequenceView& seq, int num_tokens) {
  const auto it = requests_.find(seq.id);
  PAGODA_CHECK(it != requests_.end()) << "commit for request " << seq.id << " without blocks";
  PAGODA_CHECK_LE(BlocksForTokens(num_tokens), static_cast<int>(it->second.table.size()));
  if (options_.enable_prefix_caching) RegisterFullBlocks(seq, num_tokens, &it->second);
}

void KvCacheManager::Free(RequestId id) {
  const auto it = requests_.find(id);
  if (it == requests_.end()) return;
  std::vector<BlockId>& table = it->second.table;
  std::erase(table, kNullBlock);
  std::reverse(table.begin(), table.end());
  pool_.Release(table);
  requests_.erase(it);
}

void KvCacheManager::FreeUncomputed(RequestId id, int num_computed_tokens) {
  const auto it = requests_.find(id);
  if (it == requests_.end()) return;
  const std::vector<BlockId>& table = it->second.table;
  // Blocks before num_computed_tokens / block_size were full and computed before this step (a
  // prefix hit among them too); the rest were allocated by the request itself.
  for (size_t i = num_computed_tokens / block_size(); i < table.size(); ++i) {
    if (table[i] != kNullBlock) pool_.DropContent(table[i]);
  }
  Free(id);
}

absl::Span<const BlockId> KvCacheManager::GetBlockTable(RequestId id) const {
  const auto it = requests_.find(id);
  if (it == requests_.end()) return {};
  return it->second.table;
}

KvCacheStats KvCacheManager::Stats() const {
  KvCacheStats stats = lookups_;
  stats.num_blocks = pool_.num_blocks();
  stats.num_used_blocks = pool_.num_used_blocks();
  stats.num_cached_blocks = pool_.num_cached_evictable_blocks();
  stats.num_free_blocks = pool_.num_free_blocks();
  stats.usage_ratio =
      stats.num_blocks == 0 ? 0.0 : static_cast<double>(stats.num_used_blocks) / stats.num_blocks;
  stats.num_evictions = pool_.num_evictions();
  return stats;
}

}  // namespace pagoda::block_manager
