#include "kv_offload/host_tier.h"

#include <cstdlib>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace pagoda::kv_offload {

HostBuffer AllocatePlainHostMemory(int64_t bytes) {
  const size_t rounded = (static_cast<size_t>(bytes) + 63) / 64 * 64;
  return HostBuffer(static_cast<char*>(std::aligned_alloc(64, rounded)),
                    [](char* p) { std::free(p); });
}

absl::StatusOr<std::unique_ptr<HostTier>> HostTier::Create(const HostTierOptions& options) {
  if (options.payload_bytes <= 0) {
    return absl::InvalidArgumentError("host tier: blocks have no bytes");
  }
  const int64_t slots = options.capacity_bytes / options.payload_bytes;
  if (slots < 1) {
    return absl::InvalidArgumentError(absl::StrCat("kv-host-cache-bytes: ", options.capacity_bytes,
                                                   " bytes hold no block of ",
                                                   options.payload_bytes, " bytes"));
  }
  HostAllocator allocate = options.allocator ? options.allocator : AllocatePlainHostMemory;
  HostBuffer arena = allocate(slots * options.payload_bytes);
  if (arena == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("kv-host-cache-bytes: cannot allocate ",
                                                     slots * options.payload_bytes, " bytes"));
  }
  return std::unique_ptr<HostTier>(new HostTier(options, slots, std::move(arena)));
}

HostTier::HostTier(const HostTierOptions& options, int64_t num_slots, HostBuffer arena)
    : IndexedTier(num_slots * options.payload_bytes), options_(options), arena_(std::move(arena)) {
  for (int64_t s = num_slots - 1; s >= 0; --s) free_slots_.push_back(s);
}

absl::Status HostTier::Store(const BlockRecord& record, std::vector<BlockRecord>* evicted) {
  if (static_cast<int64_t>(record.payload.size()) != options_.payload_bytes) {
    return absl::InvalidArgumentError("host tier: a block of another size");
  }
  absl::MutexLock lock(&mu_);
  if (index_.Find(record.identity.hash) != nullptr) return absl::OkStatus();
  while (free_slots_.empty()) {
    TierIndex::Entry* victim = index_.Victim();
    if (victim == nullptr) return absl::ResourceExhaustedError("host tier: every block busy");
    if (evicted != nullptr) {
      evicted->push_back(
          BlockRecord{.identity = victim->identity,
                      .payload = std::string(SlotData(victim->slot), options_.payload_bytes)});
    }
    free_slots_.push_back(victim->slot);
    index_.Remove(victim->identity.hash);
    ++stats_.evicted_blocks;
  }
  const int64_t slot = free_slots_.back();
  free_slots_.pop_back();
  std::memcpy(SlotData(slot), record.payload.data(), record.payload.size());
  TierIndex::Entry& entry = index_.Add(record.identity, options_.payload_bytes);
  entry.slot = slot;
  index_.MarkReady(entry);
  ++stats_.stored_blocks;
  stats_.written_bytes += options_.payload_bytes;
  return absl::OkStatus();
}

absl::StatusOr<BlockRecord> HostTier::Load(const BlockIdentity& identity) {
  absl::MutexLock lock(&mu_);
  TierIndex::Entry* entry = index_.FindMatching(identity);
  if (entry == nullptr) return absl::NotFoundError("host tier: no such block");
  ++stats_.loads;
  stats_.read_bytes += options_.payload_bytes;
  return BlockRecord{.identity = entry->identity,
                     .payload = std::string(SlotData(entry->slot), options_.payload_bytes)};
}

std::vector<BlockRecord> HostTier::Snapshot() const {
  absl::MutexLock lock(&mu_);
  std::vector<BlockRecord> records;
  index_.ForEachReady([&](const TierIndex::Entry& entry) {
    records.push_back(
        BlockRecord{.identity = entry.identity,
                    .payload = std::string(SlotData(entry.slot), options_.payload_bytes)});
  });
  return records;
}

}  // namespace pagoda::kv_offload
