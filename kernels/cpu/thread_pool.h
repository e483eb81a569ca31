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
// must cost microseconds: idle workers spin for a short while (kWorkerSpinMicros) watching for
// the next loop before they park on a condition variable, and a loop takes the mutex to wake
// them only when one is parked. A loop ends when its chunks are done, not when every worker has
// checked in: on an oversubscribed machine a worker that the OS has not yet scheduled simply
// misses the loop (the caller and the others take its chunks), instead of holding the caller
// up. The caller, its own chunks done, spins for the chunks still running elsewhere up to
// kCallerSpinMicros (the length of a short op's chunk) and then parks until the last one ends,
// leaving its core to them. Spins are counted in pause instructions calibrated once per
// process: the hot path makes no system call and reads no clock.
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
  static constexpr int kWorkerSpinMicros = 200;
  static constexpr int kCallerSpinMicros = 50;
  // cursor_ holds the loop's generation in its top kGenerationBits and the next unclaimed index
  // below, so that a claim made for a loop that has ended fails.
  static constexpr int kIndexBits = 40;
  static constexpr uint64_t kIndexMask = (uint64_t{1} << kIndexBits) - 1;

  void WorkerLoop();
  // Runs chunks of loop `generation` until none is left or that loop has ended.
  void RunChunks(uint64_t generation);
  // Waits until generation_ differs from `seen` or the pool stops; false when stopping.
  bool WaitForLoop(uint64_t seen);
  // The caller's end of a loop of n items: spins, then parks until done_ reaches n.
  void WaitForChunks(int64_t n);
  // _mm_pause iterations that take about `micros` on this CPU.
  static int64_t PausesFor(int micros);

  const int num_threads_;
  std::vector<std::thread> workers_;
  absl::Mutex mu_;
  absl::CondVar wake_;         // workers parked for the next loop
  absl::CondVar chunks_done_;  // the caller parked for the end of a loop
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // Workers parked (or about to park) on wake_, and whether the caller is parked on
  // chunks_done_. Each side publishes itself (seq_cst) before it re-checks the condition under
  // mu_, and the other side reads it (seq_cst) after changing the condition, so one of the two
  // always sees the other: no wake-up is lost, and none costs a system call when nobody sleeps.
  std::atomic<int> parked_workers_{0};
  std::atomic<bool> caller_parked_{false};
  const int64_t worker_spin_pauses_;
  const int64_t caller_spin_pauses_;
  // Advanced when a loop starts.
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
