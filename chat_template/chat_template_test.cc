#include "chat_template/chat_template.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "chat_template/json_value.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace pagoda::chat_template {
namespace {

using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1767323045);  // 2026-01-02T03:04:05Z

Value Json(const char* text) { return *FromJson(nlohmann::ordered_json::parse(text)); }

RenderRequest Conversation() {
  RenderRequest request;
  request.messages = Json(R"([{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "Hi"},
                              {"role": "assistant", "content": "Hello!"}])");
  return request;
}

absl::StatusOr<std::string> Render(const std::string& source,
                                   RenderRequest request = Conversation(),
                                   const RenderLimits& limits = {}) {
  auto parsed = ChatTemplate::Parse(source);
  if (!parsed.ok()) return parsed.status();
  Dict specials;
  specials.Set("bos_token", Value::String("<s>"));
  return parsed->Render(specials, request, kNow, limits);
}

std::string RenderOk(const std::string& source, RenderRequest request = Conversation()) {
  auto out = Render(source, std::move(request));
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : "";
}

TEST(ChatTemplate, RendersAChatMlConversation) {
  const std::string source =
      "{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m['content'] }}\n{% endfor %}"
      "{% if add_generation_prompt %}<|assistant|>{% endif %}";
  RenderRequest request = Conversation();
  request.add_generation_prompt = true;
  EXPECT_EQ(RenderOk(source, request),
            "<s><|system|>Be brief.\n<|user|>Hi\n<|assistant|>Hello!\n<|assistant|>");
}

TEST(ChatTemplate, WhitespaceControlAsTransformers) {
  // trim_blocks drops the newline after a block tag, lstrip_blocks the indentation before one;
  // '-' strips all whitespace on its side; '+' keeps the indentation.
  EXPECT_EQ(RenderOk("  {% if true %}\nx\n  {% endif %}\ny"), "x\ny");
  EXPECT_EQ(RenderOk("a   {%- if true -%}   b   {%- endif %}"), "ab");
  EXPECT_EQ(RenderOk("  {%+ if true %}x{% endif %}"), "  x");
  EXPECT_EQ(RenderOk("a {{- ' b ' -}} c"), "a b c");
  EXPECT_EQ(RenderOk("{# comment #}\nx\n"), "x");  // the one trailing newline is dropped
  EXPECT_EQ(RenderOk("{% raw %}{{ not a tag }}{% endraw %}"), "{{ not a tag }}");
}

TEST(ChatTemplate, LoopScopingAndNamespaces) {
  // A set inside a loop body is local to the iteration; a namespace carries state out.
  EXPECT_EQ(
      RenderOk(
          "{% set c = 0 %}{% for m in messages %}{% set c = c + 1 %}{{ c }}{% endfor %}{{ c }}"),
      "1110");
  EXPECT_EQ(RenderOk("{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
                     "{% endfor %}{{ ns.n }}"),
            "3");
  EXPECT_EQ(
      RenderOk("{% for m in messages if m.role != 'system' %}{{ loop.index }}/{{ loop.length }}"
               "{{ ',' if not loop.last }}{% endfor %}"),
      "1/2,2/2");
  EXPECT_EQ(RenderOk("{% for x in [] %}a{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(RenderOk("{% for x in [1,2,3,4] %}{% if x == 2 %}{% continue %}{% endif %}"
                     "{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
            "13");
}

TEST(ChatTemplate, ExpressionsAsPython) {
  EXPECT_EQ(RenderOk("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 1 / 2 }} {{ 2 ** 10 }}"),
            "3 -4 2 0.5 1024");
  EXPECT_EQ(RenderOk("{{ 'abcdef'[::-1] }} {{ 'abcdef'[-3:] }} {{ [1,2,3][1:] }}"),
            "fedcba def [2, 3]");
  EXPECT_EQ(RenderOk("{{ 'é😀x'[1] }}{{ 'é😀x' | length }}"), "😀3");
  EXPECT_EQ(RenderOk("{{ 'a' ~ 1 ~ none }} {{ 'b' in 'abc' }} {{ 3 not in [1, 2] }}"),
            "a1None True True");
  EXPECT_EQ(RenderOk("{{ 'yes' if messages else 'no' }} {{ (1, 2) }} {{ {'a': [1.0]} }}"),
            "yes (1, 2) {'a': [1.0]}");
  EXPECT_EQ(RenderOk("{{ not missing is defined }} {{ messages[0].role is string }}"), "True True");
}

TEST(ChatTemplate, FiltersAndMethods) {
  EXPECT_EQ(RenderOk("{{ messages | map(attribute='role') | join(',') }}"),
            "system,user,assistant");
  EXPECT_EQ(RenderOk("{{ messages | selectattr('role', 'equalto', 'user') | list | length }}"),
            "1");
  EXPECT_EQ(RenderOk("{{ {'b': 1, 'a': 2} | dictsort }}"), "[('a', 2), ('b', 1)]");
  EXPECT_EQ(RenderOk("{{ {'x': 'é', 'y': [1, 2.5, none]} | tojson }}"),
            "{\"x\": \"é\", \"y\": [1, 2.5, null]}");
  EXPECT_EQ(RenderOk("{{ {'x': [1]} | tojson(indent=2) }}"), "{\n  \"x\": [\n    1\n  ]\n}");
  EXPECT_EQ(RenderOk("{{ ' a b '.split() }} {{ 'a,b'.split(',') }} {{ '\\u3000x '.strip() }}"),
            "['a', 'b'] ['a', 'b'] x");
  EXPECT_EQ(RenderOk("{{ 'Hello'.startswith(('x', 'He')) }} {{ messages[0].get('name', 'anon') }}"),
            "True anon");
  EXPECT_EQ(RenderOk("{{ 'ß'.upper() }} {{ 'hELLO wORLD'.title() }} {{ 'x' | capitalize }}"),
            "SS Hello World X");
}

TEST(ChatTemplate, MacrosAndBlockSets) {
  EXPECT_EQ(RenderOk("{% macro tag(name, open=true) %}<{{ '' if open else '/' }}{{ name }}>"
                     "{% endmacro %}{{ tag('a') }}{{ tag('a', open=false) }}"),
            "<a></a>");
  EXPECT_EQ(RenderOk("{% set x | upper %}quiet {{ bos_token }}{% endset %}{{ x }}"), "QUIET <S>");
}

TEST(ChatTemplate, UndefinedFollowsJinja) {
  EXPECT_EQ(RenderOk("[{{ missing }}][{{ messages[0].missing }}][{{ missing | length }}]"
                     "[{% for x in missing %}x{% endfor %}]"),
            "[][][0][]");
  const auto error = Render("{{ missing.attribute }}");
  ASSERT_FALSE(error.ok());
  EXPECT_THAT(std::string(error.status().message()),
              HasSubstr("line 1, column 1: 'missing' is undefined"));
}

TEST(ChatTemplate, RefusesWhatItDoesNotSupportWhenLoaded) {
  const struct {
    const char* source;
    const char* error;
  } cases[] = {
      {"a\n  {{ x | frobnicate }}", "line 2, column 8: no filter named 'frobnicate'"},
      {"{% include 'other.jinja' %}", "the 'include' tag is not supported"},
      {"{% if x is shiny %}{% endif %}", "no test named 'shiny'"},
      {"{% for x in y %}", "unexpected end of template, expected 'endfor'"},
      {"{{ 'unterminated }}", "unterminated string"},
      {"{% break %}", "'break' outside a loop"},
      {"{% for x in y recursive %}{% endfor %}", "recursive loops are not supported"},
  };
  for (const auto& c : cases) {
    const auto parsed = ChatTemplate::Parse(c.source);
    ASSERT_FALSE(parsed.ok()) << c.source;
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(c.error)) << c.source;
  }
  std::string deep;  // ((((...1...))))
  for (int i = 0; i < 1000; ++i) deep = "(" + deep + ")";
  deep.insert(1000, "1");
  EXPECT_THAT(std::string(ChatTemplate::Parse("{{ " + deep + " }}").status().message()),
              HasSubstr("nesting is too deep"));
}

TEST(ChatTemplate, RaiseExceptionPassesItsMessage) {
  const auto out = Render(
      "{% if messages[0].role == 'system' %}{{ raise_exception('No system "
      "messages, please.') }}{% endif %}");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().message(), "No system messages, please.");
  EXPECT_TRUE(out.status().GetPayload(kRaisedPayload).has_value());
}

TEST(ChatTemplate, BoundsStopRunawayTemplates) {
  RenderLimits limits;
  limits.max_steps = 100000;
  limits.max_output_bytes = 1 << 16;
  limits.max_call_depth = 16;
  const auto loops =
      Render("{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}",
             Conversation(), limits);
  EXPECT_EQ(loops.status().code(), absl::StatusCode::kResourceExhausted) << loops.status();
  const auto output =
      Render("{% for a in range(10000) %}0123456789{% endfor %}", Conversation(), limits);
  EXPECT_EQ(output.status().code(), absl::StatusCode::kResourceExhausted) << output.status();
  const auto doubling = Render(
      "{% set ns = namespace(s='x') %}{% for a in range(64) %}"
      "{% set ns.s = ns.s + ns.s %}{% endfor %}",
      Conversation(), limits);
  EXPECT_EQ(doubling.status().code(), absl::StatusCode::kResourceExhausted) << doubling.status();
  const auto recursion =
      Render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", Conversation(), limits);
  EXPECT_EQ(recursion.status().code(), absl::StatusCode::kResourceExhausted) << recursion.status();
  EXPECT_FALSE(Render("{{ range(1000000) | length }}").ok());  // Jinja's sandbox cap
  EXPECT_THAT(std::string(Render("{{ messages.append(1) }}").status().message()),
              HasSubstr("unsafe"));
}

TEST(ChatTemplate, ContinueFinalMessageCutsAfterItsText) {
  const std::string source =
      "{% for m in messages %}<{{ m.role }}>{{ m.content }}</end>{% endfor %}";
  RenderRequest request;
  request.messages = Json(R"([{"role": "user", "content": "Hi"},
                              {"role": "assistant", "content": "The answer is "}])");
  request.continue_final_message = true;
  EXPECT_EQ(RenderOk(source, request), "<user>Hi</end><assistant>The answer is ");
  request.add_generation_prompt = true;
  EXPECT_THAT(std::string(Render(source, request).status().message()), HasSubstr("not compatible"));
}

TEST(ChatTemplate, StrftimeNowUsesTheGivenClock) {
  EXPECT_EQ(RenderOk("{{ strftime_now('%d %b %Y %H:%M') }}|{{ strftime_now('%Z') }}"),
            "02 Jan 2026 03:04|");
}

TEST(ChatTemplate, KwargsMayNotReplaceTheConversation) {
  RenderRequest request = Conversation();
  request.kwargs.Set("enable_thinking", Value::Bool(false));
  EXPECT_EQ(RenderOk("{{ enable_thinking }}", request), "False");
  request.kwargs.Set("messages", Value::List({}));
  EXPECT_THAT(std::string(Render("x", request).status().message()),
              HasSubstr("may not set 'messages'"));
}

TEST(ChatTemplate, RendersFromManyThreadsAtOnce) {
  const auto parsed = ChatTemplate::Parse(
      "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
      "{{ m.content | upper }}{% endfor %}{{ ns.n }}");
  ASSERT_TRUE(parsed.ok());
  std::vector<std::thread> threads;
  std::vector<std::string> outputs(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) outputs[t] = *parsed->Render({}, Conversation(), kNow);
    });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& out : outputs) EXPECT_EQ(out, "BE BRIEF.HIHELLO!3");
}

TEST(ChatTemplate, ValuesAreBoundedWhereTheyAreBuilt) {
  // Each of these would otherwise hang the renderer or build gigabytes before any output check.
  RenderLimits limits;
  limits.max_output_bytes = 1 << 20;
  const struct {
    const char* source;
    const char* error;
  } cases[] = {
      {"{{ '' * 9223372036854775807 }}{{ ([] * 1000000000000000000) | length }}", nullptr},
      {"{% set s = 'a' * 1000 %}{{ [s] * 1000000 }}", "repetition is too large"},
      {"{% set s = 'a' * 100000 %}{{ ([s] * 100) | length }}", "bound"},
      {"{% set s = 'a' * 1000 %}{{ (['x'] * 2000) | join(s) }}", "bound"},
      {"{% set s = 'a' * 2000 %}{{ s.replace('', s) }}", "bound"},
      {"{% set s = 'a' * 2000 %}{{ s | replace('', s) }}", "bound"},
      {"{{ ('\n' * 100000) | indent(1024) }}", "bound"},
      {"{{ '%2000000000s' | format('x') }}", "too large"},
      {"{% set ns = namespace(x=1) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}{% endfor %}",
       "nests deeper"},
      {"{% set ns = namespace(x=1) %}{% set ns.x = [ns] %}", "namespace may not be stored"},
      {"{{ ([[[1]]] * 10000) | tojson(indent=64) | length }}", "bound"},
      {"{{ ([[[1]]] * 100) | tojson(indent=2) | length }}", nullptr},
      {"{% for c in 'a' * 1000000 %}{% endfor %}", "string of more than"},
  };
  for (const auto& c : cases) {
    const auto out = Render(c.source, Conversation(), limits);
    if (c.error == nullptr) {
      EXPECT_TRUE(out.ok()) << c.source << ": " << out.status();
      continue;
    }
    ASSERT_FALSE(out.ok()) << c.source;
    EXPECT_THAT(std::string(out.status().message()), HasSubstr(c.error)) << c.source;
  }
}

TEST(ChatTemplate, RequestJsonDepthIsBounded) {
  std::string deep;
  for (int i = 0; i < 1000; ++i) deep += "[";
  for (int i = 0; i < 1000; ++i) deep += "]";
  EXPECT_FALSE(FromJson(nlohmann::ordered_json::parse(deep)).ok());
  // A wide object keeps its order and finds its keys through the index.
  nlohmann::ordered_json wide = nlohmann::ordered_json::object();
  for (int i = 0; i < 5000; ++i) wide["k" + std::to_string(4999 - i)] = i;
  const Value value = *FromJson(wide);
  EXPECT_EQ(value.dict().entries().front().first, "k4999");
  ASSERT_NE(value.dict().Find("k17"), nullptr);
  EXPECT_EQ(value.dict().Find("k17")->int_value(), 4982);
}

TEST(ChatTemplate, BreakInsideABlockSetEndsTheLoop) {
  EXPECT_EQ(RenderOk("{% for m in messages %}{% set t %}{{ m.role }}{% if loop.index > 1 %}"
                     "{% break %}{% endif %}{% endset %}[{{ t }}]{% endfor %}"),
            "[system]");
}

class ChatTemplatesLoadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("chat_template_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }
  std::filesystem::path dir_;
};

TEST_F(ChatTemplatesLoadTest, NamedTemplatesAndSpecialTokens) {
  Write("tokenizer_config.json", R"({
    "bos_token": {"__type": "AddedToken", "content": "<|begin|>"}, "eos_token": "<|end|>",
    "unk_token": null,
    "chat_template": [{"name": "default", "template": "D{{ bos_token }}{{ eos_token }}"},
                      {"name": "tool_use", "template": "T{{ tools | length }}"}]})");
  auto templates = ChatTemplates::Load(dir_.string());
  ASSERT_TRUE(templates.ok()) << templates.status();
  ASSERT_TRUE(templates->Has());
  RenderRequest request = Conversation();
  EXPECT_EQ(*templates->Render(request, kNow), "D<|begin|><|end|>");
  request.tools = Json(R"([{"type": "function", "function": {"name": "f"}}])");
  EXPECT_EQ(*templates->Render(request, kNow), "T1");
  EXPECT_EQ(templates->specials().Find("unk_token"), nullptr);
}

TEST_F(ChatTemplatesLoadTest, JinjaFileWinsAndBadTemplatesFailTheLoad) {
  Write("tokenizer_config.json", R"({"chat_template": "config"})");
  Write("chat_template.jinja", "file\n");
  auto templates = ChatTemplates::Load(dir_.string());
  ASSERT_TRUE(templates.ok()) << templates.status();
  EXPECT_EQ(*templates->Render(Conversation(), kNow), "file");
  Write("chat_template.jinja", "{% frobnicate %}");
  EXPECT_THAT(std::string(ChatTemplates::Load(dir_.string()).status().message()),
              HasSubstr("unknown tag 'frobnicate'"));
  std::filesystem::remove(dir_ / "chat_template.jinja");
  Write("tokenizer_config.json", R"({"bos_token": "<s>"})");
  templates = ChatTemplates::Load(dir_.string());
  ASSERT_TRUE(templates.ok());
  EXPECT_FALSE(templates->Has());
  EXPECT_EQ(templates->Render(Conversation(), kNow).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace pagoda::chat_template
