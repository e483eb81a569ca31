#include "kv_offload/disk_tier.h"

#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <random>

#include "gtest/gtest.h"
#include "kv_offload/testing/temp_dir.h"
#include "kv_offload/testing/test_blocks.h"

namespace pagoda::kv_offload {
namespace {

using testing::Expect;
using testing::MakeChain;
using testing::ScopedTempDir;

constexpr int64_t kPayload = 512;

class DiskTierTest : public ::testing::Test {
 protected:
  std::unique_ptr<DiskTier> Open(int64_t capacity, std::vector<std::string>* log = nullptr) {
    absl::StatusOr<std::unique_ptr<DiskTier>> tier =
        DiskTier::Open({.dir = dir_.path(),
                        .capacity_bytes = capacity,
                        .expect = Expect(hasher_, kPayload),
                        .log = [log](const std::string& line) {
                          if (log != nullptr) log->push_back(line);
                        }});
    EXPECT_TRUE(tier.ok()) << tier.status();
    return tier.ok() ? *std::move(tier) : nullptr;
  }
  int64_t FileBytes(const BlockRecord& r) const {
    return static_cast<int64_t>(EncodeBlockFile(testing::kFingerprint, r).size());
  }
  std::string PathOf(const BlockRecord& r) const {
    return dir_.path() + "/" + BlockFileName(r.identity.hash);
  }

  ScopedTempDir dir_;
  block_manager::BlockHasher hasher_{8};
  std::mt19937_64 rng_{7};
};

TEST_F(DiskTierTest, StoresLoadsAndSurvivesAReopen) {
  const std::vector<BlockRecord> chain = MakeChain(hasher_, 4, kPayload, rng_, "salt");
  {
    std::unique_ptr<DiskTier> tier = Open(1 << 20);
    for (const BlockRecord& r : chain) ASSERT_TRUE(tier->Store(r, nullptr).ok());
    EXPECT_EQ(tier->stats().stored_blocks, 4);
    int64_t bytes = 0;
    for (const BlockRecord& r : chain) bytes += FileBytes(r);
    EXPECT_EQ(tier->stats().used_bytes, bytes);
    EXPECT_EQ(FileBytes(chain[0]), FileBytes(chain[1]) + 4);  // the salt
  }
  std::unique_ptr<DiskTier> tier = Open(1 << 20);
  EXPECT_EQ(tier->stats().num_blocks, 4);
  for (const BlockRecord& r : chain) {
    ASSERT_TRUE(tier->Contains(r.identity));
    absl::StatusOr<BlockRecord> back = tier->Load(r.identity);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->payload, r.payload);
  }
  EXPECT_EQ(tier->stats().hits, 4);
  EXPECT_EQ(tier->stats().loads, 4);
}

TEST_F(DiskTierTest, AnotherIdentityUnderTheSameHashIsAMiss) {
  std::unique_ptr<DiskTier> tier = Open(1 << 20);
  const std::vector<BlockRecord> chain = MakeChain(hasher_, 2, kPayload, rng_);
  ASSERT_TRUE(tier->Store(chain[1], nullptr).ok());
  BlockIdentity other = chain[1].identity;
  other.tokens[3] += 1;
  EXPECT_FALSE(tier->Contains(other));
  EXPECT_FALSE(tier->Load(other).ok());
  other = chain[1].identity;
  other.parent->low ^= 1;
  EXPECT_FALSE(tier->Contains(other));
  EXPECT_TRUE(tier->Contains(chain[1].identity));
}

TEST_F(DiskTierTest, EvictsLeastRecentlyUsedAtCapacity) {
  const std::vector<BlockRecord> chain = MakeChain(hasher_, 4, kPayload, rng_);
  std::unique_ptr<DiskTier> tier = Open(3 * FileBytes(chain[0]));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(tier->Store(chain[i], nullptr).ok());
  ASSERT_TRUE(tier->Contains(chain[0].identity));  // 0 becomes most recent: 1 goes first
  ASSERT_TRUE(tier->Store(chain[3], nullptr).ok());
  EXPECT_FALSE(tier->Has(chain[1].identity.hash));
  EXPECT_FALSE(std::filesystem::exists(PathOf(chain[1])));
  EXPECT_TRUE(tier->Has(chain[0].identity.hash));
  EXPECT_EQ(tier->stats().evicted_blocks, 1);
  EXPECT_LE(tier->stats().used_bytes, 3 * FileBytes(chain[0]));
}

TEST_F(DiskTierTest, OpenDeletesTemporaryAndInvalidFilesAndCountsTheInvalid) {
  const std::vector<BlockRecord> chain = MakeChain(hasher_, 3, kPayload, rng_);
  {
    std::unique_ptr<DiskTier> tier = Open(1 << 20);
    for (const BlockRecord& r : chain) ASSERT_TRUE(tier->Store(r, nullptr).ok());
  }
  std::ofstream(PathOf(chain[0]) + ".tmp.1.2") << "half a block";
  std::filesystem::resize_file(PathOf(chain[1]), 50);  // torn header
  std::filesystem::rename(PathOf(chain[2]), dir_.path() + "/" + std::string(32, 'a') + ".kvb");
  std::ofstream(dir_.path() + "/unrelated.txt") << "kept";
  std::unique_ptr<DiskTier> tier = Open(1 << 20);
  EXPECT_EQ(tier->stats().num_blocks, 1);
  EXPECT_EQ(tier->stats().corrupt_blocks, 2);
  EXPECT_TRUE(tier->Contains(chain[0].identity));
  EXPECT_FALSE(tier->Contains(chain[1].identity));
  EXPECT_FALSE(std::filesystem::exists(PathOf(chain[0]) + ".tmp.1.2"));
  EXPECT_FALSE(std::filesystem::exists(PathOf(chain[1])));
  EXPECT_TRUE(std::filesystem::exists(dir_.path() + "/unrelated.txt"));
}

TEST_F(DiskTierTest, ADamagedBodyIsNeverServedAndIsDeleted) {
  const std::vector<BlockRecord> chain = MakeChain(hasher_, 1, kPayload, rng_);
  std::unique_ptr<DiskTier> tier = Open(1 << 20);
  ASSERT_TRUE(tier->Store(chain[0], nullptr).ok());
  {
    std::fstream f(PathOf(chain[0]), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-20, std::ios::end);
    f.put('!');
  }
  ASSERT_TRUE(tier->Contains(chain[0].identity));  // the header is fine
  EXPECT_EQ(tier->Load(chain[0].identity).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(tier->stats().corrupt_blocks, 1);
  EXPECT_FALSE(tier->Contains(chain[0].identity));
  EXPECT_FALSE(std::filesystem::exists(PathOf(chain[0])));
}

TEST_F(DiskTierTest, AFailedWriteStopsSpillingOnceAndLoadsGoOn) {
  const std::vector<BlockRecord> chain = MakeChain(hasher_, 3, kPayload, rng_);
  std::vector<std::string> log;
  std::unique_ptr<DiskTier> tier = Open(1 << 20, &log);
  ASSERT_TRUE(tier->Store(chain[0], nullptr).ok());
  // A file size limit makes write() fail as a full disk does (EFBIG instead of ENOSPC).
  struct rlimit old_limit;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit limit = old_limit;
  limit.rlim_cur = 100;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limit), 0);
  const absl::Status first = tier->Store(chain[1], nullptr);
  const absl::Status second = tier->Store(chain[2], nullptr);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &old_limit), 0);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_EQ(first.code(), absl::StatusCode::kResourceExhausted) << first;
  EXPECT_EQ(second.code(), absl::StatusCode::kFailedPrecondition) << second;
  EXPECT_TRUE(tier->spill_disabled());
  ASSERT_EQ(log.size(), 1u);
  EXPECT_NE(log[0].find("stops spilling"), std::string::npos) << log[0];
  EXPECT_EQ(tier->stats().write_errors, 1);
  EXPECT_FALSE(tier->Has(chain[1].identity.hash));
  EXPECT_TRUE(tier->Load(chain[0].identity).ok());
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
    EXPECT_EQ(entry.path().string().find(".tmp"), std::string::npos) << entry.path();
  }
}

}  // namespace
}  // namespace pagoda::kv_offload
