#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "block_manager/kv_cache_events.h"

namespace pagoda::block_manager::testing {

// What a KV-event subscriber knows: the cached blocks rebuilt from the events alone. Apply()
// refuses an impossible stream (a block stored twice, an unknown block removed, a malformed
// event); Compare() checks the rebuilt view against the pool's own (ListCachedBlocks).
// Single-threaded.
class KvEventMirror {
 public:
  absl::Status Apply(absl::Span<const KvCacheEvent> events, int block_size);
  absl::Status Compare(absl::Span<const CachedBlockInfo> blocks) const;
  int size() const { return static_cast<int>(blocks_.size()); }

 private:
  struct Block {
    std::optional<uint64_t> parent;
    std::vector<TokenId> tokens;
    std::optional<std::string> extra_key;
  };
  absl::Status ApplyStored(const KvCacheEvent& event, int block_size);

  absl::flat_hash_map<uint64_t, Block> blocks_;
};

}  // namespace pagoda::block_manager::testing
