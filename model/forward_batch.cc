#include "model/forward_batch.h"

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace pagoda::model {
namespace {

int32_t BlockValue(int32_t block) { return block; }
int32_t BlockValue(BlockId block) { return block.value(); }

}  // namespace

absl::Status ValidateForwardBatch(const ForwardBatch& b, int vocab_size, int num_blocks,
                                  int block_size, const common::AttentionWindow& window) {
  const size_t n = b.token_ids.size();
  if (b.positions.size() != n || b.slot_mapping.size() != n) {
    return absl::InvalidArgumentError("positions and slot_mapping must have one entry per token");
  }
  if (b.query_start.empty() || b.query_start.size() != b.context_lens.size() + 1 ||
      b.query_start.front() != 0 || static_cast<size_t>(b.query_start.back()) != n) {
    return absl::InvalidArgumentError("query_start must span the tokens of every request");
  }
  if (b.block_tables.size() != b.context_lens.size() * b.max_blocks_per_request) {
    return absl::InvalidArgumentError("block_tables must be [num_requests, max_blocks]");
  }
  for (size_t r = 0; r < b.context_lens.size(); ++r) {
    const int64_t queries = int64_t{b.query_start[r + 1]} - b.query_start[r];
    const int64_t context = b.context_lens[r];
    if (queries < 0 || queries > context ||
        context > int64_t{b.max_blocks_per_request} * block_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("request ", r, ": ", queries, " query tokens, context ", context));
    }
    const int32_t* row = b.block_tables.data() + r * b.max_blocks_per_request;
    const int32_t first_query = static_cast<int32_t>(context - queries);
    for (int64_t i = 0; i < (context + block_size - 1) / block_size; ++i) {
      // A block no query attends (before the window, past the sinks) may be freed: null.
      const bool dead = window.IsDead(static_cast<int32_t>(i * block_size), first_query) &&
                        window.IsDead(static_cast<int32_t>((i + 1) * block_size - 1), first_query);
      if (dead) continue;
      if (row[i] < 0 || row[i] >= num_blocks) {
        return absl::InvalidArgumentError(absl::StrCat("request ", r, ": block ", row[i]));
      }
    }
  }
  for (const TokenId t : b.token_ids) {
    if (t < 0 || t >= vocab_size) return absl::InvalidArgumentError(absl::StrCat("token id ", t));
  }
  const int64_t num_slots = int64_t{num_blocks} * block_size;
  for (const int64_t s : b.slot_mapping) {
    if (s < 0 || s >= num_slots) return absl::InvalidArgumentError(absl::StrCat("slot ", s));
  }
  for (const int32_t i : b.logits_indices) {
    if (i < 0 || static_cast<size_t>(i) >= n) {
      return absl::InvalidArgumentError(absl::StrCat("logits index ", i));
    }
  }
  return absl::OkStatus();
}

void ForwardBatchBuilder::Reset(int block_size, int32_t max_blocks_per_request, int32_t pad_block) {
  PAGODA_CHECK(block_size > 0 && max_blocks_per_request >= 0);
  block_size_ = block_size;
  max_blocks_ = max_blocks_per_request;
  pad_block_ = pad_block;
  token_ids_.clear();
  positions_.clear();
  slot_mapping_.clear();
  query_start_.assign(1, 0);
  context_lens_.clear();
  block_tables_.clear();
  logits_indices_.clear();
}

template <typename Block>
void ForwardBatchBuilder::Append(absl::Span<const TokenId> tokens, int first, int end,
                                 absl::Span<const Block> block_table, int rows_begin, int rows_end,
                                 bool last) {
  PAGODA_CHECK(block_size_ > 0) << "Reset() first";
  PAGODA_CHECK(0 <= first && first <= end && static_cast<size_t>(end) <= tokens.size());
  PAGODA_CHECK_LE(block_table.size(), static_cast<size_t>(max_blocks_));
  PAGODA_CHECK_LE(int64_t{end}, static_cast<int64_t>(block_table.size()) * block_size_);
  for (int p = first; p < end; ++p) {
    if ((rows_begin <= p && p < rows_end) || (last && p + 1 == end)) {
      logits_indices_.push_back(static_cast<int32_t>(token_ids_.size()));
    }
    token_ids_.push_back(tokens[p]);
    positions_.push_back(p);
    slot_mapping_.push_back(int64_t{BlockValue(block_table[p / block_size_])} * block_size_ +
                            p % block_size_);
  }
  query_start_.push_back(static_cast<int32_t>(token_ids_.size()));
  context_lens_.push_back(end);
  for (const Block block : block_table) block_tables_.push_back(BlockValue(block));
  block_tables_.resize(block_tables_.size() + max_blocks_ - block_table.size(), pad_block_);
}

void ForwardBatchBuilder::AddRequest(absl::Span<const TokenId> tokens, int first, int end,
                                     absl::Span<const int32_t> block_table, LogitsRows logits) {
  Append(tokens, first, end, block_table, logits == LogitsRows::kAll ? first : 0,
         logits == LogitsRows::kAll ? end : 0, logits == LogitsRows::kLast);
}

void ForwardBatchBuilder::AddRequest(absl::Span<const TokenId> tokens, int first, int end,
                                     absl::Span<const BlockId> block_table, LogitsRows logits) {
  Append(tokens, first, end, block_table, logits == LogitsRows::kAll ? first : 0,
         logits == LogitsRows::kAll ? end : 0, logits == LogitsRows::kLast);
}

void ForwardBatchBuilder::AddRequest(absl::Span<const TokenId> tokens, int first, int end,
                                     absl::Span<const BlockId> block_table, int rows_begin,
                                     int rows_end, bool last) {
  Append(tokens, first, end, block_table, rows_begin, rows_end, last);
}

ForwardBatch ForwardBatchBuilder::batch() const {
  return {.token_ids = token_ids_,
          .positions = positions_,
          .slot_mapping = slot_mapping_,
          .query_start = query_start_,
          .context_lens = context_lens_,
          .block_tables = block_tables_,
          .max_blocks_per_request = max_blocks_,
          .logits_indices = logits_indices_};
}

}  // namespace pagoda::model
