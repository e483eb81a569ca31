#pragma once

#include <algorithm>
#include <cstdint>

#if defined(__CUDACC__)
#define PAGODA_HOST_DEVICE __host__ __device__
#else
#define PAGODA_HOST_DEVICE
#endif

namespace pagoda::common {

// Which context positions a query attends, shared by the CPU and CUDA kernels, batch validation,
// the block manager (which frees the blocks no later query can attend) and the engine: it lives
// in common/, below all of them.
//   sliding_window == 0: full causal attention, the query at `last` attends [0, last].
//   sliding_window == W > 0: it attends the last W positions [last - W + 1, last] (Mistral,
//     Qwen2's windowed layers: HF's `sliding_window`, the query itself included),
//   plus, with sink_tokens == S > 0, the first S positions (StreamingLLM's attention sinks).
// So the attended positions are [0, SinkEnd(last)) and [WindowStart(last), last], disjoint.
struct AttentionWindow {
  int32_t sliding_window = 0;  // 0: none
  int32_t sink_tokens = 0;     // only with a sliding window

  PAGODA_HOST_DEVICE int32_t WindowStart(int32_t last) const {
    return sliding_window > 0 && last - sliding_window + 1 > 0 ? last - sliding_window + 1 : 0;
  }
  PAGODA_HOST_DEVICE int32_t SinkEnd(int32_t last) const {
    const int32_t start = WindowStart(last);
    return sink_tokens < start ? sink_tokens : start;
  }
  // Positions attended by the query at `last`.
  PAGODA_HOST_DEVICE int32_t NumAttended(int32_t last) const {
    return SinkEnd(last) + (last + 1 - WindowStart(last));
  }
  // True when no query at `first_query` or later attends `position`: the block manager may free
  // a block whose positions are all dead.
  PAGODA_HOST_DEVICE bool IsDead(int32_t position, int32_t first_query) const {
    return sliding_window > 0 && position >= sink_tokens && position < WindowStart(first_query);
  }
  PAGODA_HOST_DEVICE bool full() const { return sliding_window == 0; }
};

}  // namespace pagoda::common
