#pragma once

// Runtime head dim -> compile-time kernel instantiation (internal to kernels/cuda).

#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace pagoda::kernels::cuda::internal {

template <int kHeadDim>
using HeadDim = std::integral_constant<int, kHeadDim>;

// Calls launch(HeadDim<d>{}) for the supported head dim d == head_dim (kSupportedHeadDims in
// paged_attention_decode.h) and returns its status; INVALID_ARGUMENT for any other head dim.
template <typename Launch>
absl::Status DispatchHeadDim(int head_dim, Launch&& launch) {
  switch (head_dim) {
    case 32:
      return launch(HeadDim<32>{});
    case 64:
      return launch(HeadDim<64>{});
    case 80:
      return launch(HeadDim<80>{});
    case 96:
      return launch(HeadDim<96>{});
    case 128:
      return launch(HeadDim<128>{});
    case 256:
      return launch(HeadDim<256>{});
    default:
      return absl::InvalidArgumentError(absl::StrCat("unsupported head_dim ", head_dim));
  }
}

}  // namespace pagoda::kernels::cuda::internal
