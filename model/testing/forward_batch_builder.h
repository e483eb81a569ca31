#pragma once

// Test support: the flat batch of one step (model/forward_batch.h) from per-request sequences,
// built by the production ForwardBatchBuilder, so tests state only what each request computes.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/ids.h"
#include "model/forward_batch.h"

namespace pagoda::model::testing {

// One request's part of a step.
struct StepRequest {
  std::vector<TokenId> tokens;  // the request's whole sequence so far
  int first = 0;                // first token computed this step; the rest follow it
  std::vector<int32_t> blocks;  // its block table
  bool all_logits = false;      // logits for every computed token, else only for the last
};

// Owns the arrays a ForwardBatch views. Unused block-table entries point at a block that does
// not exist, so reading through them would fail.
class ForwardBatchBuilder {
 public:
  ForwardBatchBuilder(const std::vector<StepRequest>& requests, int block_size) {
    int32_t width = 0;
    for (const StepRequest& r : requests) {
      width = std::max<int32_t>(width, static_cast<int32_t>(r.blocks.size()));
    }
    builder_.Reset(block_size, width, /*pad_block=*/1 << 20);
    for (const StepRequest& r : requests) {
      builder_.AddRequest(r.tokens, r.first, static_cast<int>(r.tokens.size()),
                          absl::Span<const int32_t>(r.blocks),
                          r.all_logits ? LogitsRows::kAll : LogitsRows::kLast);
    }
  }

  ForwardBatch batch() const { return builder_.batch(); }

 private:
  model::ForwardBatchBuilder builder_;
};

}  // namespace pagoda::model::testing
