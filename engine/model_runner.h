#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "model/dtype.h"
#include "model/llama_model.h"
#include "model/model_config.h"

namespace pagoda::engine {

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
};

}  // namespace pagoda::engine
