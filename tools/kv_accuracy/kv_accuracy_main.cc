// pagoda-kv-accuracy: the KV-cache accuracy gate. Teacher-forces held-out text through two
// engines that differ only in --kv-cache-dtype and prints perplexity, KL divergence and greedy
// agreement (docs/kv_quantization.md). Run it on your model before serving it with a smaller KV
// dtype.
//
//   pagoda-kv-accuracy --model DIR --kv-cache-dtype bf16 [--reference-dtype f32]
//       (--heldout FILE.json | --text FILE) [--max-texts N] [--max-num-batched-tokens N]

#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "engine/engine_factory.h"
#include "nlohmann/json.hpp"
#include "tools/kv_accuracy/kv_accuracy.h"

namespace pagoda::kv_accuracy {
namespace {

constexpr char kUsage[] =
    "usage: pagoda-kv-accuracy --kv-cache-dtype DTYPE [flags]\n"
    "  --model SPEC                 a Hugging Face directory, dummy:<preset>, or \"\" (the\n"
    "                               built-in model; default)\n"
    "  --kv-cache-dtype DTYPE       the dtype to check: bf16 | int8 | fp8_e4m3 (fp8) | fp8_e5m2 |\n"
    "                               f32 (the CPU's KV dtypes)\n"
    "  --reference-dtype DTYPE      the baseline (default f32)\n"
    "  --heldout FILE.json          texts as {\"verses\": [{\"ids\": [...]}, ...]} (token ids)\n"
    "  --text FILE                  texts, one per line (tokenized with the model's tokenizer,\n"
    "                               special tokens added)\n"
    "  --max-texts N                at most N texts (default all)\n"
    "  --max-num-batched-tokens N   the prefill chunk (default 256: texts are scored over the\n"
    "                               paged cache in chunks, as served)\n"
    "  --threads N                  CPU threads (default 0: all cores)\n";

struct Flags {
  std::string model;
  std::string dtype;
  std::string reference = "f32";
  std::string heldout;
  std::string text;
  int max_texts = 0;
  int chunk = 256;
  int threads = 0;
};

bool ParseFlags(int argc, char** argv, Flags& f) {
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") return false;
    if (i + 1 >= argc) {
      std::cerr << flag << ": needs a value\n";
      return false;
    }
    const std::string value = argv[++i];
    bool ok = true;
    if (flag == "--model")
      f.model = value;
    else if (flag == "--kv-cache-dtype")
      f.dtype = value;
    else if (flag == "--reference-dtype")
      f.reference = value;
    else if (flag == "--heldout")
      f.heldout = value;
    else if (flag == "--text")
      f.text = value;
    else if (flag == "--max-texts")
      ok = absl::SimpleAtoi(value, &f.max_texts) && f.max_texts >= 0;
    else if (flag == "--max-num-batched-tokens")
      ok = absl::SimpleAtoi(value, &f.chunk) && f.chunk > 0;
    else if (flag == "--threads")
      ok = absl::SimpleAtoi(value, &f.threads) && f.threads >= 0;
    else {
      std::cerr << "unknown flag " << flag << "\n";
      return false;
    }
    if (!ok) {
      std::cerr << flag << ": bad value '" << value << "'\n";
      return false;
    }
  }
  return true;
}

absl::StatusOr<std::unique_ptr<engine::EngineCore>> MakeCore(const Flags& f, model::DType kv) {
  engine::EngineConfig config;
  config.model = f.model;
  config.kv_cache_dtype = kv;
  config.max_num_batched_tokens = f.chunk;
  config.max_num_seqs = 16;
  config.num_threads = f.threads;
  config.enable_prefix_caching = false;
  return engine::CreateEngineCore(config);
}

absl::StatusOr<std::vector<std::vector<TokenId>>> ReadTexts(const Flags& f,
                                                            const engine::EngineCore& core) {
  std::vector<std::vector<TokenId>> texts;
  std::ifstream file(f.heldout.empty() ? f.text : f.heldout);
  if (!file) return absl::NotFoundError("cannot read the texts file");
  if (!f.heldout.empty()) {
    const nlohmann::json doc = nlohmann::json::parse(file, nullptr, false);
    if (!doc.is_object() || !doc.contains("verses") || !doc["verses"].is_array()) {
      return absl::InvalidArgumentError("--heldout: not {\"verses\": [{\"ids\": [...]}]}");
    }
    for (const nlohmann::json& v : doc["verses"]) {
      if (!v.contains("ids") || !v["ids"].is_array()) {
        return absl::InvalidArgumentError("--heldout: a verse without \"ids\"");
      }
      texts.push_back(v["ids"].get<std::vector<TokenId>>());
    }
  } else {
    if (core.tokenizer() == nullptr) return absl::FailedPreconditionError("no tokenizer");
    std::string line;
    while (std::getline(file, line)) {
      if (line.empty()) continue;
      texts.push_back(core.tokenizer()->Encode(line, tokenizer::AddSpecialTokens::kYes));
    }
  }
  if (f.max_texts > 0 && texts.size() > static_cast<size_t>(f.max_texts)) {
    texts.resize(static_cast<size_t>(f.max_texts));
  }
  const int max_len = core.info().max_model_len;
  std::erase_if(texts, [max_len](const std::vector<TokenId>& t) {
    return t.size() < 2 || static_cast<int>(t.size()) >= max_len;
  });
  if (texts.empty()) return absl::InvalidArgumentError("no text of 2 to max_model_len - 1 tokens");
  return texts;
}

int Run(const Flags& f) {
  const std::optional<model::DType> dtype = model::DTypeFromFlagValue(f.dtype);
  const std::optional<model::DType> reference = model::DTypeFromFlagValue(f.reference);
  if (!dtype.has_value() || !reference.has_value()) {
    std::cerr << (dtype.has_value() ? "--reference-dtype" : "--kv-cache-dtype")
              << ": not a KV dtype of this build (f32, bf16, f16, int8, fp8, fp8_e4m3, "
                 "fp8_e5m2)\n";
    return 2;
  }
  if (f.heldout.empty() == f.text.empty()) {
    std::cerr << "give exactly one of --heldout and --text\n";
    return 2;
  }
  TextScores scores[2];
  std::vector<std::vector<TokenId>> texts;
  const model::DType dtypes[2] = {*reference, *dtype};
  for (int k = 0; k < 2; ++k) {
    absl::StatusOr<std::unique_ptr<engine::EngineCore>> core = MakeCore(f, dtypes[k]);
    if (!core.ok()) {
      std::cerr << "engine (KV " << DTypeName(dtypes[k]) << "): " << core.status() << "\n";
      return 1;
    }
    if (k == 0) {
      absl::StatusOr<std::vector<std::vector<TokenId>>> read = ReadTexts(f, **core);
      if (!read.ok()) {
        std::cerr << read.status() << "\n";
        return 1;
      }
      texts = *std::move(read);
    }
    absl::StatusOr<TextScores> scored = ScoreTexts(**core, texts);
    if (!scored.ok()) {
      std::cerr << "scoring (KV " << DTypeName(dtypes[k]) << "): " << scored.status() << "\n";
      return 1;
    }
    scores[k] = *std::move(scored);
  }
  const absl::StatusOr<Comparison> c = Compare(scores[0], scores[1]);
  if (!c.ok()) {
    std::cerr << c.status() << "\n";
    return 1;
  }
  std::cout << absl::StrFormat(
      "| KV dtype | texts | tokens | perplexity | vs %s | mean KL (nats) | greedy agreement |\n"
      "|---|---:|---:|---:|---:|---:|---:|\n"
      "| %s (reference) | %d | %d | %.4f | 1 | 0 | 1 |\n"
      "| %s | %d | %d | %.4f | %+.3f%% | %.3g | %.4f |\n",
      DTypeName(*reference), DTypeName(*reference), texts.size(), c->num_tokens,
      c->reference_perplexity, DTypeName(*dtype), texts.size(), c->num_tokens, c->test_perplexity,
      100.0 * (c->test_perplexity / c->reference_perplexity - 1.0), c->mean_kl,
      c->greedy_agreement);
  return 0;
}

}  // namespace
}  // namespace pagoda::kv_accuracy

int main(int argc, char** argv) {
  pagoda::kv_accuracy::Flags flags;
  if (!pagoda::kv_accuracy::ParseFlags(argc, argv, flags) || flags.dtype.empty()) {
    std::cerr << pagoda::kv_accuracy::kUsage;
    return 2;
  }
  return pagoda::kv_accuracy::Run(flags);
}
