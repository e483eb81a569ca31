// The cost of one ParallelFor of 64 short chunks (about 4 µs of work each) on a pool of 2 threads,
// alone and with 2 or 4 other threads spinning in the same process: on an oversubscribed machine
// a worker may wake late, and the loop should not wait for it (thread_pool.h).
//
//   ./build/kernels/thread_pool_benchmark --benchmark_min_time=2
//
// The time per iteration at spinners:N over spinners:0 is the slowdown under contention
// (docs/benchmarks.md).

#include <atomic>
#include <cmath>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/cpu/thread_pool.h"

namespace pagoda::kernels::cpu {
namespace {

void BM_ParallelForUnderContention(benchmark::State& state) {
  const int spinners = static_cast<int>(state.range(0));
  std::atomic<bool> stop{false};
  std::vector<std::thread> busy;
  for (int i = 0; i < spinners; ++i) {
    busy.emplace_back([&stop] {
      volatile uint64_t x = 0;
      while (!stop.load(std::memory_order_relaxed)) x = x + 1;
    });
  }
  ThreadPool pool(2);
  std::atomic<double> sink{0};
  for (auto _ : state) {
    pool.ParallelFor(64, 1, [&](int64_t b, int64_t e) {
      double s = 0;
      for (int64_t i = b; i < e; ++i) {
        for (int k = 0; k < 2000; ++k) s += std::sqrt(static_cast<double>(k + i));
      }
      sink.store(s, std::memory_order_relaxed);
    });
  }
  stop = true;
  for (std::thread& t : busy) t.join();
}
BENCHMARK(BM_ParallelForUnderContention)
    ->ArgName("spinners")
    ->Arg(0)
    ->Arg(2)
    ->Arg(4)
    ->UseRealTime();

}  // namespace
}  // namespace pagoda::kernels::cpu

BENCHMARK_MAIN();
