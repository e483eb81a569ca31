#include "kernels/cpu/thread_pool.h"

#include <immintrin.h>

#include <algorithm>
#include <chrono>

#include "common/check.h"

namespace pagoda::kernels::cpu {

ThreadPool::ThreadPool(int num_threads) : num_threads_(num_threads) {
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

void ThreadPool::RunChunks() {
  for (;;) {
    const int64_t begin = next_.fetch_add(chunk_, std::memory_order_relaxed);
    if (begin >= n_) return;
    (*fn_)(begin, std::min(n_, begin + chunk_));
  }
}

bool ThreadPool::WaitForLoop(uint64_t seen) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(kSpinMicros);
  while (generation_.load(std::memory_order_acquire) == seen) {
    if (std::chrono::steady_clock::now() > deadline) {
      absl::MutexLock lock(&mu_);
      while (!stop_ && generation_.load(std::memory_order_acquire) == seen) wake_.Wait(&mu_);
      return !stop_;
    }
    _mm_pause();
  }
  return true;
}

void ThreadPool::WorkerLoop() {
  uint64_t seen = 0;
  while (WaitForLoop(seen)) {
    seen = generation_.load(std::memory_order_acquire);
    RunChunks();
    pending_workers_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t min_chunk,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  min_chunk = std::max<int64_t>(1, min_chunk);
  // A few chunks per thread balance uneven work without much contention on next_.
  const int64_t chunk = std::max(min_chunk, (n + 4 * num_threads_ - 1) / (4 * num_threads_));
  if (workers_.empty() || chunk >= n) {
    fn(0, n);
    return;
  }
  fn_ = &fn;
  n_ = n;
  chunk_ = chunk;
  next_.store(0, std::memory_order_relaxed);
  pending_workers_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  {
    absl::MutexLock lock(&mu_);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  wake_.SignalAll();
  RunChunks();
  // Workers finish their last chunk; on a loaded machine one may not have woken yet.
  for (int spins = 0; pending_workers_.load(std::memory_order_acquire) != 0; ++spins) {
    if (spins > 4096) std::this_thread::yield();
    _mm_pause();
  }
}

}  // namespace pagoda::kernels::cpu
