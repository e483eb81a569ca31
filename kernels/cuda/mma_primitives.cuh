#pragma once

// Device-side building blocks of the attention kernels (internal to kernels/cuda): 16-byte
// asynchronous global->shared copies, ldmatrix, the m16n8k16 tensor-core MMA with fp32
// accumulation, and bf16/fp16 <-> fp32 conversions. Requires sm_80 or newer.
//
// Fragment layouts of mma.m16n8k16 (PTX ISA, "Matrix fragments for mma.m16n8k16"), with
// gid = lane / 4 and tid = lane % 4:
//   A (16x16, row-major), 4 registers of 2 elements, low half = lower column:
//     a0: row gid,   cols 2tid, 2tid+1      a1: row gid+8, cols 2tid, 2tid+1
//     a2: row gid,   cols 2tid+8, 2tid+9    a3: row gid+8, cols 2tid+8, 2tid+9
//   B (16x8, "col": element (k, n) stored as row n of an [n][k] array), 2 registers:
//     b0: k 2tid, 2tid+1 of column gid      b1: k 2tid+8, 2tid+9 of column gid
//   C/D (16x8 fp32), 4 registers:
//     c0, c1: row gid, cols 2tid, 2tid+1    c2, c3: row gid+8, cols 2tid, 2tid+1
// ldmatrix.x4 loads four 8x8 matrices of 16-bit elements; lanes 8i..8i+7 give the addresses of
// the 8 rows (16 bytes each) of matrix i, and register i of every lane receives matrix i: without
// .trans lane L holds row L/4, columns 2(L%4), 2(L%4)+1; with .trans it holds rows 2(L%4),
// 2(L%4)+1 of column L/4.
//
// With PAGODA_CUDA_EMULATION defined (tests only, see kernel_emulation.h) the same functions
// run on the CPU: copies are synchronous and ldmatrix/mma are computed from the layouts above.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(PAGODA_CUDA_EMULATION) && !defined(PAGODA_KERNEL_EMULATION_INCLUDED)
#error "include kernels/cuda/emulation/kernel_emulation.h before the kernels"
#endif

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "Pagoda's CUDA kernels need sm_80 or newer (cp.async, bf16 mma)"
#endif

namespace pagoda::kernels::cuda::internal {

inline constexpr int kWarpSize = 32;
inline constexpr unsigned kFullMask = 0xffffffffu;
// Elements of a 16-bit type in one 16-byte vector.
inline constexpr int kVecElems = 8;

__host__ __device__ constexpr int CeilDiv(int a, int b) { return (a + b - 1) / b; }
__host__ __device__ constexpr int64_t CeilDiv64(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The block's dynamic shared memory (the launch's third <<<>>> argument), 16-byte aligned.
template <typename T>
__device__ __forceinline__ T* DynamicShared() {
#if defined(PAGODA_CUDA_EMULATION)
  return reinterpret_cast<T*>(emulation::DynamicSharedMemory());
#else
  extern __shared__ uint4 dynamic_shared_memory[];
  return reinterpret_cast<T*>(dynamic_shared_memory);
#endif
}

#if !defined(PAGODA_CUDA_EMULATION)
__device__ __forceinline__ uint32_t SharedAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
#endif

// 16-byte global -> shared copy that bypasses L1 (the K/V stream is read once).
__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem) {
#if defined(PAGODA_CUDA_EMULATION)
  memcpy(smem, gmem, 16);
#else
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(SharedAddress(smem)), "l"(gmem)
               : "memory");
#endif
}

__device__ __forceinline__ void CpAsyncCommit() {
#if !defined(PAGODA_CUDA_EMULATION)
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

// Waits until at most `kPending` of this thread's committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void CpAsyncWait() {
#if !defined(PAGODA_CUDA_EMULATION)
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
#endif
}

__device__ __forceinline__ void StoreZero16(void* smem) {
  *static_cast<uint4*>(smem) = make_uint4(0u, 0u, 0u, 0u);
}

__device__ __forceinline__ void LdMatrixX4(uint32_t (&r)[4], const void* smem) {
#if defined(PAGODA_CUDA_EMULATION)
  emulation::LdMatrixX4(r, smem, /*transpose=*/false);
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SharedAddress(smem))
               : "memory");
#endif
}

__device__ __forceinline__ void LdMatrixX4Trans(uint32_t (&r)[4], const void* smem) {
#if defined(PAGODA_CUDA_EMULATION)
  emulation::LdMatrixX4(r, smem, /*transpose=*/true);
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SharedAddress(smem))
               : "memory");
#endif
}

// d += a * b for one m16n8k16 tile, T = __nv_bfloat16 or __half, fp32 accumulators.
template <typename T>
__device__ __forceinline__ void Mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
#if defined(PAGODA_CUDA_EMULATION)
  emulation::Mma16816<T>(d, a, b0, b1);
#else
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    static_assert(std::is_same_v<T, __half>, "T must be __nv_bfloat16 or __half");
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
#endif
}

// Two floats rounded to T and packed into 32 bits, `lo` in the low half.
template <typename T>
__device__ __forceinline__ uint32_t PackPair(float lo, float hi) {
  uint32_t bits;
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    static_assert(sizeof(v) == sizeof(bits));
    memcpy(&bits, &v, sizeof(bits));
  } else {
    const __half2 v = __floats2half2_rn(lo, hi);
    static_assert(sizeof(v) == sizeof(bits));
    memcpy(&bits, &v, sizeof(bits));
  }
  return bits;
}

template <typename T>
__device__ __forceinline__ float ToFloat(T x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(x);
  } else {
    return __half2float(x);
  }
}

template <typename T>
__device__ __forceinline__ T FromFloat(float x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16_rn(x);
  } else {
    return __float2half_rn(x);
  }
}

// A 16-byte vector of 8 elements, converted to/from 8 floats.
template <typename T>
__device__ __forceinline__ void UnpackVec(const uint4& v, float (&out)[kVecElems]) {
  const T* e = reinterpret_cast<const T*>(&v);
#pragma unroll
  for (int i = 0; i < kVecElems; ++i) out[i] = ToFloat(e[i]);
}

template <typename T>
__device__ __forceinline__ uint4 PackVec(const float (&in)[kVecElems]) {
  uint4 v;
  v.x = PackPair<T>(in[0], in[1]);
  v.y = PackPair<T>(in[2], in[3]);
  v.z = PackPair<T>(in[4], in[5]);
  v.w = PackPair<T>(in[6], in[7]);
  return v;
}

__device__ __forceinline__ float WarpSum(float x) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    x += __shfl_xor_sync(kFullMask, x, offset);
  }
  return x;
}

}  // namespace pagoda::kernels::cuda::internal
