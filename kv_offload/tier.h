#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "block_manager/block_hash.h"
#include "block_manager/kv_cache_events.h"
#include "block_manager/kv_cache_stats.h"
#include "kv_offload/block_file.h"

namespace pagoda::kv_offload {

using TierStats = block_manager::KvTierStats;

// One tier below the device pool: a bounded, least-recently-used store of blocks keyed by
// their chained hash. Thread-safe: the engine thread looks up, I/O threads store and load.
class Tier {
 public:
  virtual ~Tier() = default;
  // The KV-event medium: "cpu" (host memory) or "disk".
  virtual absl::string_view medium() const = 0;
  // Whether the block of `identity` (hash, parent, extra key and tokens all equal) is held and
  // may be loaded. Counts a query, and a hit when found; a hit becomes most recently used.
  virtual bool Contains(const BlockIdentity& identity) = 0;
  // Holds the hash already (or is storing it): a store would be redundant. Counts nothing.
  virtual bool Has(const block_manager::BlockHash& hash) const = 0;
  // Stores a block, evicting least recently used ones to make room; their records are appended
  // to `evicted` when it is not null (for the next tier down). An error when the block could
  // not be stored (it is then not held).
  virtual absl::Status Store(const BlockRecord& record, std::vector<BlockRecord>* evicted) = 0;
  // Reads a block back, verified: DataLoss (and the block dropped) when it is damaged, NotFound
  // when it is gone. The identity must match, as for Contains.
  virtual absl::StatusOr<BlockRecord> Load(const BlockIdentity& identity) = 0;
  virtual TierStats stats() const = 0;

  // KV events (docs/kv_events.md), off until enabled: a block that becomes servable is a
  // kBlockStored, one that goes (evicted, damaged) a kBlockRemoved, both with the tier's
  // event_medium().
  virtual void EnableEvents(bool on) = 0;
  // The events since the last call; with `snapshot`, instead, every block held, as stored (the
  // pending events are dropped: the snapshot subsumes them).
  virtual std::vector<block_manager::KvCacheEvent> TakeEvents(bool snapshot) = 0;
  // "CPU" or "DISK": the medium KV events name, in vLLM's spelling.
  std::string event_medium() const { return absl::AsciiStrToUpper(medium()); }
};

// The bookkeeping both tiers share: entries by hash with their identity and size, and a
// least-recently-used order. Not thread-safe: each tier guards it with its mutex.
class TierIndex {
 public:
  struct Entry {
    BlockIdentity identity;
    int64_t bytes = 0;
    bool ready = false;  // false while being stored: reserved, not servable
    int pins = 0;        // loads in progress: not evictable
    int64_t slot = -1;   // the host tier's slot
    std::list<block_manager::BlockHash>::iterator lru;
  };

  explicit TierIndex(int64_t capacity_bytes) : capacity_bytes_(capacity_bytes) {}

  Entry* Find(const block_manager::BlockHash& hash);
  const Entry* Find(const block_manager::BlockHash& hash) const;
  // The ready entry whose identity equals `identity`, or null.
  Entry* FindMatching(const BlockIdentity& identity);
  // Adds an entry (most recently used), not ready; the caller made room first.
  Entry& Add(BlockIdentity identity, int64_t bytes);
  // The entry may be served from now on.
  void MarkReady(Entry& entry);
  void Touch(Entry& entry);
  void Remove(const block_manager::BlockHash& hash);
  // The least recently used entry that may be evicted (ready, unpinned), or null.
  Entry* Victim();

  int64_t used_bytes() const { return used_bytes_; }
  int64_t capacity_bytes() const { return capacity_bytes_; }
  int64_t size() const { return static_cast<int64_t>(entries_.size()); }

  // Calls f(entry) for every ready entry, least recently used first.
  template <typename F>
  void ForEachReady(F&& f) const {
    for (const block_manager::BlockHash& hash : lru_) {
      const Entry& entry = entries_.at(hash);
      if (entry.ready) f(entry);
    }
  }

  // Tier::EnableEvents / TakeEvents: `medium` empty turns events off.
  void EnableEvents(std::string medium);
  std::vector<block_manager::KvCacheEvent> TakeEvents(bool snapshot);

 private:
  void RecordStored(const Entry& entry);

  int64_t capacity_bytes_;
  int64_t used_bytes_ = 0;
  absl::flat_hash_map<block_manager::BlockHash, Entry> entries_;
  std::list<block_manager::BlockHash> lru_;  // least recently used first
  std::string event_medium_;                 // empty: no events
  std::vector<block_manager::KvCacheEvent> events_;
};

// What both tiers share: the index, the counters and the mutex that guards them, and the
// operations that only touch those. Thread-safe.
class IndexedTier : public Tier {
 public:
  bool Contains(const BlockIdentity& identity) override;
  bool Has(const block_manager::BlockHash& hash) const override;
  TierStats stats() const override;
  void EnableEvents(bool on) override;
  std::vector<block_manager::KvCacheEvent> TakeEvents(bool snapshot) override;

 protected:
  explicit IndexedTier(int64_t capacity_bytes) : index_(capacity_bytes) {
    stats_.capacity_bytes = capacity_bytes;
  }

  mutable absl::Mutex mu_;
  TierIndex index_ ABSL_GUARDED_BY(mu_);
  TierStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pagoda::kv_offload
