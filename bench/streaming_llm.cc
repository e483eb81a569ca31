// StreamingLLM's claim reproduced on the built-in model (docs/benchmarks.md, "Attention sinks"):
// a long text, many times the model's context, teacher-forced one token at a time through the
// paged cache under three settings of the same cache size S + W:
//   1. sinks: the first S tokens plus the last W (--attention-sinks S --streaming-window W);
//   2. window: the last S + W tokens, no sinks (--streaming-window S+W);
//   3. recompute: each token predicted from a fresh prefill of the S + W tokens before it (the
//      paper's "sliding window with re-computation" baseline: no cache reuse at all).
// Perplexity per segment of the text for each, then, through the engine as pagodad runs it, a
// generation of the same length with sinks: KV blocks held and decode tokens/s per segment.
//
//   streaming_llm [--model DIR] [--heldout PATH] [--tokens N] [--sinks S] [--window W]
//                 [--segment N] [--threads N] [--out DIR] [--quick]
//
// Writes DIR/streaming_llm.csv (one row per segment) and prints the table.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/check.h"
#include "engine/engine_factory.h"
#include "engine/offline.h"
#include "model/forward_batch.h"
#include "model/llama_model.h"
#include "nlohmann/json.hpp"
#include "tokenizer/tokenizer_loader.h"

namespace pagoda::bench {
namespace {

struct Flags {
  std::string model = PAGODA_BUILTIN_MODEL_DIR;
  std::string heldout = PAGODA_HELDOUT_JSON;
  std::string out = ".";
  int tokens = 2048;  // 8x pagoda-kjv's 256-token context
  int sinks = 4;
  int window = 252;  // sinks + window = the model's context
  int segment = 256;
  int threads = 0;
  bool quick = false;
};

constexpr int kBlockSize = 16;

// One long document, as the paper's PG19 books: the held-out verses' text joined by spaces and
// tokenized once, so that <s> appears only at position 0. (Verse by verse, every verse would
// bring its own <s>, which the model, trained on windows that run on through <s>-led verses,
// uses as a sink: a plain window would then always hold one.) Cut to `n` tokens.
std::vector<TokenId> HeldOutText(const Flags& flags, int n) {
  std::ifstream in(flags.heldout);
  PAGODA_CHECK(in.good()) << "cannot read " << flags.heldout;
  const nlohmann::json heldout = nlohmann::json::parse(in, nullptr, false);
  PAGODA_CHECK(!heldout.is_discarded()) << flags.heldout << " is not JSON";
  std::string document;
  for (const nlohmann::json& verse : heldout["verses"]) {
    if (!document.empty()) document += ' ';
    document += verse["text"].get<std::string>();
  }
  auto tokenizer = tokenizer::LoadTokenizer(flags.model);
  PAGODA_CHECK(tokenizer.ok()) << tokenizer.status().message();
  std::vector<TokenId> text = (*tokenizer)->Encode(document, tokenizer::AddSpecialTokens::kYes);
  PAGODA_CHECK_GE(static_cast<int>(text.size()), n) << "the held-out text is shorter";
  text.resize(static_cast<size_t>(n));
  return text;
}

std::unique_ptr<model::LlamaModel> LoadModel(const Flags& flags, common::AttentionWindow w) {
  auto weights = model::LoadModelWeights(flags.model, {});
  PAGODA_CHECK(weights.ok()) << weights.status().message();
  const int threads = flags.threads > 0 ? flags.threads : 2;
  auto model =
      model::LlamaModel::Create(*std::move(weights), {.num_threads = threads, .streaming = w});
  PAGODA_CHECK(model.ok()) << model.status().message();
  return *std::move(model);
}

// -log softmax(row)[target], in double.
double Nll(const float* row, int vocab, TokenId target) {
  const float max = *std::max_element(row, row + vocab);
  double sum = 0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(row[i]) - max);
  return std::log(sum) + max - row[target];
}

// Settings 1 and 2: one token per step through the paged cache, the blocks the window leaves
// behind recycled as the block manager frees them. nll[p] scores text[p + 1].
std::vector<double> StreamNll(const Flags& flags, common::AttentionWindow w,
                              const std::vector<TokenId>& text) {
  std::unique_ptr<model::LlamaModel> model = LoadModel(flags, w);
  const int live = (w.sink_tokens + kBlockSize - 1) / kBlockSize +
                   (w.sliding_window + kBlockSize - 1) / kBlockSize + 1;
  auto cache = model::CpuKvCache::Create(model->config(), live, kBlockSize, model::DType::kBF16);
  PAGODA_CHECK(cache.ok());
  std::vector<int32_t> free_blocks(static_cast<size_t>(live));
  std::iota(free_blocks.begin(), free_blocks.end(), 0);
  std::vector<int32_t> table;
  model::ForwardBatchBuilder builder;
  std::vector<float> logits;
  std::vector<double> nll;
  const int vocab = model->config().vocab_size;
  for (int p = 0; p + 1 < static_cast<int>(text.size()); ++p) {
    for (size_t b = 0; b < table.size(); ++b) {  // free what query p can no longer attend
      const int first = static_cast<int>(b) * kBlockSize;
      if (table[b] >= 0 && w.IsDead(first, p) && w.IsDead(first + kBlockSize - 1, p)) {
        free_blocks.push_back(table[b]);
        table[b] = -1;
      }
    }
    if (p % kBlockSize == 0) {
      PAGODA_CHECK(!free_blocks.empty()) << "the window holds more blocks than counted";
      table.push_back(free_blocks.back());
      free_blocks.pop_back();
    }
    builder.Reset(kBlockSize, static_cast<int32_t>(table.size()));
    builder.AddRequest(text, p, p + 1, absl::MakeConstSpan(table), model::LogitsRows::kLast);
    PAGODA_CHECK(model->Forward(builder.batch(), **cache, &logits).ok());
    nll.push_back(Nll(logits.data(), vocab, text[p + 1]));
  }
  return nll;
}

// Setting 3: text[p + 1] predicted from a fresh prefill of text[p - L + 1 .. p], L = S + W,
// 16 positions per forward pass.
std::vector<double> RecomputeNll(const Flags& flags, int context,
                                 const std::vector<TokenId>& text) {
  std::unique_ptr<model::LlamaModel> model = LoadModel(flags, {});
  constexpr int kBatch = 16;
  const int per_request = (context + kBlockSize - 1) / kBlockSize;
  auto cache = model::CpuKvCache::Create(model->config(), kBatch * per_request, kBlockSize,
                                         model::DType::kBF16);
  PAGODA_CHECK(cache.ok());
  model::ForwardBatchBuilder builder;
  std::vector<float> logits;
  const int vocab = model->config().vocab_size;
  const int n = static_cast<int>(text.size()) - 1;
  std::vector<double> nll(static_cast<size_t>(n));
  std::vector<std::vector<TokenId>> windows(kBatch);
  std::vector<std::vector<int32_t>> tables(kBatch);
  for (int first = 0; first < n; first += kBatch) {
    const int count = std::min(kBatch, n - first);
    builder.Reset(kBlockSize, per_request);
    for (int i = 0; i < count; ++i) {
      const int p = first + i;
      const int begin = std::max(0, p - context + 1);
      windows[i].assign(text.begin() + begin, text.begin() + p + 1);
      tables[i].resize((windows[i].size() + kBlockSize - 1) / kBlockSize);
      std::iota(tables[i].begin(), tables[i].end(), i * per_request);
      builder.AddRequest(windows[i], 0, static_cast<int>(windows[i].size()),
                         absl::MakeConstSpan(tables[i]), model::LogitsRows::kLast);
    }
    PAGODA_CHECK(model->Forward(builder.batch(), **cache, &logits).ok());
    for (int i = 0; i < count; ++i) {
      nll[first + i] =
          Nll(logits.data() + static_cast<size_t>(i) * vocab, vocab, text[first + i + 1]);
    }
  }
  return nll;
}

struct EngineSegment {
  int max_used_blocks = 0;
  double tokens_per_second = 0;
};

// Through the engine: a greedy generation of text.size() tokens with sinks on (ignore_eos), the
// blocks in use and the decode rate per segment.
std::vector<EngineSegment> EngineRun(const Flags& flags, int num_tokens) {
  engine::EngineConfig config;
  config.model = flags.model;
  config.num_threads = flags.threads;
  config.attention_sinks = flags.sinks;
  config.streaming_window = flags.window;
  config.max_num_seqs = 1;
  auto core = engine::CreateEngineCore(config);
  PAGODA_CHECK(core.ok()) << core.status().message();
  engine::EngineRequest request;
  request.prompt_tokens = {0};  // <s>
  request.sampling.temperature = 0.0f;
  request.stopping.max_tokens = num_tokens;
  request.stopping.ignore_eos = true;
  auto sink = std::make_shared<engine::CollectingSink>();
  PAGODA_CHECK((*core)->AddRequest(RequestId(1), request, sink).ok());
  std::vector<EngineSegment> segments;
  absl::Time segment_start = absl::Now();
  int generated = 0;
  EngineSegment current;
  while ((*core)->has_requests()) {
    PAGODA_CHECK((*core)->Step().ok());
    ++generated;
    current.max_used_blocks =
        std::max(current.max_used_blocks, (*core)->kv_stats().num_used_blocks);
    if (generated % flags.segment == 0) {
      current.tokens_per_second =
          flags.segment / absl::ToDoubleSeconds(absl::Now() - segment_start);
      segments.push_back(current);
      current = {};
      segment_start = absl::Now();
    }
  }
  PAGODA_CHECK_EQ(static_cast<int>(sink->completion->token_ids.size()), num_tokens);
  return segments;
}

double SegmentPerplexity(const std::vector<double>& nll, int begin, int end) {
  double sum = 0;
  for (int i = begin; i < end; ++i) sum += nll[i];
  return std::exp(sum / (end - begin));
}

bool ParseFlags(int argc, char** argv, Flags& f) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    const auto int_flag = [&](int& out) { return absl::SimpleAtoi(value(), &out); };
    bool ok = true;
    if (arg == "--model") {
      f.model = value();
    } else if (arg == "--heldout") {
      f.heldout = value();
    } else if (arg == "--out") {
      f.out = value();
    } else if (arg == "--tokens") {
      ok = int_flag(f.tokens);
    } else if (arg == "--sinks") {
      ok = int_flag(f.sinks);
    } else if (arg == "--window") {
      ok = int_flag(f.window);
    } else if (arg == "--segment") {
      ok = int_flag(f.segment);
    } else if (arg == "--threads") {
      ok = int_flag(f.threads);
    } else if (arg == "--quick") {
      f.quick = true;
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "bad flag %s\n", arg.c_str());
      return false;
    }
  }
  if (f.quick) {  // a smoke run: a 64-token cache over 512 tokens
    f.tokens = 512;
    f.segment = 128;
    f.window = 60;
  }
  return f.tokens > f.segment && f.segment > 0 && f.window > 0 && f.sinks >= 0;
}

int Main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, flags)) return 2;
  const std::vector<TokenId> text = HeldOutText(flags, flags.tokens + 1);
  const int cache = flags.sinks + flags.window;
  const std::vector<double> sinks =
      StreamNll(flags, {.sliding_window = flags.window, .sink_tokens = flags.sinks}, text);
  const std::vector<double> window = StreamNll(flags, {.sliding_window = cache}, text);
  const absl::Time recompute_start = absl::Now();
  const std::vector<double> recompute = RecomputeNll(flags, cache, text);
  const double recompute_seconds = absl::ToDoubleSeconds(absl::Now() - recompute_start);
  const std::vector<EngineSegment> engine = EngineRun(flags, flags.tokens);

  const std::string path = flags.out + "/streaming_llm.csv";
  std::ofstream csv(path);
  csv << "segment_start,segment_end,ppl_sinks,ppl_window,ppl_recompute,engine_blocks,"
         "engine_tokens_per_s\n";
  std::printf(
      "cache %d tokens = %d sinks + %d window; %d held-out tokens; recompute baseline "
      "took %.1f s\n",
      cache, flags.sinks, flags.window, flags.tokens, recompute_seconds);
  std::printf("%-12s %10s %10s %12s %8s %10s\n", "tokens", "sinks", "window", "recompute", "blocks",
              "tok/s");
  for (size_t s = 0; s < engine.size(); ++s) {
    const int begin = static_cast<int>(s) * flags.segment;
    const int end = std::min(begin + flags.segment, static_cast<int>(sinks.size()));
    const double a = SegmentPerplexity(sinks, begin, end);
    const double b = SegmentPerplexity(window, begin, end);
    const double c = SegmentPerplexity(recompute, begin, end);
    std::printf("%5d-%-6d %10.2f %10.2f %12.2f %8d %10.1f\n", begin, end, a, b, c,
                engine[s].max_used_blocks, engine[s].tokens_per_second);
    csv << absl::StrFormat("%d,%d,%.4f,%.4f,%.4f,%d,%.2f\n", begin, end, a, b, c,
                           engine[s].max_used_blocks, engine[s].tokens_per_second);
  }
  std::printf("wrote %s\n", path.c_str());
  return 0;
}

}  // namespace
}  // namespace pagoda::bench

int main(int argc, char** argv) { return pagoda::bench::Main(argc, argv); }
