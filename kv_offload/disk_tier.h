#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kv_offload/block_file.h"
#include "kv_offload/tier.h"

namespace pagoda::kv_offload {

struct DiskTierOptions {
  std::string dir;             // created if missing
  int64_t capacity_bytes = 0;  // > 0: the files' total size at most
  // What a file must be to be served (fingerprint, block size, payload size, hasher).
  BlockFileExpectation expect;
  // One line per notable event (a full disk); may be null.
  std::function<void(const std::string&)> log;
};

// The disk tier: one file per block (block_file.h) in one directory, which survives restarts.
// Open() removes temporary files a crash left, reads every header and deletes (and counts) the
// files that are not valid blocks of this model; bodies are verified by checksum when loaded.
// A file is written under a temporary name and renamed, so a crash leaves whole files or
// temporary ones, never a torn block under a block's name. No fsync: after a power loss a
// renamed file may be short or stale, and the checksum rejects it (docs/architecture.md).
// A write error (a full disk) stops spilling for good, logged once; loads go on.
//
// Thread-safe.
class DiskTier final : public IndexedTier {
 public:
  static absl::StatusOr<std::unique_ptr<DiskTier>> Open(const DiskTierOptions& options);

  absl::string_view medium() const override { return "disk"; }
  absl::Status Store(const BlockRecord& record, std::vector<BlockRecord>* evicted) override;
  absl::StatusOr<BlockRecord> Load(const BlockIdentity& identity) override;

  bool spill_disabled() const;
  const std::string& dir() const { return options_.dir; }

 private:
  explicit DiskTier(const DiskTierOptions& options);
  absl::Status Scan();
  std::string PathOf(const block_manager::BlockHash& hash) const;
  // Deletes the file of an entry and forgets it. Requires mu_.
  void Drop(const block_manager::BlockHash& hash) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const DiskTierOptions options_;
  std::atomic<uint64_t> temp_counter_{0};
  bool spill_disabled_ ABSL_GUARDED_BY(mu_) = false;
};

// Reads a whole file; errors name the path.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);
// Writes `bytes` to a temporary file beside `path`, then renames it to `path`; removes the
// temporary file on failure.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view bytes,
                                 absl::string_view temp_suffix);

}  // namespace pagoda::kv_offload
