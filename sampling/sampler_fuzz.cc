// Fuzz target: the bytes choose a request's sampling parameters (raw float bits, so NaN, inf,
// subnormals and 1e-38 come up), its token history and banned tokens, and a row of logits with
// the same freedom. Whatever ValidateSamplingParams accepts, Sample must answer without
// aborting: a token in the vocabulary that is not banned, or FailedPrecondition when no token is
// samplable; never a token whose logit was NaN or -inf. (A repetition_penalty of 1e-38 once passed
// validation and aborted the daemon.)

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "common/check.h"
#include "sampling/sampler.h"

namespace {

using pagoda::TokenId;
using pagoda::sampling::SamplerState;
using pagoda::sampling::SamplingParams;

// Reads the input front to back; past its end every read is zero.
class Bytes {
 public:
  Bytes(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  uint32_t U32() {
    uint32_t v = 0;
    const size_t n = size_ - pos_ < 4 ? size_ - pos_ : 4;
    std::memcpy(&v, data_ + pos_, n);
    pos_ += n;
    return v;
  }
  uint8_t U8() { return pos_ < size_ ? data_[pos_++] : 0; }

  // A float that is often special: a value from a table of troublemakers, a plain one in a
  // modest range, or raw bits.
  float Float() {
    static constexpr float kSpecial[] = {0.0f,   -0.0f, 1.0f,  1e-38f, 1e-45f,  3e38f,
                                         -3e38f, 1e-5f, 0.01f, 100.0f, -100.0f, 2.0f,
                                         -2.0f,  0.5f,  1e30f, -1e30f};
    const uint8_t kind = U8();
    if (kind < 64) return kSpecial[kind % std::size(kSpecial)];
    if (kind < 96) {
      return kind < 80 ? std::numeric_limits<float>::infinity() : std::nanf("");
    }
    const uint32_t bits = U32();
    if (kind < 192) return static_cast<float>(static_cast<int32_t>(bits) % 20000) / 1000.0f;
    float value;
    std::memcpy(&value, &bits, sizeof(value));
    return value;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

SamplingParams ReadParams(Bytes& in, int vocab) {
  SamplingParams p;
  const uint8_t set = in.U8();  // which fields leave their defaults
  if (set & 1) p.temperature = in.Float();
  if (set & 2) p.top_p = in.Float();
  if (set & 4) p.top_k = static_cast<int>(in.U32() % (2 * vocab + 2)) - 1;
  if (set & 8) p.min_p = in.Float();
  if (set & 16) p.repetition_penalty = in.Float();
  if (set & 32) p.presence_penalty = in.Float();
  if (set & 64) p.frequency_penalty = in.Float();
  if (set & 128) {
    const int n = in.U8() % 8;
    for (int i = 0; i < n; ++i) {
      const auto token = static_cast<TokenId>(in.U32() % (vocab + 2)) - 1;
      p.logit_bias.emplace_back(token, in.Float());
    }
  }
  return p;
}

std::vector<TokenId> ReadTokens(Bytes& in, int vocab, int max_count) {
  std::vector<TokenId> tokens(in.U8() % (max_count + 1));
  for (TokenId& t : tokens) t = static_cast<TokenId>(in.U32() % vocab);
  return tokens;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Bytes in(data, size);
  const int vocab = 1 + static_cast<int>(in.U32() % 300);
  const SamplingParams params = ReadParams(in, vocab);
  if (!pagoda::sampling::ValidateSamplingParams(params, vocab).ok()) return 0;

  SamplerState state(in.U32(), ReadTokens(in, vocab, 32));
  for (TokenId t : ReadTokens(in, vocab, 32)) state.AddOutputToken(t);
  const std::vector<TokenId> banned = ReadTokens(in, vocab, 4);
  // Logits: a base level, then per token either the base plus noise or a special value.
  std::vector<float> logits(vocab);
  const float base = in.Float();
  for (float& l : logits) l = (in.U8() & 1) ? in.Float() : base;

  for (int round = 0; round < 3; ++round) {
    std::vector<float> scratch = logits;
    const absl::StatusOr<TokenId> token =
        pagoda::sampling::Sample(absl::MakeSpan(scratch), params, state, banned);
    if (!token.ok()) {
      PAGODA_CHECK(token.status().code() == absl::StatusCode::kFailedPrecondition)
          << token.status();
      continue;
    }
    PAGODA_CHECK(*token >= 0 && *token < vocab) << *token;
    // No adjustment lifts a NaN or -inf logit (NaN stays NaN, -inf stays -inf).
    PAGODA_CHECK(logits[*token] > -std::numeric_limits<float>::infinity())
        << "sampled token " << *token << " with logit " << logits[*token];
    for (TokenId b : banned) PAGODA_CHECK(*token != b) << "sampled banned token " << b;
    state.AddOutputToken(*token);
  }
  return 0;
}
