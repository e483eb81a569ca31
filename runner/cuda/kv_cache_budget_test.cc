#include "runner/cuda/kv_cache_budget.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pagoda::runner::cuda {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kGiB = int64_t{1} << 30;
constexpr int64_t kMiB = int64_t{1} << 20;

// An 80 GiB device with 1 GiB in use before the runner (its context); the runner took 16 GiB of
// weights and 2 GiB of buffers and peak, plus a 1 GiB temporary pool for the profiling pass.
GpuMemoryProfile H100WithAnEightBModel() {
  return {.total_bytes = 80 * kGiB,
          .used_before_load_bytes = 1 * kGiB,
          .used_after_profile_bytes = 20 * kGiB,
          .profile_kv_bytes = 1 * kGiB,
          .free_after_profile_bytes = 60 * kGiB};
}

TEST(KvCacheBudgetTest, UtilizationOfTheDeviceMinusTheRunnersOwnMemory) {
  const absl::StatusOr<KvCacheBudget> b = PlanKvCacheBudget(
      H100WithAnEightBModel(), {.gpu_memory_utilization = 0.9, .bytes_per_block = 2 * kMiB});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->non_kv_bytes, 18 * kGiB);  // 20 - 1 before - 1 temporary pool
  // 0.9 x 80 GiB = 72 GiB, less 18 GiB: 54 GiB of 2 MiB blocks.
  EXPECT_EQ(b->num_blocks, 54 * 512);
  EXPECT_EQ(b->kv_bytes, 54 * kGiB);
  EXPECT_FALSE(b->limited_by_free_memory);
}

TEST(KvCacheBudgetTest, APartialBlockIsNotAllocated) {
  const absl::StatusOr<KvCacheBudget> b = PlanKvCacheBudget(
      H100WithAnEightBModel(), {.gpu_memory_utilization = 0.9, .bytes_per_block = 3 * kMiB});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->num_blocks, 54 * kGiB / (3 * kMiB));
  EXPECT_LE(b->kv_bytes, 54 * kGiB);
}

TEST(KvCacheBudgetTest, AnotherProcessesMemoryLimitsThePoolToWhatIsFree) {
  GpuMemoryProfile p = H100WithAnEightBModel();
  p.used_before_load_bytes = 41 * kGiB;  // another process holds 40 GiB
  p.used_after_profile_bytes = 60 * kGiB;
  p.free_after_profile_bytes = 20 * kGiB;
  const absl::StatusOr<KvCacheBudget> b =
      PlanKvCacheBudget(p, {.gpu_memory_utilization = 0.9, .bytes_per_block = 2 * kMiB});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(b->limited_by_free_memory);
  // Free after the temporary pool goes (21 GiB) less the 256 MiB reserve.
  EXPECT_EQ(b->kv_bytes, 21 * kGiB - 256 * kMiB);
}

TEST(KvCacheBudgetTest, ExplicitKvMemoryWinsAndMustFit) {
  const absl::StatusOr<KvCacheBudget> b =
      PlanKvCacheBudget(H100WithAnEightBModel(), {.gpu_memory_utilization = 0.9,
                                                  .bytes_per_block = 2 * kMiB,
                                                  .kv_cache_memory_bytes = 4 * kGiB});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->kv_bytes, 4 * kGiB);
  const absl::StatusOr<KvCacheBudget> too_much =
      PlanKvCacheBudget(H100WithAnEightBModel(), {.gpu_memory_utilization = 0.9,
                                                  .bytes_per_block = 2 * kMiB,
                                                  .kv_cache_memory_bytes = 70 * kGiB});
  EXPECT_EQ(too_much.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(too_much.status().message(), HasSubstr("--kv-cache-memory"));
}

TEST(KvCacheBudgetTest, AModelThatLeavesNoRoomIsRefusedWithTheFigures) {
  const absl::StatusOr<KvCacheBudget> b = PlanKvCacheBudget(
      H100WithAnEightBModel(), {.gpu_memory_utilization = 0.2, .bytes_per_block = 2 * kMiB});
  EXPECT_EQ(b.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(b.status().message(), HasSubstr("--gpu-memory-utilization"));
  EXPECT_THAT(b.status().message(), HasSubstr("18.00 GiB"));
}

TEST(KvCacheBudgetTest, BlockCountIsCapped) {
  const absl::StatusOr<KvCacheBudget> b = PlanKvCacheBudget(
      H100WithAnEightBModel(),
      {.gpu_memory_utilization = 0.9, .bytes_per_block = 1024, .max_num_blocks = 1000});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->num_blocks, 1000);
}

TEST(KvCacheBudgetTest, OptionsOutOfRange) {
  EXPECT_EQ(PlanKvCacheBudget(H100WithAnEightBModel(),
                              {.gpu_memory_utilization = 1.5, .bytes_per_block = 1024})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanKvCacheBudget(H100WithAnEightBModel(), {.bytes_per_block = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pagoda::runner::cuda
