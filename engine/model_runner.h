#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "common/ids.h"
#include "model/dtype.h"
#include "model/llama_model.h"
#include "model/model_config.h"

namespace pagoda::engine {

// What ModelRunner::ExecuteStep returns for the batch's logits rows (ForwardBatch::logits_indices).
struct StepOutput {
  // Per logits row: the token the runner chose greedily, or -1 where the row's logits are in
  // `logits` instead.
  std::vector<TokenId> greedy_tokens;
  // The logits of the rows whose greedy_tokens entry is -1, in row order: [count, vocab_size].
  std::vector<float> logits;
};

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
  // One line on how the runner set itself up (device, memory, graphs) for the start-up log;
  // empty when there is nothing beyond the EngineInfo fields.
  virtual std::string Describe() const { return ""; }

  // Writes the K/V of the batch's tokens into their slots and returns the logits of
  // batch.logits_indices: [logits_indices.size(), vocab_size] row-major. An error is an engine
  // failure (the engine ends every request with it).
  virtual absl::Status Execute(const model::ForwardBatch& batch, std::vector<float>* logits) = 0;

  // Execute, where logits row i with greedy_rows[i] != 0 may be answered with its argmax token
  // (kernels::cpu::Sample's greedy rule on the row as computed: see kernels::cpu::IsPlainGreedy)
  // instead of its logits. A GPU runner computes it next to the logits and sends the host 4 bytes
  // for the row instead of vocab_size values. greedy_rows is empty or one entry per logits row.
  // The default answers every row with logits.
  virtual absl::Status ExecuteStep(const model::ForwardBatch& batch,
                                   absl::Span<const uint8_t> greedy_rows, StepOutput* out) {
    (void)greedy_rows;
    out->greedy_tokens.assign(batch.logits_indices.size(), -1);
    return Execute(batch, &out->logits);
  }
};

}  // namespace pagoda::engine
