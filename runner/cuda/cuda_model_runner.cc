#include "runner/cuda/cuda_model_runner.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/check.h"
#include "common/status_macros.h"
#include "kernels/cuda/cuda_buffer.h"
#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda/cuda_graph.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/cuda_stream.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/paged_attention_decode.h"
#include "kernels/cuda/paged_attention_prefill.h"
#include "kernels/cuda/pinned_host_buffer.h"
#include "model/forward_batch.h"
#include "runner/cuda/cuda_model_runner_impl.h"
#include "runner/cuda/device_weights.h"
#include "runner/cuda/step_layout.h"

namespace pagoda::runner::cuda {

using internal::CudaModelRunnerImpl;
using internal::DeviceStep;
using internal::DTypeOf;

namespace {

namespace kc = kernels::cuda;

template <typename T>
float FromBits(uint16_t bits) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return model::Bf16ToF32(bits);
  } else {
    return model::F16ToF32(bits);
  }
}

absl::Status CheckSupported(const model::ModelConfig& c, const CudaModelRunnerOptions& o) {
  if (o.dtype != model::DType::kBF16 && o.dtype != model::DType::kF16) {
    return absl::InvalidArgumentError("--kv-cache-dtype: the CUDA runner computes in bf16 or f16");
  }
  if (o.kv_dtype.has_value() && *o.kv_dtype != o.dtype &&
      (!model::IsScaledKvType(*o.kv_dtype) || o.dtype != model::DType::kBF16)) {
    return absl::InvalidArgumentError(
        "--kv-cache-dtype: the CUDA runner caches in its compute dtype, or in int8, fp8_e4m3 or "
        "fp8_e5m2 when it computes in bf16");
  }
  if (!kc::IsSupportedHeadDim(c.head_dim)) {
    std::string dims;
    for (const int d : kc::kSupportedHeadDims) absl::StrAppend(&dims, dims.empty() ? "" : ", ", d);
    return absl::InvalidArgumentError(absl::StrCat("--device cuda: head_dim ", c.head_dim,
                                                   " is not supported by the CUDA attention "
                                                   "kernels (supported: ",
                                                   dims, "); use --device cpu"));
  }
  if (c.hidden_size % 8 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("--device cuda: hidden_size ", c.hidden_size,
                                                   " must be a multiple of 8; use --device cpu"));
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return absl::InvalidArgumentError(
        "num_attention_heads must be a multiple of num_key_value_heads");
  }
  if (c.rope_scaling.has_value() && c.rope_scaling->type != "llama3") {
    return absl::InvalidArgumentError(
        absl::StrCat("rope_scaling type ", c.rope_scaling->type, " is not supported"));
  }
  if (o.block_size <= 0 || o.max_num_batched_tokens <= 0 || o.max_num_seqs <= 0 ||
      o.max_model_len < 0 || o.max_cuda_graph_batch_size < 0) {
    return absl::InvalidArgumentError("CUDA runner: sizes must be positive");
  }
  return absl::OkStatus();
}

// Device memory in use now (all processes).
absl::StatusOr<int64_t> UsedDeviceBytes() {
  PAGODA_ASSIGN_OR_RETURN(const kc::DeviceMemoryInfo info, kc::CurrentDeviceMemoryInfo());
  return info.total_bytes - info.free_bytes;
}

}  // namespace

namespace internal {

template <typename T, typename C>
std::string CudaModelRunnerImpl<T, C>::Describe() const {
  const auto gib = [](int64_t bytes) {
    return absl::StrFormat("%.2f GiB", static_cast<double>(bytes) / (int64_t{1} << 30));
  };
  const CudaRunnerReport& r = report_;
  std::string graphs = "off (--enforce-eager)";
  if (!r.graph_batch_sizes.empty()) {
    graphs = absl::StrFormat("%d decode batch sizes up to %d, captured in %.2f s",
                             r.graph_batch_sizes.size(), r.graph_batch_sizes.back(),
                             r.graph_capture_seconds);
  }
  return absl::StrFormat(
      "cuda:%d (sm_%d, %s): weights %s, buffers %s, non-KV total %s; KV pool %s (%s); CUDA "
      "graphs %s",
      r.device, r.compute_capability, gib(r.memory.total_bytes), gib(r.weight_bytes),
      gib(r.activation_bytes), gib(r.kv.non_kv_bytes), gib(r.kv.kv_bytes),
      options_.kv_cache_memory_bytes > 0
          ? "--kv-cache-memory"
          : absl::StrFormat("--gpu-memory-utilization %.2f%s", options_.gpu_memory_utilization,
                            r.kv.limited_by_free_memory ? ", limited by free memory" : ""),
      graphs);
}

template <typename T, typename C>
absl::Status CudaModelRunnerImpl<T, C>::Init(std::unique_ptr<model::ModelWeights> weights) {
  PAGODA_RETURN_IF_ERROR(kc::SetCurrentDevice(options_.device));
  PAGODA_ASSIGN_OR_RETURN(const kc::DeviceProperties props, kc::CurrentDeviceProperties());
  report_.device = options_.device;
  report_.compute_capability = props.compute_capability;
  if (props.compute_capability < 80) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--device cuda: compute capability ", props.compute_capability / 10, ".",
        props.compute_capability % 10, " is too old; the kernels need 8.0 (Ampere) or newer"));
  }
  max_model_len_ =
      options_.max_model_len > 0 ? options_.max_model_len : config_.max_position_embeddings;
  table_width_ =
      static_cast<int32_t>((max_model_len_ + options_.block_size - 1) / options_.block_size);
  max_graph_size_ = options_.enforce_eager
                        ? 0
                        : std::min({options_.max_cuda_graph_batch_size, options_.max_num_seqs,
                                    options_.max_num_batched_tokens});
  max_tokens_ = std::max(options_.max_num_batched_tokens, max_graph_size_);
  max_requests_ = options_.max_num_seqs;
  max_logits_ = std::max(options_.max_num_seqs, max_graph_size_);

  PAGODA_ASSIGN_OR_RETURN(decode_resident_blocks_, kc::PagedDecodeResidentBlocks(config_.head_dim));
  PAGODA_ASSIGN_OR_RETURN(report_.memory.used_before_load_bytes, UsedDeviceBytes());
  PAGODA_ASSIGN_OR_RETURN(stream_, kc::CudaStream::Create());
  PAGODA_ASSIGN_OR_RETURN(gemm_, kc::Gemm::Create({}));
  PAGODA_ASSIGN_OR_RETURN(weights_, UploadWeights(*weights, dims_, DTypeOf<T>()));
  report_.weight_bytes = weights_.size_bytes;
  PAGODA_RETURN_IF_ERROR(UploadStaticKvScales(*weights));
  weights.reset();
  PAGODA_RETURN_IF_ERROR(AllocateBuffers());
  PAGODA_RETURN_IF_ERROR(ProfileAndSizePool());
  return CaptureGraphs();
}

template <typename T, typename C>
absl::Status CudaModelRunnerImpl<T, C>::AllocateBuffers() {
  int64_t bytes = 0;
  const auto alloc = [&bytes](kc::DeviceBuffer* b, int64_t size) -> absl::Status {
    PAGODA_ASSIGN_OR_RETURN(*b, kc::DeviceBuffer::Create(static_cast<size_t>(size)));
    bytes += size;
    return absl::OkStatus();
  };
  const int64_t t = max_tokens_;
  const int64_t e = sizeof(T);
  PAGODA_RETURN_IF_ERROR(alloc(&hidden_, t * dims_.hidden * e));
  PAGODA_RETURN_IF_ERROR(alloc(&normed_, t * dims_.hidden * e));
  PAGODA_RETURN_IF_ERROR(alloc(&qkv_, t * dims_.qkv_dim * e));
  PAGODA_RETURN_IF_ERROR(alloc(&attn_, t * dims_.q_dim * e));
  PAGODA_RETURN_IF_ERROR(alloc(&gate_up_, t * 2 * dims_.intermediate * e));
  PAGODA_RETURN_IF_ERROR(alloc(&act_, t * dims_.intermediate * e));
  PAGODA_RETURN_IF_ERROR(alloc(&last_, int64_t{max_logits_} * dims_.hidden * e));
  PAGODA_RETURN_IF_ERROR(alloc(&logits_, int64_t{max_logits_} * dims_.vocab_padded * e));

  // The decode split wants more partitions for fewer requests: size the workspace for the
  // largest need over every batch size at the longest context.
  int64_t decode_workspace = 0;
  const int32_t max_decode = std::max(max_requests_, static_cast<int32_t>(max_graph_size_));
  for (int32_t r = 1; r <= max_decode; ++r) {
    const kc::PagedDecodePlan plan = DecodePlan(r, max_model_len_);
    decode_workspace =
        std::max(decode_workspace,
                 kc::PagedDecodeWorkspaceBytes(plan, r, config_.num_heads, config_.head_dim));
  }
  PAGODA_RETURN_IF_ERROR(alloc(&decode_workspace_, decode_workspace));
  PAGODA_RETURN_IF_ERROR(alloc(&prefill_workspace_, kc::PagedPrefillWorkspaceBytes(max_requests_)));

  const StepLayout largest = LayoutFor({.num_tokens = max_tokens_,
                                        .num_decode_requests = max_decode,
                                        .num_prefill_requests = max_requests_,
                                        .num_logits = max_logits_,
                                        .table_width = table_width_});
  PAGODA_RETURN_IF_ERROR(alloc(&meta_, largest.size_bytes));
  PAGODA_ASSIGN_OR_RETURN(meta_staging_,
                          kc::PinnedHostBuffer::Create(static_cast<size_t>(largest.size_bytes)));
  PAGODA_RETURN_IF_ERROR(alloc(&argmax_, int64_t{max_logits_} * int64_t{sizeof(int32_t)}));
  PAGODA_ASSIGN_OR_RETURN(argmax_staging_, kc::PinnedHostBuffer::Create(
                                               static_cast<size_t>(max_logits_) * sizeof(int32_t)));
  PAGODA_ASSIGN_OR_RETURN(logits_staging_, kc::PinnedHostBuffer::Create(static_cast<size_t>(
                                               int64_t{max_logits_} * dims_.vocab_padded * e)));
  report_.activation_bytes = bytes;
  return absl::OkStatus();
}

template <typename T, typename C>
absl::Status CudaModelRunnerImpl<T, C>::UploadStaticKvScales(const model::ModelWeights& weights) {
  if constexpr (sizeof(C) == 1 && !std::is_same_v<C, int8_t>) {
    const model::StaticKvScales scales = model::CheckpointKvScales(weights);
    if (scales.empty()) return absl::OkStatus();
    std::vector<float> flat;  // per layer: k_scale then v_scale, one per KV head each
    for (const std::vector<float>& layer : scales) {
      flat.insert(flat.end(), layer.begin(), layer.end());
    }
    const size_t bytes = flat.size() * sizeof(float);
    PAGODA_ASSIGN_OR_RETURN(head_scales_, kc::DeviceBuffer::Create(bytes));
    PAGODA_RETURN_IF_ERROR(head_scales_.CopyFromHost(flat.data(), bytes));
  } else {
    (void)weights;
  }
  return absl::OkStatus();
}

template <typename T, typename C>
absl::Status CudaModelRunnerImpl<T, C>::AllocateKvPool(int64_t num_blocks) {
  kv_pool_ = kc::DeviceBuffer();  // the old pool goes before the new one is allocated
  num_blocks_ = 0;
  const int64_t bytes = num_blocks * BytesPerBlock();
  PAGODA_ASSIGN_OR_RETURN(kv_pool_, kc::DeviceBuffer::Create(static_cast<size_t>(bytes)));
  num_blocks_ = static_cast<int>(num_blocks);
  return absl::OkStatus();
}

// The profiling pass: the largest prefill step the scheduler can produce (max_num_batched_tokens
// over as many requests as it allows, each asking for logits) on a temporary pool, with the
// graphs captured too; what it leaves in use, less the temporary pool, is the runner's own.
template <typename T, typename C>
absl::Status CudaModelRunnerImpl<T, C>::ProfileAndSizePool() {
  const int64_t tokens = std::min<int64_t>(options_.max_num_batched_tokens,
                                           int64_t{options_.max_num_seqs} * max_model_len_);
  const int64_t requests = std::min<int64_t>(options_.max_num_seqs, tokens);
  const int32_t per_request = static_cast<int32_t>((tokens + requests - 1) / requests);
  const int32_t width = (per_request + options_.block_size - 1) / options_.block_size;
  const std::vector<TokenId> ids(per_request, 0);
  std::vector<int32_t> table;
  int32_t blocks_used = 0;
  model::ForwardBatchBuilder builder;
  builder.Reset(options_.block_size, width);
  for (int64_t r = 0, left = tokens; r < requests && left > 0; ++r) {
    const int32_t n = static_cast<int32_t>(std::min<int64_t>(per_request, left));
    left -= n;
    table.clear();
    for (int32_t i = 0; i < n; i += options_.block_size) table.push_back(blocks_used++);
    builder.AddRequest(ids, 0, n, absl::Span<const int32_t>(table), model::LogitsRows::kLast);
  }
  PAGODA_RETURN_IF_ERROR(AllocateKvPool(blocks_used));
  report_.memory.profile_kv_bytes = static_cast<int64_t>(kv_pool_.size_bytes());
  const model::ForwardBatch batch = builder.batch();
  PAGODA_RETURN_IF_ERROR(RunEager(batch, SplitAttention(batch.query_start), {}, &host_rows_));
  PAGODA_RETURN_IF_ERROR(CaptureGraphs());
  PAGODA_RETURN_IF_ERROR(stream_.Synchronize());
  PAGODA_ASSIGN_OR_RETURN(const kc::DeviceMemoryInfo info, kc::CurrentDeviceMemoryInfo());
  report_.memory.total_bytes = info.total_bytes;
  report_.memory.used_after_profile_bytes = info.total_bytes - info.free_bytes;
  report_.memory.free_after_profile_bytes = info.free_bytes;
  graphs_.clear();

  PAGODA_ASSIGN_OR_RETURN(
      report_.kv,
      PlanKvCacheBudget(report_.memory, {.gpu_memory_utilization = options_.gpu_memory_utilization,
                                         .bytes_per_block = BytesPerBlock(),
                                         .kv_cache_memory_bytes = options_.kv_cache_memory_bytes}));
  return AllocateKvPool(report_.kv.num_blocks);
}

template <typename T, typename C>
absl::Status CudaModelRunnerImpl<T, C>::CaptureGraphs() {
  graphs_.clear();
  if (max_graph_size_ == 0) return absl::OkStatus();
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int> sizes = CudaGraphBatchSizes(max_graph_size_);
  // An empty batch padded to the graph's size: every row is padding (token 0, slot -1,
  // context 0), which is valid input for a warm-up run and for capture.
  const int32_t zero = 0;
  const model::ForwardBatch padding_only{.query_start = absl::MakeConstSpan(&zero, 1)};
  // Largest first: the warm-up of the largest size creates the GEMM plans, the rest reuse the
  // buffers.
  for (auto it = sizes.rbegin(); it != sizes.rend(); ++it) {
    const int size = *it;
    const StepPadding padding{.num_tokens = size, .table_width = table_width_};
    const PackedStep packed =
        PackStep(padding_only, SplitAttention(padding_only.query_start), &padding, &packed_bytes_);
    Graph graph;
    graph.step = {.shape = packed.shape,
                  .meta = static_cast<const std::byte*>(meta_.data()),
                  .layout = packed.layout,
                  .num_prefill_tokens = 0};
    graph.step.plan = DecodePlan(size, max_model_len_);
    PAGODA_RETURN_IF_ERROR(UploadStep(packed));
    PAGODA_RETURN_IF_ERROR(EnqueueForward(graph.step));  // warm-up: lazy module loading, plans
    PAGODA_RETURN_IF_ERROR(stream_.Synchronize());
    PAGODA_ASSIGN_OR_RETURN(graph.graph, kc::CudaGraph::Capture(stream_.get(), [&] {
                              return EnqueueForward(graph.step);
                            }));
    graphs_.emplace(size, std::move(graph));
  }
  PAGODA_RETURN_IF_ERROR(stream_.Synchronize());
  report_.graph_batch_sizes = sizes;
  report_.graph_capture_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return absl::OkStatus();
}

template <typename T, typename C>
absl::Status CudaModelRunnerImpl<T, C>::UploadStep(const PackedStep& packed) {
  PAGODA_CHECK(packed_bytes_.size() <= meta_staging_.size_bytes());
  // The previous step's copy out of the staging buffer has completed: every step ends with a
  // stream synchronization.
  std::memcpy(meta_staging_.data(), packed_bytes_.data(), packed_bytes_.size());
  // packed_bytes_ is the device image up to its end unless a graph step narrowed the table.
  if (packed.decode_table_width == packed.shape.table_width) {
    return kc::CopyAsync(meta_.data(), meta_staging_.data(), packed_bytes_.size(), stream_.get());
  }
  // A graph step: the arrays before the decode table, then the used part of its rows.
  const int64_t table = packed.layout.decode_block_tables;
  PAGODA_RETURN_IF_ERROR(
      kc::CopyAsync(meta_.data(), meta_staging_.data(), static_cast<size_t>(table), stream_.get()));
  constexpr size_t kEntry = sizeof(int32_t);
  return kc::CopyRowsAsync(static_cast<std::byte*>(meta_.data()) + table,
                           packed.shape.table_width * kEntry,
                           static_cast<const std::byte*>(meta_staging_.data()) + table,
                           packed.decode_table_width * kEntry, packed.decode_table_width * kEntry,
                           static_cast<size_t>(packed.decode_table_rows), stream_.get());
}

template <typename T, typename C>
absl::Status CudaModelRunnerImpl<T, C>::DownloadLogits(int32_t rows, absl::Span<const int32_t> pick,
                                                       absl::Span<const uint8_t> greedy_rows,
                                                       HostRows* out) {
  const auto greedy = [&](size_t i) { return !greedy_rows.empty() && greedy_rows[i] != 0; };
  cudaStream_t stream = stream_.get();
  size_t num_greedy = 0;
  for (size_t i = 0; i < pick.size(); ++i) num_greedy += greedy(i) ? 1 : 0;
  if (num_greedy > 0) {
    PAGODA_RETURN_IF_ERROR(kc::Argmax<T>({.logits = Ptr(logits_),
                                          .row_stride = dims_.vocab_padded,
                                          .vocab_size = dims_.vocab,
                                          .rows = rows,
                                          .tokens = static_cast<int32_t*>(argmax_.data())},
                                         stream));
    PAGODA_RETURN_IF_ERROR(kc::CopyAsync(argmax_staging_.data(), argmax_.data(),
                                         static_cast<size_t>(rows) * sizeof(int32_t), stream));
  }
  // The other rows' logits: one copy per run of consecutive device rows.
  const int64_t row_bytes = dims_.vocab_padded * int64_t{sizeof(T)};
  auto* staging = static_cast<std::byte*>(logits_staging_.data());
  const auto* device = static_cast<const std::byte*>(logits_.data());
  for (size_t i = 0; i < pick.size();) {
    if (greedy(i)) {
      ++i;
      continue;
    }
    size_t end = i + 1;
    while (end < pick.size() && !greedy(end) && pick[end] == pick[end - 1] + 1) ++end;
    const int64_t offset = pick[i] * row_bytes;
    PAGODA_RETURN_IF_ERROR(kc::CopyAsync(staging + offset, device + offset,
                                         static_cast<size_t>((end - i) * row_bytes), stream));
    i = end;
  }
  // Also reports any asynchronous error of the step's kernels.
  PAGODA_RETURN_IF_ERROR(stream_.Synchronize());

  const auto* tokens = static_cast<const int32_t*>(argmax_staging_.data());
  const auto* bits = static_cast<const uint16_t*>(logits_staging_.data());
  out->argmax_tokens.clear();
  out->logits.resize((pick.size() - num_greedy) * dims_.vocab);
  float* dst = out->logits.data();
  for (size_t i = 0; i < pick.size(); ++i) {
    if (greedy(i)) {
      out->argmax_tokens.push_back(tokens[pick[i]]);
      continue;
    }
    const uint16_t* row = bits + pick[i] * dims_.vocab_padded;
    for (int64_t j = 0; j < dims_.vocab; ++j) dst[j] = FromBits<T>(row[j]);
    dst += dims_.vocab;
  }
  return absl::OkStatus();
}

template <typename T, typename C>
absl::Status CudaModelRunnerImpl<T, C>::RunEager(const model::ForwardBatch& batch,
                                                 const AttentionSplit& split,
                                                 absl::Span<const uint8_t> greedy_rows,
                                                 HostRows* out) {
  const PackedStep packed = PackStep(batch, split, nullptr, &packed_bytes_);
  DeviceStep step{.shape = packed.shape,
                  .meta = static_cast<const std::byte*>(meta_.data()),
                  .layout = packed.layout,
                  .num_prefill_tokens = packed.num_prefill_tokens};
  if (packed.shape.num_decode_requests > 0) {
    step.plan = DecodePlan(packed.shape.num_decode_requests, packed.max_decode_context_len);
  }
  PAGODA_RETURN_IF_ERROR(UploadStep(packed));
  PAGODA_RETURN_IF_ERROR(EnqueueForward(step));
  std::vector<int32_t> rows(packed.shape.num_logits);
  for (int32_t i = 0; i < packed.shape.num_logits; ++i) rows[i] = i;
  return DownloadLogits(packed.shape.num_logits, rows, greedy_rows, out);
}

template <typename T, typename C>
absl::Status CudaModelRunnerImpl<T, C>::RunGraph(const Graph& graph,
                                                 const model::ForwardBatch& batch,
                                                 const AttentionSplit& split,
                                                 absl::Span<const uint8_t> greedy_rows,
                                                 HostRows* out) {
  const StepPadding padding{.num_tokens = graph.step.shape.num_tokens, .table_width = table_width_};
  const PackedStep packed = PackStep(batch, split, &padding, &packed_bytes_);
  PAGODA_CHECK(packed.layout == graph.step.layout);
  PAGODA_RETURN_IF_ERROR(UploadStep(packed));
  PAGODA_RETURN_IF_ERROR(graph.graph.Launch(stream_.get()));
  ++graph_replays_;
  // The graph computed logits for every row (logits_indices = 0, 1, ...): answer from rows up
  // to the last one wanted.
  int32_t rows = 0;
  for (const int32_t i : batch.logits_indices) rows = std::max(rows, i + 1);
  return DownloadLogits(rows, batch.logits_indices, greedy_rows, out);
}

template <typename T, typename C>
absl::Status CudaModelRunnerImpl<T, C>::Execute(const model::ForwardBatch& batch,
                                                std::vector<float>* logits) {
  host_rows_.logits.swap(*logits);  // reuses the caller's capacity
  const absl::Status status = RunStep(batch, {}, &host_rows_);
  logits->swap(host_rows_.logits);
  return status;
}

template <typename T, typename C>
absl::Status CudaModelRunnerImpl<T, C>::ExecuteStep(const model::ForwardBatch& batch,
                                                    absl::Span<const SamplingRow> rows,
                                                    std::vector<absl::StatusOr<TokenId>>* tokens) {
  PAGODA_RETURN_IF_ERROR(CheckSamplingRows(batch, rows));
  argmax_rows_.clear();
  for (const SamplingRow& row : rows) argmax_rows_.push_back(IsArgmaxRow(row) ? 1 : 0);
  PAGODA_RETURN_IF_ERROR(RunStep(batch, argmax_rows_, &host_rows_));
  // Argmax rows were answered on the device; the others are sampled here from their logits.
  tokens->clear();
  size_t next_argmax = 0;
  size_t next_logits = 0;
  const size_t vocab = static_cast<size_t>(dims_.vocab);
  for (size_t i = 0; i < rows.size(); ++i) {
    if (argmax_rows_[i] == 0) {
      tokens->push_back(SampleOnHost(
          absl::MakeSpan(host_rows_.logits).subspan(next_logits++ * vocab, vocab), rows[i]));
    } else if (const int32_t token = host_rows_.argmax_tokens[next_argmax++]; token >= 0) {
      tokens->push_back(token);
      ++device_argmax_rows_;
    } else {
      tokens->push_back(sampling::NoSamplableTokenError());  // only this request fails
    }
  }
  return absl::OkStatus();
}

template <typename T, typename C>
absl::Status CudaModelRunnerImpl<T, C>::RunStep(const model::ForwardBatch& batch,
                                                absl::Span<const uint8_t> greedy_rows,
                                                HostRows* out) {
  PAGODA_RETURN_IF_ERROR(model::ValidateForwardBatch(batch, config_.vocab_size, num_blocks_,
                                                     options_.block_size,
                                                     {.sliding_window = config_.UniformWindow()}));
  const int64_t num_tokens = static_cast<int64_t>(batch.token_ids.size());
  const int64_t num_requests = static_cast<int64_t>(batch.context_lens.size());
  if (num_tokens > max_tokens_ || num_requests > max_requests_ ||
      static_cast<int64_t>(batch.logits_indices.size()) > max_logits_ ||
      batch.max_blocks_per_request > table_width_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CUDA runner: a step of ", num_tokens, " tokens, ", num_requests, " requests, ",
        batch.logits_indices.size(), " logits rows and ", batch.max_blocks_per_request,
        " blocks per request exceeds the sizes it was created for (", max_tokens_, ", ",
        max_requests_, ", ", max_logits_, ", ", table_width_, ")"));
  }
  // The engine thread may not be the thread that created the runner.
  PAGODA_RETURN_IF_ERROR(kc::SetCurrentDevice(options_.device));
  if (num_tokens == 0) {
    out->argmax_tokens.clear();
    out->logits.clear();
    return absl::OkStatus();
  }
  AttentionSplit split = SplitAttention(batch.query_start);
  if (!graphs_.empty() && num_tokens <= max_graph_size_ && split.decode_only() &&
      static_cast<int64_t>(split.decode_requests.size()) == num_tokens) {
    const auto it = graphs_.lower_bound(static_cast<int>(num_tokens));
    PAGODA_CHECK(it != graphs_.end());
    return RunGraph(it->second, batch, split, greedy_rows, out);
  }
  return RunEager(batch, split, greedy_rows, out);
}

}  // namespace internal

int VisibleCudaDeviceCount() { return kc::VisibleDeviceCount(); }

absl::StatusOr<CudaDeviceMemory> CurrentCudaDeviceMemory() {
  PAGODA_ASSIGN_OR_RETURN(const kc::DeviceMemoryInfo info, kc::CurrentDeviceMemoryInfo());
  return CudaDeviceMemory{.free_bytes = info.free_bytes, .total_bytes = info.total_bytes};
}

std::vector<int> CudaGraphBatchSizes(int max_size) {
  std::vector<int> sizes;
  for (const int s : {1, 2, 4}) {
    if (s <= max_size) sizes.push_back(s);
  }
  for (int s = 8; s <= max_size; s += 8) sizes.push_back(s);
  if (max_size > 0 && sizes.back() != max_size) sizes.push_back(max_size);
  return sizes;
}

namespace internal {

template <typename T, typename C>
absl::Status CudaModelRunnerImpl<T, C>::CopyKvBlock(BlockId block, char* host, bool to_host) {
  if (block.value() < 0 || block.value() >= num_blocks_) {
    return absl::InvalidArgumentError(absl::StrCat("no KV block ", block.value()));
  }
  // kv_pool_: [layers][K, V][num_blocks, kv_heads, block_size, head_dim] values, then (8-bit)
  // [layers][K, V][num_blocks, kv_heads, block_size] scales: a block's tiles are one pool apart.
  // On the host, per layer: K tile, V tile, then the K and V scale tiles (the CPU's layout).
  const size_t rows = static_cast<size_t>(config_.num_kv_heads) * options_.block_size;
  const size_t tile = rows * config_.head_dim * sizeof(C);
  const size_t scale_tile = rows * static_cast<size_t>(ScaleBytes());
  const size_t layer_bytes = 2 * (tile + scale_tile);  // on the host
  const size_t layers = static_cast<size_t>(config_.num_layers);
  char* const pool = static_cast<char*>(kv_pool_.data());
  const size_t b = static_cast<size_t>(block.value());
  // One strided copy per (K or V, values or scales): `layers` rows of `width` bytes.
  const auto copy = [&](char* device, size_t device_pitch, size_t host_offset, size_t width) {
    char* h = host + host_offset;
    return to_host ? kc::CopyRowsAsync(h, layer_bytes, device, device_pitch, width, layers,
                                       stream_.get())
                   : kc::CopyRowsAsync(device, device_pitch, h, layer_bytes, width, layers,
                                       stream_.get());
  };
  const size_t values_pool = tile * static_cast<size_t>(num_blocks_);
  PAGODA_RETURN_IF_ERROR(copy(pool + b * tile, 2 * values_pool, 0, tile));
  PAGODA_RETURN_IF_ERROR(copy(pool + values_pool + b * tile, 2 * values_pool, tile, tile));
  if (ScaleBytes() > 0) {
    char* const scales = pool + 2 * layers * values_pool;
    const size_t scales_pool = scale_tile * static_cast<size_t>(num_blocks_);
    PAGODA_RETURN_IF_ERROR(copy(scales + b * scale_tile, 2 * scales_pool, 2 * tile, scale_tile));
    PAGODA_RETURN_IF_ERROR(copy(scales + scales_pool + b * scale_tile, 2 * scales_pool,
                                2 * tile + scale_tile, scale_tile));
  }
  return stream_.Synchronize();
}

template <typename T, typename C>
absl::Status CudaModelRunnerImpl<T, C>::ReadKvBlock(BlockId block, char* out) {
  return CopyKvBlock(block, out, /*to_host=*/true);
}

template <typename T, typename C>
absl::Status CudaModelRunnerImpl<T, C>::WriteKvBlock(BlockId block, const char* in) {
  return CopyKvBlock(block, const_cast<char*>(in), /*to_host=*/false);
}

template <typename T, typename C>
char* CudaModelRunnerImpl<T, C>::AllocateHostMemory(int64_t bytes) {
  absl::StatusOr<kc::PinnedHostBuffer> buffer =
      kc::PinnedHostBuffer::Create(static_cast<size_t>(bytes));
  if (!buffer.ok()) return nullptr;
  char* data = static_cast<char*>(buffer->data());
  host_memory_.emplace(data, *std::move(buffer));
  return data;
}

template <typename T, typename C>
void CudaModelRunnerImpl<T, C>::FreeHostMemory(char* memory) {
  host_memory_.erase(memory);
}

}  // namespace internal

absl::StatusOr<std::unique_ptr<CudaModelRunner>> CudaModelRunner::Create(
    std::unique_ptr<model::ModelWeights> weights, const CudaModelRunnerOptions& options) {
  if (weights == nullptr) return absl::InvalidArgumentError("no weights");
  const model::ModelConfig config = weights->config();
  PAGODA_RETURN_IF_ERROR(CheckSupported(config, options));
  if (kc::VisibleDeviceCount() == 0) {
    return absl::UnavailableError("--device cuda: no CUDA device is visible to this process");
  }
  const auto make = [&](auto compute,
                        auto cache) -> absl::StatusOr<std::unique_ptr<CudaModelRunner>> {
    using T = decltype(compute);
    using C = decltype(cache);
    auto runner = std::make_unique<CudaModelRunnerImpl<T, C>>(config, options);
    PAGODA_RETURN_IF_ERROR(runner->Init(std::move(weights)));
    return runner;
  };
  // 8-bit caches are compiled for bf16 compute only (the kernels' binary size).
  switch (options.kv_dtype.value_or(options.dtype)) {
    case model::DType::kInt8:
      return make(__nv_bfloat16{}, int8_t{});
    case model::DType::kFp8E4M3:
      return make(__nv_bfloat16{}, __nv_fp8_e4m3{});
    case model::DType::kFp8E5M2:
      return make(__nv_bfloat16{}, __nv_fp8_e5m2{});
    default:
      if (options.dtype == model::DType::kBF16) return make(__nv_bfloat16{}, __nv_bfloat16{});
      return make(__half{}, __half{});
  }
}

}  // namespace pagoda::runner::cuda
