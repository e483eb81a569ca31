#pragma once

#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine_core.h"
#include "engine/engine_request.h"

namespace pagoda::engine {

// A sink that keeps everything it receives. Single-threaded use (the engine thread, then the
// caller once the request completed).
class CollectingSink final : public RequestSink {
 public:
  void OnChunk(OutputChunk chunk) override { chunks.push_back(std::move(chunk)); }
  void OnComplete(RequestCompletion c) override {
    completion = std::move(c);
    ++num_completions;
  }

  std::vector<OutputChunk> chunks;
  std::optional<RequestCompletion> completion;
  int num_completions = 0;
};

// vLLM's LLM.generate in-process: adds every request to `core` (ids 1..n; the core must hold no
// request with those ids), steps until all have finished and returns their completions in
// input order. Fails if a request is invalid (nothing is added then) or the engine fails.
absl::StatusOr<std::vector<RequestCompletion>> GenerateOffline(EngineCore& core,
                                                               std::vector<EngineRequest> requests);

}  // namespace pagoda::engine
