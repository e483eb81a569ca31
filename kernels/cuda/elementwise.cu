#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/mma_primitives.cuh"

namespace pagoda::kernels::cuda {
namespace {

using internal::FromFloat;
using internal::kWarpSize;
using internal::ToFloat;

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

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Calls launch(std::integral_constant<int, 8>) when `vectorizable`, else with 1.
template <typename Launch>
absl::Status DispatchVec(bool vectorizable, Launch&& launch) {
  if (vectorizable) return launch(std::integral_constant<int, 8>{});
  return launch(std::integral_constant<int, 1>{});
}

int GridFor(int64_t work_items, int threads) {
  const int64_t blocks = (work_items + threads - 1) / threads;
  return static_cast<int>(blocks < 4096 ? (blocks > 0 ? blocks : 1) : 4096);
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

constexpr int kNormThreads = 256;

__device__ float BlockSum(float x) {
  __shared__ float warp_sums[kNormThreads / kWarpSize];
  __shared__ float total;
  x = internal::WarpSum(x);
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (lane == 0) warp_sums[warp] = x;
  __syncthreads();
  if (warp == 0) {
    x = lane < kNormThreads / kWarpSize ? warp_sums[lane] : 0.0f;
    x = internal::WarpSum(x);
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

}  // namespace

template <typename T>
absl::Status Embedding(const EmbeddingParams<T>& p, cudaStream_t stream) {
  if (p.num_tokens < 0 || p.dim <= 0 || p.vocab_size <= 0) {
    return absl::InvalidArgumentError("Embedding: bad sizes");
  }
  if (p.num_tokens == 0) return absl::OkStatus();
  if (p.token_ids == nullptr || p.table == nullptr || p.out == nullptr) {
    return absl::InvalidArgumentError("Embedding: null device pointer");
  }
  const bool vec = p.dim % 8 == 0 && Aligned16(p.table) && Aligned16(p.out);
  return DispatchVec(vec, [&](auto k) {
    EmbeddingKernel<T, decltype(k)::value><<<p.num_tokens, 128, 0, stream>>>(p);
    return LaunchStatus("EmbeddingKernel");
  });
}

template <typename T>
absl::Status RmsNorm(const RmsNormParams<T>& p, cudaStream_t stream) {
  if (p.rows < 0 || p.dim <= 0) return absl::InvalidArgumentError("RmsNorm: bad sizes");
  if (p.rows == 0) return absl::OkStatus();
  if (p.x == nullptr || p.weight == nullptr || p.out == nullptr) {
    return absl::InvalidArgumentError("RmsNorm: null device pointer");
  }
  const bool vec = p.dim % 8 == 0 && Aligned16(p.x) && Aligned16(p.weight) && Aligned16(p.out);
  return DispatchVec(vec, [&](auto k) {
    RmsNormKernel<T, decltype(k)::value><<<p.rows, kNormThreads, 0, stream>>>(p);
    return LaunchStatus("RmsNormKernel");
  });
}

template <typename T>
absl::Status SiluAndMul(const SiluAndMulParams<T>& p, cudaStream_t stream) {
  if (p.rows < 0 || p.dim <= 0 || p.gate_row_stride < p.dim || p.up_row_stride < p.dim ||
      p.out_row_stride < p.dim) {
    return absl::InvalidArgumentError("SiluAndMul: bad sizes or strides");
  }
  if (p.rows == 0) return absl::OkStatus();
  if (p.gate == nullptr || p.up == nullptr || p.out == nullptr) {
    return absl::InvalidArgumentError("SiluAndMul: null device pointer");
  }
  const bool vec = p.dim % 8 == 0 && p.gate_row_stride % 8 == 0 && p.up_row_stride % 8 == 0 &&
                   p.out_row_stride % 8 == 0 && Aligned16(p.gate) && Aligned16(p.up) &&
                   Aligned16(p.out);
  return DispatchVec(vec, [&](auto k) {
    constexpr int kVec = decltype(k)::value;
    const int grid = GridFor(static_cast<int64_t>(p.rows) * (p.dim / kVec), 256);
    SiluAndMulKernel<T, kVec><<<grid, 256, 0, stream>>>(p);
    return LaunchStatus("SiluAndMulKernel");
  });
}

template <typename T>
absl::Status AddInPlace(const AddInPlaceParams<T>& p, cudaStream_t stream) {
  if (p.n < 0) return absl::InvalidArgumentError("AddInPlace: negative size");
  if (p.n == 0) return absl::OkStatus();
  if (p.y == nullptr || p.x == nullptr) {
    return absl::InvalidArgumentError("AddInPlace: null device pointer");
  }
  const bool vec = p.n % 8 == 0 && Aligned16(p.y) && Aligned16(p.x);
  return DispatchVec(vec, [&](auto k) {
    constexpr int kVec = decltype(k)::value;
    AddInPlaceKernel<T, kVec><<<GridFor(p.n / kVec, 256), 256, 0, stream>>>(p);
    return LaunchStatus("AddInPlaceKernel");
  });
}

template absl::Status Embedding<__nv_bfloat16>(const EmbeddingParams<__nv_bfloat16>&, cudaStream_t);
template absl::Status RmsNorm<__nv_bfloat16>(const RmsNormParams<__nv_bfloat16>&, cudaStream_t);
template absl::Status SiluAndMul<__nv_bfloat16>(const SiluAndMulParams<__nv_bfloat16>&,
                                                cudaStream_t);
template absl::Status AddInPlace<__nv_bfloat16>(const AddInPlaceParams<__nv_bfloat16>&,
                                                cudaStream_t);
template absl::Status Embedding<__half>(const EmbeddingParams<__half>&, cudaStream_t);
template absl::Status RmsNorm<__half>(const RmsNormParams<__half>&, cudaStream_t);
template absl::Status SiluAndMul<__half>(const SiluAndMulParams<__half>&, cudaStream_t);
template absl::Status AddInPlace<__half>(const AddInPlaceParams<__half>&, cudaStream_t);

}  // namespace pagoda::kernels::cuda
