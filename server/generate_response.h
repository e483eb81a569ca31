#pragma once

// Translation of the engine's outputs (engine/engine_request.h) into GenerateResponse messages.
// Pure functions; thread-safe.

#include <string>
#include <vector>

#include "engine/engine_request.h"
#include "pagoda/v1/generate.pb.h"

namespace pagoda::server {

// Whether the client asked for streaming (GenerateRequest.stream) and for usage in every chunk
// (GenerateRequest.usage_every_chunk, honoured only when streaming).
struct ResponseOptions {
  bool stream = false;
  bool usage_every_chunk = false;
};

// A Chunk message carrying `chunk`'s new token ids and text (and usage when asked for).
v1::GenerateResponse MakeChunkResponse(const std::string& request_id,
                                       const engine::OutputChunk& chunk,
                                       const ResponseOptions& options);

// The Complete message of `completion`: finish and stop reason, usage, timings, and when not
// streaming the whole output's token ids and text. The engine measures its timings from the
// moment the request reached it; `seconds_before_engine` (arrival at the server to submission,
// >= 0) is added to each point the request reached, so that timings count from arrival as
// the API documents. `completion.status` is not looked at: a failed request ends with an RPC
// status, not with a Complete.
v1::GenerateResponse MakeCompleteResponse(const std::string& request_id,
                                          const engine::RequestCompletion& completion,
                                          const ResponseOptions& options,
                                          double seconds_before_engine);

v1::FinishReason ToProtoFinishReason(engine::FinishReason reason);

}  // namespace pagoda::server
