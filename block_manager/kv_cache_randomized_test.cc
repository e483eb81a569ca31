// Model-based randomized test of the KV-cache manager: thousands of random allocate / append /
// lookup / preempt / free / evict sequences, each checked step by step by KvCacheHarness
// against its naive model of slot contents and its own copy of the block tables.

#include <cstdint>
#include <string>

#include "block_manager/testing/kv_cache_workload.h"
#include "gtest/gtest.h"

namespace pagoda::block_manager::testing {
namespace {

constexpr int kNumSequences = 2000;
constexpr int kOpsPerSequence = 200;

TEST(KvCacheRandomizedTest, ThousandsOfRandomSequencesKeepEveryInvariant) {
  WorkloadCounts counts;
  for (uint64_t seed = 0; seed < kNumSequences; ++seed) {
    RandomChoices choices(seed);
    const HarnessOptions options = RandomHarnessOptions(choices);
    const absl::Status status = RunWorkload(options, choices, kOpsPerSequence, &counts);
    ASSERT_TRUE(status.ok()) << "seed " << seed << ": " << status;
  }
  // The workloads must reach the interesting cases, or the invariants prove little.
  EXPECT_GT(counts.admissions, kNumSequences * 10);
  EXPECT_GT(counts.failed_allocations, kNumSequences);
  EXPECT_GT(counts.preemptions, kNumSequences);
  EXPECT_GT(counts.hit_blocks, kNumSequences * 10);
  EXPECT_GT(counts.evictions, kNumSequences);
  RecordProperty("admissions", std::to_string(counts.admissions));
  RecordProperty("hit_blocks", std::to_string(counts.hit_blocks));
  RecordProperty("evictions", std::to_string(counts.evictions));
}

// The hash is deliberately useless here (constant collisions, salt ignored): hits must still
// only ever return blocks holding exactly the request's prefix.
TEST(KvCacheRandomizedTest, CollidingHashesNeverCorruptContent) {
  WorkloadCounts counts;
  for (uint64_t seed = 0; seed < kNumSequences / 4; ++seed) {
    RandomChoices choices(seed + 1'000'000);
    HarnessOptions options = RandomHarnessOptions(choices);
    options.manager.enable_prefix_caching = true;
    options.hash_mode = HashMode::kColliding;
    const absl::Status status = RunWorkload(options, choices, kOpsPerSequence, &counts);
    ASSERT_TRUE(status.ok()) << "seed " << seed << ": " << status;
  }
  EXPECT_GT(counts.hit_blocks, 0);
}

}  // namespace
}  // namespace pagoda::block_manager::testing
