#include "kernels/cpu/roofline.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "kernels/cpu/avx2_math.h"
#include "kernels/cpu/matmul_amx.h"
#include "kernels/cpu/matmul_avx2.h"

namespace pagoda::kernels::cpu {
namespace {

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The best of `repeats` runs of `run`, as `amount` per second (in units of 1e9).
template <typename Run>
double BestRate(int repeats, double amount, const Run& run) {
  double best = 0;
  for (int r = 0; r < std::max(1, repeats); ++r) {
    const auto start = std::chrono::steady_clock::now();
    run();
    best = std::max(best, amount / Seconds(start) / 1e9);
  }
  return best;
}

#if defined(__x86_64__)
// Four independent accumulators of 16 floats, so the loads, not the adds, set the pace.
__attribute__((target("avx512f"))) double SumAvx512(const float* p, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_loadu_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_loadu_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_loadu_ps(p + i + 48));
  }
  double sum = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  for (; i < n; ++i) sum += p[i];
  return sum;
}

// The same on CPUs without AVX-512: four accumulators of 8 floats.
__attribute__((target("avx2"))) double SumAvx2(const float* p, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_loadu_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_loadu_ps(p + i + 24));
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  double sum = 0;
  for (const float l : lanes) sum += l;
  for (; i < n; ++i) sum += p[i];
  return sum;
}

__attribute__((target("avx512f,avx512bf16"))) float PeakChains(int64_t iterations) {
  // a = b = 1.0 (bf16 0x3F80): each vdpbf16ps adds 2 * 1 * 1 to every lane.
  const __m512bh one = reinterpret_cast<__m512bh>(_mm512_set1_epi16(0x3F80));
  __m512 acc[kBf16PeakChains];
  for (__m512& a : acc) a = _mm512_setzero_ps();
  for (int64_t it = 0; it < iterations; ++it) {
    for (__m512& a : acc) a = _mm512_dpbf16_ps(a, one, one);
  }
  __m512 total = acc[0];
  for (int c = 1; c < kBf16PeakChains; ++c) total = _mm512_add_ps(total, acc[c]);
  return _mm512_cvtss_f32(total);
}
#endif

double Sum(const float* p, int64_t n) {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f")) return SumAvx512(p, n);
  if (__builtin_cpu_supports("avx2")) return SumAvx2(p, n);
#endif
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += p[i];
  return sum;
}

}  // namespace

bool HasAvx512Bf16() {
#if defined(__x86_64__)
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

double ReadSum(const float* data, int64_t floats, ThreadPool& pool) {
  const int threads = pool.num_threads();
  std::vector<double> partial(static_cast<size_t>(threads), 0.0);
  pool.ParallelFor(threads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t from = floats * t / threads, to = floats * (t + 1) / threads;
      partial[static_cast<size_t>(t)] = Sum(data + from, to - from);
    }
  });
  double sum = 0;
  for (const double p : partial) sum += p;
  return sum;
}

float Bf16PeakLoop(int64_t iterations, ThreadPool& pool) {
#if defined(__x86_64__)
  if (!HasAvx512Bf16()) return 0.0f;
  const int threads = pool.num_threads();
  std::vector<float> lane(static_cast<size_t>(threads), 0.0f);
  pool.ParallelFor(threads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) lane[static_cast<size_t>(t)] = PeakChains(iterations);
  });
  return *std::min_element(lane.begin(), lane.end());
#else
  (void)iterations;
  (void)pool;
  return 0.0f;
#endif
}

float FmaPeakLoop(int64_t iterations, ThreadPool& pool) {
#if defined(__x86_64__)
  if (!avx2::Supported()) return 0.0f;
  const int threads = pool.num_threads();
  std::vector<float> lane(static_cast<size_t>(threads), 0.0f);
  pool.ParallelFor(threads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      lane[static_cast<size_t>(t)] = avx2::FmaPeakLoop(iterations);
    }
  });
  return *std::min_element(lane.begin(), lane.end());
#else
  (void)iterations;
  (void)pool;
  return 0.0f;
#endif
}

Roofline MeasureRoofline(ThreadPool& pool, int64_t buffer_bytes, int repeats) {
  Roofline out;
  const int64_t floats = std::max<int64_t>(buffer_bytes / 4, 1024);
  std::vector<float> buffer(static_cast<size_t>(floats));
  // Written by the threads that read it (first touch), with values whose sum is exact.
  pool.ParallelFor(floats, 1 << 16, [&](int64_t begin, int64_t end) {
    std::fill(buffer.data() + begin, buffer.data() + end, 1.0f);
  });
  out.read_gb_per_s = BestRate(repeats, 4.0 * static_cast<double>(floats), [&] {
    volatile double sink = ReadSum(buffer.data(), floats, pool);
    (void)sink;
  });
  if (HasAvx512Bf16()) {
    constexpr int64_t kIterations = 2'000'000;  // about 0.1 s at 1 vdpbf16ps per cycle
    const double flop =
        64.0 * kBf16PeakChains * static_cast<double>(kIterations) * pool.num_threads();
    out.bf16_gflop_per_s = BestRate(repeats, flop, [&] {
      volatile float sink = Bf16PeakLoop(kIterations, pool);
      (void)sink;
    });
  }
#if defined(__x86_64__)
  if (avx2::Supported()) {
    constexpr int64_t kIterations = 2'000'000;  // about 0.1 s at 1 vfmadd231ps per cycle
    const double flop =
        16.0 * avx2::kFmaPeakChains * static_cast<double>(kIterations) * pool.num_threads();
    out.fma_gflop_per_s = BestRate(repeats, flop, [&] {
      volatile float sink = FmaPeakLoop(kIterations, pool);
      (void)sink;
    });
  }
#endif
  if (amx::Available()) {
    constexpr int64_t kIterations = 100'000;  // about 0.1 s at one tile product per 16 cycles
    const double flop = amx::kFlopPerTileProduct * amx::kPeakTiles *
                        static_cast<double>(kIterations) * pool.num_threads();
    out.amx_gflop_per_s = BestRate(repeats, flop, [&] {
      pool.ParallelFor(pool.num_threads(), 1, [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t) {
          volatile float sink = amx::PeakLoop(kIterations);
          (void)sink;
        }
      });
    });
  }
  return out;
}

const Roofline& MeasuredRoofline(int threads) {
  static std::mutex mu;
  static std::map<int, Roofline> measured;
  std::lock_guard<std::mutex> lock(mu);
  const auto it = measured.find(threads);
  if (it != measured.end()) return it->second;
  ThreadPool pool(threads);
  return measured[threads] = MeasureRoofline(pool, int64_t{256} << 20, 3);
}

}  // namespace pagoda::kernels::cpu
