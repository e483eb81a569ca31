#include "kernels/cpu/sampler.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <limits>
#include <optional>
#include <random>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/check.h"

namespace pagoda::kernels::cpu {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// SplitMix64 (Steele, Lea, Flood 2014): output i is a fixed bijective mix of seed + i * gamma.
// Being counter-based, a request's i-th draw is a pure function of (seed, i): nothing about
// other requests, threads or the standard library's distributions can change it.
constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ull;

uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Seeds for requests without one. Each state takes the next value of a shared counter that
// starts at a random point, so unseeded states never share a stream, and mixes it.
uint64_t NextProcessSeed() {
  static std::atomic<uint64_t> counter = [] {
    std::random_device device;
    const uint64_t hi = device();
    const uint64_t lo = device();
    const auto now =
        static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    return Mix64((hi << 32) ^ lo ^ now);
  }();
  return Mix64(counter.fetch_add(kGamma, std::memory_order_relaxed));
}

// A token under consideration. `value` is a logit until the weights are computed, then
// exp((logit - max) / temperature) (so the most likely token has weight exactly 1).
struct Candidate {
  float value;
  TokenId id;
};

// The order every truncation uses: larger value first, lower id first among equals. A strict
// total order, so selections and sorts are deterministic whatever the algorithm.
bool Before(const Candidate& a, const Candidate& b) {
  return a.value > b.value || (a.value == b.value && a.id < b.id);
}

// Per-thread scratch for the candidate list. Only the vector's header lives in TLS (the
// buffer is on the heap), so this does not eat into small thread stacks (TOOLCHAIN.md
// pitfall 1), and reusing it avoids a 1 MiB allocation per call at vocab 128k.
std::vector<Candidate>& Scratch() {
  thread_local std::vector<Candidate> scratch;
  scratch.clear();
  return scratch;
}

TokenId Argmax(absl::Span<const float> logits) {
  // Two passes that vectorize (a running index would chain every iteration): the maximum with
  // 8 independent lanes, then the first token holding it, which gives the lowest id among
  // ties. `v > m ? v : m` skips NaN.
  float lanes[8];
  std::fill(lanes, lanes + 8, kNegInf);
  const size_t n = logits.size();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (size_t j = 0; j < 8; ++j) lanes[j] = logits[i + j] > lanes[j] ? logits[i + j] : lanes[j];
  }
  float max = kNegInf;
  for (; i < n; ++i) max = logits[i] > max ? logits[i] : max;
  for (float lane : lanes) max = lane > max ? lane : max;
  PAGODA_CHECK(max > kNegInf) << "no samplable token";
  const auto it = std::find(logits.begin(), logits.end(), max);
  return static_cast<TokenId>(it - logits.begin());
}

// The k best tokens by Before(), sorted. Small k: a bounded min-heap over one pass (most
// tokens lose to the heap's worst with a single comparison). Large k: nth_element.
void SelectTopK(absl::Span<const float> logits, size_t k, std::vector<Candidate>* out) {
  constexpr size_t kHeapLimit = 256;
  if (k <= kHeapLimit) {
    // Heap ordered so that front() is the worst kept candidate. Ids rise during the scan, so a
    // later token beats the worst only with a strictly larger logit.
    for (size_t i = 0; i < logits.size(); ++i) {
      const float v = logits[i];
      if (!(v > kNegInf)) continue;  // -inf and NaN
      const Candidate c{v, static_cast<TokenId>(i)};
      if (out->size() < k) {
        out->push_back(c);
        std::push_heap(out->begin(), out->end(), Before);
      } else if (v > out->front().value) {
        std::pop_heap(out->begin(), out->end(), Before);
        out->back() = c;
        std::push_heap(out->begin(), out->end(), Before);
      }
    }
  } else {
    for (size_t i = 0; i < logits.size(); ++i) {
      if (logits[i] > kNegInf) out->push_back({logits[i], static_cast<TokenId>(i)});
    }
    if (out->size() > k) {
      std::nth_element(out->begin(), out->begin() + k, out->end(), Before);
      out->resize(k);
    }
  }
  std::sort(out->begin(), out->end(), Before);
}

// Random sampling with top-k set (k < vocab): only the k candidates get weights, and they are
// sorted, so top-p and min-p each cut a suffix.
TokenId SampleTopK(absl::Span<const float> logits, const SamplingParams& params, double uniform) {
  std::vector<Candidate>& cands = Scratch();
  SelectTopK(logits, static_cast<size_t>(params.top_k), &cands);
  PAGODA_CHECK(!cands.empty()) << "no samplable token";
  const float max = cands.front().value;
  double total = 0.0;
  for (Candidate& c : cands) {
    c.value = std::exp((c.value - max) / params.temperature);
    total += c.value;
  }
  size_t num_kept = cands.size();
  if (params.top_p < 1.0f) {
    const double target = static_cast<double>(params.top_p) * total;
    double cumulative = 0.0;
    size_t n = 0;
    // Ends at cands.size() only by rounding: then all are kept.
    while (n < cands.size() && cumulative < target) cumulative += cands[n++].value;
    num_kept = n;
  }
  if (params.min_p > 0.0f) {
    // p / p_max = weight / 1: the threshold needs no normalization. The top token stays.
    size_t n = 1;
    while (n < num_kept && cands[n].value >= params.min_p) ++n;
    num_kept = n;
  }
  double mass = 0.0;
  for (size_t i = 0; i < num_kept; ++i) mass += cands[i].value;
  const double target = uniform * mass;
  double cumulative = 0.0;
  for (size_t i = 0; i < num_kept; ++i) {
    cumulative += cands[i].value;
    if (cumulative > target) return cands[i].id;
  }
  // Reached only when uniform * mass rounds up to mass.
  return cands[num_kept - 1].id;
}

// Sum of `w` in 8 interleaved lanes combined in a fixed order: vectorizable, and the same
// result every time for the same weights.
float LaneSum(const float* w, size_t n) {
  float lanes[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (size_t j = 0; j < 8; ++j) lanes[j] += w[i + j];
  }
  float tail = 0.0f;
  for (; i < n; ++i) tail += w[i];
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
         ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7])) + tail;
}

constexpr size_t kDrawBlock = 256;

// Draws i with probability w[i] / sum(w), for w >= 0 with some w > 0, walking in id order.
// A sequential cumulative sum over 128k weights is one long chain of dependent adds; summing
// blocks first (vectorized) and walking only inside the block that holds the target is several
// times faster and just as deterministic.
size_t DrawWeighted(absl::Span<const float> w, double uniform) {
  const size_t n = w.size();
  thread_local std::vector<float> block_sums;
  block_sums.clear();
  double total = 0.0;
  for (size_t begin = 0; begin < n; begin += kDrawBlock) {
    block_sums.push_back(LaneSum(w.data() + begin, std::min(kDrawBlock, n - begin)));
    total += block_sums.back();
  }
  const double target = uniform * total;
  double cumulative = 0.0;
  std::optional<size_t> last_block;
  for (size_t b = 0; b < block_sums.size(); ++b) {
    if (block_sums[b] <= 0.0f) continue;
    last_block = b;
    if (cumulative + block_sums[b] > target) break;
    cumulative += block_sums[b];
  }
  PAGODA_CHECK(last_block.has_value()) << "no samplable token";
  // The element-wise walk may fall short of the lane-wise block sum by rounding: then the
  // block's last token with weight wins.
  const size_t begin = *last_block * kDrawBlock;
  const size_t end = std::min(n, begin + kDrawBlock);
  std::optional<size_t> last;
  for (size_t i = begin; i < end; ++i) {
    if (w[i] <= 0.0f) continue;
    last = i;
    cumulative += w[i];
    if (cumulative > target) return i;
  }
  return *last;
}

// The last candidate, in Before() order, of the shortest prefix whose weight reaches
// `target`; nullopt when all of `cands` together fall short (by rounding). A quickselect that
// partitions by Before() around a pivot and descends into the side holding the target, so it
// is O(n) expected instead of sorting the nucleus (which is most of the vocabulary when the
// distribution is flat). Reorders `cands`.
std::optional<Candidate> TopPCutoff(std::vector<Candidate>& cands, double target) {
  size_t lo = 0;
  size_t hi = cands.size();
  double above = 0.0;  // weight of the candidates before [lo, hi)
  while (lo < hi) {
    Candidate a = cands[lo], b = cands[lo + (hi - lo) / 2], c = cands[hi - 1];
    if (Before(b, a)) std::swap(a, b);
    if (Before(c, b)) std::swap(b, c);
    if (Before(b, a)) std::swap(a, b);
    const Candidate pivot = b;  // median of three
    const auto first = cands.begin() + static_cast<std::ptrdiff_t>(lo);
    const auto last = cands.begin() + static_cast<std::ptrdiff_t>(hi);
    const auto mid = std::partition(first, last, [&](const Candidate& x) { return Before(x, pivot); });
    double left = 0.0;
    for (auto it = first; it != mid; ++it) left += it->value;
    if (above + left >= target) {
      hi = static_cast<size_t>(mid - cands.begin());
      continue;
    }
    above += left + pivot.value;
    if (above >= target) return pivot;
    // Ids are unique, so exactly one element of [mid, hi) is the pivot; put it first.
    std::iter_swap(mid, std::find_if(mid, last, [&](const Candidate& x) { return x.id == pivot.id; }));
    lo = static_cast<size_t>(mid - cands.begin()) + 1;
  }
  return std::nullopt;
}

// Random sampling over the whole vocabulary. Weights replace the logits in place; top-p and
// min-p zero the weights they drop, then one weighted draw walks in id order.
TokenId SampleFull(absl::Span<float> logits, const SamplingParams& params, double uniform) {
  float max = kNegInf;
  for (float v : logits) max = v > max ? v : max;
  PAGODA_CHECK(max > kNegInf && std::isfinite(max)) << "no samplable token";
  const float temperature = params.temperature;
  for (float& v : logits) {
    // -inf gives exp(-inf) = 0; NaN must be zeroed by hand.
    v = v > kNegInf ? std::exp((v - max) / temperature) : 0.0f;
  }
  // The top token has weight exactly 1, so min-p keeps weight >= min_p (p / p_max = w / 1).
  float min_weight = params.min_p;
  std::optional<Candidate> cutoff;
  if (params.top_p < 1.0f) {
    // The nucleus is a prefix of the Before() order, and so is {weight >= threshold}: any
    // such set whose weight reaches the target contains the nucleus, and only it needs
    // searching. Start high (LLM distributions are peaked) and lower the threshold until it
    // suffices. With min-p set, tokens below min_p go anyway, so min_p is always low enough.
    double total = 0.0;
    for (size_t b = 0; b < logits.size(); b += kDrawBlock) {
      total += LaneSum(logits.data() + b, std::min(kDrawBlock, logits.size() - b));
    }
    const double target = static_cast<double>(params.top_p) * total;
    std::vector<Candidate>& cands = Scratch();
    float threshold = std::max(1e-2f, params.min_p);
    while (true) {
      cands.clear();
      double mass = 0.0;
      for (size_t i = 0; i < logits.size(); ++i) {
        if (logits[i] > 0.0f && logits[i] >= threshold) {
          cands.push_back({logits[i], static_cast<TokenId>(i)});
          mass += logits[i];
        }
      }
      if (mass >= target || threshold <= params.min_p || threshold == 0.0f) break;
      threshold = threshold > 1e-30f ? threshold * 1e-2f : 0.0f;
      threshold = std::max(threshold, params.min_p);
    }
    cutoff = TopPCutoff(cands, target);
    // Without a cutoff (rounding, or min-p reached first) every candidate stays.
    if (!cutoff.has_value()) min_weight = std::max(min_weight, threshold);
  }
  if (cutoff.has_value()) {
    const Candidate last = *cutoff;
    for (size_t i = 0; i < logits.size(); ++i) {
      const float w = logits[i];
      const bool in_nucleus = w > last.value || (w == last.value && static_cast<TokenId>(i) <= last.id);
      if (!in_nucleus || w < min_weight) logits[i] = 0.0f;
    }
  } else if (min_weight > 0.0f) {
    for (float& w : logits) w = w >= min_weight ? w : 0.0f;
  }
  return static_cast<TokenId>(DrawWeighted(logits, uniform));
}

absl::Status FieldError(const char* field, const char* rule, double value) {
  return absl::InvalidArgumentError(absl::StrFormat("%s must be %s, got %g", field, rule, value));
}

}  // namespace

absl::Status ValidateSamplingParams(const SamplingParams& params, int vocab_size) {
  if (vocab_size <= 0) return FieldError("vocab_size", "> 0", vocab_size);
  // Written as !(ok) so that NaN fails every test.
  if (!(std::isfinite(params.temperature) && params.temperature >= 0.0f)) {
    return FieldError("temperature", "finite and >= 0", params.temperature);
  }
  if (!(params.top_p > 0.0f && params.top_p <= 1.0f)) {
    return FieldError("top_p", "in (0, 1]", params.top_p);
  }
  if (params.top_k < 0) return FieldError("top_k", ">= 0 (0 = off)", params.top_k);
  if (!(params.min_p >= 0.0f && params.min_p <= 1.0f)) {
    return FieldError("min_p", "in [0, 1]", params.min_p);
  }
  if (!(std::isfinite(params.repetition_penalty) && params.repetition_penalty > 0.0f)) {
    return FieldError("repetition_penalty", "finite and > 0", params.repetition_penalty);
  }
  if (!(params.presence_penalty >= -2.0f && params.presence_penalty <= 2.0f)) {
    return FieldError("presence_penalty", "in [-2, 2]", params.presence_penalty);
  }
  if (!(params.frequency_penalty >= -2.0f && params.frequency_penalty <= 2.0f)) {
    return FieldError("frequency_penalty", "in [-2, 2]", params.frequency_penalty);
  }
  for (const auto& [token, bias] : params.logit_bias) {
    if (token < 0 || token >= vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrFormat("logit_bias token must be in [0, %d), got %d", vocab_size, token));
    }
    if (!std::isfinite(bias)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("logit_bias for token %d must be finite, got %g", token, bias));
    }
  }
  return absl::OkStatus();
}

SamplerState::SamplerState(std::optional<uint64_t> seed, absl::Span<const TokenId> prompt_tokens)
    : seed_(seed.has_value() ? *seed : NextProcessSeed()),
      prompt_tokens_(prompt_tokens.begin(), prompt_tokens.end()) {}

void SamplerState::AddOutputToken(TokenId token) { ++output_counts_[token]; }

int SamplerState::OutputCount(TokenId token) const {
  const auto it = output_counts_.find(token);
  return it == output_counts_.end() ? 0 : it->second;
}

uint64_t SamplerState::NextUint64() {
  ++num_draws_;
  return Mix64(seed_ + num_draws_ * kGamma);
}

double SamplerState::NextUniform() { return static_cast<double>(NextUint64() >> 11) * 0x1.0p-53; }

void ApplyLogitAdjustments(absl::Span<float> logits, const SamplingParams& params,
                           const SamplerState& state, absl::Span<const TokenId> banned_tokens) {
  const auto vocab_size = static_cast<TokenId>(logits.size());
  for (const auto& [token, bias] : params.logit_bias) {
    PAGODA_CHECK(token >= 0 && token < vocab_size) << "logit_bias token " << token;
    logits[token] += bias;
  }
  for (TokenId token : banned_tokens) {
    PAGODA_CHECK(token >= 0 && token < vocab_size) << "banned token " << token;
    logits[token] = kNegInf;
  }
  // Only the tokens seen so far are touched: O(distinct tokens), not O(vocab). Each token is
  // penalized once, so the iteration order of the hash containers does not matter.
  const float repetition = params.repetition_penalty;
  auto repeat = [&](TokenId token) {
    PAGODA_CHECK(token >= 0 && token < vocab_size) << "token " << token;
    float& l = logits[token];
    l = l > 0.0f ? l / repetition : l * repetition;
  };
  if (repetition != 1.0f) {
    for (TokenId token : state.prompt_tokens()) repeat(token);
  }
  const bool additive = params.presence_penalty != 0.0f || params.frequency_penalty != 0.0f;
  if (repetition == 1.0f && !additive) return;
  for (const auto& [token, count] : state.output_counts()) {
    if (repetition != 1.0f && !state.InPrompt(token)) repeat(token);
    if (additive && count > 0) {
      // Two subtractions, in vLLM's order, so the floats match its results bit for bit.
      logits[token] -= params.frequency_penalty * static_cast<float>(count);
      logits[token] -= params.presence_penalty;
    }
  }
}

TokenId Sample(absl::Span<float> logits, const SamplingParams& params, SamplerState& state,
               absl::Span<const TokenId> banned_tokens) {
  PAGODA_CHECK(!logits.empty());
  ApplyLogitAdjustments(logits, params, state, banned_tokens);
  if (params.temperature < kGreedyTemperature) return Argmax(logits);
  const double uniform = state.NextUniform();
  if (params.top_k > 0 && static_cast<size_t>(params.top_k) < logits.size()) {
    return SampleTopK(logits, params, uniform);
  }
  return SampleFull(logits, params, uniform);
}

}  // namespace pagoda::kernels::cpu
