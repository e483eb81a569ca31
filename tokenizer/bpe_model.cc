#include "tokenizer/bpe_model.h"

#include <limits>
#include <queue>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "tokenizer/byte_level.h"
#include "common/utf8.h"

namespace pagoda::tokenizer {
namespace {

// Ids beyond this are rejected so that a corrupt file cannot make us allocate gigabytes; real
// vocabularies are dense and below a million entries.
constexpr int64_t kMaxTokenId = 16 * 1024 * 1024;
constexpr int64_t kMaxUnusedIds = 1 << 16;

constexpr std::string_view kMetaspace = "\xE2\x96\x81";  // U+2581

// True when `piece` is "▁*[^▁]*".
bool IsMetaspacePrefixed(std::string_view piece) {
  while (piece.substr(0, kMetaspace.size()) == kMetaspace) piece.remove_prefix(kMetaspace.size());
  return piece.find(kMetaspace) == std::string_view::npos;
}

uint64_t PairKey(TokenId left, TokenId right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

absl::Status CheckUnsupported(const Json& config) {
  const Json* dropout = FindField(config, "dropout");
  if (dropout != nullptr && !dropout->is_null() &&
      !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    return absl::UnimplementedError("unsupported BPE option \"dropout\"");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    PAGODA_ASSIGN_OR_RETURN(const std::optional<std::string> value, GetOptionalString(config, key));
    if (value.has_value() && !value->empty()) {
      return absl::UnimplementedError(absl::StrCat("unsupported BPE option \"", key, "\""));
    }
  }
  return absl::OkStatus();
}

// A merge as two pieces: either "a b" or ["a", "b"].
absl::StatusOr<std::pair<std::string, std::string>> ParseMerge(const Json& merge) {
  if (merge.is_string()) {
    const std::string& line = merge.get_ref<const std::string&>();
    const size_t space = line.find(' ');
    if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("malformed BPE merge \"", line, "\""));
    }
    return std::make_pair(line.substr(0, space), line.substr(space + 1));
  }
  if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
    return std::make_pair(merge[0].get<std::string>(), merge[1].get<std::string>());
  }
  return absl::InvalidArgumentError("a BPE merge must be \"a b\" or [\"a\", \"b\"]");
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(const Json& config,
                                                           const Options& options) {
  PAGODA_ASSIGN_OR_RETURN(const std::string type, GetType(config, "model"));
  if (type != "BPE") {
    return absl::UnimplementedError(absl::StrCat("unsupported model type \"", type, "\""));
  }
  PAGODA_RETURN_IF_ERROR(CheckUnsupported(config));
  auto model = std::unique_ptr<BpeModel>(new BpeModel());
  model->options_ = options;
  const Json* vocab = FindField(config, "vocab");
  if (vocab == nullptr || !vocab->is_object()) {
    return absl::InvalidArgumentError("BPE model needs a \"vocab\" object");
  }
  PAGODA_RETURN_IF_ERROR(model->LoadVocab(*vocab));
  const Json* merges = FindField(config, "merges");
  if (merges == nullptr || !merges->is_array()) {
    return absl::InvalidArgumentError("BPE model needs a \"merges\" array");
  }
  PAGODA_RETURN_IF_ERROR(model->LoadMerges(*merges));

  PAGODA_ASSIGN_OR_RETURN(model->fuse_unk_, GetBoolOr(config, "fuse_unk", false));
  PAGODA_ASSIGN_OR_RETURN(model->byte_fallback_, GetBoolOr(config, "byte_fallback", false));
  PAGODA_ASSIGN_OR_RETURN(model->ignore_merges_, GetBoolOr(config, "ignore_merges", false));
  PAGODA_ASSIGN_OR_RETURN(const std::optional<std::string> unk,
                          GetOptionalString(config, "unk_token"));
  if (unk.has_value()) {
    model->unk_id_ = model->PieceToId(*unk);
    if (!model->unk_id_.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat("unk_token \"", *unk, "\" is not in vocab"));
    }
  }
  model->byte_fallback_ids_.resize(256);
  for (int b = 0; b < 256; ++b) {
    model->byte_fallback_ids_[b] = model->PieceToId(absl::StrFormat("<0x%02X>", b));
  }
  // ignore_merges looks words up whole, so cutting them would change the ids.
  if (options.word_encoding == WordEncoding::kUtf8Chars && !model->ignore_merges_ &&
      model->Lookup(kMetaspace)) {
    model->splits_at_metaspace_ = true;
    for (const auto& [piece, id] : model->model_vocab_) {
      if (!IsMetaspacePrefixed(piece)) {
        model->splits_at_metaspace_ = false;
        break;
      }
    }
  }
  model->byte_ids_.resize(256);
  if (options.word_encoding == WordEncoding::kByteLevel) {
    for (int b = 0; b < 256; ++b) model->byte_ids_[b] = model->Lookup(std::string(1, char(b)));
  }
  return model;
}

absl::Status BpeModel::LoadVocab(const Json& vocab) {
  TokenId max_id = -1;
  for (const auto& [piece, id_json] : vocab.items()) {
    if (!id_json.is_number_integer() || id_json.get<int64_t>() < 0 ||
        id_json.get<int64_t>() > kMaxTokenId) {
      return absl::InvalidArgumentError(absl::StrCat("vocab entry \"", piece, "\" has a bad id"));
    }
    max_id = std::max(max_id, static_cast<TokenId>(id_json.get<int64_t>()));
  }
  if (max_id >= static_cast<int64_t>(vocab.size()) + kMaxUnusedIds) {
    return absl::InvalidArgumentError("vocab ids are too sparse (largest id far above the size)");
  }
  pieces_.resize(max_id + 1);
  has_piece_.resize(max_id + 1, false);
  json_vocab_.reserve(vocab.size());
  model_vocab_.reserve(vocab.size());
  for (const auto& [piece, id_json] : vocab.items()) {
    const auto id = static_cast<TokenId>(id_json.get<int64_t>());
    pieces_[id] = piece;
    has_piece_[id] = true;
    json_vocab_.insert_or_assign(piece, id);
    if (options_.word_encoding == WordEncoding::kUtf8Chars) {
      model_vocab_.insert_or_assign(piece, id);
    } else if (std::optional<std::string> bytes = ByteLevelToBytes(piece)) {
      // A piece outside the byte-level alphabet can never match a byte-level word; it stays
      // reachable through PieceToId() and decoding only.
      model_vocab_.insert_or_assign(*std::move(bytes), id);
    }
  }
  return absl::OkStatus();
}

absl::Status BpeModel::LoadMerges(const Json& merges) {
  merges_.reserve(merges.size());
  uint32_t rank = 0;
  for (const Json& merge : merges) {
    PAGODA_ASSIGN_OR_RETURN(auto pair, ParseMerge(merge));
    const std::optional<TokenId> left = PieceToId(pair.first);
    const std::optional<TokenId> right = PieceToId(pair.second);
    const std::optional<TokenId> merged = PieceToId(pair.first + pair.second);
    if (!left || !right || !merged) {
      return absl::InvalidArgumentError(absl::StrCat("BPE merge \"", pair.first, " ", pair.second,
                                                     "\" uses a piece not in vocab"));
    }
    // A repeated pair keeps its last rank, as in Hugging Face (a map built from the list).
    merges_.insert_or_assign(PairKey(*left, *right), Merge{rank++, *merged});
  }
  return absl::OkStatus();
}

std::optional<TokenId> BpeModel::Lookup(std::string_view model_spelling) const {
  const auto it =
      model_vocab_.find(absl::string_view(model_spelling.data(), model_spelling.size()));
  if (it == model_vocab_.end()) return std::nullopt;
  return it->second;
}

std::optional<TokenId> BpeModel::PieceToId(std::string_view piece) const {
  const auto it = json_vocab_.find(absl::string_view(piece.data(), piece.size()));
  if (it == json_vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToPiece(TokenId id) const {
  if (id < 0 || id >= id_limit() || !has_piece_[id]) return nullptr;
  return &pieces_[id];
}

const BpeModel::Merge* BpeModel::FindMerge(TokenId left, TokenId right) const {
  const auto it = merges_.find(PairKey(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

void BpeModel::InitialSymbols(std::string_view word, std::vector<TokenId>& symbols) const {
  // Mirrors Hugging Face's BPE::merge_word, including its order of unknown-token handling.
  std::optional<std::pair<TokenId, size_t>> unk;  // pending (unk id, bytes covered)
  const bool byte_level = options_.word_encoding == WordEncoding::kByteLevel;
  size_t pos = 0;
  while (pos < word.size()) {
    size_t len = 1;
    std::optional<TokenId> id;
    if (byte_level) {
      id = byte_ids_[static_cast<uint8_t>(word[pos])];
    } else {
      len = std::max<size_t>(1, common::ValidSequenceLength(word, pos));
      id = Lookup(word.substr(pos, len));
    }
    if (id.has_value()) {
      if (unk.has_value()) symbols.push_back(unk->first);
      unk.reset();
      symbols.push_back(*id);
      pos += len;
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (size_t i = pos; i < pos + len; ++i)
        all &= byte_fallback_ids_[uint8_t(word[i])].has_value();
      if (all) {
        for (size_t i = pos; i < pos + len; ++i)
          symbols.push_back(*byte_fallback_ids_[uint8_t(word[i])]);
        pos += len;
        continue;
      }
    }
    if (unk_id_.has_value()) {
      if (unk.has_value() && fuse_unk_) {
        unk->second += len;
      } else {
        if (unk.has_value()) symbols.push_back(unk->first);
        unk = std::make_pair(*unk_id_, len);
      }
    }
    pos += len;
  }
  if (unk.has_value()) symbols.push_back(unk->first);
}

void BpeModel::MergeLinear(std::vector<TokenId>& symbols) const {
  constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();
  // ranks[i] is the rank of the pair (symbols[i], symbols[i + 1]); only the two pairs touching
  // a merge change, so each step costs one scan of small integers and two lookups.
  std::vector<uint32_t> ranks(symbols.size(), kNone);
  std::vector<TokenId> merged_ids(symbols.size(), 0);
  auto update = [&](size_t i) {
    const Merge* m = FindMerge(symbols[i], symbols[i + 1]);
    ranks[i] = m == nullptr ? kNone : m->rank;
    merged_ids[i] = m == nullptr ? 0 : m->new_id;
  };
  for (size_t i = 0; i + 1 < symbols.size(); ++i) update(i);
  while (symbols.size() > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < symbols.size(); ++i) {
      if (ranks[i] < ranks[best]) best = i;
    }
    if (ranks[best] == kNone) break;
    symbols[best] = merged_ids[best];
    symbols.erase(symbols.begin() + best + 1);
    ranks.erase(ranks.begin() + best + 1);
    merged_ids.erase(merged_ids.begin() + best + 1);
    if (best + 1 < symbols.size()) {
      update(best);
    } else {
      ranks[best] = kNone;
    }
    if (best > 0) update(best - 1);
  }
}

void BpeModel::MergeWithHeap(std::vector<TokenId>& symbols) const {
  // Hugging Face's Word::merge_all: a min-heap on (rank, position) over a linked list of
  // symbols; entries made stale by an earlier merge are skipped when popped.
  struct Entry {
    uint32_t rank;
    size_t pos;
    TokenId new_id;
    bool operator>(const Entry& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  const size_t n = symbols.size();
  constexpr size_t kEnd = std::numeric_limits<size_t>::max();
  std::vector<size_t> prev(n), next(n);
  std::vector<bool> alive(n, true);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = i == 0 ? kEnd : i - 1;
    next[i] = i + 1 < n ? i + 1 : kEnd;
  }
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> heap;
  auto push = [&](size_t pos) {
    if (pos == kEnd || next[pos] == kEnd) return;
    if (const Merge* m = FindMerge(symbols[pos], symbols[next[pos]])) {
      heap.push({m->rank, pos, m->new_id});
    }
  };
  for (size_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const Entry top = heap.top();
    heap.pop();
    if (!alive[top.pos] || next[top.pos] == kEnd) continue;
    const size_t right = next[top.pos];
    const Merge* current = FindMerge(symbols[top.pos], symbols[right]);
    if (current == nullptr || current->new_id != top.new_id) continue;
    symbols[top.pos] = top.new_id;
    alive[right] = false;
    next[top.pos] = next[right];
    if (next[right] != kEnd) prev[next[right]] = top.pos;
    push(prev[top.pos]);
    push(top.pos);
  }
  size_t out = 0;
  for (size_t i = 0; i < n; ++i) {
    if (alive[i]) symbols[out++] = symbols[i];
  }
  symbols.resize(out);
}

void BpeModel::EncodeWord(std::string_view word, std::vector<TokenId>& ids) const {
  if (ignore_merges_) {
    if (std::optional<TokenId> whole = Lookup(word)) {
      ids.push_back(*whole);
      return;
    }
  }
  std::vector<TokenId> symbols;
  symbols.reserve(word.size());
  InitialSymbols(word, symbols);
  if (symbols.size() > options_.heap_merge_threshold) {
    MergeWithHeap(symbols);
  } else {
    MergeLinear(symbols);
  }
  ids.insert(ids.end(), symbols.begin(), symbols.end());
}

}  // namespace pagoda::tokenizer
