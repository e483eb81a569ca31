#include "block_manager/kv_cache_events.h"

namespace pagoda::block_manager {

void AppendBlockStored(uint64_t block_hash, std::optional<uint64_t> parent_hash,
                       absl::Span<const TokenId> token_ids, absl::string_view extra_key,
                       std::vector<KvCacheEvent>* events, absl::string_view medium) {
  const bool continues = !events->empty() &&
                         events->back().kind == KvCacheEvent::Kind::kBlockStored &&
                         events->back().medium == medium && parent_hash.has_value() &&
                         events->back().block_hashes.back() == *parent_hash;
  if (!continues) {
    events->push_back({.kind = KvCacheEvent::Kind::kBlockStored,
                       .parent_block_hash = parent_hash,
                       .medium = std::string(medium)});
  }
  KvCacheEvent& event = events->back();
  event.block_hashes.push_back(block_hash);
  event.token_ids.insert(event.token_ids.end(), token_ids.begin(), token_ids.end());
  event.extra_keys.push_back(extra_key.empty() ? std::nullopt
                                               : std::optional<std::string>(extra_key));
}

void AppendBlockRemoved(uint64_t block_hash, std::vector<KvCacheEvent>* events,
                        absl::string_view medium) {
  if (events->empty() || events->back().kind != KvCacheEvent::Kind::kBlockRemoved ||
      events->back().medium != medium) {
    events->push_back({.kind = KvCacheEvent::Kind::kBlockRemoved, .medium = std::string(medium)});
  }
  events->back().block_hashes.push_back(block_hash);
}

std::vector<KvCacheEvent> ResyncEvents(absl::Span<const CachedBlockInfo> blocks) {
  std::vector<KvCacheEvent> events;
  events.push_back({.kind = KvCacheEvent::Kind::kAllBlocksCleared});
  for (const CachedBlockInfo& block : blocks) {
    AppendBlockStored(block.block_hash, block.parent_block_hash, block.token_ids, block.extra_key,
                      &events);
  }
  return events;
}

}  // namespace pagoda::block_manager
