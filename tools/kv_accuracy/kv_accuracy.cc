#include "tools/kv_accuracy/kv_accuracy.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/offline.h"

namespace pagoda::kv_accuracy {
namespace {

// KL(p || q) over the tokens both lists hold, plus the rest of the mass as one outcome.
double TruncatedKl(const sampling::TokenLogprobs& p, const sampling::TokenLogprobs& q) {
  absl::flat_hash_map<TokenId, float> q_top;
  for (const auto& [id, logprob] : q.top) q_top[id] = logprob;
  double kl = 0;
  double p_shared = 0;
  double q_shared = 0;
  for (const auto& [id, logprob] : p.top) {
    const auto it = q_top.find(id);
    if (it == q_top.end()) continue;
    const double pp = std::exp(static_cast<double>(logprob));
    p_shared += pp;
    q_shared += std::exp(static_cast<double>(it->second));
    if (pp > 0) kl += pp * (static_cast<double>(logprob) - it->second);
  }
  const double p_rest = std::max(0.0, 1.0 - p_shared);
  const double q_rest = std::max(1e-30, 1.0 - q_shared);
  if (p_rest > 1e-12) kl += p_rest * std::log(p_rest / q_rest);
  return std::max(0.0, kl);
}

}  // namespace

absl::StatusOr<TextScores> ScoreTexts(engine::EngineCore& core,
                                      const std::vector<std::vector<TokenId>>& texts, int batch) {
  TextScores scores;
  scores.reserve(texts.size());
  for (size_t begin = 0; begin < texts.size(); begin += static_cast<size_t>(std::max(1, batch))) {
    const size_t end = std::min(texts.size(), begin + static_cast<size_t>(std::max(1, batch)));
    std::vector<engine::EngineRequest> requests;
    for (size_t i = begin; i < end; ++i) {
      if (texts[i].size() < 2) {
        return absl::InvalidArgumentError(absl::StrCat("text ", i, ": fewer than 2 tokens"));
      }
      engine::EngineRequest r;
      r.prompt_tokens = texts[i];
      r.sampling.temperature = 0.0f;
      r.sampling.prompt_logprobs = kTopK;
      r.stopping.max_tokens = 1;
      r.stopping.ignore_eos = true;
      r.detokenize = false;
      requests.push_back(std::move(r));
    }
    absl::StatusOr<std::vector<engine::RequestCompletion>> done =
        engine::GenerateOffline(core, std::move(requests));
    if (!done.ok()) {
      return absl::Status(done.status().code(), absl::StrCat("texts ", begin, "..", end - 1, ": ",
                                                             done.status().message()));
    }
    for (size_t i = 0; i < done->size(); ++i) {
      engine::RequestCompletion& c = (*done)[i];
      if (!c.status.ok()) return c.status;
      if (c.prompt_logprobs.size() != texts[begin + i].size() - 1) {
        return absl::InternalError(absl::StrCat("text ", begin + i, ": ", c.prompt_logprobs.size(),
                                                " scores for ", texts[begin + i].size() - 1,
                                                " tokens"));
      }
      scores.push_back(std::move(c.prompt_logprobs));
    }
  }
  return scores;
}

absl::StatusOr<Comparison> Compare(const TextScores& reference, const TextScores& test) {
  if (reference.size() != test.size()) {
    return absl::InvalidArgumentError("the scorings hold different numbers of texts");
  }
  Comparison out;
  double kl = 0;
  int64_t agree = 0;
  for (size_t t = 0; t < reference.size(); ++t) {
    if (reference[t].size() != test[t].size()) {
      return absl::InvalidArgumentError(absl::StrCat("text ", t, ": different lengths"));
    }
    for (size_t i = 0; i < reference[t].size(); ++i) {
      const sampling::TokenLogprobs& p = reference[t][i];
      const sampling::TokenLogprobs& q = test[t][i];
      if (p.token != q.token || p.top.empty() || q.top.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("text ", t, " position ", i, ": different tokens or no alternatives"));
      }
      out.reference_nll -= p.logprob;
      out.test_nll -= q.logprob;
      kl += TruncatedKl(p, q);
      agree += p.top[0].first == q.top[0].first ? 1 : 0;
      ++out.num_tokens;
    }
  }
  if (out.num_tokens == 0) return absl::InvalidArgumentError("nothing was scored");
  const double n = static_cast<double>(out.num_tokens);
  out.reference_nll /= n;
  out.test_nll /= n;
  out.reference_perplexity = std::exp(out.reference_nll);
  out.test_perplexity = std::exp(out.test_nll);
  out.mean_kl = kl / n;
  out.greedy_agreement = static_cast<double>(agree) / n;
  return out;
}

}  // namespace pagoda::kv_accuracy
