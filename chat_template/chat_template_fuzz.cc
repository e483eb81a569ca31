// libFuzzer target: any bytes as a chat template. The lexer and parser must accept or refuse
// it cleanly; an accepted template is rendered on a small conversation with tight bounds, and
// must finish (output or error) without crashing, hanging or passing the bounds.

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "chat_template/chat_template.h"
#include "chat_template/json_value.h"
#include "nlohmann/json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pagoda::chat_template;
  static const Value* const kMessages = new Value(*FromJson(nlohmann::ordered_json::parse(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi {{ there }} é 😀"},
    {"role": "assistant", "content": "<think>x</think>Hello", "tool_calls": [
      {"type": "function", "function": {"name": "f", "arguments": {"a": [1, 2.5, null]}}}]},
    {"role": "tool", "content": "42"}])")));
  const absl::string_view source(reinterpret_cast<const char*>(data), size);
  const auto parsed = ChatTemplate::Parse(source);
  if (!parsed.ok()) return 0;
  Dict specials;
  specials.Set("bos_token", Value::String("<s>"));
  RenderRequest request;
  request.messages = *kMessages;
  request.add_generation_prompt = true;
  RenderLimits limits;
  limits.max_output_bytes = 1 << 16;
  limits.max_steps = 20000;
  const auto rendered = parsed->Render(specials, request, absl::UnixEpoch(), limits);
  if (rendered.ok() && rendered->size() > limits.max_output_bytes) __builtin_trap();
  return 0;
}
