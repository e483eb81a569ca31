#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/ids.h"

namespace pagoda::block_manager {

// What the prefix cache did, in the order it did it (docs/kv_events.md). The block pool records
// these only while events are enabled (BlockPool::EnableEvents); a publisher turns them into
// vLLM's KV-event wire format. Hashes are the external form of BlockHash: its low 64 bits.
struct KvCacheEvent {
  enum class Kind {
    // Full blocks entered the prefix cache: block_hashes[i] holds token_ids[i * block_size ..],
    // its parent is block_hashes[i - 1], the first one's is parent_block_hash (none for a
    // sequence's first block).
    kBlockStored,
    // Cached contents were evicted (block_hashes).
    kBlockRemoved,
    // Every cached content was dropped.
    kAllBlocksCleared,
  };

  Kind kind = Kind::kAllBlocksCleared;
  std::vector<uint64_t> block_hashes;
  std::optional<uint64_t> parent_block_hash;  // kBlockStored only
  std::vector<TokenId> token_ids;             // kBlockStored only
  // kBlockStored only, one per block: the extra key (cache salt) that a sequence's first block
  // folds into its hash; nullopt for every other block and for unsalted sequences.
  std::vector<std::optional<std::string>> extra_keys;
  // The tier: empty for the engine's own KV pool (the publisher names it, "GPU"), "CPU" or
  // "DISK" for the offload tiers below it (kv_offload/). kAllBlocksCleared clears every tier.
  std::string medium;

  friend bool operator==(const KvCacheEvent&, const KvCacheEvent&) = default;
};

// One block that holds prefix-cache content, as BlockPool::ListCachedBlocks reports it.
struct CachedBlockInfo {
  BlockId block;
  uint64_t block_hash = 0;
  std::optional<uint64_t> parent_block_hash;
  std::vector<TokenId> token_ids;
  std::string extra_key;  // empty unless a salted sequence's first block
  bool in_use = false;    // ref count > 0 (else evictable)
};

// Appends one stored block to `events`: to the last event when that is a kBlockStored of the
// same medium whose last block is `parent_hash` (the chain goes on), else as a new event.
void AppendBlockStored(uint64_t block_hash, std::optional<uint64_t> parent_hash,
                       absl::Span<const TokenId> token_ids, absl::string_view extra_key,
                       std::vector<KvCacheEvent>* events, absl::string_view medium = {});
// Appends one removed block: to the last event when that is a kBlockRemoved of the same medium,
// else as a new one.
void AppendBlockRemoved(uint64_t block_hash, std::vector<KvCacheEvent>* events,
                        absl::string_view medium = {});
// The batch that makes a subscriber's view equal to `blocks` (ListCachedBlocks order) whatever
// it held before: kAllBlocksCleared, then every block as stored.
std::vector<KvCacheEvent> ResyncEvents(absl::Span<const CachedBlockInfo> blocks);

// Receives the events of each engine step (an EventBatch), on the engine thread. Must not
// block: an implementation queues the batch for another thread, and returns false when it had
// to drop it (its queue was full). The engine then re-announces the whole cache
// (kAllBlocksCleared followed by kBlockStored of every cached block) in the next batch it can
// publish, so that subscribers converge again.
class KvEventSink {
 public:
  virtual ~KvEventSink() = default;
  [[nodiscard]] virtual bool Publish(std::vector<KvCacheEvent> events) = 0;
};

}  // namespace pagoda::block_manager
