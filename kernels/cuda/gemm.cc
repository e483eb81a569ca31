#include "kernels/cuda/gemm.h"

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace pagoda::kernels::cuda {
namespace {

absl::Status CublasStatus(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  const std::string message = absl::StrCat(what, ": ", cublasLtGetStatusString(status));
  if (status == CUBLAS_STATUS_ALLOC_FAILED) return absl::ResourceExhaustedError(message);
  if (status == CUBLAS_STATUS_NOT_INITIALIZED) return absl::UnavailableError(message);
  if (status == CUBLAS_STATUS_INVALID_VALUE) return absl::InvalidArgumentError(message);
  return absl::InternalError(message);
}

template <typename T>
cudaDataType_t DataType() {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return CUDA_R_16BF;
  } else {
    static_assert(std::is_same_v<T, __half>);
    return CUDA_R_16F;
  }
}

}  // namespace

// Row-major y[m, n] = x[m, k] W[n, k]^T is, in cuBLAS's column-major terms, D (n x m, ld n) =
// op(A) B with A = W stored k x n (ld k) and transposed, B = x stored k x m (ld k): the "TN"
// layout cuBLAS runs fastest. The bias epilogue adds a vector over D's rows, i.e. over n.
struct Gemm::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr;
  cublasLtMatrixLayout_t b = nullptr;
  cublasLtMatrixLayout_t d = nullptr;
  cublasLtMatmulAlgo_t algo{};

  ~Plan() {
    if (d != nullptr) cublasLtMatrixLayoutDestroy(d);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
  }
};

absl::StatusOr<std::unique_ptr<Gemm>> Gemm::Create(const Options& options) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    (void)cudaGetLastError();
    return absl::UnavailableError("no CUDA device");
  }
  PAGODA_ASSIGN_OR_RETURN(DeviceBuffer workspace,
                          DeviceBuffer::Create(static_cast<size_t>(options.workspace_bytes)));
  cublasLtHandle_t handle = nullptr;
  PAGODA_RETURN_IF_ERROR(CublasStatus(cublasLtCreate(&handle), "cublasLtCreate"));
  return std::unique_ptr<Gemm>(new Gemm(handle, std::move(workspace)));
}

Gemm::Gemm(cublasLtContext* handle, DeviceBuffer workspace)
    : handle_(handle), workspace_(std::move(workspace)) {}

Gemm::~Gemm() {
  plans_.clear();
  cublasLtDestroy(handle_);
}

absl::StatusOr<Gemm::Plan*> Gemm::FindOrCreatePlan(const ShapeKey& key) {
  if (auto it = plans_.find(key); it != plans_.end()) return it->second.get();
  const auto [type_index, m, n, k, has_bias, output] = key;
  const cudaDataType_t type = static_cast<cudaDataType_t>(type_index);
  auto plan = std::make_unique<Plan>();
  PAGODA_RETURN_IF_ERROR(CublasStatus(
      cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate"));
  const cublasOperation_t transpose = CUBLAS_OP_T;
  const cublasOperation_t no_transpose = CUBLAS_OP_N;
  PAGODA_RETURN_IF_ERROR(
      CublasStatus(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                  &transpose, sizeof(transpose)),
                   "TRANSA"));
  PAGODA_RETURN_IF_ERROR(
      CublasStatus(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                  &no_transpose, sizeof(no_transpose)),
                   "TRANSB"));
  if (has_bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    PAGODA_RETURN_IF_ERROR(
        CublasStatus(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                    &epilogue, sizeof(epilogue)),
                     "EPILOGUE"));
    PAGODA_RETURN_IF_ERROR(
        CublasStatus(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                    &type, sizeof(type)),
                     "BIAS_DATA_TYPE"));
  }
  PAGODA_RETURN_IF_ERROR(
      CublasStatus(cublasLtMatrixLayoutCreate(&plan->a, type, k, n, k), "layout A"));
  PAGODA_RETURN_IF_ERROR(
      CublasStatus(cublasLtMatrixLayoutCreate(&plan->b, type, k, m, k), "layout B"));
  PAGODA_RETURN_IF_ERROR(
      CublasStatus(cublasLtMatrixLayoutCreate(&plan->d, type, n, m, n), "layout D"));

  cublasLtMatmulPreference_t preference = nullptr;
  PAGODA_RETURN_IF_ERROR(
      CublasStatus(cublasLtMatmulPreferenceCreate(&preference), "MatmulPreferenceCreate"));
  const uint64_t workspace_bytes = workspace_.size_bytes();
  cublasStatus_t status =
      cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                           &workspace_bytes, sizeof(workspace_bytes));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (status == CUBLAS_STATUS_SUCCESS) {
    status = cublasLtMatmulAlgoGetHeuristic(handle_, plan->desc, plan->a, plan->b, plan->d, plan->d,
                                            preference, 1, &result, &found);
  }
  cublasLtMatmulPreferenceDestroy(preference);
  PAGODA_RETURN_IF_ERROR(CublasStatus(status, "MatmulAlgoGetHeuristic"));
  if (found == 0) {
    return absl::InternalError(
        absl::StrCat("cuBLASLt has no algorithm for m=", m, " n=", n, " k=", k,
                     output == GemmOutput::kAccumulate ? " (accumulate)" : ""));
  }
  plan->algo = result.algo;
  Plan* raw = plan.get();
  plans_.emplace(key, std::move(plan));
  return raw;
}

template <typename T>
absl::Status Gemm::Run(const GemmParams<T>& p, cudaStream_t stream) {
  PAGODA_RETURN_IF_ERROR(CheckGemmParams(p));
  if (p.m == 0) return absl::OkStatus();
  PAGODA_ASSIGN_OR_RETURN(Plan * plan, FindOrCreatePlan({static_cast<int>(DataType<T>()), p.m, p.n,
                                                         p.k, p.bias != nullptr, p.output}));
  if (p.bias != nullptr) {
    PAGODA_RETURN_IF_ERROR(
        CublasStatus(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                    &p.bias, sizeof(p.bias)),
                     "BIAS_POINTER"));
  }
  const float alpha = 1.0f;
  const float beta = p.output == GemmOutput::kAccumulate ? 1.0f : 0.0f;
  return CublasStatus(
      cublasLtMatmul(handle_, plan->desc, &alpha, p.w, plan->a, p.x, plan->b, &beta, p.y, plan->d,
                     p.y, plan->d, &plan->algo, workspace_.data(), workspace_.size_bytes(), stream),
      "cublasLtMatmul");
}

template absl::Status Gemm::Run<__nv_bfloat16>(const GemmParams<__nv_bfloat16>&, cudaStream_t);
template absl::Status Gemm::Run<__half>(const GemmParams<__half>&, cudaStream_t);

}  // namespace pagoda::kernels::cuda
