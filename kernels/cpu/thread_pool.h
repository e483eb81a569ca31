#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace pagoda::kernels::cpu {

// A fixed set of worker threads that run one parallel loop at a time. The calling thread
// takes part in every loop, so a pool of 1 thread runs everything inline.
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
  void WorkerLoop();
  // Runs chunks of the current loop until none is left.
  void RunChunks();

  const int num_threads_;
  std::vector<std::thread> workers_;

  absl::Mutex mu_;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int active_workers_ ABSL_GUARDED_BY(mu_) = 0;
  // The loop being run; set before generation_ advances, read by workers after they see it.
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t chunk_ = 1;
  std::atomic<int64_t> next_{0};
};

}  // namespace pagoda::kernels::cpu
