#include "scheduler/step_time_budget.h"

#include <algorithm>
#include <cmath>

namespace pagoda::scheduler {

bool StepTimeBudget::Fit(double* base_seconds, double* seconds_per_token) const {
  const double variance = s1_ * sxx_ - sx_ * sx_;
  // Steps of one size only (or none) say nothing about the slope. The relative threshold
  // guards against rounding when every step had nearly the same prefill.
  if (s1_ <= 0 || variance <= 1e-9 * s1_ * sxx_) return false;
  // Prompt steps forgotten (after about a hundred decode-only steps): their weight is too small
  // for the slope to mean anything.
  if (s_prefill_ < 0.01) return false;
  const double slope = (s1_ * sxy_ - sx_ * sy_) / variance;
  const double intercept = (sy_ - slope * sx_) / s1_;
  if (!(slope > 0) || !(intercept > 0) || !std::isfinite(slope) || !std::isfinite(intercept)) {
    return false;
  }
  *base_seconds = intercept;
  *seconds_per_token = slope;
  return true;
}

int StepTimeBudget::PrefillCap(int num_decodes) const {
  if (!enabled() || num_decodes <= 0) return kUnlimited;
  return std::max(options_.min_chunk, cap_ > 0 ? cap_ : options_.initial_chunk);
}

void StepTimeBudget::Observe(int prefill_tokens, int decode_tokens, double seconds) {
  if (!enabled() || prefill_tokens + decode_tokens <= 0 || !(seconds >= 0) ||
      !std::isfinite(seconds)) {
    return;
  }
  const double f = options_.forgetting;
  const double x = prefill_tokens;
  s1_ = f * s1_ + 1;
  sx_ = f * sx_ + x;
  sy_ = f * sy_ + seconds;
  sxx_ = f * sxx_ + x * x;
  sxy_ = f * sxy_ + x * seconds;
  s_prefill_ = f * s_prefill_ + (prefill_tokens > 0 ? 1 : 0);
  double base = 0, per_token = 0;
  if (Fit(&base, &per_token)) {
    const double cap = (options_.ratio - 1) * base / per_token;
    // The factor absorbs rounding (a fit of exactly 20 tokens may come out as 19.999...).
    cap_ = static_cast<int>(std::clamp(cap * (1 + 1e-9), 1.0, static_cast<double>(kUnlimited)));
  }
}

}  // namespace pagoda::scheduler
