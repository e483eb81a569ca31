#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kv_offload/tier.h"

namespace pagoda::kv_offload {

// Host memory for the host tier's slots: pinned (page-locked) by a CUDA runner, so that loads
// and spills are DMA copies; plain memory otherwise. The deleter frees it.
using HostBuffer = std::unique_ptr<char, std::function<void(char*)>>;
using HostAllocator = std::function<HostBuffer(int64_t bytes)>;
// Plain 64-byte-aligned memory.
HostBuffer AllocatePlainHostMemory(int64_t bytes);

struct HostTierOptions {
  int64_t capacity_bytes = 0;  // rounded down to whole blocks; >= one block
  int64_t payload_bytes = 0;   // one block's K/V, > 0
  HostAllocator allocator;     // null: AllocatePlainHostMemory
};

// The host-memory tier: a fixed arena of block slots, least recently used evicted first, the
// evicted blocks handed to the caller (for the disk tier below). Lost at exit.
//
// Thread-safe.
class HostTier final : public IndexedTier {
 public:
  static absl::StatusOr<std::unique_ptr<HostTier>> Create(const HostTierOptions& options);

  absl::string_view medium() const override { return "cpu"; }
  absl::Status Store(const BlockRecord& record, std::vector<BlockRecord>* evicted) override;
  absl::StatusOr<BlockRecord> Load(const BlockIdentity& identity) override;
  // Copies of every block held, least recently used first.
  std::vector<BlockRecord> Snapshot() const;

 private:
  HostTier(const HostTierOptions& options, int64_t num_slots, HostBuffer arena);
  char* SlotData(int64_t slot) const { return arena_.get() + slot * options_.payload_bytes; }

  const HostTierOptions options_;
  const HostBuffer arena_;
  std::vector<int64_t> free_slots_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pagoda::kv_offload
