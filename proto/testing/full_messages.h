#pragma once

#include <memory>
#include <vector>

#include "google/protobuf/message.h"
#include "pagoda/v1/generate.pb.h"
#include "pagoda/v1/info.pb.h"
#include "pagoda/v1/text_generation_service.pb.h"
#include "pagoda/v1/tokenize.pb.h"

// Fully populated pagoda.v1 messages for tests: every field holds a value other than its default,
// and every proto3 `optional` field for which zero is meaningful (e.g. temperature) is set to
// zero, so that tests also exercise presence. A message with a oneof can only hold one member
// per instance, so its builder takes which member to set. Values are fixed and documented only
// by the builders themselves. Thread-safe: every function builds a fresh message.
namespace pagoda::proto::testing {

// Which member of GenerateRequest's `prompt` oneof to set.
enum class PromptKind { kText, kTokenIds };

// Which member of GenerateResponse.Complete's `stop_reason` oneof to set.
enum class StopReasonKind { kEos, kStopTokenId, kStopString };

v1::GenerateRequest FullGenerateRequest(PromptKind prompt);
v1::GenerateResponse FullChunkResponse();
v1::GenerateResponse FullCompleteResponse(StopReasonKind stop_reason);
v1::AbortRequest FullAbortRequest();
v1::AbortResponse FullAbortResponse();
v1::GetModelInfoRequest FullGetModelInfoRequest();
v1::ModelInfo FullModelInfo();
v1::ServerInfo FullServerInfo();
v1::TokenizeRequest FullTokenizeRequest();
v1::TokenizeResponse FullTokenizeResponse();
v1::DetokenizeRequest FullDetokenizeRequest();
v1::DetokenizeResponse FullDetokenizeResponse();

// One instance of every top-level request and response message of the package, plus one more
// instance per further oneof member (GenerateRequest x2, GenerateResponse x4: a Chunk and each
// stop reason), so that together they set every field of every message type.
std::vector<std::unique_ptr<google::protobuf::Message>> AllFullMessages();

}  // namespace pagoda::proto::testing
