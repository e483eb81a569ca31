#include "kv_offload/tier.h"

#include "common/check.h"

namespace pagoda::kv_offload {

TierIndex::Entry* TierIndex::Find(const block_manager::BlockHash& hash) {
  const auto it = entries_.find(hash);
  return it == entries_.end() ? nullptr : &it->second;
}

const TierIndex::Entry* TierIndex::Find(const block_manager::BlockHash& hash) const {
  const auto it = entries_.find(hash);
  return it == entries_.end() ? nullptr : &it->second;
}

TierIndex::Entry* TierIndex::FindMatching(const BlockIdentity& identity) {
  Entry* entry = Find(identity.hash);
  if (entry == nullptr || !entry->ready || !(entry->identity == identity)) return nullptr;
  return entry;
}

TierIndex::Entry& TierIndex::Add(BlockIdentity identity, int64_t bytes) {
  const block_manager::BlockHash hash = identity.hash;
  PAGODA_CHECK(!entries_.contains(hash));
  Entry& entry = entries_[hash];
  entry.identity = std::move(identity);
  entry.bytes = bytes;
  entry.lru = lru_.insert(lru_.end(), hash);
  used_bytes_ += bytes;
  return entry;
}

void TierIndex::MarkReady(Entry& entry) {
  entry.ready = true;
  if (!event_medium_.empty()) RecordStored(entry);
}

void TierIndex::RecordStored(const Entry& entry) {
  const BlockIdentity& id = entry.identity;
  block_manager::AppendBlockStored(
      id.hash.low, id.parent.has_value() ? std::optional<uint64_t>(id.parent->low) : std::nullopt,
      id.tokens, id.extra_key, &events_, event_medium_);
}

void TierIndex::Touch(Entry& entry) { lru_.splice(lru_.end(), lru_, entry.lru); }

void TierIndex::Remove(const block_manager::BlockHash& hash) {
  const auto it = entries_.find(hash);
  PAGODA_CHECK(it != entries_.end());
  if (it->second.ready && !event_medium_.empty()) {
    block_manager::AppendBlockRemoved(hash.low, &events_, event_medium_);
  }
  used_bytes_ -= it->second.bytes;
  lru_.erase(it->second.lru);
  entries_.erase(it);
}

TierIndex::Entry* TierIndex::Victim() {
  for (const block_manager::BlockHash& hash : lru_) {
    Entry& entry = entries_.at(hash);
    if (entry.ready && entry.pins == 0) return &entry;
  }
  return nullptr;
}

void TierIndex::EnableEvents(std::string medium) {
  event_medium_ = std::move(medium);
  events_.clear();
}

std::vector<block_manager::KvCacheEvent> TierIndex::TakeEvents(bool snapshot) {
  std::vector<block_manager::KvCacheEvent> events;
  events.swap(events_);
  if (!snapshot || event_medium_.empty()) return events;
  events.clear();
  ForEachReady([this](const Entry& entry) { RecordStored(entry); });
  events.swap(events_);
  return events;
}

bool IndexedTier::Contains(const BlockIdentity& identity) {
  absl::MutexLock lock(&mu_);
  ++stats_.queries;
  TierIndex::Entry* entry = index_.FindMatching(identity);
  if (entry == nullptr) return false;
  ++stats_.hits;
  index_.Touch(*entry);
  return true;
}

bool IndexedTier::Has(const block_manager::BlockHash& hash) const {
  absl::MutexLock lock(&mu_);
  return index_.Find(hash) != nullptr;
}

TierStats IndexedTier::stats() const {
  absl::MutexLock lock(&mu_);
  TierStats stats = stats_;
  stats.used_bytes = index_.used_bytes();
  stats.num_blocks = index_.size();
  return stats;
}

void IndexedTier::EnableEvents(bool on) {
  absl::MutexLock lock(&mu_);
  index_.EnableEvents(on ? event_medium() : std::string());
}

std::vector<block_manager::KvCacheEvent> IndexedTier::TakeEvents(bool snapshot) {
  absl::MutexLock lock(&mu_);
  return index_.TakeEvents(snapshot);
}

}  // namespace pagoda::kv_offload
