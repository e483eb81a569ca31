#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "kv_offload/block_file.h"
#include "runner/model_runner.h"

namespace pagoda::engine {

// What a KV block stored by the tiers below the pool depends on, folded into 128 bits (XXH3):
// the model (a dummy preset's name and seed, or a model directory's config.json,
// tokenizer files and, per *.safetensors file, its name, size and the hash of its first and
// last MiB), the weights' and the KV cache's dtypes, the block size, the backend and the
// attention window. A block stored under another fingerprint is never served.
// `model_spec` is EngineConfig::model as resolved (a directory or "dummy:<preset>").
absl::StatusOr<kv_offload::ModelFingerprint> FingerprintModel(const std::string& model_spec,
                                                              uint64_t seed,
                                                              const runner::ModelRunner& runner);

}  // namespace pagoda::engine
