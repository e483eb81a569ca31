#include "kernels/cpu/thread_pool.h"

#include <immintrin.h>

#include <algorithm>
#include <chrono>

#include "common/check.h"

namespace pagoda::kernels::cpu {

int64_t ThreadPool::PausesFor(int micros) {
  // Measured once per process: a pause takes from a few to over a hundred cycles depending on
  // the microarchitecture.
  static const double pauses_per_micro = [] {
    constexpr int kProbe = 20000;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kProbe; ++i) _mm_pause();
    const double elapsed =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
    return std::clamp(kProbe / std::max(elapsed, 1e-3), 1.0, 1000.0);
  }();
  return std::max<int64_t>(1, static_cast<int64_t>(pauses_per_micro * micros));
}

ThreadPool::ThreadPool(int num_threads)
    : num_threads_(num_threads),
      worker_spin_pauses_(PausesFor(kWorkerSpinMicros)),
      caller_spin_pauses_(PausesFor(kCallerSpinMicros)) {
  PAGODA_CHECK_GE(num_threads, 1);
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  wake_.SignalAll();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::RunChunks(uint64_t generation) {
  const uint64_t tag = (generation << kIndexBits) & ~kIndexMask;
  uint64_t cursor = cursor_.load(std::memory_order_acquire);
  for (;;) {
    if ((cursor & ~kIndexMask) != tag) return;  // that loop has ended; a later one has begun
    // Acquire: if either load sees a later loop's value, that loop's invalidation of the cursor
    // happened before, and the CAS below fails.
    const int64_t n = n_.load(std::memory_order_acquire);
    const int64_t chunk = chunk_.load(std::memory_order_acquire);
    const auto begin = static_cast<int64_t>(cursor & kIndexMask);
    if (begin >= n) return;
    // Succeeds only if the cursor has not moved, so n and chunk were this loop's.
    if (!cursor_.compare_exchange_weak(cursor, cursor + static_cast<uint64_t>(chunk),
                                       std::memory_order_acq_rel, std::memory_order_acquire)) {
      continue;
    }
    const int64_t end = std::min(n, begin + chunk);
    (*fn_.load(std::memory_order_relaxed))(begin, end);
    if (done_.fetch_add(end - begin, std::memory_order_seq_cst) + (end - begin) == n &&
        caller_parked_.load(std::memory_order_seq_cst)) {
      absl::MutexLock lock(&mu_);  // the caller re-checks done_ under mu_ before it waits
      chunks_done_.Signal();
    }
    cursor = cursor_.load(std::memory_order_acquire);
  }
}

bool ThreadPool::WaitForLoop(uint64_t seen) {
  for (int64_t spins = 0; spins < worker_spin_pauses_; ++spins) {
    if (generation_.load(std::memory_order_acquire) != seen) return true;
    _mm_pause();
  }
  absl::MutexLock lock(&mu_);
  parked_workers_.fetch_add(1, std::memory_order_seq_cst);
  while (!stop_ && generation_.load(std::memory_order_seq_cst) == seen) wake_.Wait(&mu_);
  parked_workers_.fetch_sub(1, std::memory_order_relaxed);
  return !stop_;
}

void ThreadPool::WaitForChunks(int64_t n) {
  for (int64_t spins = 0; spins < caller_spin_pauses_; ++spins) {
    if (done_.load(std::memory_order_acquire) == n) return;
    _mm_pause();
  }
  absl::MutexLock lock(&mu_);
  caller_parked_.store(true, std::memory_order_seq_cst);
  while (done_.load(std::memory_order_seq_cst) != n) chunks_done_.Wait(&mu_);
  caller_parked_.store(false, std::memory_order_relaxed);
}

void ThreadPool::WorkerLoop() {
  uint64_t seen = 0;
  while (WaitForLoop(seen)) {
    seen = generation_.load(std::memory_order_acquire);
    RunChunks(seen);
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t min_chunk,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  PAGODA_CHECK_LE(n, static_cast<int64_t>(kIndexMask / 2));
  min_chunk = std::max<int64_t>(1, min_chunk);
  // A few chunks per thread balance uneven work without much contention on the cursor.
  const int64_t chunk = std::max(min_chunk, (n + 4 * num_threads_ - 1) / (4 * num_threads_));
  if (workers_.empty() || chunk >= n) {
    fn(0, n);
    return;
  }
  const uint64_t generation = generation_.load(std::memory_order_relaxed) + 1;
  const uint64_t tag = (generation << kIndexBits) & ~kIndexMask;
  // First close the cursor to claims of the previous loop (a worker late for it may still try),
  // then publish this loop's parameters, then open the cursor.
  cursor_.store(tag | kIndexMask, std::memory_order_seq_cst);
  fn_.store(&fn, std::memory_order_release);
  chunk_.store(chunk, std::memory_order_release);
  n_.store(n, std::memory_order_release);
  done_.store(0, std::memory_order_relaxed);
  cursor_.store(tag, std::memory_order_release);
  generation_.store(generation, std::memory_order_seq_cst);
  if (parked_workers_.load(std::memory_order_seq_cst) > 0) {
    absl::MutexLock lock(&mu_);  // a parking worker re-checks generation_ under mu_
    wake_.SignalAll();
  }
  RunChunks(generation);
  // Every chunk is claimed; wait for the ones other threads are still running.
  WaitForChunks(n);
}

}  // namespace pagoda::kernels::cpu
