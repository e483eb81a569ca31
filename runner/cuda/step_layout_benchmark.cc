// Host cost of a CUDA-graph decode step's metadata: PackStep plus the copy into the pinned
// staging buffer (what the runner's UploadStep does on the host), and the bytes that then cross
// PCIe. A graph is sized for max_model_len, so its block-table rows are max_model_len / 16
// entries wide; `narrow` packs only each row's used part (the runner copies it into the wide
// rows on the device), `full_width` packs the rows at the graph's width (what the runner did
// before, and what a batch whose table is already that wide costs). Same run, same batch.
//
//   build/engine/step_layout_benchmark

#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include "benchmark/benchmark.h"
#include "runner/cuda/step_layout.h"
#include "model/forward_batch.h"

namespace pagoda::runner::cuda {
namespace {

constexpr int32_t kBlockSize = 16;
constexpr int32_t kMaxModelLen = 131072;  // Llama 3.1's
constexpr int32_t kGraphTableWidth = kMaxModelLen / kBlockSize;

// A decode step of `requests` requests at context `context`, with block tables `width` wide.
struct DecodeStep {
  model::ForwardBatchBuilder builder;

  DecodeStep(int32_t requests, int32_t context, int32_t table_width) {
    const int32_t used = (context + kBlockSize - 1) / kBlockSize;
    builder.Reset(kBlockSize, table_width);
    std::vector<int32_t> table(used);
    for (int32_t r = 0; r < requests; ++r) {
      const std::vector<TokenId> ids(context, r % 1000);
      std::iota(table.begin(), table.end(), r * used);
      builder.AddRequest(ids, context - 1, context, absl::Span<const int32_t>(table),
                         model::LogitsRows::kLast);
    }
  }

  model::ForwardBatch batch() const { return builder.batch(); }
};

void PackGraphStep(benchmark::State& state, bool full_width) {
  const int32_t requests = static_cast<int32_t>(state.range(0));
  const int32_t context = static_cast<int32_t>(state.range(1));
  const int32_t used = (context + kBlockSize - 1) / kBlockSize;
  const DecodeStep step(requests, context, full_width ? kGraphTableWidth : used);
  const model::ForwardBatch batch = step.batch();
  const AttentionSplit split = SplitAttention(batch.query_start);
  const StepPadding padding{.num_tokens = requests, .table_width = kGraphTableWidth};
  std::vector<std::byte> packed_bytes;
  std::vector<std::byte> staging(static_cast<size_t>(LayoutFor({.num_tokens = requests,
                                                                .num_decode_requests = requests,
                                                                .num_logits = requests,
                                                                .table_width = kGraphTableWidth})
                                                         .size_bytes));
  for (auto _ : state) {
    const PackedStep packed = PackStep(batch, split, &padding, &packed_bytes);
    std::memcpy(staging.data(), packed_bytes.data(), packed_bytes.size());
    benchmark::DoNotOptimize(packed);
    benchmark::DoNotOptimize(staging.data());
  }
  state.counters["bytes_to_device"] = static_cast<double>(packed_bytes.size());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(packed_bytes.size()));
}

void Args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"requests", "context"});
  for (const int64_t requests : {1, 64, 256}) b->Args({requests, 2048});
  b->Args({256, 16384});
}

void BM_PackGraphStep_Narrow(benchmark::State& state) { PackGraphStep(state, false); }
void BM_PackGraphStep_FullWidth(benchmark::State& state) { PackGraphStep(state, true); }
BENCHMARK(BM_PackGraphStep_Narrow)->Apply(Args);
BENCHMARK(BM_PackGraphStep_FullWidth)->Apply(Args);

}  // namespace
}  // namespace pagoda::runner::cuda

BENCHMARK_MAIN();
