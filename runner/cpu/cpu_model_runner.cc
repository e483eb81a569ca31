#include "runner/cpu/cpu_model_runner.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/check.h"
#include "common/status_macros.h"
#include "model/tiled_matrices.h"

namespace pagoda::runner::cpu {

absl::StatusOr<std::unique_ptr<CpuModelRunner>> CpuModelRunner::Create(
    std::unique_ptr<model::LlamaModel> model, const Options& options) {
  PAGODA_CHECK(model != nullptr);
  const bool fp8 =
      options.kv_dtype == model::DType::kFp8E4M3 || options.kv_dtype == model::DType::kFp8E5M2;
  PAGODA_ASSIGN_OR_RETURN(
      std::unique_ptr<model::CpuKvCache> cache,
      model::CpuKvCache::Create(
          model->config(), options.num_kv_blocks, options.block_size, options.kv_dtype,
          fp8 ? model::CheckpointKvScales(model->weights()) : model::StaticKvScales{}));
  return std::unique_ptr<CpuModelRunner>(new CpuModelRunner(std::move(model), std::move(cache)));
}

std::string CpuModelRunner::Describe() const {
  std::vector<std::string> lines;
  if (const int tiled = model::NumTiledMatrices(model_->weights()); tiled > 0) {
    lines.emplace_back(absl::StrCat("weights: ", tiled,
                                    " bf16 matrices repacked for the AMX tiles at load "
                                    "(--no-repack-weights keeps the checkpoint's layout)"));
  }
  if (model::IsScaledKvType(cache_->dtype())) {
    lines.emplace_back(
        cache_->static_scales()
            ? "KV scales: the checkpoint's k_scale/v_scale, static per KV head (none stored per "
              "token)"
            : "KV scales: dynamic, one bf16 scale per token and KV head (absmax-based)");
  }
  return absl::StrJoin(lines, "; ");
}

absl::Status CpuModelRunner::Execute(const model::ForwardBatch& batch, std::vector<float>* logits) {
  return model_->Forward(batch, *cache_, logits);
}

absl::Status CpuModelRunner::ReadKvBlock(BlockId block, char* out) {
  if (block.value() < 0 || block.value() >= cache_->num_blocks()) {
    return absl::InvalidArgumentError(absl::StrCat("no KV block ", block.value()));
  }
  cache_->CopyBlockOut(block.value(), out);
  return absl::OkStatus();
}

absl::Status CpuModelRunner::WriteKvBlock(BlockId block, const char* in) {
  if (block.value() < 0 || block.value() >= cache_->num_blocks()) {
    return absl::InvalidArgumentError(absl::StrCat("no KV block ", block.value()));
  }
  cache_->CopyBlockIn(block.value(), in);
  return absl::OkStatus();
}

}  // namespace pagoda::runner::cpu
