#pragma once

// A CPU emulator for the source of the CUDA kernels, so that a machine without a GPU (CI) can
// check their logic against the CPU reference. Tests only.
//
// Use: in a host (.cc) translation unit, define PAGODA_CUDA_EMULATION, include this header before
// anything else, then the kernels' .cuh headers, and run a kernel with emulation::Launch(grid,
// block, dynamic_shared_bytes, &Kernel<...>, args...). Device pointers are host pointers.
//
// Model: the blocks of a grid run one after another. A block's threads are fibers (ucontext) on
// the calling thread, switched round robin. __syncthreads and __syncwarp are barriers over the
// block or the warp; warp collectives (shuffles, __reduce_max_sync, ldmatrix, mma.m16n8k16) are
// a barrier at which lanes publish their operands, each lane computing its result from the
// published values by the PTX ISA's layouts (mma_primitives.cuh), then a second barrier.
// cp.async copies synchronously; dynamic shared memory starts filled with 0xff bytes (NaN in
// every float type), so reading shared memory nobody wrote poisons the result; ldmatrix checks
// its 16-byte alignment; a block whose threads all wait forever aborts with a message. Streams,
// graph capture and the launch limits are emulated_streams.h's.
//
// It checks index arithmetic, masking, the pipeline's stage bookkeeping, block merges and that
// every collective is reached by the whole warp. It cannot see real concurrency (a missing
// cp.async wait or a race between warps goes unnoticed), speed, bank conflicts, or the
// hardware's rounding inside an MMA (products are summed in fp32 here). The GPU tests remain
// the authority.

#if !defined(PAGODA_CUDA_EMULATION)
#error "define PAGODA_CUDA_EMULATION before including kernel_emulation.h"
#endif
#define PAGODA_KERNEL_EMULATION_INCLUDED 1

// Kept by the CUDA headers' host_defines.h when defined first: shared arrays are block-wide, and
// blocks run one at a time, so a function-local static is a block's shared array.
#define __shared__ static
#define __launch_bounds__(...)

#include <cuda_bf16.h>
#include <cuda_fp16.h>
// Before the built-in variables below: its declarations use gridDim and blockDim as names.
#include <cuda_runtime.h>
#include <ucontext.h>
#include <vector_types.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cuda/emulation/emulated_streams.h"
#include "kernels/cuda/half_types.h"

// The kernels' `#pragma unroll` means nothing to the host compiler: build the emulation with
// -Wno-unknown-pragmas.

namespace pagoda::kernels::cuda::emulation {

inline constexpr int kLanes = 32;
inline constexpr size_t kFiberStackBytes = 256 << 10;

struct Barrier {
  int expected = 0;
  int arrived = 0;
  uint64_t generation = 0;
};

struct Fiber {
  ucontext_t context;
  char* stack = nullptr;  // from StackPool()
  uint3 thread_idx;
  bool done = false;
};

// The block being emulated.
struct BlockRun {
  dim3 grid_dim;
  dim3 block_dim;
  uint3 block_idx;
  std::vector<Fiber> fibers;
  int current = 0;  // the running fiber = linear thread index
  ucontext_t scheduler;
  uint64_t progress = 0;  // advances whenever a thread arrives at a barrier or finishes
  Barrier block_barrier;
  std::vector<Barrier> warp_barriers;
  std::vector<std::array<uint64_t, 8>> exchange;  // per thread: values published to its warp
  std::vector<uint4> dynamic_shared;
  std::function<void()> body;
};

inline BlockRun*& Current() {
  static BlockRun* run = nullptr;
  return run;
}

inline void Yield() {
  BlockRun* run = Current();
  swapcontext(&run->fibers[run->current].context, &run->scheduler);
}

inline void Wait(Barrier& b) {
  ++Current()->progress;
  const uint64_t generation = b.generation;
  if (++b.arrived == b.expected) {
    b.arrived = 0;
    ++b.generation;
    return;
  }
  while (b.generation == generation) Yield();
}

// A finished thread leaves every barrier it belonged to.
inline void Drop(Barrier& b) {
  --b.expected;
  if (b.arrived > 0 && b.arrived == b.expected) {
    b.arrived = 0;
    ++b.generation;
  }
}

inline int Self() { return Current()->current; }
inline int Lane() { return Self() % kLanes; }
inline int WarpBase() { return Self() - Self() % kLanes; }
inline void WarpWait() { Wait(Current()->warp_barriers[Self() / kLanes]); }
inline uint3 ThreadIdx() { return Current()->fibers[Self()].thread_idx; }
inline void* DynamicSharedMemory() { return Current()->dynamic_shared.data(); }

template <typename T>
uint64_t ToWord(T value) {
  static_assert(sizeof(T) <= sizeof(uint64_t) && std::is_trivially_copyable_v<T>);
  uint64_t word = 0;
  std::memcpy(&word, &value, sizeof(T));
  return word;
}

template <typename T>
T FromWord(uint64_t word) {
  T value;
  std::memcpy(&value, &word, sizeof(T));
  return value;
}

// Every lane publishes `value`; returns the value lane `source_lane(lane)` published.
template <typename T, typename SourceLane>
T Exchange(T value, SourceLane source_lane) {
  BlockRun* run = Current();
  run->exchange[Self()][0] = ToWord(value);
  WarpWait();
  const T result = FromWord<T>(run->exchange[WarpBase() + source_lane(Lane())][0]);
  WarpWait();
  return result;
}

inline void LdMatrixX4(uint32_t (&r)[4], const void* row_address, bool transpose) {
  if (reinterpret_cast<uintptr_t>(row_address) % 16 != 0) {
    std::fprintf(stderr, "emulation: ldmatrix row address %p is not 16-byte aligned\n",
                 row_address);
    std::abort();
  }
  BlockRun* run = Current();
  run->exchange[Self()][0] = reinterpret_cast<uintptr_t>(row_address);
  WarpWait();
  const int lane = Lane();
  auto row = [&](int l) {
    return reinterpret_cast<const uint16_t*>(run->exchange[WarpBase() + l][0]);
  };
  for (int i = 0; i < 4; ++i) {
    uint16_t lo;
    uint16_t hi;
    if (!transpose) {  // row lane/4, columns 2(lane%4), 2(lane%4)+1 of matrix i
      const uint16_t* p = row(8 * i + lane / 4);
      lo = p[2 * (lane % 4)];
      hi = p[2 * (lane % 4) + 1];
    } else {  // rows 2(lane%4), 2(lane%4)+1 of column lane/4
      lo = row(8 * i + 2 * (lane % 4))[lane / 4];
      hi = row(8 * i + 2 * (lane % 4) + 1)[lane / 4];
    }
    r[i] = static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
  }
  WarpWait();
}

// d += A B for mma.m16n8k16.row.col with T inputs and fp32 accumulators.
template <typename T>
void Mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  BlockRun* run = Current();
  run->exchange[Self()] = {a[0], a[1], a[2], a[3], b0, b1, 0, 0};
  WarpWait();
  auto element = [&](int source_lane, int reg, int high_half) {
    const uint32_t word = static_cast<uint32_t>(run->exchange[WarpBase() + source_lane][reg]);
    return ToFloatHost(FromBits<T>(static_cast<uint16_t>(high_half != 0 ? word >> 16 : word)));
  };
  // A[row][k]: lane (row % 8) * 4 + (k % 8) / 2, register row / 8 + 2 * (k / 8).
  auto a_at = [&](int row, int k) {
    return element((row % 8) * 4 + (k % 8) / 2, row / 8 + 2 * (k / 8), k % 2);
  };
  // B[k][n]: lane n * 4 + (k % 8) / 2, register b0 (k < 8) or b1.
  auto b_at = [&](int k, int n) { return element(n * 4 + (k % 8) / 2, 4 + k / 8, k % 2); };
  const int gid = Lane() / 4;
  const int tid = Lane() % 4;
  float out[4];
  for (int e = 0; e < 4; ++e) {
    const int row = gid + 8 * (e / 2);
    const int col = 2 * tid + e % 2;
    float acc = d[e];
    for (int k = 0; k < 16; ++k) acc += a_at(row, k) * b_at(k, col);
    out[e] = acc;
  }
  WarpWait();
  for (int e = 0; e < 4; ++e) d[e] = out[e];
}

inline void FiberEntry() {
  BlockRun* run = Current();
  run->body();
  run->fibers[run->current].done = true;
  ++run->progress;
  Drop(run->block_barrier);
  Drop(run->warp_barriers[run->current / kLanes]);
}  // returns to uc_link: the scheduler

// getcontext and swapcontext return twice: they are kept in these out-of-line functions so
// that no caller's local lives across them.
// Fiber stacks, kept for the next block: allocating (and zeroing) 256 KiB per emulated thread
// per block made the page faults cost more than the emulation itself.
inline std::vector<std::unique_ptr<char[]>>& StackPool() {
  static std::vector<std::unique_ptr<char[]>> pool;
  return pool;
}

__attribute__((noinline)) inline void MakeFiber(Fiber* f, ucontext_t* scheduler, char* stack) {
  f->stack = stack;
  getcontext(&f->context);
  f->context.uc_stack.ss_sp = f->stack;
  f->context.uc_stack.ss_size = kFiberStackBytes;
  f->context.uc_link = scheduler;
  makecontext(&f->context, &FiberEntry, 0);
}

// Runs fiber i until it waits or finishes.
__attribute__((noinline)) inline void Resume(BlockRun* run, int i) {
  run->current = i;
  swapcontext(&run->scheduler, &run->fibers[i].context);
}

// Runs kernel(args...) on every block of `grid`, each with `block` threads and
// `dynamic_shared_bytes` of dynamic shared memory.
template <typename... Params, typename... Args>
void Launch(dim3 grid, dim3 block, size_t dynamic_shared_bytes, void (*kernel)(Params...),
            const Args&... args) {
  // The launch limits (emulated_streams.h) but the shared memory opt-in, which a direct Launch
  // has no way to make: the launch wrappers' LaunchKernel checks that too.
  const std::string error = CheckLaunch(nullptr, grid, block, 0);
  if (!error.empty() || dynamic_shared_bytes > kMaxDynamicSharedOptInBytes ||
      dynamic_shared_bytes % kDynamicSharedGranuleBytes != 0) {
    std::fprintf(stderr, "emulation: invalid launch configuration: %s (%zu bytes shared)\n",
                 error.c_str(), dynamic_shared_bytes);
    std::abort();
  }
  const int threads = static_cast<int>(block.x * block.y * block.z);
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        BlockRun run;
        run.grid_dim = grid;
        run.block_dim = block;
        run.block_idx = uint3{x, y, z};
        run.fibers.resize(threads);
        run.exchange.resize(threads);
        run.block_barrier.expected = threads;
        run.warp_barriers.resize((threads + kLanes - 1) / kLanes);
        for (size_t w = 0; w < run.warp_barriers.size(); ++w) {
          run.warp_barriers[w].expected = std::min(kLanes, threads - static_cast<int>(w) * kLanes);
        }
        run.dynamic_shared.assign((dynamic_shared_bytes + 15) / 16, uint4{~0u, ~0u, ~0u, ~0u});
        run.body = [&] { kernel(args...); };
        Current() = &run;
        while (StackPool().size() < static_cast<size_t>(threads)) {
          StackPool().push_back(std::unique_ptr<char[]>(new char[kFiberStackBytes]));
        }
        for (int i = 0; i < threads; ++i) {
          MakeFiber(&run.fibers[i], &run.scheduler, StackPool()[i].get());
          const unsigned u = static_cast<unsigned>(i);
          run.fibers[i].thread_idx =
              uint3{u % block.x, (u / block.x) % block.y, u / (block.x * block.y)};
        }
        for (int live = threads; live > 0;) {
          const uint64_t before = run.progress;
          for (int i = 0; i < threads; ++i) {
            if (!run.fibers[i].done) Resume(&run, i);
          }
          live = 0;
          for (const Fiber& f : run.fibers) live += f.done ? 0 : 1;
          if (live > 0 && run.progress == before) {
            std::fprintf(stderr, "emulation: block (%u, %u, %u) deadlocked\n", x, y, z);
            std::abort();
          }
        }
        Current() = nullptr;
      }
    }
  }
}

}  // namespace pagoda::kernels::cuda::emulation

// The CUDA built-ins the kernels use, for the emulated thread that is running.
#define threadIdx (::pagoda::kernels::cuda::emulation::ThreadIdx())
#define blockIdx (::pagoda::kernels::cuda::emulation::Current()->block_idx)
#define blockDim (::pagoda::kernels::cuda::emulation::Current()->block_dim)
#define gridDim (::pagoda::kernels::cuda::emulation::Current()->grid_dim)

inline void __syncthreads() {
  ::pagoda::kernels::cuda::emulation::Wait(
      ::pagoda::kernels::cuda::emulation::Current()->block_barrier);
}

inline void __syncwarp(unsigned = 0xffffffffu) { ::pagoda::kernels::cuda::emulation::WarpWait(); }

template <typename T>
T __shfl_sync(unsigned, T value, int source_lane) {
  return ::pagoda::kernels::cuda::emulation::Exchange(value, [&](int) { return source_lane; });
}

template <typename T>
T __shfl_xor_sync(unsigned, T value, int lane_mask) {
  return ::pagoda::kernels::cuda::emulation::Exchange(value,
                                                      [&](int lane) { return lane ^ lane_mask; });
}

inline int __reduce_max_sync(unsigned, int value) {
  int result = value;
  for (int offset = 1; offset < 32; offset *= 2) {
    const int other = __shfl_xor_sync(0xffffffffu, result, offset);
    result = other > result ? other : result;
  }
  return result;
}

template <typename T>
T __ldg(const T* p) {
  return *p;
}

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
