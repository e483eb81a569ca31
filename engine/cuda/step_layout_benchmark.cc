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
#include <vector>

#include "benchmark/benchmark.h"
#include "engine/cuda/step_layout.h"
#include "model/llama_model.h"

namespace pagoda::engine::cuda {
namespace {

constexpr int32_t kBlockSize = 16;
constexpr int32_t kMaxModelLen = 131072;  // Llama 3.1's
constexpr int32_t kGraphTableWidth = kMaxModelLen / kBlockSize;

// A decode step of `requests` requests at context `context`, with block tables `width` wide.
struct DecodeStep {
  std::vector<TokenId> ids;
  std::vector<int32_t> positions, query_start, context_lens, tables, logits;
  std::vector<int64_t> slots;
  int32_t width = 0;

  DecodeStep(int32_t requests, int32_t context, int32_t table_width) : width(table_width) {
    const int32_t used = (context + kBlockSize - 1) / kBlockSize;
    query_start.push_back(0);
    for (int32_t r = 0; r < requests; ++r) {
      ids.push_back(r % 1000);
      positions.push_back(context - 1);
      const int32_t first_block = r * used;
      slots.push_back(int64_t{first_block + used - 1} * kBlockSize + (context - 1) % kBlockSize);
      query_start.push_back(r + 1);
      context_lens.push_back(context);
      logits.push_back(r);
      for (int32_t b = 0; b < width; ++b) tables.push_back(b < used ? first_block + b : 0);
    }
  }

  model::ForwardBatch batch() const {
    return {.token_ids = ids,
            .positions = positions,
            .slot_mapping = slots,
            .query_start = query_start,
            .context_lens = context_lens,
            .block_tables = tables,
            .max_blocks_per_request = width,
            .logits_indices = logits};
  }
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
}  // namespace pagoda::engine::cuda

BENCHMARK_MAIN();
