#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/elementwise_kernels.cuh"
#include "kernels/cuda/kernel_launch.h"

namespace pagoda::kernels::cuda {
namespace {

using internal::AddInPlaceKernel;
using internal::ArgmaxKernel;
using internal::EmbeddingKernel;
using internal::kArgmaxThreads;
using internal::kNormThreads;
using internal::RmsNormKernel;
using internal::SiluAndMulKernel;

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
    return internal::LaunchKernel("EmbeddingKernel", &EmbeddingKernel<T, decltype(k)::value>,
                                  p.num_tokens, 128, 0, stream, p);
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
    return internal::LaunchKernel("RmsNormKernel", &RmsNormKernel<T, decltype(k)::value>, p.rows,
                                  kNormThreads, 0, stream, p);
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
    return internal::LaunchKernel("SiluAndMulKernel", &SiluAndMulKernel<T, kVec>, grid, 256, 0,
                                  stream, p);
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
    return internal::LaunchKernel("AddInPlaceKernel", &AddInPlaceKernel<T, kVec>,
                                  GridFor(p.n / kVec, 256), 256, 0, stream, p);
  });
}

template <typename T>
absl::Status Argmax(const ArgmaxParams<T>& p, cudaStream_t stream) {
  if (p.rows < 0 || p.vocab_size <= 0 || p.vocab_size > 0x7fffffff || p.row_stride < p.vocab_size) {
    return absl::InvalidArgumentError("Argmax: bad sizes");
  }
  if (p.rows == 0) return absl::OkStatus();
  if (p.logits == nullptr || p.tokens == nullptr) {
    return absl::InvalidArgumentError("Argmax: null device pointer");
  }
  // Rows start 16-byte aligned when the first does and the stride is a multiple of 8; the
  // vocabulary's tail past a multiple of 8 is read scalar.
  const bool vec = p.row_stride % 8 == 0 && Aligned16(p.logits);
  return DispatchVec(vec, [&](auto k) {
    return internal::LaunchKernel("ArgmaxKernel", &ArgmaxKernel<T, decltype(k)::value>, p.rows,
                                  kArgmaxThreads, 0, stream, p);
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
template absl::Status Argmax<__nv_bfloat16>(const ArgmaxParams<__nv_bfloat16>&, cudaStream_t);
template absl::Status Argmax<__half>(const ArgmaxParams<__half>&, cudaStream_t);

}  // namespace pagoda::kernels::cuda
