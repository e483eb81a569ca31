#include "kernels/cpu/thread_pool.h"

#include <atomic>
#include <vector>

#include "gtest/gtest.h"

namespace pagoda::kernels::cpu {
namespace {

TEST(ThreadPoolTest, CoversEveryIndexExactlyOnce) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 7, 1000, 100003}) {
      std::vector<std::atomic<int>> hits(n);
      pool.ParallelFor(n, 3, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << threads << " " << n;
    }
  }
}

TEST(ThreadPoolTest, RunsManyLoopsBackToBack) {
  ThreadPool pool(3);
  std::atomic<int64_t> sum{0};
  for (int loop = 0; loop < 2000; ++loop) {
    pool.ParallelFor(64, 1, [&](int64_t b, int64_t e) { sum.fetch_add(e - b); });
  }
  EXPECT_EQ(sum.load(), 2000 * 64);
}

// More threads than cores, so workers are often descheduled and wake late for a loop that has
// ended: each must neither run a chunk of the wrong loop nor run a chunk twice.
TEST(ThreadPoolTest, LateWorkersNeverTouchALaterLoop) {
  ThreadPool pool(8);
  std::vector<std::atomic<int>> hits(257);
  for (int loop = 0; loop < 20000; ++loop) {
    const int64_t n = 1 + (loop * 37) % 257;
    const int tag = loop + 1;
    pool.ParallelFor(n, 1 + loop % 5, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        int expected = tag - 1;
        // Index i was last written by an earlier loop (any), never by this one.
        while (!hits[i].compare_exchange_weak(expected, tag)) {
          ASSERT_LT(expected, tag) << "index " << i << " of loop " << loop << " ran twice";
        }
      }
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), tag) << loop << " " << i;
  }
}

}  // namespace
}  // namespace pagoda::kernels::cpu
