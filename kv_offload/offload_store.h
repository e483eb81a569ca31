#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "kv_offload/block_file.h"
#include "kv_offload/disk_tier.h"
#include "kv_offload/host_tier.h"
#include "kv_offload/tier.h"

namespace pagoda::kv_offload {

struct KvOffloadOptions {
  int block_size = 16;
  int64_t payload_bytes = 0;  // one block's K/V (ModelRunner::kv_block_bytes)
  ModelFingerprint fingerprint;
  // Host-memory tier (0 = none) and its allocator (null: plain memory).
  int64_t host_bytes = 0;
  HostAllocator host_allocator;
  // Disk tier ("" = none).
  std::string disk_dir;
  int64_t disk_bytes = 0;
  int io_threads = 2;
  // Spills waiting for a thread beyond this many bytes are dropped (counted): the engine never
  // waits for a slow disk.
  int64_t max_pending_spill_bytes = int64_t{256} << 20;
  std::function<void(const std::string&)> log;  // may be null
};

// A run of blocks read back from the tiers, for one request.
struct LoadResult {
  uint64_t ticket = 0;
  // The blocks read, in chain order: a prefix of what was asked for; it ends early at the first
  // block that could not be read (status says why).
  std::vector<BlockRecord> blocks;
  absl::Status status;
  double seconds = 0;      // the whole run, queueing excluded
  std::vector<int> tiers;  // the tier each block came from
};

// media, tiers and spills_dropped filled (the engine adds the rest).
using OffloadStats = block_manager::KvOffloadStats;

// The tiers below the device pool (host memory, then disk) and the I/O threads that fill and
// read them. Blocks the device evicts are spilled to the top tier; what a tier evicts goes to
// the next one down. Lookups follow a request's chain of block hashes past the device hit;
// loads run on the I/O threads and are collected by the engine thread between steps, so no
// engine step ever waits for I/O.
//
// Thread-safe; Spill/Match/Load/TakeCompletedLoads are meant for the engine thread.
class KvOffloadStore {
 public:
  static absl::StatusOr<std::unique_ptr<KvOffloadStore>> Create(const KvOffloadOptions& options);
  // Finishes the queued spills (a clean shutdown keeps them), then stops the threads.
  ~KvOffloadStore();

  const KvOffloadOptions& options() const { return options_; }
  int num_tiers() const { return static_cast<int>(tiers_.size()); }
  Tier& tier(int i) { return *tiers_[i]; }
  const block_manager::BlockHasher& hasher() const { return hasher_; }

  // Some tier holds the hash (or is storing it): spilling it again would be redundant.
  bool Holds(const block_manager::BlockHash& hash) const;
  // Queues a block for the top tier; false when dropped (too many bytes pending).
  bool Spill(BlockRecord record);
  // How many blocks of `chain`, from its first, some tier holds with the very identity; for
  // each, the index of the top-most tier that does goes to `tiers`.
  int Match(absl::Span<const BlockIdentity> chain, std::vector<int>* tiers);
  // Reads `blocks` (from the tiers Match named) on an I/O thread; the result is collected with
  // TakeCompletedLoads. Returns the ticket.
  uint64_t Load(std::vector<BlockIdentity> blocks, std::vector<int> tiers);
  std::vector<LoadResult> TakeCompletedLoads();
  bool has_completed_loads() const;
  // Called on an I/O thread after each load completes and, with events on, after each spill
  // (the engine wakes up to collect the load or publish the events); set before use.
  void set_on_load_complete(std::function<void()> callback);

  // KV events of every tier (Tier::EnableEvents), top tier first.
  void EnableEvents(bool on);
  std::vector<block_manager::KvCacheEvent> TakeEvents(bool snapshot);

  // Copies what the host-memory tier holds to the disk tier (both present), synchronously: at
  // shutdown, so that a restart finds them. Returns the blocks the disk tier stored.
  int64_t PersistHostTier();

  OffloadStats stats() const;
  // Blocks until every queued spill and load has run (tests, benchmarks).
  void WaitIdle();

 private:
  struct LoadJob {
    uint64_t ticket;
    std::vector<BlockIdentity> blocks;
    std::vector<int> tiers;
  };

  explicit KvOffloadStore(const KvOffloadOptions& options);
  void Worker();
  void RunSpill(BlockRecord record);
  LoadResult RunLoad(const LoadJob& job);

  const KvOffloadOptions options_;
  const block_manager::BlockHasher hasher_;
  std::vector<std::unique_ptr<Tier>> tiers_;  // top first
  HostTier* host_tier_ = nullptr;             // in tiers_, or null
  DiskTier* disk_tier_ = nullptr;             // in tiers_, or null

  mutable absl::Mutex mu_;
  std::deque<BlockRecord> spills_ ABSL_GUARDED_BY(mu_);
  std::deque<LoadJob> loads_ ABSL_GUARDED_BY(mu_);
  std::vector<LoadResult> completed_ ABSL_GUARDED_BY(mu_);
  std::function<void()> on_load_complete_ ABSL_GUARDED_BY(mu_);
  int64_t pending_spill_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t spills_dropped_ ABSL_GUARDED_BY(mu_) = 0;
  int busy_ ABSL_GUARDED_BY(mu_) = 0;
  bool events_enabled_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_ticket_ ABSL_GUARDED_BY(mu_) = 1;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace pagoda::kv_offload
