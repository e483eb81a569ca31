#pragma once

#include <limits>

namespace pagoda::scheduler {

// Sizes the prefill part of an engine step by time rather than by token count, so that running
// decodes are not stalled behind long prompt chunks (Sarathi-Serve's stall-free batching, with
// the budget learned online instead of profiled).
//
// A step's model time is modelled as T = a + c * P: `a` the cost of the step without prefill
// (reading the weights once, the running decodes) and `c` the cost of one prefill token. Both are
// fitted by least squares over recent steps (exponential forgetting, so they follow the load and
// the context lengths). A step that carries decodes may then add at most
//     P_max = (ratio - 1) * a / c
// prefill tokens: its time stays within `ratio` times that of a decode-only step. A step with
// no decodes has nothing to stall and takes the whole token budget. Until the fit has seen
// steps with and without prefill, the cap is `initial_chunk`; it never falls below `min_chunk`,
// so that prompts always complete. When the fit degenerates later (only decode-only steps in
// memory), the last good cap stays.
//
// Not thread-safe: confined to the engine thread, like the scheduler that owns it.
class StepTimeBudget {
 public:
  static constexpr int kUnlimited = std::numeric_limits<int>::max();

  struct Options {
    double ratio = 0;  // > 1 turns the cap on; 0 (or <= 1) = off
    int min_chunk = 16;
    int initial_chunk = 64;
    double forgetting = 0.95;  // weight of the past per observed step, in (0, 1)
  };

  explicit StepTimeBudget(const Options& options) : options_(options) {}

  bool enabled() const { return options_.ratio > 1; }

  // Prefill tokens that a step with `num_decodes` decoding requests may take: kUnlimited when
  // off or when no request decodes.
  int PrefillCap(int num_decodes) const;

  // One step's composition and model time (seconds). Steps of no tokens are ignored.
  void Observe(int prefill_tokens, int decode_tokens, double seconds);

  // The fit: seconds of a step without prefill, and per prefill token. False until both kinds
  // of step have been seen (or while the fit is degenerate).
  bool Fit(double* base_seconds, double* seconds_per_token) const;

 private:
  Options options_;
  // The cap from the last good fit (kept while a long run of decode-only steps leaves the fit
  // degenerate); 0 before the first.
  int cap_ = 0;
  // Exponentially weighted sums over observed steps of x = prefill tokens, y = seconds.
  double s1_ = 0, sx_ = 0, sy_ = 0, sxx_ = 0, sxy_ = 0;
  double s_prefill_ = 0;  // the weight of the steps that carried prefill
};

}  // namespace pagoda::scheduler
