#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_buffer.h"

struct cublasLtContext;

namespace pagoda::kernels::cuda {

// What a GEMM does with the output's previous contents.
enum class GemmOutput {
  kOverwrite,   // y = x W^T (+ bias)
  kAccumulate,  // y += x W^T (+ bias), e.g. an output projection straight into the residual
};

// y = x W^T (+ bias), the model's linear layers with weights in Hugging Face [out_features,
// in_features] layout (cpu::MatMul's semantics). T (__nv_bfloat16 or __half) for x, W, bias and
// y; fp32 accumulation and epilogue. Device pointers, 16-byte aligned, row-major, dense.
template <typename T>
struct GemmParams {
  const T* x = nullptr;     // [m, k]
  const T* w = nullptr;     // [n, k]
  const T* bias = nullptr;  // [n] or null
  T* y = nullptr;           // [m, n]; must not alias x or w
  int64_t m = 0;
  int64_t n = 0;  // a multiple of 8
  int64_t k = 0;  // a multiple of 8
  GemmOutput output = GemmOutput::kOverwrite;
};

// The contract's checks on `p`, shared by Gemm::Run and its CPU emulation (emulated_runtime.cc):
// INVALID_ARGUMENT naming what is wrong. An empty product (m = 0) passes with any pointers.
template <typename T>
absl::Status CheckGemmParams(const GemmParams<T>& p) {
  if (p.m < 0 || p.n <= 0 || p.k <= 0 || p.n % 8 != 0 || p.k % 8 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Gemm: need n, k multiples of 8; m=", p.m, " n=", p.n, " k=", p.k));
  }
  if (p.m == 0) return absl::OkStatus();
  const auto aligned = [](const void* a) { return reinterpret_cast<uintptr_t>(a) % 16 == 0; };
  if (p.x == nullptr || p.w == nullptr || p.y == nullptr || !aligned(p.x) || !aligned(p.w) ||
      !aligned(p.y) || (p.bias != nullptr && !aligned(p.bias))) {
    return absl::InvalidArgumentError("Gemm: arrays must be non-null and 16-byte aligned");
  }
  return absl::OkStatus();
}

// A cuBLASLt handle, its workspace and the algorithms it chose per problem shape (cached, so a
// shape pays for the heuristic once). Not thread-safe: one thread drives it, and its calls must
// not run concurrently on different streams (they share the workspace). The device current at
// Create() must be current for every call and for destruction.
class Gemm {
 public:
  struct Options {
    int64_t workspace_bytes = 32 << 20;  // cuBLASLt's recommendation for Hopper
  };

  // UNAVAILABLE without a device, RESOURCE_EXHAUSTED when the workspace does not fit.
  static absl::StatusOr<std::unique_ptr<Gemm>> Create(const Options& options);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // Enqueues y = x W^T (+ bias) (+ y) on `stream`. INVALID_ARGUMENT for sizes or alignments
  // the contract excludes; INTERNAL when cuBLASLt finds no algorithm or fails.
  template <typename T>
  absl::Status Run(const GemmParams<T>& params, cudaStream_t stream);

 private:
  struct Plan;  // descriptors and the chosen algorithm of one shape
  // (cudaDataType_t of T, m, n, k, has bias, output mode)
  using ShapeKey = std::tuple<int, int64_t, int64_t, int64_t, bool, GemmOutput>;

  Gemm(cublasLtContext* handle, DeviceBuffer workspace);
  absl::StatusOr<Plan*> FindOrCreatePlan(const ShapeKey& key);

  cublasLtContext* handle_;
  DeviceBuffer workspace_;
  std::map<ShapeKey, std::unique_ptr<Plan>> plans_;
};

}  // namespace pagoda::kernels::cuda
