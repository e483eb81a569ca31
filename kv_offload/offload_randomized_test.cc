// A model-based randomized test of the tiered store (disk tier) against a simple reference: a
// map of blocks with a least-recently-used order and a byte capacity. Operations: spill, look
// up, load, corrupt (a flipped body byte or a truncation), restart. Every step compares the
// store with the reference; a load must return exactly the spilled payload, or fail only for a
// block the test damaged.

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <list>
#include <map>
#include <random>

#include "absl/container/flat_hash_map.h"
#include "gtest/gtest.h"
#include "kv_offload/offload_store.h"
#include "kv_offload/testing/temp_dir.h"
#include "kv_offload/testing/test_blocks.h"

namespace pagoda::kv_offload {
namespace {

using block_manager::BlockHash;
using testing::MakeChain;
using testing::ScopedTempDir;

constexpr int kBlockSize = 4;
constexpr int64_t kPayload = 256;

enum class Damage { kNone, kBody, kTruncated };

struct RefBlock {
  const BlockRecord* record = nullptr;
  Damage damage = Damage::kNone;
};

class Reference {
 public:
  explicit Reference(int64_t capacity) : capacity_(capacity) {}

  bool Holds(const BlockHash& h) const { return blocks_.contains(h); }
  void Spill(const BlockRecord& r, int64_t bytes) {
    if (Holds(r.identity.hash)) return;
    while (used_ + bytes > capacity_) Remove(lru_.front());
    blocks_[r.identity.hash] = {&r, Damage::kNone};
    lru_.push_back(r.identity.hash);
    used_ += bytes;
  }
  void Touch(const BlockHash& h) {
    lru_.remove(h);
    lru_.push_back(h);
  }
  // By value: callers pass lru_.front(), which remove() frees.
  void Remove(BlockHash h) {
    lru_.remove(h);
    blocks_.erase(h);
    used_ -= bytes_;
  }
  RefBlock& at(const BlockHash& h) { return blocks_.at(h); }
  std::vector<BlockHash> held() const { return {lru_.begin(), lru_.end()}; }
  void Reorder(std::vector<BlockHash> order) { lru_.assign(order.begin(), order.end()); }
  void set_block_bytes(int64_t b) { bytes_ = b; }
  int64_t size() const { return static_cast<int64_t>(blocks_.size()); }

 private:
  int64_t capacity_;
  int64_t used_ = 0;
  int64_t bytes_ = 0;
  absl::flat_hash_map<BlockHash, RefBlock> blocks_;
  std::list<BlockHash> lru_;
};

class OffloadRandomizedTest : public ::testing::TestWithParam<int> {};

TEST_P(OffloadRandomizedTest, StoreMatchesTheReference) {
  ScopedTempDir dir;
  std::mt19937_64 rng(GetParam());
  const block_manager::BlockHasher hasher(kBlockSize);
  std::vector<std::vector<BlockRecord>> chains;
  for (int c = 0; c < 12; ++c) {
    chains.push_back(MakeChain(hasher, 1 + static_cast<int>(rng() % 6), kPayload, rng));
  }
  const int64_t file_bytes =
      static_cast<int64_t>(EncodeBlockFile(testing::kFingerprint, chains[0][0]).size());
  const int64_t capacity = file_bytes * (6 + static_cast<int64_t>(rng() % 10));
  const KvOffloadOptions options{.block_size = kBlockSize,
                                 .payload_bytes = kPayload,
                                 .fingerprint = testing::kFingerprint,
                                 .disk_dir = dir.path(),
                                 .disk_bytes = capacity,
                                 .io_threads = 1};
  Reference ref(capacity);
  ref.set_block_bytes(file_bytes);
  auto store = *KvOffloadStore::Create(options);
  int64_t detected = 0;  // corrupt blocks found since the last restart
  int loads = 0, damaged = 0, restarts = 0;
  const auto path_of = [&](const BlockHash& h) { return dir.path() + "/" + BlockFileName(h); };
  // The files' modification times (the disk tier's LRU order after a restart) come from a test
  // clock, one second per write: real ones tie or not depending on the machine's speed, which
  // would make the run, and what it covers, differ from one run to the next.
  int64_t clock = 1700000000;
  const auto set_mtime = [&](const BlockHash& h) {
    const struct timespec times[2] = {{.tv_sec = clock, .tv_nsec = 0},
                                      {.tv_sec = clock, .tv_nsec = 0}};
    ++clock;
    ASSERT_EQ(::utimensat(AT_FDCWD, path_of(h).c_str(), times, 0), 0);
  };

  for (int step = 0; step < 400; ++step) {
    const std::vector<BlockRecord>& chain = chains[rng() % chains.size()];
    const int op = static_cast<int>(rng() % 100);
    SCOPED_TRACE(::testing::Message() << "step " << step << " op " << op);
    if (op < 40) {  // spill a block
      const BlockRecord& r = chain[rng() % chain.size()];
      const bool stored = !ref.Holds(r.identity.hash);
      store->Spill(r);
      store->WaitIdle();
      ref.Spill(r, file_bytes);
      if (stored) set_mtime(r.identity.hash);
    } else if (op < 80) {  // look up a chain, and load what matched
      std::vector<BlockIdentity> ids;
      for (const BlockRecord& r : chain) ids.push_back(r.identity);
      std::vector<int> tiers;
      const int matched = store->Match(ids, &tiers);
      int expected = 0;
      while (expected < static_cast<int>(chain.size()) &&
             ref.Holds(chain[expected].identity.hash)) {
        ref.Touch(chain[expected].identity.hash);
        ++expected;
      }
      ASSERT_EQ(matched, expected);
      if (matched == 0 || rng() % 2 == 0) continue;
      store->Load(std::vector<BlockIdentity>(ids.begin(), ids.begin() + matched), tiers);
      store->WaitIdle();
      ++loads;
      std::vector<LoadResult> done = store->TakeCompletedLoads();
      ASSERT_EQ(done.size(), 1u);
      int good = 0;
      while (good < matched && ref.at(chain[good].identity.hash).damage == Damage::kNone) ++good;
      ASSERT_EQ(static_cast<int>(done[0].blocks.size()), good);
      for (int i = 0; i < good; ++i) ASSERT_EQ(done[0].blocks[i].payload, chain[i].payload);
      if (good < matched) {
        ASSERT_EQ(done[0].status.code(), absl::StatusCode::kDataLoss);
        ref.Remove(chain[good].identity.hash);
        ++detected;
      }
    } else if (op < 92) {  // damage a held block
      const std::vector<BlockHash> held = ref.held();
      if (held.empty()) continue;
      const BlockHash h = held[rng() % held.size()];
      if (ref.at(h).damage != Damage::kNone) continue;
      ++damaged;
      if (rng() % 2 == 0) {
        {
          std::fstream f(path_of(h), std::ios::in | std::ios::out | std::ios::binary);
          // Past the header (88 + 16 bytes): the body or the checksum. XOR with a non-zero
          // value: the byte always changes.
          const auto at = static_cast<std::streamoff>(104 + rng() % (file_bytes - 104));
          f.seekg(at);
          const int byte = f.get();
          f.seekp(at);
          f.put(static_cast<char>(byte ^ static_cast<int>(rng() % 255 + 1)));
        }
        set_mtime(h);
        ref.at(h).damage = Damage::kBody;
      } else {
        std::filesystem::resize_file(path_of(h), file_bytes - 1 - rng() % 100);
        ref.at(h).damage = Damage::kTruncated;
      }
    } else {  // restart
      ASSERT_EQ(store->stats().tiers[0].corrupt_blocks, detected);
      store.reset();
      ++restarts;
      detected = 0;
      std::vector<std::pair<std::pair<int64_t, std::string>, BlockHash>> order;
      for (const BlockHash& h : ref.held()) {
        if (ref.at(h).damage == Damage::kTruncated) {  // found by the scan
          ref.Remove(h);
          ++detected;
          continue;
        }
        struct stat st;
        ASSERT_EQ(::stat(path_of(h).c_str(), &st), 0);
        order.push_back(
            {{st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec, BlockFileName(h)}, h});
      }
      std::sort(order.begin(), order.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
      std::vector<BlockHash> lru;
      for (const auto& [key, h] : order) lru.push_back(h);
      ref.Reorder(lru);
      store = *KvOffloadStore::Create(options);
    }
    const TierStats stats = store->stats().tiers[0];
    ASSERT_EQ(stats.num_blocks, ref.size());
    ASSERT_LE(stats.used_bytes, capacity);
    ASSERT_EQ(stats.corrupt_blocks, detected);
  }
  // The run exercised every kind of operation.
  EXPECT_GT(loads, 10);
  EXPECT_GT(damaged, 0);
  EXPECT_GT(restarts, 0);
}

INSTANTIATE_TEST_SUITE_P(Seeds, OffloadRandomizedTest, ::testing::Range(1, 9));

}  // namespace
}  // namespace pagoda::kv_offload
