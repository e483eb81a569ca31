#pragma once

// The baselines of the KV-cache ablations (bench/kv_ablations.cc), as scheduler allocation
// policies (scheduler/allocation_policy.h): everything else in the engine stays identical, so
// the comparison isolates what paging and the KV cache buy. Stateless: thread-safe.

#include <algorithm>

#include "scheduler/allocation_policy.h"

namespace pagoda::bench {

// A contiguous KV allocator: every request reserves max_model_len tokens at admission.
class ContiguousReservation final : public scheduler::AllocationPolicy {
 public:
  int AdmissionLookaheadTokens(int max_model_len, int num_cached_tokens,
                               int num_new_tokens) const override {
    return std::max(0, max_model_len - num_cached_tokens - num_new_tokens);
  }
};

// No KV cache: after each token a request drops its blocks and recomputes its whole sequence.
class NoKvCache final : public scheduler::AllocationPolicy {
 public:
  bool DropsBlocksAfterEachToken() const override { return true; }
};

}  // namespace pagoda::bench
