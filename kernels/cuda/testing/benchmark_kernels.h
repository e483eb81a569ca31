#pragma once

// Device helpers of the CUDA benchmarks (benchmarks only): random fill, an L2 flush, and the
// read-bandwidth ceiling that kernels' achieved bandwidth is set against.

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_buffer.h"

namespace pagoda::kernels::cuda::testing {

// Fills `count` bf16 values at `data` with uniform values in [-scale, scale) from a hash of
// (index, seed). Asynchronous on `stream`.
absl::Status FillUniformBf16(void* data, size_t count, uint32_t seed, float scale,
                             cudaStream_t stream);

// Overwrites `scratch` (make it several times the L2 size), so the next kernel finds none of its
// data in L2. Asynchronous on `stream`.
absl::Status FlushL2(DeviceBuffer& scratch, cudaStream_t stream);

// The best of `repetitions` timed reads of all of `buffer` (16-byte loads from every
// multiprocessor, as a bandwidth-bound kernel at its best would issue them): GB/s (1e9 bytes per
// second). Make the buffer much larger than L2.
absl::StatusOr<double> MeasureReadBandwidth(const DeviceBuffer& buffer, int repetitions,
                                            cudaStream_t stream);

}  // namespace pagoda::kernels::cuda::testing
