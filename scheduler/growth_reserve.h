#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace pagoda::scheduler {

// How much of the running requests' future growth an admission must leave room for: SGLang's
// adaptive "new token ratio", which cuts preemption by recompute when memory is the limit.
//
// Paging allocates a request's blocks as its tokens arrive, so an admission that only checks
// the new request's prompt fills the pool with prompts and then preempts (recomputes) running
// requests as their outputs grow: measured at 22-33% extra computed tokens on a full pool
// (docs/benchmarks.md). Reserving every request's whole max_tokens instead wastes the pool on
// outputs that stop early. The middle way: reserve `ratio` x each request's remaining output
// budget (max_tokens left), with `ratio` learned online. It starts at `initial_ratio`, decays
// linearly to `min_ratio` over `decay_steps` steps without a preemption (admissions grow bolder
// while the reservation holds) and, on a preemption, rises to an estimate of the share of
// their budgets that the running requests will still use (ObservePreemption), never below
// `initial_ratio`.
//
// Not thread-safe: confined to the engine thread, like the scheduler that owns it.
class GrowthReserve {
 public:
  struct Options {
    double initial_ratio = 0;  // in (0, 1] turns the reserve on; 0 = off
    double min_ratio = 0.1;    // in [0, initial_ratio]
    int decay_steps = 600;     // > 0
  };

  // InvalidArgument unless initial_ratio is in [0, 1], min_ratio in [0, initial_ratio] when on,
  // and decay_steps positive.
  static absl::Status Validate(const Options& options);

  explicit GrowthReserve(const Options& options)
      : options_(options), ratio_(options.initial_ratio) {}

  bool enabled() const { return options_.initial_ratio > 0; }
  double ratio() const { return ratio_; }

  // Tokens to keep free for a request that may still generate `remaining` tokens: 0 when off.
  int64_t ReserveTokens(int64_t remaining) const;

  // A step planned without a preemption: the ratio decays by one step.
  void ObserveStep();
  // A step that preempted. `generated` and `budget` sum, over the requests still running,
  // their output tokens so far and their whole output budgets (max_tokens): the ratio becomes
  // at least (generated + kPreemptionSlack tokens per request) / budget, the share of their
  // budgets the requests have used so far taken as the share they will use of what is left,
  // and at least initial_ratio; at most 1.
  void ObservePreemption(int64_t generated, int64_t budget, int num_running);

  // Tokens per running request added to the estimate after a preemption (the steps before the
  // next preemption: SGLang's retract_decode_steps).
  static constexpr int kPreemptionSlack = 20;

 private:
  Options options_;
  double ratio_;
};

}  // namespace pagoda::scheduler
