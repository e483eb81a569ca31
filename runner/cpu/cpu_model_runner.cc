#include "runner/cpu/cpu_model_runner.h"

#include <utility>

#include "common/check.h"
#include "common/status_macros.h"

namespace pagoda::runner::cpu {

absl::StatusOr<std::unique_ptr<CpuModelRunner>> CpuModelRunner::Create(
    std::unique_ptr<model::LlamaModel> model, const Options& options) {
  PAGODA_CHECK(model != nullptr);
  PAGODA_ASSIGN_OR_RETURN(std::unique_ptr<model::CpuKvCache> cache,
                          model::CpuKvCache::Create(model->config(), options.num_kv_blocks,
                                                    options.block_size, options.kv_dtype));
  return std::unique_ptr<CpuModelRunner>(new CpuModelRunner(std::move(model), std::move(cache)));
}

absl::Status CpuModelRunner::Execute(const model::ForwardBatch& batch, std::vector<float>* logits) {
  return model_->Forward(batch, *cache_, logits);
}

}  // namespace pagoda::runner::cpu
