#pragma once

#include <limits>

namespace pagoda::scheduler {

// Sizes the prefill part of an engine step by time rather than by token count, so that running
// decodes are not stalled behind long prompt chunks (Sarathi-Serve's stall-free batching, with
// the budget learned online instead of profiled).
//
// A step's model time is modelled as T = a + c * P + d * S: `a` the cost of the step without
// prefill (reading the weights once, the running decodes), `c` the cost of one prompt token
// (its share of the weight products) and `d` that of its attention, which grows with the span
// of context it attends: S sums, over the step's prompt tokens, their position + 1 (in
// thousands). The three are fitted by least squares over recent steps (exponential forgetting,
// so they follow the load); when the steps do not separate c from d (chunks all at one place
// in their prompts), d is taken as 0. A step that carries decodes may then add prompt chunks
// worth (ratio - 1) * a seconds: its time stays within `ratio` decode-only steps, whether its
// chunks are a prompt's first tokens or its last. A step with no decodes has nothing to stall
// and takes the whole token budget. Until the fit has seen steps with and without prefill, a
// step with decodes takes `initial_chunk` prompt tokens; its first chunk never has fewer than
// `min_chunk` (so that prompts always complete). When the fit degenerates later (only
// decode-only steps in memory), the last good fit stays.
//
// Not thread-safe: confined to the engine thread, like the scheduler that owns it.
class StepTimeBudget {
 public:
  static constexpr int kUnlimited = std::numeric_limits<int>::max();
  static constexpr double kNoLimit = std::numeric_limits<double>::infinity();

  struct Options {
    double ratio = 0;  // > 1 turns the cap on; 0 (or <= 1) = off
    int min_chunk = 16;
    int initial_chunk = 64;
    double forgetting = 0.95;  // weight of the past per observed step, in (0, 1)
  };

  // What a step with decodes may add: at most `tokens` prompt tokens and `seconds` of them.
  struct Limits {
    int tokens = kUnlimited;
    double seconds = kNoLimit;
  };

  // The fitted model: T = base + per_token * P + per_span * S (seconds; S in thousands).
  struct Model {
    double base = 0;
    double per_token = 0;
    double per_span = 0;
  };

  explicit StepTimeBudget(const Options& options) : options_(options) {}

  bool enabled() const { return options_.ratio > 1; }
  int min_chunk() const { return options_.min_chunk; }

  // The limits of a step with `num_decodes` decoding requests: none when off or when no
  // request decodes; `initial_chunk` tokens before the first fit; then (ratio - 1) * base.
  Limits StepLimits(int num_decodes) const;

  // The span (thousands of token positions) of a chunk of `n` prompt tokens from `start`.
  static double Span(int n, int start);
  // The fitted prompt cost of that chunk, in seconds (0 before the first fit).
  double ChunkSeconds(int n, int start) const;
  // The most prompt tokens from `start` whose cost fits in `seconds` (kUnlimited before the
  // first fit or for an unlimited budget).
  int TokensWithin(double seconds, int start) const;

  // One step: its prompt tokens and their span (Span summed over its chunks), its decodes, and
  // its model time (seconds). Steps of no tokens are ignored.
  void Observe(int prefill_tokens, double prefill_span, int decode_tokens, double seconds);

  // The current model; false until one has been fitted.
  bool Fitted(Model* model) const;

 private:
  // Least squares over the remembered steps; false when they do not determine a model with
  // positive terms.
  bool Fit(Model* model) const;

  Options options_;
  bool fitted_ = false;
  Model model_;
  // Exponentially weighted sums over observed steps of 1, p = prompt tokens, s = span,
  // y = seconds, and their products.
  double n_ = 0, p_ = 0, s_ = 0, y_ = 0, pp_ = 0, ps_ = 0, ss_ = 0, py_ = 0, sy_ = 0;
  double prefill_weight_ = 0;  // the weight of the steps that carried prefill
};

}  // namespace pagoda::scheduler
