#include "kv_offload/offload_store.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "kv_offload/cost_model.h"
#include "kv_offload/testing/temp_dir.h"
#include "kv_offload/testing/test_blocks.h"

namespace pagoda::kv_offload {
namespace {

using testing::MakeChain;
using testing::ScopedTempDir;

constexpr int kBlockSize = 8;
constexpr int64_t kPayload = 1024;

KvOffloadOptions Options(const std::string& dir, int64_t host_bytes = 0) {
  return {.block_size = kBlockSize,
          .payload_bytes = kPayload,
          .fingerprint = testing::kFingerprint,
          .host_bytes = host_bytes,
          .disk_dir = dir,
          .disk_bytes = int64_t{64} << 20};
}

std::vector<BlockIdentity> Identities(const std::vector<BlockRecord>& chain) {
  std::vector<BlockIdentity> ids;
  for (const BlockRecord& r : chain) ids.push_back(r.identity);
  return ids;
}

// Waits for the result of one load.
LoadResult AwaitLoad(KvOffloadStore& store) {
  store.WaitIdle();
  std::vector<LoadResult> done = store.TakeCompletedLoads();
  EXPECT_EQ(done.size(), 1u);
  return done.empty() ? LoadResult{} : std::move(done[0]);
}

TEST(KvOffloadStoreTest, SpillsMatchesAndLoadsAChainAsynchronously) {
  ScopedTempDir dir;
  absl::StatusOr<std::unique_ptr<KvOffloadStore>> store =
      KvOffloadStore::Create(Options(dir.path()));
  ASSERT_TRUE(store.ok()) << store.status();
  std::mt19937_64 rng(1);
  const block_manager::BlockHasher& hasher = (*store)->hasher();
  const std::vector<BlockRecord> chain = MakeChain(hasher, 5, kPayload, rng);
  int notified = 0;
  (*store)->set_on_load_complete([&] { ++notified; });
  for (int i = 0; i < 3; ++i) EXPECT_TRUE((*store)->Spill(chain[i]));
  (*store)->WaitIdle();
  EXPECT_TRUE((*store)->Holds(chain[2].identity.hash));
  EXPECT_FALSE((*store)->Holds(chain[3].identity.hash));
  std::vector<int> tiers;
  EXPECT_EQ((*store)->Match(Identities(chain), &tiers), 3);
  EXPECT_EQ(tiers, std::vector<int>({0, 0, 0}));
  const uint64_t ticket =
      (*store)->Load({chain[0].identity, chain[1].identity, chain[2].identity}, tiers);
  const LoadResult result = AwaitLoad(**store);
  EXPECT_EQ(result.ticket, ticket);
  ASSERT_TRUE(result.status.ok()) << result.status;
  ASSERT_EQ(result.blocks.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(result.blocks[i].payload, chain[i].payload);
  EXPECT_EQ(notified, 1);
}

TEST(KvOffloadStoreTest, HostTierEvictionsFallToDiskAndLoadsComeFromTheTopMostTier) {
  ScopedTempDir dir;
  absl::StatusOr<std::unique_ptr<KvOffloadStore>> store =
      KvOffloadStore::Create(Options(dir.path(), 2 * kPayload));
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_EQ((*store)->num_tiers(), 2);
  EXPECT_EQ((*store)->tier(0).medium(), "cpu");
  std::mt19937_64 rng(2);
  const std::vector<BlockRecord> chain = MakeChain((*store)->hasher(), 4, kPayload, rng);
  for (const BlockRecord& r : chain) {
    ASSERT_TRUE((*store)->Spill(r));
    (*store)->WaitIdle();  // in order, so the host tier's LRU is known
  }
  std::vector<int> tiers;
  ASSERT_EQ((*store)->Match(Identities(chain), &tiers), 4);
  EXPECT_EQ(tiers, std::vector<int>({1, 1, 0, 0}));
  (*store)->Load(Identities(chain), tiers);
  const LoadResult result = AwaitLoad(**store);
  ASSERT_TRUE(result.status.ok()) << result.status;
  ASSERT_EQ(result.blocks.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(result.blocks[i].payload, chain[i].payload);
  const OffloadStats stats = (*store)->stats();
  EXPECT_EQ(stats.tiers[0].evicted_blocks, 2);
  EXPECT_EQ(stats.tiers[1].stored_blocks, 2);
}

TEST(KvOffloadStoreTest, ALoadEndsAtTheFirstDamagedBlock) {
  ScopedTempDir dir;
  absl::StatusOr<std::unique_ptr<KvOffloadStore>> store =
      KvOffloadStore::Create(Options(dir.path()));
  ASSERT_TRUE(store.ok());
  std::mt19937_64 rng(3);
  const std::vector<BlockRecord> chain = MakeChain((*store)->hasher(), 4, kPayload, rng);
  for (const BlockRecord& r : chain) (*store)->Spill(r);
  (*store)->WaitIdle();
  std::vector<int> tiers;
  ASSERT_EQ((*store)->Match(Identities(chain), &tiers), 4);
  {
    std::fstream f(dir.path() + "/" + BlockFileName(chain[2].identity.hash),
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    f.put('\x7f');
  }
  (*store)->Load(Identities(chain), tiers);
  const LoadResult result = AwaitLoad(**store);
  EXPECT_EQ(result.status.code(), absl::StatusCode::kDataLoss);
  ASSERT_EQ(result.blocks.size(), 2u);
  EXPECT_EQ(result.blocks[1].payload, chain[1].payload);
  EXPECT_EQ((*store)->stats().tiers[0].corrupt_blocks, 1);
  EXPECT_EQ((*store)->Match(Identities(chain), &tiers), 2);
}

// The blocks each medium holds according to `events` (applied in order).
std::map<std::string, std::set<uint64_t>> Mirror(
    const std::vector<block_manager::KvCacheEvent>& events) {
  std::map<std::string, std::set<uint64_t>> held;
  for (const block_manager::KvCacheEvent& e : events) {
    using Kind = block_manager::KvCacheEvent::Kind;
    for (const uint64_t h : e.block_hashes) {
      if (e.kind == Kind::kBlockStored) {
        EXPECT_TRUE(held[e.medium].insert(h).second) << h;
      } else if (e.kind == Kind::kBlockRemoved) {
        EXPECT_EQ(held[e.medium].erase(h), 1u) << h;
      }
    }
  }
  return held;
}

TEST(KvOffloadStoreTest, TierEventsNameTheirMediumAndFollowTheBlocks) {
  ScopedTempDir dir;
  absl::StatusOr<std::unique_ptr<KvOffloadStore>> store =
      KvOffloadStore::Create(Options(dir.path(), 2 * kPayload));
  ASSERT_TRUE(store.ok()) << store.status();
  std::mt19937_64 rng(7);
  const std::vector<BlockRecord> chain = MakeChain((*store)->hasher(), 4, kPayload, rng);
  std::atomic<int> notified = 0;
  (*store)->set_on_load_complete([&] { ++notified; });
  (*store)->Spill(chain[0]);
  (*store)->WaitIdle();
  EXPECT_TRUE((*store)->TakeEvents(false).empty()) << "events are off until enabled";
  EXPECT_EQ(notified, 0);

  (*store)->EnableEvents(true);
  for (int i = 1; i < 4; ++i) {
    (*store)->Spill(chain[i]);
    (*store)->WaitIdle();  // in order: the host tier keeps the last two
  }
  EXPECT_EQ(notified, 3) << "each spill wakes the engine to publish";
  std::vector<block_manager::KvCacheEvent> events = (*store)->TakeEvents(false);
  const uint64_t h[4] = {chain[0].identity.hash.low, chain[1].identity.hash.low,
                         chain[2].identity.hash.low, chain[3].identity.hash.low};
  // chain[0] went in before the events: its later moves are still published; a subscriber
  // that missed its store gets it from a snapshot (below).
  ASSERT_FALSE(events.empty());
  for (const auto& e : events) EXPECT_TRUE(e.medium == "CPU" || e.medium == "DISK");
  const auto disk_stored = std::find_if(events.begin(), events.end(), [](const auto& e) {
    return e.medium == "DISK" && e.kind == block_manager::KvCacheEvent::Kind::kBlockStored;
  });
  ASSERT_NE(disk_stored, events.end());
  EXPECT_EQ(disk_stored->block_hashes, std::vector<uint64_t>({h[0], h[1]}))
      << "the host tier's evictions, stored on disk as one chained event";
  EXPECT_FALSE(disk_stored->parent_block_hash.has_value());
  EXPECT_EQ(disk_stored->token_ids.size(), 2u * kBlockSize);

  std::map<std::string, std::set<uint64_t>> held = Mirror((*store)->TakeEvents(true));
  EXPECT_EQ(held["CPU"], std::set<uint64_t>({h[2], h[3]}));
  EXPECT_EQ(held["DISK"], std::set<uint64_t>({h[0], h[1]}));

  {  // a damaged file found by a load leaves the tier, published
    std::fstream f(dir.path() + "/" + BlockFileName(chain[1].identity.hash),
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(200);
    const char byte = static_cast<char>(f.get());
    f.seekp(200);
    f.put(static_cast<char>(byte ^ 0x55));
  }
  std::vector<int> tiers;
  ASSERT_EQ((*store)->Match(Identities(chain), &tiers), 4);
  (*store)->Load(Identities(chain), tiers);
  EXPECT_EQ(AwaitLoad(**store).status.code(), absl::StatusCode::kDataLoss);
  events = (*store)->TakeEvents(false);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, block_manager::KvCacheEvent::Kind::kBlockRemoved);
  EXPECT_EQ(events[0].medium, "DISK");
  EXPECT_EQ(events[0].block_hashes, std::vector<uint64_t>({h[1]}));
}

TEST(KvOffloadStoreTest, SpillsBeyondThePendingBoundAreDropped) {
  ScopedTempDir dir;
  KvOffloadOptions options = Options(dir.path());
  options.max_pending_spill_bytes = 0;
  absl::StatusOr<std::unique_ptr<KvOffloadStore>> store = KvOffloadStore::Create(options);
  ASSERT_TRUE(store.ok());
  std::mt19937_64 rng(4);
  EXPECT_FALSE((*store)->Spill(MakeChain((*store)->hasher(), 1, kPayload, rng)[0]));
  EXPECT_EQ((*store)->stats().spills_dropped, 1);
}

// Crash consistency: a child spills as fast as it can and is killed with SIGKILL at a random
// moment, several times over the same directory. Every block a reopened store offers must then
// load, with exactly the payload spilled; anything else was skipped and deleted.
TEST(KvOffloadStoreTest, KillDuringSpillsLeavesOnlyValidBlocks) {
  ScopedTempDir dir;
  const block_manager::BlockHasher hasher(kBlockSize);
  std::mt19937_64 rng(5);
  const std::vector<BlockRecord> chain = MakeChain(hasher, 400, kPayload, rng);
  for (int round = 0; round < 4; ++round) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      absl::StatusOr<std::unique_ptr<KvOffloadStore>> store =
          KvOffloadStore::Create(Options(dir.path()));
      if (!store.ok()) ::_exit(2);
      for (int pass = 0;; ++pass) {
        for (const BlockRecord& r : chain) (*store)->Spill(r);
        (*store)->WaitIdle();
      }
    }
    ::usleep(20000 + 15000 * round);
    ASSERT_EQ(::kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the child ended by itself: " << status;

    absl::StatusOr<std::unique_ptr<KvOffloadStore>> store =
        KvOffloadStore::Create(Options(dir.path()));
    ASSERT_TRUE(store.ok()) << store.status();
    int offered = 0;
    for (const BlockRecord& r : chain) {
      std::vector<int> tiers;
      if ((*store)->Match({r.identity}, &tiers) != 1) continue;
      ++offered;
      (*store)->Load({r.identity}, tiers);
      const LoadResult result = AwaitLoad(**store);
      ASSERT_TRUE(result.status.ok()) << result.status;
      ASSERT_EQ(result.blocks.size(), 1u);
      EXPECT_EQ(result.blocks[0].payload, r.payload);
    }
    EXPECT_GT(offered, 0) << "round " << round << ": nothing was spilled before the kill";
    for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
      EXPECT_EQ(entry.path().string().find(".tmp"), std::string::npos) << entry.path();
    }
  }
}

TEST(ReloadCostModelTest, LoadsOnlyWhenReadingBeatsRecomputing) {
  // 16-token blocks at 1000 prefill tokens/s: 16 ms to recompute one.
  ReloadCostModel model(ReloadPolicy::kAuto, 16, 1000, {0.001, 0.050});
  EXPECT_NEAR(model.recompute_seconds_per_block(), 0.016, 1e-12);
  EXPECT_TRUE(model.ShouldLoad(0));
  EXPECT_FALSE(model.ShouldLoad(1));
  // A much faster model (a tiny one): recompute everywhere.
  model.ObservePrefill(1'000'000, 0.5);
  for (int i = 0; i < 30; ++i) model.ObservePrefill(2'000'000, 1.0);
  EXPECT_GT(model.prefill_tokens_per_second(), 1.5e6);
  EXPECT_FALSE(model.ShouldLoad(0));
  // Measured loads move the estimate.
  ReloadCostModel slow_disk(ReloadPolicy::kAuto, 16, 1000, {0.050});
  EXPECT_FALSE(slow_disk.ShouldLoad(0));
  for (int i = 0; i < 30; ++i) slow_disk.ObserveLoad(0, 10, 0.01);
  EXPECT_TRUE(slow_disk.ShouldLoad(0));
  ReloadCostModel always(ReloadPolicy::kAlways, 16, 1e9, {1.0});
  EXPECT_TRUE(always.ShouldLoad(0));
  EXPECT_NE(model.Describe({"cpu", "disk"}).find("disk load"), std::string::npos);
}

TEST(ReloadCostModelTest, ProbesMeasureSomething) {
  ScopedTempDir dir;
  absl::StatusOr<double> disk = ProbeDiskSecondsPerBlock(dir.path(), 64 << 10, 4);
  ASSERT_TRUE(disk.ok()) << disk.status();
  EXPECT_GT(*disk, 0);
  EXPECT_LT(*disk, 5.0);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
  EXPECT_GT(ProbeHostSecondsPerBlock(64 << 10), 0);
}

}  // namespace
}  // namespace pagoda::kv_offload
