#include "sampling/logprobs.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace pagoda::sampling {
namespace {

// +inf counts as the largest finite float, as Sample() treats it.
float Mass(float logit) {
  if (std::isnan(logit)) return -std::numeric_limits<float>::infinity();
  if (logit == std::numeric_limits<float>::infinity()) return std::numeric_limits<float>::max();
  return logit;
}

bool Before(const std::pair<TokenId, float>& a, const std::pair<TokenId, float>& b) {
  return a.second > b.second || (a.second == b.second && a.first < b.first);
}

}  // namespace

LogSoftmaxSummary SummarizeLogits(absl::Span<const float> logits, int k) {
  LogSoftmaxSummary summary;
  float max = -std::numeric_limits<float>::infinity();
  for (const float l : logits) max = std::max(max, Mass(l));
  if (max == -std::numeric_limits<float>::infinity()) {
    summary.log_normalizer = -std::numeric_limits<double>::infinity();
  } else {
    double sum = 0;
    for (const float l : logits) sum += std::exp(static_cast<double>(Mass(l)) - max);
    summary.log_normalizer = max + std::log(sum);
  }
  if (k <= 0) return summary;
  // A min-heap of the k best so far (its front is the worst of them).
  std::vector<std::pair<TokenId, float>>& top = summary.top;
  top.reserve(k + 1);
  for (size_t i = 0; i < logits.size(); ++i) {
    const std::pair<TokenId, float> entry(static_cast<TokenId>(i), Mass(logits[i]));
    if (static_cast<int>(top.size()) < k) {
      top.push_back(entry);
      std::push_heap(top.begin(), top.end(), Before);
    } else if (Before(entry, top.front())) {
      std::pop_heap(top.begin(), top.end(), Before);
      top.back() = entry;
      std::push_heap(top.begin(), top.end(), Before);
    }
  }
  std::sort_heap(top.begin(), top.end(), Before);
  return summary;
}

namespace {

float Logprob(const LogSoftmaxSummary& summary, float logit) {
  if (std::isinf(summary.log_normalizer)) return -std::numeric_limits<float>::infinity();
  return static_cast<float>(static_cast<double>(Mass(logit)) - summary.log_normalizer);
}

}  // namespace

TokenLogprobs ScoreToken(absl::Span<const float> logits, TokenId target, int k) {
  const LogSoftmaxSummary summary = SummarizeLogits(logits, std::max(k, 0));
  TokenLogprobs out;
  out.token = target;
  out.logprob = Logprob(summary, logits[target]);
  const float mass = Mass(logits[target]);
  out.rank = 1 + static_cast<int>(std::count_if(logits.begin(), logits.end(),
                                                [mass](float l) { return Mass(l) > mass; }));
  for (const auto& [id, logit] : summary.top) out.top.emplace_back(id, Logprob(summary, logit));
  return out;
}

absl::StatusOr<TokenId> SampleWithLogprobs(absl::Span<float> logits, const SamplingParams& params,
                                           SamplerState& state,
                                           absl::Span<const TokenId> banned_tokens,
                                           TokenLogprobs* out) {
  const LogSoftmaxSummary summary = SummarizeLogits(logits, std::max(params.logprobs, 0));
  // Sample() uses the row as scratch: keep the raw logits (in a buffer each thread reuses, so a
  // step allocates nothing).
  thread_local std::vector<float> raw;
  raw.assign(logits.begin(), logits.end());
  absl::StatusOr<TokenId> token = Sample(logits, params, state, banned_tokens);
  if (!token.ok()) return token;
  const auto logprob = [&](float logit) { return Logprob(summary, logit); };
  out->token = *token;
  out->logprob = logprob(raw[*token]);
  out->top.clear();
  for (const auto& [id, logit] : summary.top) out->top.emplace_back(id, logprob(logit));
  return token;
}

}  // namespace pagoda::sampling
