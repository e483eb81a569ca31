// GPU paged-attention benchmarks (Llama-3-8B attention: 32 query heads, 8 KV heads, head dim 128,
// block size 16, bf16).
//
// Decode: achieved bandwidth = bytes of K/V the batch's contexts hold / kernel time (decode plus
// merge), with L2 flushed before every timed call, set against the read-bandwidth ceiling the
// same binary measures first on the same GPU (benchmark_kernels.h). Counters: GB_per_s,
// pct_of_ceiling, ceiling_GB_per_s, partitions (the split plan's). Shapes batch x context:
// 1x32k, 16x4k, 64x2k, 256x4k and 256x256, each with the planner's split ("auto") and without
// ("none").
//
// The same decode shapes, with the planner's split, over 8-bit caches (BM_Decode_int8,
// BM_Decode_fp8_e4m3: one byte per value plus a bf16 scale per token and KV head, dequantized in
// the kernel); GB_per_s counts the bytes they hold (values and scales), so the time, not the
// rate, shows what halving the bytes buys against BM_Decode at the same shape.
//
// Prefill: one causal prompt of 4k or 16k tokens; TFLOP_per_s counts 4 * head_dim * num_heads
// * n(n+1)/2 floating-point operations (Q K^T and P V, multiply and add).
//
// Times come from CUDA events around the kernels only (manual time). Without a CUDA device the
// binary prints a note and exits 0.

#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "kernels/cuda/cuda_buffer.h"
#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda/cuda_stream.h"
#include "kernels/cuda/paged_attention_decode.h"
#include "kernels/cuda/paged_attention_prefill.h"
#include "kernels/cuda/testing/benchmark_kernels.h"
#include "kernels/cuda/testing/device_array.h"
#include "kernels/paged_kv_cache.h"

namespace pagoda::kernels::cuda {

using testing::DeviceArray;
using testing::FillUniformBf16;
using testing::FlushL2;
using testing::MeasureReadBandwidth;
namespace {

using T = __nv_bfloat16;

constexpr int kNumHeads = 32;
constexpr int kNumKvHeads = 8;
constexpr int kHeadDim = 128;
constexpr int kBlockSize = 16;

double g_read_ceiling_gbps = 0.0;

// Stops the benchmark with an error message when `status` is not OK.
bool Check(benchmark::State& state, const absl::Status& status) {
  if (status.ok()) return true;
  state.SkipWithError(status.ToString().c_str());
  return false;
}

// A paged cache holding `num_requests` contexts of `context_len` tokens in randomly permuted
// blocks, queries, and an output.
struct Batch {
  DeviceBuffer key, value, query, output;
  DeviceBuffer key_scale, value_scale;  // 8-bit caches: a bf16 scale per token and KV head
  DeviceArray<int32_t> tables, query_start, context_lens;
  int32_t num_blocks = 0;
  int32_t max_blocks = 0;

  template <typename C = T>
  PagedKvCacheView<C> View() const {
    PagedKvCacheView<C> view{static_cast<C*>(key.data()),
                             static_cast<C*>(value.data()),
                             num_blocks,
                             kNumKvHeads,
                             kBlockSize,
                             kHeadDim};
    if constexpr (sizeof(C) == 1) {
      view.key_scale = static_cast<uint16_t*>(key_scale.data());
      view.value_scale = static_cast<uint16_t*>(value_scale.data());
    }
    return view;
  }
};

// Random bf16 bits fill every buffer (8-bit caches get random bytes: the kernels' time does not
// depend on the values).
absl::Status MakeBatch(int32_t num_requests, int32_t context_len, int32_t queries_per_request,
                       cudaStream_t stream, Batch* b, int cache_elem_bytes = sizeof(T)) {
  b->max_blocks = (context_len + kBlockSize - 1) / kBlockSize;
  b->num_blocks = num_requests * b->max_blocks;
  const size_t cache_rows = static_cast<size_t>(b->num_blocks) * kNumKvHeads * kBlockSize;
  const size_t cache_bytes = cache_rows * kHeadDim * cache_elem_bytes;
  const size_t scale_bytes = cache_elem_bytes == 1 ? cache_rows * 2 : 16;
  const size_t query_elements =
      static_cast<size_t>(num_requests) * queries_per_request * kNumHeads * kHeadDim;
  auto key = DeviceBuffer::Create(cache_bytes);
  auto value = DeviceBuffer::Create(cache_bytes);
  auto key_scale = DeviceBuffer::Create(scale_bytes);
  auto value_scale = DeviceBuffer::Create(scale_bytes);
  auto query = DeviceBuffer::Create(query_elements * sizeof(T));
  auto output = DeviceBuffer::Create(query_elements * sizeof(T));
  for (auto* s : {&key, &value, &key_scale, &value_scale, &query, &output}) {
    if (!s->ok()) return s->status();
  }
  b->key = std::move(*key);
  b->value = std::move(*value);
  b->key_scale = std::move(*key_scale);
  b->value_scale = std::move(*value_scale);
  b->query = std::move(*query);
  b->output = std::move(*output);
  absl::Status status = FillUniformBf16(b->key.data(), cache_bytes / 2, 1, 1.0f, stream);
  if (status.ok()) status = FillUniformBf16(b->value.data(), cache_bytes / 2, 2, 1.0f, stream);
  if (status.ok()) status = FillUniformBf16(b->query.data(), query_elements, 3, 1.0f, stream);
  if (status.ok()) status = FillUniformBf16(b->key_scale.data(), scale_bytes / 2, 6, 1.0f, stream);
  if (status.ok()) {
    status = FillUniformBf16(b->value_scale.data(), scale_bytes / 2, 7, 1.0f, stream);
  }
  if (!status.ok()) return status;

  std::vector<int32_t> blocks(b->num_blocks);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::shuffle(blocks.begin(), blocks.end(), std::mt19937(4));
  std::vector<int32_t> query_start(num_requests + 1);
  for (int32_t r = 0; r <= num_requests; ++r) query_start[r] = r * queries_per_request;
  auto tables = DeviceArray<int32_t>::FromHost(blocks);
  auto starts = DeviceArray<int32_t>::FromHost(query_start);
  auto lens = DeviceArray<int32_t>::FromHost(std::vector<int32_t>(num_requests, context_len));
  for (auto* s : {&tables, &starts, &lens}) {
    if (!s->ok()) return s->status();
  }
  b->tables = std::move(*tables);
  b->query_start = std::move(*starts);
  b->context_lens = std::move(*lens);
  return absl::OkStatus();
}

enum class Split { kAuto, kNone };

// C: the cache's element type (T, or an 8-bit type).
template <typename C>
void BM_Decode(benchmark::State& state, Split split) {
  const int32_t num_requests = static_cast<int32_t>(state.range(0));
  const int32_t context_len = static_cast<int32_t>(state.range(1));
  auto stream = CudaStream::Create();
  auto start = CudaEvent::Create();
  auto stop = CudaEvent::Create();
  auto device = CurrentDeviceProperties();
  if (!Check(state, stream.status()) || !Check(state, start.status()) ||
      !Check(state, stop.status()) || !Check(state, device.status())) {
    return;
  }
  Batch b;
  if (!Check(state, MakeBatch(num_requests, context_len, 1, stream->get(), &b, sizeof(C)))) return;
  const PagedDecodeShape shape{.num_requests = num_requests,
                               .num_heads = kNumHeads,
                               .num_kv_heads = kNumKvHeads,
                               .head_dim = kHeadDim,
                               .max_context_len = context_len};
  PagedDecodePlan plan{.partition_size = (context_len + 63) / 64 * 64, .max_num_partitions = 1};
  if (split == Split::kAuto) {
    auto planned = PlanPagedDecode(shape);
    if (!Check(state, planned.status())) return;
    plan = *planned;
  }
  const int64_t workspace_bytes =
      PagedDecodeWorkspaceBytes(plan, num_requests, kNumHeads, kHeadDim);
  auto workspace =
      DeviceBuffer::Create(static_cast<size_t>(std::max<int64_t>(workspace_bytes, 16)));
  auto flush = DeviceBuffer::Create(
      static_cast<size_t>(std::max<int64_t>(4 * device->l2_cache_bytes, int64_t{256} << 20)));
  if (!Check(state, workspace.status()) || !Check(state, flush.status())) return;
  const PagedDecodeParams<T, C> params{.query = static_cast<const T*>(b.query.data()),
                                       .query_token_stride = kNumHeads * kHeadDim,
                                       .output = static_cast<T*>(b.output.data()),
                                       .output_token_stride = kNumHeads * kHeadDim,
                                       .num_requests = num_requests,
                                       .num_heads = kNumHeads,
                                       .cache = b.View<C>(),
                                       .query_start = b.query_start.data(),
                                       .context_lens = b.context_lens.data(),
                                       .block_tables = b.tables.data(),
                                       .max_blocks_per_request = b.max_blocks,
                                       .scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim)),
                                       .plan = plan,
                                       .workspace = workspace->data(),
                                       .workspace_bytes = workspace_bytes};
  double total_seconds = 0.0;
  for (auto _ : state) {
    if (!Check(state, FlushL2(*flush, stream->get())) ||
        !Check(state, start->Record(stream->get())) ||
        !Check(state, PagedAttentionDecode(params, stream->get())) ||
        !Check(state, stop->Record(stream->get())) || !Check(state, stop->Synchronize())) {
      return;
    }
    auto ms = CudaEvent::ElapsedMs(*start, *stop);
    if (!Check(state, ms.status())) return;
    state.SetIterationTime(*ms * 1e-3);
    total_seconds += *ms * 1e-3;
  }
  // Values, plus the 8-bit caches' per-token scales.
  const double bytes_per_row = kHeadDim * sizeof(C) + (sizeof(C) == 1 ? 2 : 0);
  const double kv_bytes =
      2.0 * num_requests * static_cast<double>(context_len) * kNumKvHeads * bytes_per_row;
  const double gbps = kv_bytes * static_cast<double>(state.iterations()) / total_seconds / 1e9;
  state.counters["GB_per_s"] = gbps;
  state.counters["ceiling_GB_per_s"] = g_read_ceiling_gbps;
  state.counters["pct_of_ceiling"] = 100.0 * gbps / g_read_ceiling_gbps;
  state.counters["partitions"] = plan.max_num_partitions;
}

void BM_Prefill(benchmark::State& state) {
  const int32_t n = static_cast<int32_t>(state.range(0));
  auto stream = CudaStream::Create();
  auto start = CudaEvent::Create();
  auto stop = CudaEvent::Create();
  if (!Check(state, stream.status()) || !Check(state, start.status()) ||
      !Check(state, stop.status())) {
    return;
  }
  Batch b;
  if (!Check(state, MakeBatch(1, n, n, stream->get(), &b))) return;
  auto workspace = DeviceBuffer::Create(PagedPrefillWorkspaceBytes(1));
  if (!Check(state, workspace.status())) return;
  const PagedPrefillParams<T> params{.query = static_cast<const T*>(b.query.data()),
                                     .query_token_stride = kNumHeads * kHeadDim,
                                     .output = static_cast<T*>(b.output.data()),
                                     .output_token_stride = kNumHeads * kHeadDim,
                                     .num_requests = 1,
                                     .num_query_tokens = n,
                                     .num_heads = kNumHeads,
                                     .cache = b.View(),
                                     .query_start = b.query_start.data(),
                                     .context_lens = b.context_lens.data(),
                                     .block_tables = b.tables.data(),
                                     .max_blocks_per_request = b.max_blocks,
                                     .scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim)),
                                     .workspace = workspace->data(),
                                     .workspace_bytes = PagedPrefillWorkspaceBytes(1)};
  double total_seconds = 0.0;
  for (auto _ : state) {
    if (!Check(state, start->Record(stream->get())) ||
        !Check(state, PagedAttentionPrefill(params, stream->get())) ||
        !Check(state, stop->Record(stream->get())) || !Check(state, stop->Synchronize())) {
      return;
    }
    auto ms = CudaEvent::ElapsedMs(*start, *stop);
    if (!Check(state, ms.status())) return;
    state.SetIterationTime(*ms * 1e-3);
    total_seconds += *ms * 1e-3;
  }
  const double flops = 4.0 * kHeadDim * kNumHeads * (static_cast<double>(n) * (n + 1) / 2);
  state.counters["TFLOP_per_s"] =
      flops * static_cast<double>(state.iterations()) / total_seconds / 1e12;
}

void RegisterAll() {
  const auto shapes = [](benchmark::internal::Benchmark* b) {
    b->ArgNames({"batch", "context"})
        ->Args({1, 32768})
        ->Args({16, 4096})
        ->Args({64, 2048})
        ->Args({256, 4096})
        ->Args({256, 256})  // short contexts: the issue's ≥ 60 % target at context 256
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  };
  for (const auto& [split, name] :
       {std::pair{Split::kAuto, "auto"}, std::pair{Split::kNone, "none"}}) {
    shapes(benchmark::RegisterBenchmark(
        absl::StrCat("BM_Decode/split:", name).c_str(),
        [split = split](benchmark::State& s) { BM_Decode<T>(s, split); }));
    if (split != Split::kAuto) continue;  // 8-bit caches: the planner's split only
    shapes(benchmark::RegisterBenchmark(
        absl::StrCat("BM_Decode_int8/split:", name).c_str(),
        [split = split](benchmark::State& s) { BM_Decode<int8_t>(s, split); }));
    shapes(benchmark::RegisterBenchmark(
        absl::StrCat("BM_Decode_fp8_e4m3/split:", name).c_str(),
        [split = split](benchmark::State& s) { BM_Decode<__nv_fp8_e4m3>(s, split); }));
  }
  benchmark::RegisterBenchmark("BM_Prefill", BM_Prefill)
      ->ArgName("tokens")
      ->Arg(4096)
      ->Arg(16384)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
}

// The read ceiling on a 1 GiB buffer (20 times an H100's L2), best of 10 reads.
absl::StatusOr<double> MeasureCeiling() {
  auto stream = CudaStream::Create();
  if (!stream.ok()) return stream.status();
  auto buffer = DeviceBuffer::Create(size_t{1} << 30);
  if (!buffer.ok()) return buffer.status();
  absl::Status status =
      FillUniformBf16(buffer->data(), buffer->size_bytes() / 2, 5, 1.0f, stream->get());
  if (!status.ok()) return status;
  return MeasureReadBandwidth(*buffer, 10, stream->get());
}

}  // namespace
}  // namespace pagoda::kernels::cuda

int main(int argc, char** argv) {
  using namespace pagoda::kernels::cuda;
  benchmark::Initialize(&argc, argv);
  if (VisibleDeviceCount() == 0) {
    std::printf("no CUDA device: the CUDA attention benchmarks were skipped\n");
    return 0;
  }
  const absl::StatusOr<double> ceiling = MeasureCeiling();
  if (!ceiling.ok()) {
    std::fprintf(stderr, "read-bandwidth ceiling: %s\n", ceiling.status().ToString().c_str());
    return 1;
  }
  g_read_ceiling_gbps = *ceiling;
  std::printf("read-bandwidth ceiling: %.0f GB/s\n", g_read_ceiling_gbps);
  RegisterAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
