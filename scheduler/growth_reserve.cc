#include "scheduler/growth_reserve.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace pagoda::scheduler {

absl::Status GrowthReserve::Validate(const Options& g) {
  if (!(g.initial_ratio >= 0 && g.initial_ratio <= 1) ||
      (g.initial_ratio > 0 && !(g.min_ratio >= 0 && g.min_ratio <= g.initial_ratio)) ||
      g.decay_steps <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("growth_reserve: initial_ratio must be in [0, 1] (0 = off), min_ratio in [0, "
                     "initial_ratio] when on and decay_steps positive, got ",
                     g.initial_ratio, ", ", g.min_ratio, ", ", g.decay_steps));
  }
  return absl::OkStatus();
}

int64_t GrowthReserve::ReserveTokens(int64_t remaining) const {
  if (!enabled() || remaining <= 0) return 0;
  return static_cast<int64_t>(std::ceil(ratio_ * static_cast<double>(remaining)));
}

void GrowthReserve::ObserveStep() {
  if (!enabled()) return;
  const double step = (options_.initial_ratio - options_.min_ratio) / options_.decay_steps;
  ratio_ = std::max(options_.min_ratio, ratio_ - step);
}

void GrowthReserve::ObservePreemption(int64_t generated, int64_t budget, int num_running) {
  if (!enabled()) return;
  double estimate = options_.initial_ratio;
  if (budget > 0) {
    estimate = std::max(estimate,
                        static_cast<double>(generated + int64_t{kPreemptionSlack} * num_running) /
                            static_cast<double>(budget));
  }
  ratio_ = std::min(1.0, std::max(ratio_, estimate));
}

}  // namespace pagoda::scheduler
