#pragma once

// How the scheduler sizes and keeps a request's KV blocks: the seam through which the ablations
// of bench/ (bench/kv_ablation_policies.h) swap paging and the KV cache for their baselines.
// Serving uses the default. Implementations must be stateless (const): thread-safe.

namespace pagoda::scheduler {

class AllocationPolicy {
 public:
  virtual ~AllocationPolicy() = default;

  // Tokens to reserve at a request's admission beyond the `num_new_tokens` its first step
  // computes after a prefix hit of `num_cached_tokens`. Default: none (paging: blocks are
  // allocated as tokens arrive).
  virtual int AdmissionLookaheadTokens(int max_model_len, int num_cached_tokens,
                                       int num_new_tokens) const {
    (void)max_model_len, (void)num_cached_tokens, (void)num_new_tokens;
    return 0;
  }

  // True: after each sampled token a request drops its blocks and recomputes its whole sequence
  // in its next step, as an engine without a KV cache must. Needs prefix caching off (it would
  // otherwise serve the dropped blocks back). Default: false (the KV cache).
  virtual bool DropsBlocksAfterEachToken() const { return false; }
};

}  // namespace pagoda::scheduler
