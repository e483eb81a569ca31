#include "sampling/sampler.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/check.h"
#include "common/status_macros.h"

namespace pagoda::sampling {
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

// Four floats as one GCC/Clang vector (an SSE register on baseline x86-64): explicit, so the
// hot loops are vectorized whatever the compiler's cost model at -O2.
typedef float Float4 __attribute__((vector_size(16)));
typedef int32_t Int4 __attribute__((vector_size(16)));

// exp(x) for x <= 0 (weights relative to the top logit), Cephes' expf polynomial: within 1 ulp
// of glibc's expf over [-87, 0] (measured), exactly 1 at 0, and 0 below -87 (where float
// underflows anyway). Ours rather than libm's so that weights, and so seeded samples, do not
// depend on the libm version, and so that four tokens take one pass through the polynomial.
[[gnu::always_inline]] inline Float4 Exp4(Float4 x) {
  const Int4 underflow = x < -87.0f;
  x = underflow ? Float4{} - 87.0f : x;
  // n = round(x / ln 2) by the 1.5 * 2^23 trick (no floor, which baseline x86-64 lacks).
  constexpr float kRound = 12582912.0f;
  const Float4 shifted = x * 1.44269504088896341f + kRound;
  const Float4 n = shifted - kRound;
  const Float4 r = x - n * 0.693359375f + n * 2.12194440e-4f;
  Float4 p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n from the exponent bits; n >= -126 here, so the result is a normal float.
  const Int4 exponent = (__builtin_convertvector(n, Int4) + 127) << 23;
  const Float4 result = p * std::bit_cast<Float4>(exponent);
  return underflow ? Float4{} : result;
}

// w[i] = exp((w[i] - max) / temperature), -inf and NaN to 0, for i < n.
void ComputeWeights(float* w, size_t n, float max, float temperature) {
  const auto weights4 = [&](Float4 l) {
    const Float4 e = Exp4((l - max) / temperature);
    return l > kNegInf ? e : Float4{};  // false for NaN too
  };
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    Float4 l;
    std::memcpy(&l, w + i, sizeof(l));
    l = weights4(l);
    std::memcpy(w + i, &l, sizeof(l));
  }
  if (i < n) {
    Float4 l = Float4{} + kNegInf;
    std::memcpy(&l, w + i, (n - i) * sizeof(float));
    l = weights4(l);
    std::memcpy(w + i, &l, (n - i) * sizeof(float));
  }
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

Float4 Load4(const float* p) {
  Float4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Whether any lane of a comparison result is set; cheaper than testing four lanes one by one.
bool AnyLane(Int4 mask) {
  uint64_t halves[2];
  std::memcpy(halves, &mask, sizeof(halves));
  return (halves[0] | halves[1]) != 0;
}

// The largest logit, skipping NaN; -inf when there is none. Sixteen independent lanes (four
// vectors), because one running maximum is a chain of dependent compares.
float MaxLogit(const float* l, size_t n) {
  Float4 m[4];
  for (Float4& v : m) v = Float4{} + kNegInf;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (size_t j = 0; j < 4; ++j) {
      const Float4 x = Load4(l + i + 4 * j);
      m[j] = x > m[j] ? x : m[j];  // false for NaN
    }
  }
  float max = kNegInf;
  for (; i < n; ++i) max = l[i] > max ? l[i] : max;
  for (const Float4& v : m) {
    for (int j = 0; j < 4; ++j) max = v[j] > max ? v[j] : max;
  }
  return max;
}

// The first token holding `max` (the largest logit, finite): the lowest id among ties.
TokenId FirstAt(absl::Span<const float> logits, float max) {
  // A second vectorized pass (a running index in the max pass would chain every iteration).
  const float* l = logits.data();
  const size_t n = logits.size();
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const Int4 hit = (Load4(l + i) == max) | (Load4(l + i + 4) == max) | (Load4(l + i + 8) == max) |
                     (Load4(l + i + 12) == max);
    if (AnyLane(hit)) break;
  }
  while (l[i] != max) ++i;  // the maximum is at or after i
  return static_cast<TokenId>(i);
}

// +inf logits (an overflow in the model or the adjustments) become the largest finite float, so
// that the weights stay defined: they tie for the top and share its probability.
void ClampPositiveInfinity(absl::Span<float> logits) {
  constexpr float kMax = std::numeric_limits<float>::max();
  for (float& l : logits) l = l > kMax ? kMax : l;
}

// The k best tokens by Before(), sorted. Small k: a bounded min-heap over one pass (most
// tokens lose to the heap's worst with a single comparison). Large k: nth_element.
void SelectTopK(absl::Span<const float> logits, size_t k, std::vector<Candidate>* out) {
  constexpr size_t kHeapLimit = 256;
  const float* l = logits.data();
  const size_t n = logits.size();
  if (k <= kHeapLimit) {
    // Heap ordered so that front() is the worst kept candidate. Ids rise during the scan, so a
    // later token beats the worst only with a strictly larger logit; a block of 8 of which none
    // beats it is skipped with two vector compares.
    size_t i = 0;
    for (; i < n && out->size() < k; ++i) {
      if (l[i] > kNegInf) {  // not -inf, not NaN
        out->push_back({l[i], static_cast<TokenId>(i)});
        std::push_heap(out->begin(), out->end(), Before);
      }
    }
    float worst = out->empty() ? kNegInf : out->front().value;
    const auto offer = [&](size_t j) {
      if (!(l[j] > worst)) return;
      std::pop_heap(out->begin(), out->end(), Before);
      out->back() = {l[j], static_cast<TokenId>(j)};
      std::push_heap(out->begin(), out->end(), Before);
      worst = out->front().value;
    };
    for (; i < n && i % 8 != 0; ++i) offer(i);
    for (; i + 8 <= n; i += 8) {
      if (!AnyLane((Load4(l + i) > worst) | (Load4(l + i + 4) > worst))) continue;
      for (size_t j = i; j < i + 8; ++j) offer(j);
    }
    for (; i < n; ++i) offer(i);
  } else {
    for (size_t i = 0; i < n; ++i) {
      if (l[i] > kNegInf) out->push_back({l[i], static_cast<TokenId>(i)});
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
  // Sample() found a logit above -inf, and SelectTopK keeps every such one up to k >= 1.
  PAGODA_CHECK(!cands.empty()) << "no samplable token";
  const float max = cands.front().value;
  thread_local std::vector<float> weights;
  weights.resize(cands.size());
  for (size_t i = 0; i < cands.size(); ++i) weights[i] = cands[i].value;
  ComputeWeights(weights.data(), weights.size(), max, params.temperature);
  double total = 0.0;
  for (size_t i = 0; i < cands.size(); ++i) {
    cands[i].value = weights[i];
    total += weights[i];
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
size_t DrawWeighted(absl::Span<const float> weights, double uniform) {
  const float* w = weights.data();
  const size_t n = weights.size();
  thread_local std::vector<float> block_sums;
  block_sums.clear();
  double total = 0.0;
  for (size_t begin = 0; begin < n; begin += kDrawBlock) {
    block_sums.push_back(LaneSum(w + begin, std::min(kDrawBlock, n - begin)));
    total += block_sums.back();
  }
  const double target = uniform * total;
  double cumulative = 0.0;
  std::optional<size_t> block;
  bool crossed = false;
  for (size_t b = 0; b < block_sums.size() && !crossed; ++b) {
    if (block_sums[b] <= 0.0f) continue;
    block = b;
    crossed = cumulative + block_sums[b] > target;
    if (!crossed) cumulative += block_sums[b];
  }
  PAGODA_CHECK(block.has_value()) << "no samplable token";
  // Without a crossing (uniform * total rounded up to total), or when the element-wise walk
  // falls short of the lane-wise block sum by rounding, the block's last token with weight wins.
  const size_t begin = *block * kDrawBlock;
  const size_t end = std::min(n, begin + kDrawBlock);
  std::optional<size_t> last;
  for (size_t i = begin; i < end; ++i) {
    if (w[i] <= 0.0f) continue;
    last = i;
    cumulative += w[i];
    if (crossed && cumulative > target) return i;
  }
  return *last;
}

// The bucket, counted from the heaviest (last) one down, where the cumulative mass starting
// at `*above` reaches `target`; adds the mass of the heavier buckets to `*above`. Rounding can
// leave the target unreached: then the lightest non-empty bucket, so that all are kept.
std::optional<uint32_t> CrossingBucket(const double* mass, uint32_t num_buckets, double target,
                                       double* above) {
  std::optional<uint32_t> lightest;
  for (uint32_t b = num_buckets; b-- > 0;) {
    if (mass[b] == 0.0) continue;
    if (*above + mass[b] >= target) return b;
    *above += mass[b];
    lightest = b;
  }
  if (lightest.has_value()) *above -= mass[*lightest];
  return lightest;
}

// The last token, in Before() order, of the shortest prefix of the weights `w` (all in
// [0, 1]) whose sum reaches top_p of their total; nullopt when rounding leaves even the whole
// vocabulary short. A radix select instead of a sort, O(vocab) even when the nucleus is most
// of the vocabulary: non-negative floats order like their bit patterns, so a histogram of mass
// by the top 13 bits (exponent and 4 mantissa bits) finds the bucket where the cumulative mass
// from the top crosses the target; two more histograms over that bucket's tokens, by the next
// 10 and the last 9 bits, narrow it to tokens of one exact weight, taken in id order.
std::optional<Candidate> TopPCutoff(const float* w, size_t n, float top_p) {
  constexpr int kShift = 19;
  constexpr uint32_t kNumBuckets = (0x3F800000u >> kShift) + 1;  // up to the bucket of 1.0f
  const auto bucket = [](float x) {
    const uint32_t b = std::bit_cast<uint32_t>(x) >> kShift;
    return b < kNumBuckets - 1 ? b : kNumBuckets - 1;
  };
  // Four interleaved histograms, so that runs of tokens in one bucket do not chain their adds
  // through memory; summed in a fixed order.
  thread_local std::vector<double> histograms;
  histograms.assign(4 * kNumBuckets, 0.0);
  double* const h = histograms.data();
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {  // zero weights add nothing to bucket 0
    for (size_t j = 0; j < 4; ++j) h[j * kNumBuckets + bucket(w[i + j])] += w[i + j];
  }
  for (; i < n; ++i) h[bucket(w[i])] += w[i];
  double total = 0.0;
  for (uint32_t b = kNumBuckets; b-- > 0;) {
    h[b] = (h[b] + h[kNumBuckets + b]) + (h[2 * kNumBuckets + b] + h[3 * kNumBuckets + b]);
    total += h[b];
  }
  const double target = static_cast<double>(top_p) * total;
  double above = 0.0;
  const std::optional<uint32_t> first = CrossingBucket(h, kNumBuckets, target, &above);
  if (!first.has_value() || *first == 0) return std::nullopt;  // bucket 0: zeros and denormals
  std::vector<Candidate>& cands = Scratch();
  for (size_t k = 0; k < n; ++k) {
    if (bucket(w[k]) == *first) cands.push_back({w[k], static_cast<TokenId>(k)});
  }
  // Narrow down by the remaining bits; `cands` stays in id order.
  for (const auto& level : {std::pair<int, uint32_t>{9, 1024}, {0, 512}}) {
    // Plain copies: clang 14 cannot capture structured bindings in a lambda.
    const int shift = level.first;
    const uint32_t num_buckets = level.second;
    const auto sub = [&](const Candidate& c) {
      return (std::bit_cast<uint32_t>(c.value) >> shift) & (num_buckets - 1);
    };
    std::fill(h, h + num_buckets, 0.0);
    for (const Candidate& c : cands) h[sub(c)] += c.value;
    const uint32_t b = *CrossingBucket(h, num_buckets, target, &above);
    std::erase_if(cands, [&](const Candidate& c) { return sub(c) != b; });
  }
  // One weight left: Before() order is id order.
  for (const Candidate& c : cands) {
    above += c.value;
    if (above >= target) return c;
  }
  return cands.back();  // short by rounding: all of them stay
}

// Random sampling over the whole vocabulary. Weights replace the logits in place; top-p and
// min-p zero the weights they drop, then one weighted draw walks in id order.
// `max` is the largest logit, finite (Sample() makes sure).
TokenId SampleFull(absl::Span<float> logits, const SamplingParams& params, float max,
                   double uniform) {
  float* w = logits.data();  // Debian's hardened Abseil bounds-checks Span::operator[]
  const size_t n = logits.size();
  ComputeWeights(w, n, max, params.temperature);
  // The top token has weight exactly 1, so min-p keeps weight >= min_p (p / p_max = w / 1).
  const float min_weight = params.min_p;
  const std::optional<Candidate> cutoff =
      params.top_p < 1.0f ? TopPCutoff(w, n, params.top_p) : std::nullopt;
  if (cutoff.has_value() || min_weight > 0.0f) {
    // Keep w > cutoff, or == cutoff up to its id (Before() order), and w >= min_weight.
    // Branch-free and vectorized: in a flat distribution the test is a coin flip per token.
    const float cut_weight = cutoff.has_value() ? cutoff->value : 0.0f;
    const TokenId cut_id = cutoff.has_value() ? cutoff->id : static_cast<TokenId>(n);
    const Int4 lane = {0, 1, 2, 3};
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
      Float4 x;
      std::memcpy(&x, w + i, sizeof(x));
      const Int4 id = lane + static_cast<TokenId>(i);
      const Int4 keep =
          ((x > cut_weight) | ((x == cut_weight) & (id <= cut_id))) & (x >= min_weight);
      x = keep ? x : Float4{};
      std::memcpy(w + i, &x, sizeof(x));
    }
    for (; i < n; ++i) {
      const bool keep =
          (w[i] > cut_weight || (w[i] == cut_weight && static_cast<TokenId>(i) <= cut_id)) &&
          w[i] >= min_weight;
      w[i] = keep ? w[i] : 0.0f;
    }
  }
  return static_cast<TokenId>(DrawWeighted(logits, uniform));
}

absl::Status OutOfVocab(const char* what, TokenId token, TokenId vocab_size) {
  return absl::InvalidArgumentError(
      absl::StrFormat("sampling: %s id %d is not in [0, %d)", what, token, vocab_size));
}

}  // namespace

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

absl::Status ApplyLogitAdjustments(absl::Span<float> logits, const SamplingParams& params,
                                   const SamplerState& state,
                                   absl::Span<const TokenId> banned_tokens) {
  const auto vocab_size = static_cast<TokenId>(logits.size());
  const auto in_vocab = [&](TokenId token) { return token >= 0 && token < vocab_size; };
  // The request's own ids (a few) are checked before any logit changes.
  for (const auto& [token, bias] : params.logit_bias) {
    if (!in_vocab(token)) return OutOfVocab("logit_bias", token, vocab_size);
  }
  for (TokenId token : banned_tokens) {
    if (!in_vocab(token)) return OutOfVocab("banned token", token, vocab_size);
  }
  for (const auto& [token, bias] : params.logit_bias) logits[token] += bias;
  for (TokenId token : banned_tokens) logits[token] = kNegInf;
  // The token history is checked where a penalty reads it, in the same pass: only the tokens
  // seen so far are touched, O(distinct tokens), not O(vocab). Each token is penalized once, so
  // the iteration order of the hash containers does not matter.
  const float repetition = params.repetition_penalty;
  const bool additive = params.presence_penalty != 0.0f || params.frequency_penalty != 0.0f;
  auto repeat = [&](TokenId token) {
    float& l = logits[token];
    l = l > 0.0f ? l / repetition : l * repetition;
  };
  if (repetition != 1.0f) {
    for (TokenId token : state.prompt_tokens()) {
      if (!in_vocab(token)) return OutOfVocab("prompt token", token, vocab_size);
      repeat(token);
    }
  }
  if (repetition == 1.0f && !additive) return absl::OkStatus();
  for (const auto& [token, count] : state.output_counts()) {
    if (!in_vocab(token)) return OutOfVocab("output token", token, vocab_size);
    if (repetition != 1.0f && !state.InPrompt(token)) repeat(token);
    if (additive && count > 0) {
      // Two subtractions, in vLLM's order, so the floats match its results bit for bit.
      logits[token] -= params.frequency_penalty * static_cast<float>(count);
      logits[token] -= params.presence_penalty;
    }
  }
  return absl::OkStatus();
}

absl::Status NoSamplableTokenError() {
  return absl::FailedPreconditionError(
      "sampling: no samplable token (every logit is -inf or NaN after the logit bias, banned "
      "tokens and penalties)");
}

absl::StatusOr<TokenId> Sample(absl::Span<float> logits, const SamplingParams& params,
                               SamplerState& state, absl::Span<const TokenId> banned_tokens) {
  if (logits.empty()) return absl::InvalidArgumentError("sampling: no logits (vocab_size 0)");
  PAGODA_RETURN_IF_ERROR(ApplyLogitAdjustments(logits, params, state, banned_tokens));
  float max = MaxLogit(logits.data(), logits.size());
  if (!(max > kNegInf)) return NoSamplableTokenError();
  if (max == std::numeric_limits<float>::infinity()) {
    ClampPositiveInfinity(logits);
    max = std::numeric_limits<float>::max();
  }
  if (params.temperature < kGreedyTemperature) return FirstAt(logits, max);
  const double uniform = state.NextUniform();
  if (params.top_k > 0 && static_cast<size_t>(params.top_k) < logits.size()) {
    return SampleTopK(logits, params, uniform);
  }
  return SampleFull(logits, params, max, uniform);
}

}  // namespace pagoda::sampling
