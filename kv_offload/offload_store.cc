#include "kv_offload/offload_store.h"

#include <iterator>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace pagoda::kv_offload {

absl::StatusOr<std::unique_ptr<KvOffloadStore>> KvOffloadStore::Create(
    const KvOffloadOptions& options) {
  if (options.block_size <= 0 || options.payload_bytes <= 0) {
    return absl::InvalidArgumentError("KV offload: blocks need tokens and bytes");
  }
  if (options.io_threads < 1) return absl::InvalidArgumentError("KV offload: no I/O thread");
  std::unique_ptr<KvOffloadStore> store(new KvOffloadStore(options));
  if (options.host_bytes > 0) {
    absl::StatusOr<std::unique_ptr<HostTier>> host =
        HostTier::Create({.capacity_bytes = options.host_bytes,
                          .payload_bytes = options.payload_bytes,
                          .allocator = options.host_allocator});
    if (!host.ok()) return host.status();
    store->host_tier_ = host->get();
    store->tiers_.push_back(*std::move(host));
  }
  if (!options.disk_dir.empty()) {
    absl::StatusOr<std::unique_ptr<DiskTier>> disk =
        DiskTier::Open({.dir = options.disk_dir,
                        .capacity_bytes = options.disk_bytes,
                        .expect = {.fingerprint = options.fingerprint,
                                   .block_size = options.block_size,
                                   .payload_bytes = options.payload_bytes,
                                   .hasher = &store->hasher_},
                        .log = options.log});
    if (!disk.ok()) return disk.status();
    store->disk_tier_ = disk->get();
    store->tiers_.push_back(*std::move(disk));
  }
  if (store->tiers_.empty()) return absl::InvalidArgumentError("KV offload: no tier");
  for (int i = 0; i < options.io_threads; ++i) {
    store->threads_.emplace_back([raw = store.get()] { raw->Worker(); });
  }
  return store;
}

KvOffloadStore::KvOffloadStore(const KvOffloadOptions& options)
    : options_(options), hasher_(options.block_size) {}

KvOffloadStore::~KvOffloadStore() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  for (std::thread& t : threads_) t.join();
}

bool KvOffloadStore::Holds(const block_manager::BlockHash& hash) const {
  for (const auto& tier : tiers_) {
    if (tier->Has(hash)) return true;
  }
  return false;
}

bool KvOffloadStore::Spill(BlockRecord record) {
  absl::MutexLock lock(&mu_);
  const int64_t bytes = static_cast<int64_t>(record.payload.size());
  if (pending_spill_bytes_ + bytes > options_.max_pending_spill_bytes) {
    ++spills_dropped_;
    return false;
  }
  pending_spill_bytes_ += bytes;
  spills_.push_back(std::move(record));
  return true;
}

int KvOffloadStore::Match(absl::Span<const BlockIdentity> chain, std::vector<int>* tiers) {
  tiers->clear();
  for (const BlockIdentity& identity : chain) {
    int found = -1;
    for (int t = 0; t < num_tiers() && found < 0; ++t) {
      if (tiers_[t]->Contains(identity)) found = t;
    }
    if (found < 0) break;
    tiers->push_back(found);
  }
  return static_cast<int>(tiers->size());
}

uint64_t KvOffloadStore::Load(std::vector<BlockIdentity> blocks, std::vector<int> tiers) {
  absl::MutexLock lock(&mu_);
  const uint64_t ticket = next_ticket_++;
  loads_.push_back({ticket, std::move(blocks), std::move(tiers)});
  return ticket;
}

std::vector<LoadResult> KvOffloadStore::TakeCompletedLoads() {
  absl::MutexLock lock(&mu_);
  std::vector<LoadResult> done;
  done.swap(completed_);
  return done;
}

bool KvOffloadStore::has_completed_loads() const {
  absl::MutexLock lock(&mu_);
  return !completed_.empty();
}

void KvOffloadStore::set_on_load_complete(std::function<void()> callback) {
  absl::MutexLock lock(&mu_);
  on_load_complete_ = std::move(callback);
}

void KvOffloadStore::EnableEvents(bool on) {
  for (const auto& tier : tiers_) tier->EnableEvents(on);
  absl::MutexLock lock(&mu_);
  events_enabled_ = on;
}

std::vector<block_manager::KvCacheEvent> KvOffloadStore::TakeEvents(bool snapshot) {
  std::vector<block_manager::KvCacheEvent> events;
  for (const auto& tier : tiers_) {
    std::vector<block_manager::KvCacheEvent> more = tier->TakeEvents(snapshot);
    events.insert(events.end(), std::make_move_iterator(more.begin()),
                  std::make_move_iterator(more.end()));
  }
  return events;
}

void KvOffloadStore::Worker() {
  while (true) {
    std::optional<LoadJob> load;
    std::optional<BlockRecord> spill;
    {
      absl::MutexLock lock(&mu_);
      const auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || !loads_.empty() || !spills_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      // Loads first: a request waits for them. Spills are finished even when stopping.
      if (!loads_.empty()) {
        load = std::move(loads_.front());
        loads_.pop_front();
      } else if (!spills_.empty()) {
        spill = std::move(spills_.front());
        spills_.pop_front();
      } else {
        return;  // stopping, nothing left
      }
      ++busy_;
    }
    std::function<void()> notify;
    if (load.has_value()) {
      LoadResult result = RunLoad(*load);
      absl::MutexLock lock(&mu_);
      completed_.push_back(std::move(result));
      notify = on_load_complete_;
    } else {
      const int64_t bytes = static_cast<int64_t>(spill->payload.size());
      RunSpill(*std::move(spill));
      absl::MutexLock lock(&mu_);
      pending_spill_bytes_ -= bytes;
      if (events_enabled_) notify = on_load_complete_;
    }
    if (notify) notify();
    absl::MutexLock lock(&mu_);
    --busy_;
  }
}

void KvOffloadStore::RunSpill(BlockRecord record) {
  // Down the tiers: what the host tier evicts goes to disk.
  std::vector<BlockRecord> batch;
  batch.push_back(std::move(record));
  for (const auto& tier : tiers_) {
    std::vector<BlockRecord> evicted;
    for (const BlockRecord& r : batch) {
      // An error (a full disk) only means the block is not kept here.
      (void)tier->Store(r, &evicted);
    }
    batch = std::move(evicted);
    if (batch.empty()) break;
  }
}

LoadResult KvOffloadStore::RunLoad(const LoadJob& job) {
  const absl::Time start = absl::Now();
  LoadResult result{.ticket = job.ticket};
  for (size_t i = 0; i < job.blocks.size(); ++i) {
    absl::StatusOr<BlockRecord> record = tiers_[job.tiers[i]]->Load(job.blocks[i]);
    if (!record.ok()) {
      result.status = record.status();
      break;
    }
    result.blocks.push_back(*std::move(record));
    result.tiers.push_back(job.tiers[i]);
  }
  result.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return result;
}

int64_t KvOffloadStore::PersistHostTier() {
  if (host_tier_ == nullptr || disk_tier_ == nullptr) return 0;
  int64_t stored = 0;
  for (const BlockRecord& record : host_tier_->Snapshot()) {
    if (disk_tier_->Has(record.identity.hash)) continue;
    stored += disk_tier_->Store(record, nullptr).ok() ? 1 : 0;
  }
  return stored;
}

OffloadStats KvOffloadStore::stats() const {
  OffloadStats stats;
  for (const auto& tier : tiers_) {
    stats.media.emplace_back(tier->medium());
    stats.tiers.push_back(tier->stats());
  }
  absl::MutexLock lock(&mu_);
  stats.spills_dropped = spills_dropped_;
  return stats;
}

void KvOffloadStore::WaitIdle() {
  absl::MutexLock lock(&mu_);
  const auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return loads_.empty() && spills_.empty() && busy_ == 0;
  };
  mu_.Await(absl::Condition(&idle));
}

}  // namespace pagoda::kv_offload
