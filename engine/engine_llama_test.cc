// The engine on the real CPU model (model::LlamaModel through CpuModelRunner), built by the
// factory as pagodad builds it.

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/engine_factory.h"
#include "engine/offline.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/llama_model.h"
#include "model/model_weights.h"

namespace pagoda::engine {
namespace {

EngineConfig TinyConfig(bool prefix_caching = true) {
  EngineConfig config;
  config.model = "dummy:tiny";
  config.weight_dtype = model::DType::kF32;
  config.kv_cache_dtype = model::DType::kF32;
  config.block_size = 16;
  config.kv_cache_memory_bytes = 4 << 20;
  config.max_num_seqs = 16;
  config.max_num_batched_tokens = 96;
  config.enable_prefix_caching = prefix_caching;
  config.num_threads = 2;
  config.seed = 3;
  return config;
}

// TinyConfig with StreamingLLM on.
EngineConfig StreamingConfig(int max_model_len, int sinks, int window) {
  EngineConfig config = TinyConfig();
  config.max_model_len = max_model_len;
  config.attention_sinks = sinks;
  config.streaming_window = window;
  return config;
}

std::vector<EngineRequest> Prompts(int count, int shared_prefix_len = 0) {
  std::vector<EngineRequest> requests;
  for (int i = 0; i < count; ++i) {
    EngineRequest r;
    for (int t = 0; t < shared_prefix_len; ++t) r.prompt_tokens.push_back(1 + (t * 7) % 250);
    const int own = 5 + 9 * i;
    for (int t = 0; t < own; ++t) r.prompt_tokens.push_back(1 + (i * 31 + t * 13) % 250);
    r.sampling.temperature = 0.0f;
    r.stopping.max_tokens = 12;
    r.stopping.ignore_eos = true;
    requests.push_back(std::move(r));
  }
  return requests;
}

std::vector<std::vector<TokenId>> Tokens(const std::vector<RequestCompletion>& completions) {
  std::vector<std::vector<TokenId>> tokens;
  for (const RequestCompletion& c : completions) tokens.push_back(c.token_ids);
  return tokens;
}

// Runs `requests` together on an engine of `config`, then each alone on TinyConfig()'s: greedy
// tokens must not change, every request gets its 12 tokens, and no block stays in use.
void ExpectBatchedEqualsAlone(const EngineConfig& config,
                              const std::vector<EngineRequest>& requests) {
  auto core = CreateEngineCore(config);
  ASSERT_TRUE(core.ok()) << core.status();
  auto batched = GenerateOffline(**core, requests);
  ASSERT_TRUE(batched.ok()) << batched.status();
  for (size_t i = 0; i < requests.size(); ++i) {
    auto alone_core = CreateEngineCore(TinyConfig());
    ASSERT_TRUE(alone_core.ok());
    auto alone = GenerateOffline(**alone_core, {requests[i]});
    ASSERT_TRUE(alone.ok());
    EXPECT_EQ((*batched)[i].token_ids, (*alone)[0].token_ids) << "request " << i;
    EXPECT_EQ((*batched)[i].token_ids.size(), 12u);
  }
  EXPECT_EQ((*core)->kv_stats().num_used_blocks, 0);
}

TEST(EngineLlamaTest, ConcurrentGreedyRequestsMatchEachRunAlone) {
  ExpectBatchedEqualsAlone(TinyConfig(), Prompts(8));
}

// Prompts longer than the step's budget, the first of them on a fresh engine (its first step
// samples nothing), and prompt chunks capped by time beside running decodes (the step sizes
// then depend on measured step times): no token changes against each request run alone.
TEST(EngineLlamaTest, ChunksCappedByTokensOrTimeChangeNoToken) {
  EngineConfig config = TinyConfig();
  config.max_num_batched_tokens = 16;
  config.step_time_ratio = 1.5;
  ExpectBatchedEqualsAlone(config, Prompts(8, /*shared_prefix_len=*/20));
}

// Teacher forcing equals generation: scoring a prompt made of a generated text gives each of its
// tokens the log-probability the generation reported when it sampled it, whether the prompt is
// computed in chunks, batched with others, or again after its blocks were cached.
TEST(EngineLlamaTest, PromptLogprobsScoreWhatGenerationSampled) {
  EngineConfig config = TinyConfig();
  config.max_num_batched_tokens = 24;  // the scored prompt takes three chunks
  auto core = CreateEngineCore(config);
  ASSERT_TRUE(core.ok()) << core.status();
  EngineRequest generate = Prompts(2)[1];  // 14 prompt tokens
  generate.stopping.max_tokens = 40;
  generate.sampling.logprobs = 3;
  auto generated = GenerateOffline(**core, {generate});
  ASSERT_TRUE(generated.ok()) << generated.status();
  const RequestCompletion& g = (*generated)[0];
  ASSERT_EQ(g.logprobs.size(), 40u);

  EngineRequest score = generate;
  score.prompt_tokens.insert(score.prompt_tokens.end(), g.token_ids.begin(), g.token_ids.end());
  score.sampling.logprobs = -1;
  score.sampling.prompt_logprobs = 3;
  score.stopping.max_tokens = 1;
  const int num_prompt = static_cast<int>(generate.prompt_tokens.size());
  for (int round = 0; round < 2; ++round) {  // the second finds the prompt's blocks cached
    std::vector<EngineRequest> batch = Prompts(3);
    batch.insert(batch.begin() + 1, score);
    auto scored = GenerateOffline(**core, batch);
    ASSERT_TRUE(scored.ok()) << scored.status();
    const RequestCompletion& s = (*scored)[1];
    ASSERT_EQ(s.prompt_logprobs.size(), score.prompt_tokens.size() - 1) << "round " << round;
    EXPECT_EQ(s.usage.cached_prompt_tokens, 0);
    EXPECT_TRUE((*scored)[0].prompt_logprobs.empty());
    for (size_t i = 0; i < s.prompt_logprobs.size(); ++i) {
      EXPECT_EQ(s.prompt_logprobs[i].token, score.prompt_tokens[i + 1]);
      EXPECT_LE(s.prompt_logprobs[i].logprob, 0.0f);
      EXPECT_EQ(s.prompt_logprobs[i].top.size(), 3u);
    }
    // Entry num_prompt - 1 + j scores output token j.
    for (size_t j = 0; j < g.logprobs.size(); ++j) {
      const sampling::TokenLogprobs& forced = s.prompt_logprobs[num_prompt - 1 + j];
      EXPECT_EQ(forced.token, g.logprobs[j].token);
      EXPECT_NEAR(forced.logprob, g.logprobs[j].logprob, 1e-4) << "token " << j;
      ASSERT_EQ(forced.top.size(), g.logprobs[j].top.size());
      for (size_t k = 0; k < forced.top.size(); ++k) {
        EXPECT_NEAR(forced.top[k].second, g.logprobs[j].top[k].second, 1e-4);
      }
    }
  }
  EXPECT_EQ((*core)->kv_stats().num_used_blocks, 0);
}

// The 8-bit KV caches (int8, FP8 E4M3, FP8 E5M2): cached decode equals recomputation over the
// same quantized cache (a request batched or alone, its prompt's blocks from the prefix cache or
// computed), and the pool holds about twice bf16's tokens in the same memory.
TEST(EngineLlamaTest, EightBitKvCachesDecodeAsRecomputationAndHoldTwiceTheTokens) {
  for (const model::DType dtype :
       {model::DType::kInt8, model::DType::kFp8E4M3, model::DType::kFp8E5M2}) {
    EngineConfig config = TinyConfig();
    config.kv_cache_dtype = dtype;
    std::vector<std::vector<TokenId>> outputs[2];
    for (const bool caching : {false, true}) {
      config.enable_prefix_caching = caching;
      auto core = CreateEngineCore(config);
      ASSERT_TRUE(core.ok()) << core.status();
      EXPECT_EQ((*core)->info().kv_dtype, dtype);
      std::vector<EngineRequest> requests = Prompts(6, /*shared_prefix_len=*/48);
      ASSERT_TRUE(GenerateOffline(**core, {requests[0]}).ok());  // warms the cache
      auto batched = GenerateOffline(**core, requests);
      ASSERT_TRUE(batched.ok()) << batched.status();
      outputs[caching ? 1 : 0] = Tokens(*batched);
      for (size_t i = 0; i < requests.size(); i += 2) {
        auto alone_core = CreateEngineCore(config);
        ASSERT_TRUE(alone_core.ok());
        auto alone = GenerateOffline(**alone_core, {requests[i]});
        ASSERT_TRUE(alone.ok());
        EXPECT_EQ((*batched)[i].token_ids, (*alone)[0].token_ids)
            << model::DTypeName(dtype) << " request " << i;
      }
      if (caching) {
        EXPECT_GT((*batched)[1].usage.cached_prompt_tokens, 0);
      }
      EXPECT_EQ((*core)->kv_stats().num_used_blocks, 0);
    }
    EXPECT_EQ(outputs[0], outputs[1]) << model::DTypeName(dtype);
    // Same memory against bf16: dummy:tiny has head_dim 16, so the scales cost 2 bytes in 18
    // per value row: 32 / 18 = 1.78x the blocks.
    config.kv_cache_dtype = model::DType::kBF16;
    auto bf16 = CreateEngineCore(config);
    config.kv_cache_dtype = dtype;
    auto eight_bit = CreateEngineCore(config);
    ASSERT_TRUE(bf16.ok() && eight_bit.ok());
    EXPECT_NEAR(
        static_cast<double>((*eight_bit)->info().num_kv_blocks) / (*bf16)->info().num_kv_blocks,
        32.0 / 18.0, 0.01);
  }
}

// Writes a random Llama checkpoint with FP8 KV scales (k_scale a scalar, v_scale per KV head)
// through the NumPy reference's own writer; false without /usr/bin/python3 and NumPy.
bool WriteCheckpointWithKvScales(const std::string& dir) {
  const std::string script = absl::StrCat(
      "import sys, numpy as np; sys.path.insert(0, '", PAGODA_SOURCE_DIR,
      "/tests/reference'); import llama_reference as r; rng = np.random.default_rng(0); "
      "c, t = r._random_model(rng, num_kv_heads=2, with_bias=False); "
      "c.update(vocab_size=300, architectures=['LlamaForCausalLM'], "
      "max_position_embeddings=256); "
      "t['model.embed_tokens.weight'] = (rng.standard_normal((300, c['hidden_size'])) * 0.2)"
      ".astype(np.float32); "
      "[t.update({f'model.layers.{l}.self_attn.k_scale': np.array(0.02, dtype=np.float32), "
      "f'model.layers.{l}.self_attn.v_scale': np.array([0.02, 0.03], dtype=np.float32)}) "
      "for l in range(c['num_hidden_layers'])]; r._save('",
      dir, "', c, t)");
  return std::system(
             absl::StrCat("/usr/bin/python3 -c \"", script, "\" >/dev/null 2>&1").c_str()) == 0;
}

// FP8 with the checkpoint's static KV scales through the factory, as pagodad builds it: no
// scale stored per token, so twice bf16's blocks in the same memory; requests batched give
// what each gives alone, with and without prefix-cache hits.
TEST(EngineLlamaTest, Fp8WithCheckpointKvScalesHoldsTwiceBf16AndDecodesConsistently) {
  const std::string dir =
      (std::filesystem::temp_directory_path() / "pagoda_engine_fp8_kv_scales").string();
  std::filesystem::remove_all(dir);
  if (!WriteCheckpointWithKvScales(dir)) GTEST_SKIP() << "/usr/bin/python3 with numpy needed";
  EngineConfig config = TinyConfig();
  config.model = dir;
  config.weight_dtype.reset();
  config.kv_cache_dtype = model::DType::kBF16;
  auto bf16 = CreateEngineCore(config);
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  config.kv_cache_dtype = model::DType::kFp8E4M3;
  auto core = CreateEngineCore(config);
  ASSERT_TRUE(core.ok()) << core.status();
  EXPECT_TRUE((*core)->info().kv_static_scales);
  EXPECT_EQ((*core)->info().num_kv_blocks, 2 * (*bf16)->info().num_kv_blocks);
  std::vector<EngineRequest> requests = Prompts(4, /*shared_prefix_len=*/32);
  for (EngineRequest& r : requests) {
    for (TokenId& t : r.prompt_tokens) t %= 300;
  }
  ASSERT_TRUE(GenerateOffline(**core, {requests[0]}).ok());  // warms the prefix cache
  auto batched = GenerateOffline(**core, requests);
  ASSERT_TRUE(batched.ok()) << batched.status();
  EXPECT_GT((*batched)[1].usage.cached_prompt_tokens, 0);
  for (size_t i = 0; i < requests.size(); ++i) {
    auto alone_core = CreateEngineCore(config);
    ASSERT_TRUE(alone_core.ok());
    auto alone = GenerateOffline(**alone_core, {requests[i]});
    ASSERT_TRUE(alone.ok());
    EXPECT_EQ((*batched)[i].token_ids, (*alone)[0].token_ids) << "request " << i;
  }
  std::filesystem::remove_all(dir);
}

TEST(EngineLlamaTest, PrefixCachingChangesNoTokenAndHitsASharedSystemPrompt) {
  constexpr int kSystemPromptLen = 64;  // four blocks
  std::vector<std::vector<TokenId>> outputs[2];
  for (const bool caching : {false, true}) {
    auto core = CreateEngineCore(TinyConfig(caching));
    ASSERT_TRUE(core.ok());
    // The first request warms the cache; the rest arrive after it finished.
    std::vector<EngineRequest> requests = Prompts(6, kSystemPromptLen);
    auto first = GenerateOffline(**core, {requests[0]});
    ASSERT_TRUE(first.ok());
    requests.erase(requests.begin());
    auto rest = GenerateOffline(**core, requests);
    ASSERT_TRUE(rest.ok());
    outputs[caching] = Tokens(*first);
    for (const auto& t : Tokens(*rest)) outputs[caching].push_back(t);
    const block_manager::KvCacheStats stats = (*core)->kv_stats();
    if (caching) {
      EXPECT_GE(stats.prefix_hit_tokens, 5 * kSystemPromptLen);
      for (const RequestCompletion& c : *rest) {
        EXPECT_GE(c.usage.cached_prompt_tokens, kSystemPromptLen);
      }
    } else {
      EXPECT_EQ(stats.prefix_hit_tokens, 0);
    }
  }
  EXPECT_EQ(outputs[0], outputs[1]);
}

// The shared trained model (absent on a fresh machine): text in, text out, through the real
// tokenizer, batched and alone alike.
TEST(EngineLlamaTest, Stories260KGeneratesTheSameTextBatchedAndAlone) {
  const std::string dir = std::string(PAGODA_SHARED_MODELS_DIR) + "/stories260K";
  if (!std::filesystem::exists(dir + "/config.json")) GTEST_SKIP() << dir << " is absent";
  EngineConfig config;
  config.model = dir;
  config.kv_cache_memory_bytes = 8 << 20;
  config.num_threads = 2;
  auto core = CreateEngineCore(config);
  ASSERT_TRUE(core.ok()) << core.status();
  const tokenizer::Tokenizer* tokenizer = (*core)->tokenizer();
  ASSERT_NE(tokenizer, nullptr);
  std::vector<EngineRequest> requests;
  for (const char* text : {"Once upon a time", "Lily and Ben", "The cat sat on the mat and"}) {
    EngineRequest r;
    r.prompt_tokens = tokenizer->Encode(text, tokenizer::AddSpecialTokens::kYes);
    r.sampling.temperature = 0.0f;
    r.stopping.max_tokens = 24;
    requests.push_back(std::move(r));
  }
  auto batched = GenerateOffline(**core, requests);
  ASSERT_TRUE(batched.ok());
  for (size_t i = 0; i < requests.size(); ++i) {
    auto alone = GenerateOffline(**core, {requests[i]});
    ASSERT_TRUE(alone.ok());
    EXPECT_EQ((*batched)[i].text, (*alone)[0].text);
    EXPECT_FALSE((*batched)[i].text.empty());
    EXPECT_EQ((*batched)[i].text,
              tokenizer->Decode((*batched)[i].token_ids, tokenizer::SkipSpecialTokens::kYes));
  }
}

TEST(EngineLlamaTest, FactoryErrorsNameTheSetting) {
  EngineConfig config = TinyConfig();
  config.model = "dummy:nope";
  EXPECT_THAT(std::string(CreateEngineCore(config).status().message()),
              ::testing::HasSubstr("--model"));
  config = TinyConfig();
  config.device = "tpu";
  EXPECT_THAT(std::string(CreateEngineCore(config).status().message()),
              ::testing::HasSubstr("--device"));
  config.device = "cuda:x";
  EXPECT_THAT(std::string(CreateEngineCore(config).status().message()),
              ::testing::HasSubstr("--device"));
  // The tiny model (head dim 16) cannot run on the CUDA kernels, and the CUDA cache is not f32;
  // a build without CUDA says so instead. Either way nothing touches a device.
  config = TinyConfig();
  config.device = "cuda";
  EXPECT_THAT(std::string(CreateEngineCore(config).status().message()),
              ::testing::AnyOf(::testing::HasSubstr("--kv-cache-dtype"),
                               ::testing::HasSubstr("no CUDA support")));
  config.kv_cache_dtype = model::DType::kBF16;
  EXPECT_THAT(std::string(CreateEngineCore(config).status().message()),
              ::testing::AnyOf(::testing::HasSubstr("head_dim 16"),
                               ::testing::HasSubstr("no CUDA support")));
  config = TinyConfig();
  config.model = "/nonexistent/model";
  EXPECT_FALSE(CreateEngineCore(config).ok());
  config = TinyConfig();
  config.max_model_len = 100000;
  EXPECT_THAT(std::string(CreateEngineCore(config).status().message()),
              ::testing::HasSubstr("max_model_len"));
}

// StreamingLLM through the engine: a request generates 3x max_model_len with its KV memory flat
// at the sinks plus the window; every token it generated is scored the same by teacher forcing
// (prompt_logprobs, in 256-token chunks, through the same windowed cache), so cached decode
// equals recomputation under the same mask. Without streaming such a request is refused.
TEST(EngineLlamaTest, StreamingGeneratesPastMaxModelLenInFlatMemoryAndMatchesRecomputation) {
  const EngineConfig config = StreamingConfig(/*max_model_len=*/128, /*sinks=*/4, /*window=*/48);
  auto core = CreateEngineCore(config);
  ASSERT_TRUE(core.ok()) << core.status();
  EXPECT_TRUE((*core)->info().streaming);
  EngineRequest request = Prompts(2)[1];  // 14 prompt tokens
  request.stopping.max_tokens = 400;
  request.sampling.logprobs = 1;
  ASSERT_TRUE((*core)->ValidateRequest(request).ok());
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE((*core)->AddRequest(RequestId(1), request, sink).ok());
  int max_used = 0;
  while ((*core)->has_requests()) {
    ASSERT_TRUE((*core)->Step().ok());
    max_used = std::max(max_used, (*core)->kv_stats().num_used_blocks);
  }
  ASSERT_EQ(sink->num_completions, 1);
  const RequestCompletion& g = *sink->completion;
  ASSERT_TRUE(g.status.ok()) << g.status;
  ASSERT_EQ(g.token_ids.size(), 400u);
  // One sink block, the window's 48 tokens (3 blocks) and the block a step straddles.
  EXPECT_LE(max_used, 5);

  EngineConfig long_context = config;
  long_context.max_model_len = 512;  // room for the whole text as a prompt
  auto scorer = CreateEngineCore(long_context);
  ASSERT_TRUE(scorer.ok()) << scorer.status();
  EngineRequest score = request;
  score.prompt_tokens.insert(score.prompt_tokens.end(), g.token_ids.begin(), g.token_ids.end());
  score.sampling.logprobs = -1;
  score.sampling.prompt_logprobs = 1;
  score.stopping.max_tokens = 1;
  auto scored = GenerateOffline(**scorer, {score});
  ASSERT_TRUE(scored.ok()) << scored.status();
  const std::vector<sampling::TokenLogprobs>& forced = (*scored)[0].prompt_logprobs;
  const size_t num_prompt = request.prompt_tokens.size();
  ASSERT_EQ(forced.size(), score.prompt_tokens.size() - 1);
  for (size_t j = 0; j < g.logprobs.size(); ++j) {
    ASSERT_EQ(forced[num_prompt - 1 + j].token, g.token_ids[j]);
    EXPECT_NEAR(forced[num_prompt - 1 + j].logprob, g.logprobs[j].logprob, 1e-4) << "token " << j;
  }

  // Without streaming, max_tokens past max_model_len is refused, naming the field.
  auto plain = CreateEngineCore(TinyConfig());
  ASSERT_TRUE(plain.ok());
  EngineRequest too_long = request;
  too_long.stopping.max_tokens = 1000;
  const absl::Status refused = (*plain)->ValidateRequest(too_long);
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument) << refused;
  EXPECT_THAT(std::string(refused.message()), ::testing::HasSubstr("max_tokens"));
}

// Prefix caching under StreamingLLM: blocks are never rewritten and a block's K/V depend only on
// the tokens up to it (under the engine's one streaming setting), so a second request whose
// prompt is the first's text hits the blocks the first freed from its middle, and continues
// exactly as the first did.
TEST(EngineLlamaTest, StreamingPrefixHitsContinueLikeTheRequestThatCachedThem) {
  const EngineConfig config = StreamingConfig(/*max_model_len=*/256, /*sinks=*/4, /*window=*/32);
  auto core = CreateEngineCore(config);
  ASSERT_TRUE(core.ok()) << core.status();
  EngineRequest first = Prompts(1)[0];
  first.stopping.max_tokens = 220;
  auto a = GenerateOffline(**core, {first});
  ASSERT_TRUE(a.ok()) << a.status();
  const std::vector<TokenId>& out = (*a)[0].token_ids;
  ASSERT_EQ(out.size(), 220u);
  EngineRequest second = first;
  second.prompt_tokens.insert(second.prompt_tokens.end(), out.begin(), out.begin() + 200);
  second.stopping.max_tokens = 20;
  auto b = GenerateOffline(**core, {second});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_GE((*b)[0].usage.cached_prompt_tokens, 192);
  EXPECT_EQ((*b)[0].token_ids, std::vector<TokenId>(out.begin() + 200, out.end()));
  EXPECT_EQ((*core)->kv_stats().num_used_blocks, 0);
}

// Start-up refusals name the flag: sinks without a window, a window longer than max_model_len,
// sinks on a model with sliding-window layers.
TEST(EngineLlamaTest, StreamingRefusesInvalidCombinations) {
  EngineConfig sinks_only = TinyConfig();
  sinks_only.attention_sinks = 4;
  EXPECT_THAT(std::string(CreateEngineCore(sinks_only).status().message()),
              ::testing::HasSubstr("--attention-sinks"));
  EngineConfig too_wide = TinyConfig();
  too_wide.max_model_len = 64;
  too_wide.streaming_window = 100;
  EXPECT_THAT(std::string(CreateEngineCore(too_wide).status().message()),
              ::testing::HasSubstr("--streaming-window 100 exceeds max_model_len = 64"));
  // A pool that could not hold the window plus a step's chunk would leave a long stream stuck.
  EngineConfig small_pool = TinyConfig();
  small_pool.max_model_len = 256;
  small_pool.streaming_window = 252;
  small_pool.kv_cache_memory_bytes =
      16 *
      model::CpuKvCache::BytesPerBlock(*model::DummyPresetConfig("tiny"), 16, model::DType::kF32);
  EXPECT_THAT(std::string(CreateEngineCore(small_pool).status().message()),
              ::testing::HasSubstr("one streaming request"));
  small_pool.kv_cache_memory_bytes = 0;  // the default sizing counts the window
  EXPECT_TRUE(CreateEngineCore(small_pool).ok());
  EngineConfig windowed_model = TinyConfig();
  windowed_model.model = "dummy:mistral-tiny";
  windowed_model.streaming_window = 32;
  EXPECT_THAT(std::string(CreateEngineCore(windowed_model).status().message()),
              ::testing::HasSubstr("sliding-window layers"));
}

// The dummy sliding-window models serve requests far longer than their windows: the Mistral-like
// one (every layer windowed) in flat memory, the Qwen2-like one (mixed) with memory accounted as
// full attention; both give what the same engine gives each request alone, batched or not.
TEST(EngineLlamaTest, SlidingWindowDummyModelsServeLongRequests) {
  for (const char* name : {"dummy:mistral-tiny", "dummy:qwen2-tiny"}) {
    EngineConfig config = TinyConfig();
    config.model = name;
    auto core = CreateEngineCore(config);
    ASSERT_TRUE(core.ok()) << name << ": " << core.status();
    const bool all_windowed = std::string(name) == "dummy:mistral-tiny";
    EXPECT_EQ((*core)->info().kv_window.full(), !all_windowed) << name;
    std::vector<EngineRequest> requests = Prompts(4);
    for (EngineRequest& r : requests) r.stopping.max_tokens = 300;
    auto batched = GenerateOffline(**core, requests);
    ASSERT_TRUE(batched.ok()) << batched.status();
    for (size_t i = 0; i < requests.size(); ++i) {
      auto alone_core = CreateEngineCore(config);
      ASSERT_TRUE(alone_core.ok());
      auto sink = std::make_shared<CollectingSink>();
      ASSERT_TRUE((*alone_core)->AddRequest(RequestId(1), requests[i], sink).ok());
      int max_used = 0;
      while ((*alone_core)->has_requests()) {
        ASSERT_TRUE((*alone_core)->Step().ok());
        max_used = std::max(max_used, (*alone_core)->kv_stats().num_used_blocks);
      }
      EXPECT_EQ((*batched)[i].token_ids, sink->completion->token_ids) << name << " " << i;
      ASSERT_EQ(sink->completion->token_ids.size(), 300u);
      // Windowed: window 64 = 4 blocks, plus the block a step straddles, plus a prompt chunk's.
      if (all_windowed) {
        EXPECT_LE(max_used, 4 + 1 + 2) << i;
      } else {
        EXPECT_GE(max_used, 19) << i;  // every block of 300+ tokens kept
      }
    }
  }
}

}  // namespace
}  // namespace pagoda::engine
