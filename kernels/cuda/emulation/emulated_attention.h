#pragma once

// Paged attention on the CPU emulator, shared by the emulation tests (tests only): a test batch
// (kernels/cuda/testing/attention_test_batch.h) in the kernels' types, and the decode and
// prefill kernels run over it. Include kernel_emulation.h first (it defines the emulated CUDA
// built-ins).

#if !defined(PAGODA_KERNEL_EMULATION_INCLUDED)
#error "include kernels/cuda/emulation/kernel_emulation.h first"
#endif

#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/cuda/head_dim_dispatch.h"
#include "kernels/cuda/paged_attention_decode_kernel.cuh"
#include "kernels/cuda/paged_attention_prefill_kernel.cuh"
#include "kernels/cuda/testing/attention_test_batch.h"

namespace pagoda::kernels::cuda::testing {

// The batch's arrays in the kernels' types; "device" pointers are these host arrays.
template <typename T>
struct EmulatedBatch {
  std::vector<T> key, value, query, output;
  PagedKvCacheView<T> view;
};

template <typename T>
EmulatedBatch<T> MakeEmulatedBatch(const AttentionCase& c, const HostBatch& b) {
  EmulatedBatch<T> e{ToDeviceType<T>(b.key_cache),
                     ToDeviceType<T>(b.value_cache),
                     StridedQuery<T>(c, b),
                     SentinelOutput<T>(c, b),
                     {}};
  e.view = PagedKvCacheView<T>{e.key.data(),   e.value.data(), b.num_blocks,
                               c.num_kv_heads, c.block_size,   c.head_dim};
  return e;
}

inline float Scale(const AttentionCase& c) {
  return 1.0f / std::sqrt(static_cast<float>(c.head_dim));
}

// Runs the decode kernel (and the merge) over `view`, a cache of T or of an 8-bit type C, with
// e's queries and outputs.
template <typename T, typename C>
void EmulateDecode(const AttentionCase& c, HostBatch& b, const PagedDecodePlan& plan,
                   const PagedKvCacheView<C>& view, EmulatedBatch<T>* e) {
  const int32_t num_requests = static_cast<int32_t>(c.requests.size());
  const int64_t workspace_bytes =
      PagedDecodeWorkspaceBytes(plan, num_requests, b.num_heads, c.head_dim);
  std::vector<uint4> workspace(static_cast<size_t>(workspace_bytes / 16 + 1),
                               uint4{~0u, ~0u, ~0u, ~0u});
  const PagedDecodeParams<T, C> p{.query = e->query.data(),
                                  .query_token_stride = TokenStride(c, b),
                                  .output = e->output.data(),
                                  .output_token_stride = TokenStride(c, b),
                                  .num_requests = num_requests,
                                  .num_heads = b.num_heads,
                                  .cache = view,
                                  .query_start = b.query_start.data(),
                                  .context_lens = b.context_lens.data(),
                                  .block_tables = b.tables.data(),
                                  .max_blocks_per_request = b.max_blocks,
                                  .scale = Scale(c),
                                  .window = c.window,
                                  .plan = plan,
                                  .workspace = workspace.data(),
                                  .workspace_bytes = workspace_bytes};
  const absl::Status status = internal::DispatchHeadDim(c.head_dim, [&](auto head_dim) {
    constexpr int kHeadDim = decltype(head_dim)::value;
    using Cfg = internal::DecodeConfig<kHeadDim, sizeof(C)>;
    emulation::Launch(internal::DecodeGrid(p), dim3(Cfg::kThreads), Cfg::kSmemBytes,
                      &internal::PagedDecodeKernel<T, kHeadDim, C>, p,
                      internal::NumHeadChunks(p.num_heads, c.num_kv_heads));
    if (plan.max_num_partitions > 1) {
      emulation::Launch(internal::MergeGrid(p), dim3(kHeadDim), internal::MergeSharedBytes(plan),
                        &internal::MergePartitionsKernel<T, C>, p);
    }
    return absl::OkStatus();
  });
  ASSERT_TRUE(status.ok()) << status;
}

// Runs the prefill kernels for requests [first, end) over `view` (a cache of T or of an 8-bit
// type C), with e's queries and outputs.
template <typename T, typename C>
void EmulatePrefill(const AttentionCase& c, HostBatch& b, int first, int end,
                    const PagedKvCacheView<C>& view, EmulatedBatch<T>* e) {
  const int32_t num_requests = end - first;
  std::vector<int32_t> tile_offsets(num_requests + 1, -1);
  const PagedPrefillParams<T, C> p{
      .query = e->query.data(),
      .query_token_stride = TokenStride(c, b),
      .output = e->output.data(),
      .output_token_stride = TokenStride(c, b),
      .num_requests = num_requests,
      .num_query_tokens = b.query_start[end] - b.query_start[first],
      .num_heads = b.num_heads,
      .cache = view,
      .query_start = b.query_start.data() + first,
      .context_lens = b.context_lens.data() + first,
      .block_tables = b.tables.data() + static_cast<int64_t>(first) * b.max_blocks,
      .max_blocks_per_request = b.max_blocks,
      .scale = Scale(c),
      .window = c.window,
      .workspace = tile_offsets.data(),
      .workspace_bytes = PagedPrefillWorkspaceBytes(num_requests)};
  emulation::Launch(dim3(1), dim3(internal::kScanThreads), 0, &internal::PrefillTileScanKernel,
                    p.query_start, p.num_requests, c.group, tile_offsets.data());
  const absl::Status status = internal::DispatchHeadDim(c.head_dim, [&](auto head_dim) {
    constexpr int kHeadDim = decltype(head_dim)::value;
    const int32_t* offsets = tile_offsets.data();
    emulation::Launch(dim3(static_cast<unsigned>(internal::PrefillMaxWorkItems(p)),
                           static_cast<unsigned>(c.num_kv_heads)),
                      dim3(internal::kPrefillThreads),
                      internal::PrefillConfig<kHeadDim, sizeof(C)>::kSmemBytes,
                      &internal::PagedPrefillKernel<T, kHeadDim, C>, p, offsets);
    return absl::OkStatus();
  });
  ASSERT_TRUE(status.ok()) << status;
}

}  // namespace pagoda::kernels::cuda::testing
