#pragma once

// The flat batch of one engine step and its one builder.

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "common/attention_window.h"
#include "common/ids.h"

namespace pagoda::model {

// The flat batch of one engine step (ARCHITECTURE.md, "The step" 3): all scheduled tokens of
// all requests concatenated, prefill chunks and decodes mixed. Views; valid for one call.
struct ForwardBatch {
  absl::Span<const TokenId> token_ids;     // [num_tokens]
  absl::Span<const int32_t> positions;     // [num_tokens], position of each token in its request
  absl::Span<const int64_t> slot_mapping;  // [num_tokens], slot = block * block_size + offset
  absl::Span<const int32_t> query_start;   // [num_requests + 1], query_start[0] == 0
  // Tokens in each request's cache once this step's tokens are written: its scheduled tokens
  // are the last ones.
  absl::Span<const int32_t> context_lens;  // [num_requests]
  absl::Span<const int32_t> block_tables;  // [num_requests, max_blocks_per_request]
  int32_t max_blocks_per_request = 0;
  // Flat token indices whose logits are wanted (a request's last token when it completes its
  // prompt or decodes), in output order.
  absl::Span<const int32_t> logits_indices;
};

// Checks what a model needs of `batch` before it reads or writes through it: array lengths,
// query_start ascending from 0 to the token count, each request's query tokens within its
// context, token ids in [0, vocab_size), slots and the block-table entries each context uses in
// the cache of `num_blocks` blocks of `block_size` (under `window`, the entries of blocks no
// query attends may be null: -1), logits indices in range. INVALID_ARGUMENT names what is wrong.
absl::Status ValidateForwardBatch(const ForwardBatch& batch, int vocab_size, int num_blocks,
                                  int block_size, const common::AttentionWindow& window = {});

// Which of a request's computed tokens want logits.
enum class LogitsRows {
  kNone,  // a prompt chunk that does not complete the prompt
  kLast,  // the request samples its next token
  kAll,   // every computed token (tests, scoring)
};

// Owns the arrays a ForwardBatch views and fills them one request at a time: the one way a
// batch is assembled (the engine's step, a runner's profiling pass, tests, benchmarks). Reset()
// keeps the memory, so a builder reused every step allocates only when a step outgrows all
// earlier ones. Not thread-safe.
class ForwardBatchBuilder {
 public:
  // Starts an empty batch for a cache of `block_size`-token blocks whose block-table rows are
  // `max_blocks_per_request` wide; a row's entries past its request's table are `pad_block`
  // (never read by a correct kernel: attention reads ceil(context / block_size) entries).
  void Reset(int block_size, int32_t max_blocks_per_request, int32_t pad_block = 0);

  // Appends the tokens [first, end) of a request whose sequence so far is `tokens` (at least
  // `end` long), computed through `block_table`, which covers `end` tokens in at most
  // max_blocks_per_request entries. The request's context is `end` tokens.
  void AddRequest(absl::Span<const TokenId> tokens, int first, int end,
                  absl::Span<const int32_t> block_table, LogitsRows logits);
  void AddRequest(absl::Span<const TokenId> tokens, int first, int end,
                  absl::Span<const BlockId> block_table, LogitsRows logits);
  // The same with logits rows for the positions in [rows_begin, rows_end) that are computed
  // (in [first, end)), in order, and for end - 1 when `last` (once, if already among them).
  void AddRequest(absl::Span<const TokenId> tokens, int first, int end,
                  absl::Span<const BlockId> block_table, int rows_begin, int rows_end, bool last);

  ForwardBatch batch() const;
  int num_tokens() const { return static_cast<int>(token_ids_.size()); }
  int num_requests() const { return static_cast<int>(context_lens_.size()); }

 private:
  template <typename Block>
  void Append(absl::Span<const TokenId> tokens, int first, int end,
              absl::Span<const Block> block_table, int rows_begin, int rows_end, bool last);

  int block_size_ = 0;
  int32_t max_blocks_ = 0;
  int32_t pad_block_ = 0;
  std::vector<TokenId> token_ids_;
  std::vector<int32_t> positions_;
  std::vector<int64_t> slot_mapping_;
  std::vector<int32_t> query_start_ = {0};
  std::vector<int32_t> context_lens_;
  std::vector<int32_t> block_tables_;
  std::vector<int32_t> logits_indices_;
};

}  // namespace pagoda::model
