// libFuzzer target: any bytes as the body of POST /v1/completions. Parsing must never crash or
// throw, every accepted request must pass or fail the engine's validation cleanly, and every
// error must render as OpenAI's error JSON.

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "engine/request_validation.h"
#include "engine/testing/byte_model_info.h"
#include "openai/completion_request.h"
#include "openai/responses.h"
#include "tokenizer/byte_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const pagoda::tokenizer::ByteTokenizer* const kTokenizer =
      new pagoda::tokenizer::ByteTokenizer();
  static const pagoda::engine::EngineInfo info = pagoda::engine::testing::ByteModelInfo();
  const absl::string_view body(reinterpret_cast<const char*>(data), size);
  const auto parsed = pagoda::openai::ParseCompletionRequest(body, info, kTokenizer);
  if (!parsed.ok()) {
    (void)pagoda::openai::ErrorJson(parsed.status());
    return 0;
  }
  for (const pagoda::engine::EngineRequest& prompt : parsed->prompts) {
    const absl::Status status = pagoda::engine::ValidateEngineRequest(prompt, info);
    if (!status.ok()) (void)pagoda::openai::ErrorJson(status);
  }
  return 0;
}
