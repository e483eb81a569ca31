#include "scheduler/step_time_budget.h"

#include <algorithm>
#include <cmath>

namespace pagoda::scheduler {
namespace {

bool Positive(double x) { return x > 0 && std::isfinite(x); }

}  // namespace

bool StepTimeBudget::Fit(Model* model) const {
  // Prompt steps forgotten (after about a hundred decode-only steps): their weight is too small
  // for the slopes to mean anything.
  if (n_ <= 0 || prefill_weight_ < 0.01) return false;
  // All three terms, by Cramer's rule on the normal equations, when the steps separate them
  // (the relative threshold guards against rounding on nearly dependent columns).
  const double det =
      n_ * (pp_ * ss_ - ps_ * ps_) - p_ * (p_ * ss_ - ps_ * s_) + s_ * (p_ * ps_ - pp_ * s_);
  if (std::isfinite(det) && std::abs(det) > 1e-9 * n_ * pp_ * ss_) {
    const double base = (y_ * (pp_ * ss_ - ps_ * ps_) - p_ * (py_ * ss_ - ps_ * sy_) +
                         s_ * (py_ * ps_ - pp_ * sy_)) /
                        det;
    const double per_token =
        (n_ * (py_ * ss_ - sy_ * ps_) - y_ * (p_ * ss_ - ps_ * s_) + s_ * (p_ * sy_ - py_ * s_)) /
        det;
    const double per_span =
        (n_ * (pp_ * sy_ - ps_ * py_) - p_ * (p_ * sy_ - py_ * s_) + y_ * (p_ * ps_ - pp_ * s_)) /
        det;
    if (Positive(base) && Positive(per_token) && per_span >= 0 && std::isfinite(per_span)) {
      *model = {.base = base, .per_token = per_token, .per_span = per_span};
      return true;
    }
  }
  // Prompt tokens alone. Steps of one size only (or none) say nothing about the slope.
  const double variance = n_ * pp_ - p_ * p_;
  if (variance <= 1e-9 * n_ * pp_) return false;
  const double per_token = (n_ * py_ - p_ * y_) / variance;
  const double base = (y_ - per_token * p_) / n_;
  if (!Positive(per_token) || !Positive(base)) return false;
  *model = {.base = base, .per_token = per_token, .per_span = 0};
  return true;
}

bool StepTimeBudget::Fitted(Model* model) const {
  if (fitted_) *model = model_;
  return fitted_;
}

StepTimeBudget::Limits StepTimeBudget::StepLimits(int num_decodes) const {
  if (!enabled() || num_decodes <= 0) return {};
  if (!fitted_) return {.tokens = std::max(options_.min_chunk, options_.initial_chunk)};
  return {.seconds = (options_.ratio - 1) * model_.base};
}

double StepTimeBudget::Span(int n, int start) {
  const double tokens = n;
  return (tokens * start + tokens * (tokens + 1) / 2) / 1000;
}

double StepTimeBudget::ChunkSeconds(int n, int start) const {
  if (!fitted_) return 0;
  return model_.per_token * n + model_.per_span * Span(n, start);
}

int StepTimeBudget::TokensWithin(double seconds, int start) const {
  if (!fitted_ || !std::isfinite(seconds)) return kUnlimited;
  if (!(seconds > 0)) return 0;
  // per_span / 2000 * n^2 + (per_token + per_span * (start + 0.5) / 1000) * n <= seconds; the
  // factor absorbs rounding (a fit of exactly 20 tokens may come out as 19.999...).
  const double a = model_.per_span / 2000;
  const double b = model_.per_token + model_.per_span * (start + 0.5) / 1000;
  const double n = a > 0 ? (-b + std::sqrt(b * b + 4 * a * seconds)) / (2 * a) : seconds / b;
  return static_cast<int>(std::clamp(n * (1 + 1e-9), 0.0, static_cast<double>(kUnlimited)));
}

void StepTimeBudget::Observe(int prefill_tokens, double prefill_span, int decode_tokens,
                             double seconds) {
  if (!enabled() || prefill_tokens + decode_tokens <= 0 || !(seconds >= 0) ||
      !std::isfinite(seconds) || !(prefill_span >= 0) || !std::isfinite(prefill_span)) {
    return;
  }
  const double f = options_.forgetting;
  const double p = prefill_tokens, s = prefill_span;
  n_ = f * n_ + 1;
  p_ = f * p_ + p;
  s_ = f * s_ + s;
  y_ = f * y_ + seconds;
  pp_ = f * pp_ + p * p;
  ps_ = f * ps_ + p * s;
  ss_ = f * ss_ + s * s;
  py_ = f * py_ + p * seconds;
  sy_ = f * sy_ + s * seconds;
  prefill_weight_ = f * prefill_weight_ + (prefill_tokens > 0 ? 1 : 0);
  Model model;
  if (Fit(&model)) {
    model_ = model;
    fitted_ = true;
  }
}

}  // namespace pagoda::scheduler
