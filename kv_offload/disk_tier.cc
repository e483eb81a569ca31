#include "kv_offload/disk_tier.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace pagoda::kv_offload {
namespace {

absl::Status ErrnoError(absl::string_view what, const std::string& path, int error) {
  const std::string message = absl::StrCat(what, " ", path, ": ", std::strerror(error));
  if (error == ENOENT) return absl::NotFoundError(message);
  if (error == ENOSPC || error == EDQUOT || error == EFBIG) {
    return absl::ResourceExhaustedError(message);
  }
  return absl::InternalError(message);
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int Release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// The first `limit` bytes of a file (fewer if it is shorter), and its size.
absl::StatusOr<std::string> ReadFilePrefix(const std::string& path, size_t limit,
                                           int64_t* file_bytes, int64_t* mtime_ns) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoError("cannot open", path, errno);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoError("cannot stat", path, errno);
  *file_bytes = st.st_size;
  *mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  std::string bytes(std::min<size_t>(limit, static_cast<size_t>(st.st_size)), '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("cannot read", path, errno);
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  bytes.resize(done);
  return bytes;
}

}  // namespace

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoError("cannot open", path, errno);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoError("cannot stat", path, errno);
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("cannot read", path, errno);
    if (n == 0) break;  // shrank meanwhile: the decoder sees a short file
    done += static_cast<size_t>(n);
  }
  bytes.resize(done);
  return bytes;
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view bytes,
                                 absl::string_view temp_suffix) {
  const std::string temp = absl::StrCat(path, ".tmp", temp_suffix);
  Fd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (fd.get() < 0) return ErrnoError("cannot create", temp, errno);
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int error = n < 0 ? errno : ENOSPC;
      ::unlink(temp.c_str());
      return ErrnoError("cannot write", temp, error);
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd.Release()) != 0) {
    const int error = errno;
    ::unlink(temp.c_str());
    return ErrnoError("cannot close", temp, error);
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    const int error = errno;
    ::unlink(temp.c_str());
    return ErrnoError("cannot rename", temp, error);
  }
  return absl::OkStatus();
}

DiskTier::DiskTier(const DiskTierOptions& options)
    : IndexedTier(options.capacity_bytes), options_(options) {}

absl::StatusOr<std::unique_ptr<DiskTier>> DiskTier::Open(const DiskTierOptions& options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("kv-offload-dir: empty");
  if (options.capacity_bytes <= 0) {
    return absl::InvalidArgumentError("kv-offload-bytes: must be positive");
  }
  if (::mkdir(options.dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv-offload-dir: cannot create ", options.dir, ": ", std::strerror(errno)));
  }
  std::unique_ptr<DiskTier> tier(new DiskTier(options));
  if (absl::Status status = tier->Scan(); !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("kv-offload-dir: ", status.message()));
  }
  return tier;
}

std::string DiskTier::PathOf(const block_manager::BlockHash& hash) const {
  return absl::StrCat(options_.dir, "/", BlockFileName(hash));
}

absl::Status DiskTier::Scan() {
  DIR* dir = ::opendir(options_.dir.c_str());
  if (dir == nullptr) return ErrnoError("cannot list", options_.dir, errno);
  struct Found {
    BlockIdentity identity;
    int64_t bytes;
    int64_t mtime_ns;
  };
  std::vector<Found> found;
  std::vector<std::string> doomed;
  int64_t corrupt = 0;
  while (const dirent* e = ::readdir(dir)) {
    const std::string name = e->d_name;
    const std::string path = absl::StrCat(options_.dir, "/", name);
    if (absl::StrContains(name, ".kvb.tmp")) {  // a write a crash interrupted
      doomed.push_back(path);
      continue;
    }
    if (!absl::EndsWith(name, ".kvb")) continue;
    int64_t file_bytes = 0;
    int64_t mtime_ns = 0;
    // Headers only: bodies are verified by checksum when loaded.
    absl::StatusOr<std::string> header = ReadFilePrefix(
        path, kBlockFileFixedHeader + kMaxExtraKeyBytes + 4 * options_.expect.block_size,
        &file_bytes, &mtime_ns);
    absl::StatusOr<BlockIdentity> identity =
        header.ok() ? DecodeBlockFileHeader(*header, file_bytes, options_.expect) : header.status();
    if (identity.ok() && BlockFileName(identity->hash) != name) {
      identity = absl::DataLossError("renamed");
    }
    if (!identity.ok()) {
      ++corrupt;
      doomed.push_back(path);
      continue;
    }
    found.push_back({*std::move(identity), file_bytes, mtime_ns});
  }
  ::closedir(dir);
  for (const std::string& path : doomed) ::unlink(path.c_str());
  // Oldest first (ties by name): the least recently written are the first to go.
  std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) {
    if (a.mtime_ns != b.mtime_ns) return a.mtime_ns < b.mtime_ns;
    return BlockFileName(a.identity.hash) < BlockFileName(b.identity.hash);
  });
  absl::MutexLock lock(&mu_);
  stats_.corrupt_blocks += corrupt;
  for (Found& f : found) {
    index_.MarkReady(index_.Add(std::move(f.identity), f.bytes));
  }
  while (index_.used_bytes() > index_.capacity_bytes()) {
    TierIndex::Entry* victim = index_.Victim();
    if (victim == nullptr) break;
    Drop(victim->identity.hash);
  }
  return absl::OkStatus();
}

void DiskTier::Drop(const block_manager::BlockHash& hash) {
  ::unlink(PathOf(hash).c_str());
  index_.Remove(hash);
}

bool DiskTier::spill_disabled() const {
  absl::MutexLock lock(&mu_);
  return spill_disabled_;
}

absl::Status DiskTier::Store(const BlockRecord& record, std::vector<BlockRecord>* /*evicted*/) {
  const block_manager::BlockHash hash = record.identity.hash;
  const std::string bytes = EncodeBlockFile(options_.expect.fingerprint, record);
  const int64_t size = static_cast<int64_t>(bytes.size());
  {
    absl::MutexLock lock(&mu_);
    if (spill_disabled_) return absl::FailedPreconditionError("disk tier: spilling stopped");
    if (index_.Find(hash) != nullptr) return absl::OkStatus();
    if (size > index_.capacity_bytes()) {
      return absl::ResourceExhaustedError("disk tier: a block is larger than the tier");
    }
    while (index_.used_bytes() + size > index_.capacity_bytes()) {
      TierIndex::Entry* victim = index_.Victim();
      if (victim == nullptr) return absl::ResourceExhaustedError("disk tier: every block busy");
      Drop(victim->identity.hash);
      ++stats_.evicted_blocks;
    }
    index_.Add(record.identity, size);  // reserved, not servable until written
  }
  const absl::Status written = WriteFileAtomically(
      PathOf(hash), bytes,
      absl::StrCat(".", ::getpid(), ".", temp_counter_.fetch_add(1, std::memory_order_relaxed)));
  absl::MutexLock lock(&mu_);
  if (!written.ok()) {
    index_.Remove(hash);
    ++stats_.write_errors;
    if (!spill_disabled_) {
      spill_disabled_ = true;
      if (options_.log) {
        options_.log(absl::StrCat("KV offload: disk tier stops spilling (", written.message(),
                                  "); cached blocks are still served"));
      }
    }
    return written;
  }
  TierIndex::Entry* entry = index_.Find(hash);
  PAGODA_CHECK(entry != nullptr);
  index_.MarkReady(*entry);
  ++stats_.stored_blocks;
  stats_.written_bytes += size;
  return absl::OkStatus();
}

absl::StatusOr<BlockRecord> DiskTier::Load(const BlockIdentity& identity) {
  {
    absl::MutexLock lock(&mu_);
    TierIndex::Entry* entry = index_.FindMatching(identity);
    if (entry == nullptr) return absl::NotFoundError("disk tier: no such block");
    ++entry->pins;
  }
  absl::StatusOr<std::string> bytes = ReadWholeFile(PathOf(identity.hash));
  absl::StatusOr<BlockRecord> record =
      bytes.ok() ? DecodeBlockFile(*bytes, options_.expect) : bytes.status();
  if (record.ok() && !(record->identity == identity)) {
    record = absl::DataLossError("KV block file: another block's content");
  }
  absl::MutexLock lock(&mu_);
  TierIndex::Entry* entry = index_.Find(identity.hash);
  if (entry != nullptr) --entry->pins;
  if (!record.ok()) {
    // Damaged or gone: never served, deleted and counted.
    ++stats_.corrupt_blocks;
    if (entry != nullptr) Drop(identity.hash);
    return absl::DataLossError(record.status().message());
  }
  ++stats_.loads;
  stats_.read_bytes += static_cast<int64_t>(bytes->size());
  return record;
}

}  // namespace pagoda::kv_offload
