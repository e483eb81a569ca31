#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/llama_model.h"
#include "runner/model_runner.h"

namespace pagoda::runner::cpu {

// The CPU model runner: model::LlamaModel over a model::CpuKvCache of a fixed number of blocks.
// Engine thread only.
class CpuModelRunner final : public ModelRunner {
 public:
  struct Options {
    int num_kv_blocks = 0;  // > 0
    int block_size = 16;    // > 0
    // FP8 kv_dtype: the checkpoint's k_scale/v_scale (static, per KV head) when every layer has
    // them, else a scale per token and head.
    model::DType kv_dtype = model::DType::kBF16;
  };

  static absl::StatusOr<std::unique_ptr<CpuModelRunner>> Create(
      std::unique_ptr<model::LlamaModel> model, const Options& options);

  const model::ModelConfig& config() const override { return model_->config(); }
  int num_kv_blocks() const override { return cache_->num_blocks(); }
  int block_size() const override { return cache_->block_size(); }
  model::DType kv_dtype() const override { return cache_->dtype(); }
  common::AttentionWindow kv_window() const override { return model_->KvWindow(); }
  model::DType weight_dtype() const override { return model_->weights().matrix_dtype(); }
  const char* backend_name() const override { return "cpu"; }
  bool kv_static_scales() const override { return cache_->static_scales(); }
  std::string Describe() const override;

  int64_t kv_block_bytes() const override { return cache_->block_bytes(); }
  absl::Status ReadKvBlock(BlockId block, char* out) override;
  absl::Status WriteKvBlock(BlockId block, const char* in) override;

  absl::Status Execute(const model::ForwardBatch& batch, std::vector<float>* logits) override;

 private:
  CpuModelRunner(std::unique_ptr<model::LlamaModel> model, std::unique_ptr<model::CpuKvCache> cache)
      : model_(std::move(model)), cache_(std::move(cache)) {}

  std::unique_ptr<model::LlamaModel> model_;
  std::unique_ptr<model::CpuKvCache> cache_;
};

}  // namespace pagoda::runner::cpu
