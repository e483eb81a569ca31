#pragma once

// The per-token kernels of elementwise.h (internal to kernels/cuda; elementwise.cu launches them,
// and the CPU emulation test runs the same source).

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/mma_primitives.cuh"

namespace pagoda::kernels::cuda::internal {

// kVec consecutive elements moved as one access (16 bytes for kVec = 8).
template <typename T, int kVec>
struct alignas(sizeof(T) * kVec) Vec {
  T e[kVec];
};

template <typename T, int kVec>
__device__ __forceinline__ void LoadVec(const T* p, float (&out)[kVec]) {
  const Vec<T, kVec> v = *reinterpret_cast<const Vec<T, kVec>*>(p);
#pragma unroll
  for (int i = 0; i < kVec; ++i) out[i] = ToFloat(v.e[i]);
}

template <typename T, int kVec>
__device__ __forceinline__ void StoreVec(T* p, const float (&in)[kVec]) {
  Vec<T, kVec> v;
#pragma unroll
  for (int i = 0; i < kVec; ++i) v.e[i] = FromFloat<T>(in[i]);
  *reinterpret_cast<Vec<T, kVec>*>(p) = v;
}

// ---- Embedding ------------------------------------------------------------------------------

template <typename T, int kVec>
__global__ void EmbeddingKernel(const EmbeddingParams<T> p) {
  const int64_t t = blockIdx.x;
  const int64_t id = p.token_ids[t];
  const bool valid = id >= 0 && id < p.vocab_size;
  const T* src = p.table + (valid ? id : 0) * p.dim;
  T* dst = p.out + t * p.dim;
  for (int64_t i = threadIdx.x * kVec; i < p.dim; i += static_cast<int64_t>(blockDim.x) * kVec) {
    float v[kVec];
    if (valid) {
      LoadVec<T, kVec>(src + i, v);
    } else {
#pragma unroll
      for (int k = 0; k < kVec; ++k) v[k] = 0.0f;
    }
    StoreVec<T, kVec>(dst + i, v);
  }
}

// ---- RMSNorm --------------------------------------------------------------------------------

inline constexpr int kNormThreads = 256;

__device__ float BlockSum(float x) {
  __shared__ float warp_sums[kNormThreads / kWarpSize];
  __shared__ float total;
  x = WarpSum(x);
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (lane == 0) warp_sums[warp] = x;
  __syncthreads();
  if (warp == 0) {
    x = lane < kNormThreads / kWarpSize ? warp_sums[lane] : 0.0f;
    x = WarpSum(x);
    if (lane == 0) total = x;
  }
  __syncthreads();
  return total;
}

template <typename T, int kVec>
__global__ void __launch_bounds__(kNormThreads) RmsNormKernel(const RmsNormParams<T> p) {
  const int64_t row = blockIdx.x;
  const T* x = p.x + row * p.dim;
  T* out = p.out + row * p.dim;
  float sum_squares = 0.0f;
  for (int i = threadIdx.x * kVec; i < p.dim; i += kNormThreads * kVec) {
    float v[kVec];
    LoadVec<T, kVec>(x + i, v);
#pragma unroll
    for (int k = 0; k < kVec; ++k) sum_squares += v[k] * v[k];
  }
  const float inv_rms = rsqrtf(BlockSum(sum_squares) / p.dim + p.eps);
  // Each thread rewrites exactly the elements it read above, so out may alias x.
  for (int i = threadIdx.x * kVec; i < p.dim; i += kNormThreads * kVec) {
    float v[kVec];
    float w[kVec];
    LoadVec<T, kVec>(x + i, v);
    LoadVec<T, kVec>(p.weight + i, w);
#pragma unroll
    for (int k = 0; k < kVec; ++k) v[k] = v[k] * inv_rms * w[k];
    StoreVec<T, kVec>(out + i, v);
  }
}

// ---- SiLU and mul ---------------------------------------------------------------------------

template <typename T, int kVec>
__global__ void SiluAndMulKernel(const SiluAndMulParams<T> p) {
  const int64_t per_row = p.dim / kVec;
  const int64_t total = per_row * p.rows;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / per_row;
    const int64_t c = (i % per_row) * kVec;
    float g[kVec];
    float u[kVec];
    LoadVec<T, kVec>(p.gate + r * p.gate_row_stride + c, g);
    LoadVec<T, kVec>(p.up + r * p.up_row_stride + c, u);
#pragma unroll
    for (int k = 0; k < kVec; ++k) g[k] = g[k] / (1.0f + expf(-g[k])) * u[k];
    StoreVec<T, kVec>(p.out + r * p.out_row_stride + c, g);
  }
}

// ---- Argmax ---------------------------------------------------------------------------------

inline constexpr int kArgmaxThreads = 256;

// A candidate token: its logit and id, or id -1 for none.
struct Best {
  float value;
  int32_t id;
};

// The better of two candidates: the larger logit, then the lower id. A real candidate's logit is
// above -inf (Consider only takes those), so none (-1) loses to any.
__device__ __forceinline__ Best Better(Best a, Best b) {
  if (b.id < 0) return a;
  if (a.id < 0) return b;
  return b.value > a.value || (b.value == a.value && b.id < a.id) ? b : a;
}

// Ids arrive in increasing order per thread, so a strictly larger logit is needed to replace.
// NaN compares false and -inf is never above the initial -inf: neither is taken.
__device__ __forceinline__ void Consider(Best& best, float value, int32_t id) {
  if (value > best.value) best = {value, id};
}

template <typename T, int kVec>
__global__ void __launch_bounds__(kArgmaxThreads) ArgmaxKernel(const ArgmaxParams<T> p) {
  __shared__ Best warp_best[kArgmaxThreads / kWarpSize];
  const T* row = p.logits + static_cast<int64_t>(blockIdx.x) * p.row_stride;
  Best best = {-INFINITY, -1};
  const int64_t vec_end = p.vocab_size / kVec * kVec;
  for (int64_t i = threadIdx.x * kVec; i < vec_end; i += kArgmaxThreads * kVec) {
    float v[kVec];
    LoadVec<T, kVec>(row + i, v);
#pragma unroll
    for (int k = 0; k < kVec; ++k) Consider(best, v[k], static_cast<int32_t>(i + k));
  }
  for (int64_t i = vec_end + threadIdx.x; i < p.vocab_size; i += kArgmaxThreads) {
    Consider(best, ToFloat(row[i]), static_cast<int32_t>(i));
  }
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    const Best other = {__shfl_xor_sync(kFullMask, best.value, offset),
                        __shfl_xor_sync(kFullMask, best.id, offset)};
    best = Better(best, other);
  }
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (lane == 0) warp_best[warp] = best;
  __syncthreads();
  if (threadIdx.x == 0) {
    Best total = warp_best[0];
    for (int w = 1; w < kArgmaxThreads / kWarpSize; ++w) total = Better(total, warp_best[w]);
    p.tokens[blockIdx.x] = total.id;
  }
}

// ---- Add in place ---------------------------------------------------------------------------

template <typename T, int kVec>
__global__ void AddInPlaceKernel(const AddInPlaceParams<T> p) {
  const int64_t num_vecs = p.n / kVec;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < num_vecs;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float y[kVec];
    float x[kVec];
    LoadVec<T, kVec>(p.y + i * kVec, y);
    LoadVec<T, kVec>(p.x + i * kVec, x);
#pragma unroll
    for (int k = 0; k < kVec; ++k) y[k] += x[k];
    StoreVec<T, kVec>(p.y + i * kVec, y);
  }
}

}  // namespace pagoda::kernels::cuda::internal
