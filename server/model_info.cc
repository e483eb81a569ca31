#include "server/model_info.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/request_identity.h"
#include "server/error_reason.h"
#include "server/generate_request.h"

namespace pagoda::server {
namespace {

absl::Status NoTokenizer() {
  return absl::FailedPreconditionError(
      "this server has no tokenizer (ModelInfo.supports_text_input is false)");
}

}  // namespace

v1::DataType ToProtoDataType(model::DType dtype) {
  switch (dtype) {
    case model::DType::kF32:
      return v1::DATA_TYPE_FLOAT32;
    case model::DType::kBF16:
      return v1::DATA_TYPE_BFLOAT16;
    case model::DType::kF16:
      return v1::DATA_TYPE_FLOAT16;
    case model::DType::kInt8:
      return v1::DATA_TYPE_INT8;
    case model::DType::kFp8E4M3:
      return v1::DATA_TYPE_FP8_E4M3;
    case model::DType::kFp8E5M2:
      return v1::DATA_TYPE_FP8_E5M2;
  }
  return v1::DATA_TYPE_UNSPECIFIED;
}

v1::ModelInfo MakeModelInfo(const engine::EngineInfo& info) {
  v1::ModelInfo out;
  out.set_model_name(info.model_name);
  out.set_max_model_len(static_cast<uint32_t>(info.max_model_len));
  out.set_vocab_size(static_cast<uint32_t>(info.vocab_size));
  for (TokenId id : info.eos_token_ids) out.add_eos_token_ids(static_cast<uint32_t>(id));
  if (info.bos_token_id.has_value())
    out.set_bos_token_id(static_cast<uint32_t>(*info.bos_token_id));
  out.set_block_size(static_cast<uint32_t>(info.block_size));
  out.set_num_kv_blocks(static_cast<uint32_t>(info.num_kv_blocks));
  out.set_kv_cache_dtype(ToProtoDataType(info.kv_dtype));
  out.set_weight_dtype(ToProtoDataType(info.weight_dtype));
  out.set_supports_text_input(info.has_tokenizer);
  out.set_prefix_caching_enabled(info.prefix_caching);
  out.set_backend(info.backend == "cuda" ? v1::BACKEND_CUDA : v1::BACKEND_CPU);
  out.set_max_num_seqs(static_cast<uint32_t>(info.max_num_seqs));
  out.set_max_num_batched_tokens(static_cast<uint32_t>(info.max_num_batched_tokens));
  out.set_num_layers(static_cast<uint32_t>(info.config.num_layers));
  out.set_num_attention_heads(static_cast<uint32_t>(info.config.num_heads));
  out.set_num_kv_heads(static_cast<uint32_t>(info.config.num_kv_heads));
  out.set_head_dim(static_cast<uint32_t>(info.config.head_dim));
  out.set_hidden_size(static_cast<uint32_t>(info.config.hidden_size));
  out.set_sliding_window(static_cast<uint32_t>(info.config.sliding_window.value_or(0)));
  out.set_kv_window_frees_blocks(!info.kv_window.full());
  if (info.streaming) {
    out.set_attention_sinks(static_cast<uint32_t>(info.kv_window.sink_tokens));
    out.set_streaming_window(static_cast<uint32_t>(info.kv_window.sliding_window));
  }
  return out;
}

absl::StatusOr<v1::TokenizeResponse> Tokenize(const v1::TokenizeRequest& request,
                                              const engine::EngineInfo& info,
                                              const tokenizer::Tokenizer* tokenizer) {
  PAGODA_RETURN_IF_ERROR(engine::CheckModelName(request.model(), info.model_name));
  if (tokenizer == nullptr) return NoTokenizer();
  if (request.text().size() > kMaxTokenizeTextBytes) {
    return absl::InvalidArgumentError(absl::StrCat("text: at most ", kMaxTokenizeTextBytes,
                                                   " bytes, got ", request.text().size()));
  }
  const std::vector<TokenId> ids = tokenizer->Encode(
      request.text(), request.no_add_special_tokens() ? tokenizer::AddSpecialTokens::kNo
                                                      : tokenizer::AddSpecialTokens::kYes);
  v1::TokenizeResponse out;
  out.mutable_token_ids()->Add(ids.begin(), ids.end());
  if (request.return_token_strings()) {
    for (TokenId id : ids) out.add_token_strings(tokenizer->IdToPiece(id).value_or(""));
  }
  return out;
}

absl::StatusOr<v1::DetokenizeResponse> Detokenize(const v1::DetokenizeRequest& request,
                                                  const engine::EngineInfo& info,
                                                  const tokenizer::Tokenizer* tokenizer) {
  PAGODA_RETURN_IF_ERROR(engine::CheckModelName(request.model(), info.model_name));
  if (tokenizer == nullptr) return NoTokenizer();
  std::vector<TokenId> ids;
  ids.reserve(request.token_ids_size());
  for (int i = 0; i < request.token_ids_size(); ++i) {
    const uint32_t id = request.token_ids(i);
    if (id >= static_cast<uint32_t>(info.vocab_size)) {
      return WithErrorReason(absl::InvalidArgumentError(absl::StrCat(
                                 "token_ids[", i, "]: token id ", id,
                                 " is outside the vocabulary [0, ", info.vocab_size, ")")),
                             ErrorReason::kInvalidField);
    }
    ids.push_back(static_cast<TokenId>(id));
  }
  v1::DetokenizeResponse out;
  out.set_text(tokenizer->Decode(ids, request.keep_special_tokens()
                                          ? tokenizer::SkipSpecialTokens::kNo
                                          : tokenizer::SkipSpecialTokens::kYes));
  return out;
}

}  // namespace pagoda::server
