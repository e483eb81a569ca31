#include "runner/model_runner.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace pagoda::runner {

absl::Status CheckSamplingRows(const model::ForwardBatch& batch,
                               absl::Span<const SamplingRow> rows) {
  if (rows.size() == batch.logits_indices.size()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("ExecuteStep: ", rows.size(),
                                                 " sampling rows for ", batch.logits_indices.size(),
                                                 " logits rows"));
}

absl::Status ModelRunner::ExecuteStep(const model::ForwardBatch& batch,
                                      absl::Span<const SamplingRow> rows,
                                      std::vector<absl::StatusOr<TokenId>>* tokens) {
  PAGODA_RETURN_IF_ERROR(CheckSamplingRows(batch, rows));
  PAGODA_RETURN_IF_ERROR(Execute(batch, &host_logits_));
  const size_t vocab = static_cast<size_t>(config().vocab_size);
  if (host_logits_.size() != rows.size() * vocab) {
    return absl::InternalError(absl::StrCat("ExecuteStep: the runner returned ",
                                            host_logits_.size(), " logits for ", rows.size(),
                                            " rows of ", vocab));
  }
  tokens->clear();
  tokens->reserve(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    tokens->push_back(
        SampleOnHost(absl::MakeSpan(host_logits_).subspan(i * vocab, vocab), rows[i]));
  }
  return absl::OkStatus();
}

}  // namespace pagoda::runner
