#pragma once

// Test support: builds the flat batch of one step (model/llama_model.h) from per-request
// sequences, the way the engine will, so tests state only what each request computes.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/ids.h"
#include "model/llama_model.h"

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
    for (const StepRequest& r : requests) {
      max_blocks_ = std::max<int32_t>(max_blocks_, static_cast<int32_t>(r.blocks.size()));
    }
    for (const StepRequest& r : requests) {
      const int n = static_cast<int>(r.tokens.size());
      for (int i = r.first; i < n; ++i) {
        if (r.all_logits || i + 1 == n)
          logits_indices_.push_back(static_cast<int32_t>(ids_.size()));
        ids_.push_back(r.tokens[i]);
        positions_.push_back(i);
        slots_.push_back(static_cast<int64_t>(r.blocks[i / block_size]) * block_size +
                         i % block_size);
      }
      query_start_.push_back(static_cast<int32_t>(ids_.size()));
      context_lens_.push_back(n);
      std::vector<int32_t> row = r.blocks;
      row.resize(max_blocks_, 1 << 20);
      tables_.insert(tables_.end(), row.begin(), row.end());
    }
  }

  ForwardBatch batch() const {
    return {.token_ids = ids_,
            .positions = positions_,
            .slot_mapping = slots_,
            .query_start = query_start_,
            .context_lens = context_lens_,
            .block_tables = tables_,
            .max_blocks_per_request = max_blocks_,
            .logits_indices = logits_indices_};
  }

 private:
  std::vector<TokenId> ids_;
  std::vector<int32_t> positions_;
  std::vector<int64_t> slots_;
  std::vector<int32_t> query_start_ = {0};
  std::vector<int32_t> context_lens_;
  std::vector<int32_t> tables_;
  std::vector<int32_t> logits_indices_;
  int32_t max_blocks_ = 0;
};

}  // namespace pagoda::model::testing
