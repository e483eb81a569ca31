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
// next loop before they block on a condition variable. A loop ends when its chunks are done,
// not when every worker has checked in: on an oversubscribed machine a worker that the OS has
// not yet scheduled simply misses the loop (the caller and the others take its chunks), instead
// of holding the caller up.
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
  // cursor_ holds the loop's generation in its top kGenerationBits and the next unclaimed index
  // below, so that a claim made for a loop that has ended fails.
  static constexpr int kIndexBits = 40;
  static constexpr uint64_t kIndexMask = (uint64_t{1} << kIndexBits) - 1;

  void WorkerLoop();
  // Runs chunks of loop `generation` until none is left or that loop has ended.
  void RunChunks(uint64_t generation);
  // Waits until generation_ differs from `seen` or the pool stops; false when stopping.
  bool WaitForLoop(uint64_t seen);

  const int num_threads_;
  std::vector<std::thread> workers_;
  absl::Mutex mu_;
  absl::CondVar wake_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // Advanced (under mu_, so sleepers cannot miss it) when a loop starts.
  std::atomic<uint64_t> generation_{0};
  // The loop being run, written between closing and opening cursor_ (thread_pool.cc). A worker
  // calls fn_ only after a successful claim, and the caller waits for every claimed chunk.
  std::atomic<const std::function<void(int64_t, int64_t)>*> fn_{nullptr};
  std::atomic<int64_t> n_{0};
  std::atomic<int64_t> chunk_{1};
  std::atomic<uint64_t> cursor_{0};
  std::atomic<int64_t> done_{0};  // items of the current loop that have run
};

}  // namespace pagoda::kernels::cpu
