#pragma once

// The read-only RPCs' answers that depend only on the served model: ModelInfo, Tokenize and
// Detokenize. Pure functions over immutable state; thread-safe.

#include "absl/status/statusor.h"
#include "engine/engine_info.h"
#include "model/dtype.h"
#include "tokenizer/tokenizer.h"
#include "pagoda/v1/info.pb.h"
#include "pagoda/v1/tokenize.pb.h"

namespace pagoda::server {

v1::DataType ToProtoDataType(model::DType dtype);

// The served model as GetModelInfo reports it.
v1::ModelInfo MakeModelInfo(const engine::EngineInfo& info);

// Tokenize's bound on its text: tokenizing costs about a second per few MiB, so one call may
// not hold a server thread for long (16 concurrent 4 MiB calls once starved health checks).
inline constexpr size_t kMaxTokenizeTextBytes = size_t{1} << 20;

// Tokenize and Detokenize. `tokenizer` may be null (FailedPrecondition). Errors: NotFound for a
// model name that is not served; Tokenize: InvalidArgument "text: ..." for a text over
// kMaxTokenizeTextBytes; Detokenize: InvalidArgument "token_ids[i]: ..." for an id outside the
// vocabulary.
absl::StatusOr<v1::TokenizeResponse> Tokenize(const v1::TokenizeRequest& request,
                                              const engine::EngineInfo& info,
                                              const tokenizer::Tokenizer* tokenizer);
absl::StatusOr<v1::DetokenizeResponse> Detokenize(const v1::DetokenizeRequest& request,
                                                  const engine::EngineInfo& info,
                                                  const tokenizer::Tokenizer* tokenizer);

}  // namespace pagoda::server
