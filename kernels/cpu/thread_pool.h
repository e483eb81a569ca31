#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace pagoda::kernels::cpu {

// A fixed set of worker threads that run one parallel loop at a time. The calling thread
// takes part in every loop, so a pool of 1 thread runs everything inline.
//
// A forward pass issues a hundred or more short loops back to back, so a loop's start and end
// must cost microseconds: idle workers spin for a short while (kSpinMicros) watching for the
// next loop before they block on a condition variable.
//
// ParallelFor is called from one thread at a time (the engine thread); it blocks until the
// whole loop is done. Workers keep no large thread_local state (TOOLCHAIN.md pitfall 1).
class ThreadPool {
 public:
  // `num_threads` >= 1 counts the caller: num_threads - 1 workers are started.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Calls fn(begin, end) over disjoint ranges covering [0, n), in chunks of at least
  // `min_chunk` items, spread over the threads. Returns when every call has returned.
  void ParallelFor(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn);

 private:
  static constexpr int kSpinMicros = 200;

  void WorkerLoop();
  // Runs chunks of the current loop until none is left.
  void RunChunks();
  // Waits until generation_ differs from `seen` or the pool stops; false when stopping.
  bool WaitForLoop(uint64_t seen);

  const int num_threads_;
  std::vector<std::thread> workers_;

  absl::Mutex mu_;
  absl::CondVar wake_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // Advanced (under mu_, so sleepers cannot miss it) when a loop starts.
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_workers_{0};
  // The loop being run; written before generation_ advances, read after it is seen.
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t chunk_ = 1;
  std::atomic<int64_t> next_{0};
};

}  // namespace pagoda::kernels::cpu
