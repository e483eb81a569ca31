#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/ids.h"
#include "common/attention_window.h"
#include "model/dtype.h"
#include "model/forward_batch.h"
#include "model/model_config.h"
#include "sampling/logprobs.h"
#include "sampling/sampler.h"
#include "sampling/sampling_params.h"

namespace pagoda::runner {

// What a runner needs to choose the token of one logits row (ForwardBatch::logits_indices): the
// request's sampling parameters and its sampler state, both owned by the engine.
struct SamplingRow {
  const sampling::SamplingParams* params = nullptr;
  sampling::SamplerState* state = nullptr;  // sampling draws from its RNG
  absl::Span<const TokenId> banned_tokens;  // never chosen this step (the min_tokens rule)
  // Set exactly when params->logprobs >= 0: receives the token's log-probabilities
  // (sampling/logprobs.h). Owned by the engine.
  sampling::TokenLogprobs* logprobs = nullptr;
  // A scoring row (prompt log-probabilities): when >= 0, this row samples nothing; `logprobs`
  // (set) receives this token's log-probability and params->prompt_logprobs alternatives, and
  // the row's answer is this token.
  TokenId score_target = -1;
};

// True when the row's token is the plain argmax of its logits as computed (the largest, the
// lowest id among ties, NaN never): sampling::IsPlainGreedy and nothing banned. A GPU runner
// computes that argmax next to the logits and sends the host 4 bytes instead of a row.
inline bool IsArgmaxRow(const SamplingRow& row) {
  return row.banned_tokens.empty() && row.logprobs == nullptr && row.score_target < 0 &&
         sampling::IsPlainGreedy(*row.params);
}

// Chooses row i's token from its logits on the host with the shared sampler (which uses them as
// scratch); an error fails that one request (no samplable token).
inline absl::StatusOr<TokenId> SampleOnHost(absl::Span<float> logits, const SamplingRow& row) {
  if (row.score_target >= 0) {
    if (row.logprobs == nullptr || static_cast<size_t>(row.score_target) >= logits.size()) {
      return absl::InternalError("a scoring row needs a target in the vocabulary and an answer");
    }
    *row.logprobs = sampling::ScoreToken(logits, row.score_target, row.params->prompt_logprobs);
    return row.score_target;
  }
  if (row.logprobs != nullptr) {
    return sampling::SampleWithLogprobs(logits, *row.params, *row.state, row.banned_tokens,
                                        row.logprobs);
  }
  return sampling::Sample(logits, *row.params, *row.state, row.banned_tokens);
}

// OK when `rows` has one entry per logits row of `batch`; else InvalidArgument. The first check
// of every ExecuteStep.
absl::Status CheckSamplingRows(const model::ForwardBatch& batch,
                               absl::Span<const SamplingRow> rows);

// Runs the model over the flat batch of one step and owns the KV cache memory it writes. The
// CPU runner wraps model::LlamaModel and model::CpuKvCache; a CUDA runner implements the same
// interface. Called from the engine thread only.
class ModelRunner {
 public:
  virtual ~ModelRunner() = default;

  virtual const model::ModelConfig& config() const = 0;
  // The KV cache the runner allocated: block ids are in [0, num_kv_blocks()).
  virtual int num_kv_blocks() const = 0;
  virtual int block_size() const = 0;
  virtual model::DType kv_dtype() const = 0;
  virtual model::DType weight_dtype() const = 0;
  virtual const char* backend_name() const = 0;  // "cpu", "cuda"
  // The window every layer shares (a sliding-window model's, or StreamingLLM's sinks and
  // window): a request's KV blocks that no later query attends may be freed, their table
  // entries left null (-1). full() (the default) when some layer attends the whole context.
  virtual common::AttentionWindow kv_window() const { return {}; }
  // An FP8 KV cache with the checkpoint's static per-head scales (no scale stored per token).
  virtual bool kv_static_scales() const { return false; }
  // One line on how the runner set itself up (device, memory, graphs) for the start-up log;
  // empty when there is nothing beyond the EngineInfo fields.
  virtual std::string Describe() const { return ""; }

  // KV offload (kv_offload/): one block's K/V of every layer as bytes, scales included, the
  // unit the tiers below the pool store. 0 (the default): the runner cannot copy blocks, and
  // no tier is set up.
  virtual int64_t kv_block_bytes() const { return 0; }
  // Copies block `block` out to `out` (kv_block_bytes() bytes) / in from `in`. Called on the
  // engine thread between steps: the copy is done when the call returns.
  virtual absl::Status ReadKvBlock(BlockId block, char* out) {
    (void)block, (void)out;
    return absl::UnimplementedError("this runner cannot copy KV blocks");
  }
  virtual absl::Status WriteKvBlock(BlockId block, const char* in) {
    (void)block, (void)in;
    return absl::UnimplementedError("this runner cannot copy KV blocks");
  }
  // Host memory for the host tier: page-locked on a GPU, so that copies to and from the device
  // are DMA transfers. Null (the default): plain memory will do. FreeHostMemory releases it.
  virtual char* AllocateHostMemory(int64_t bytes) {
    (void)bytes;
    return nullptr;
  }
  virtual void FreeHostMemory(char* memory) { (void)memory; }

  // Writes the K/V of the batch's tokens into their slots and returns the logits of
  // batch.logits_indices: [logits_indices.size(), vocab_size] row-major. An error is an engine
  // failure (the engine ends every request with it). For tests, tools and ExecuteStep.
  virtual absl::Status Execute(const model::ForwardBatch& batch, std::vector<float>* logits) = 0;

  // One engine step: Execute, then the token of each logits row, chosen as `rows` (one per
  // logits row) say. (*tokens)[i] is row i's token, in [0, vocab_size), or the error that fails
  // that request alone (its logits have no samplable token). Does not record the tokens in the
  // sampler states: the engine does, once it keeps them. The returned status is an engine
  // failure. The default samples every row on the host; a GPU runner answers argmax rows
  // (IsArgmaxRow) on the device.
  virtual absl::Status ExecuteStep(const model::ForwardBatch& batch,
                                   absl::Span<const SamplingRow> rows,
                                   std::vector<absl::StatusOr<TokenId>>* tokens);

 private:
  std::vector<float> host_logits_;  // the default ExecuteStep's, reused
};

}  // namespace pagoda::runner
