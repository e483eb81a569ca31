#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace pagoda::bench {

// One request of a benchmark run: a prompt (token ids or text) and how many tokens to ask for.
struct BenchRequest {
  std::vector<uint32_t> prompt_token_ids;  // used when prompt_text is unset
  std::optional<std::string> prompt_text;
  int input_len = 0;  // tokens (synthetic) or the JSONL record's value; 0 when unknown
  int output_len = 0;
};

// vLLM's random dataset: input lengths uniform in [input_len * (1 - range_ratio),
// input_len * (1 + range_ratio)] (likewise the outputs), random token ids in
// [first_token_id, vocab_size), each prompt preceded by the same `prefix_len` random tokens.
struct SyntheticOptions {
  int num_prompts = 100;
  int input_len = 128;
  int output_len = 128;
  double range_ratio = 0.0;  // [0, 1)
  int prefix_len = 0;
  int vocab_size = 0;      // > first_token_id
  int first_token_id = 0;  // avoid low special ids if wanted
  uint64_t seed = 0;
};
absl::StatusOr<std::vector<BenchRequest>> MakeSyntheticRequests(const SyntheticOptions& options);

// Prompts from a JSON Lines file, one object per line: {"prompt": "text"} or
// {"prompt_token_ids": [1, 2, 3]}, with an optional "output_len" (else `default_output_len`).
// Records are used in order, cycled when num_prompts exceeds them.
absl::StatusOr<std::vector<BenchRequest>> LoadJsonlRequests(const std::string& path,
                                                            int num_prompts,
                                                            int default_output_len);

// Arrival offsets in seconds from the start, for `n` requests at `request_rate` per second:
// inter-arrival gaps drawn from a gamma distribution with shape `burstiness` (1 = Poisson) and
// mean 1 / request_rate. An infinite rate sends everything at time 0.
std::vector<double> ArrivalOffsets(int n, double request_rate, double burstiness, uint64_t seed);

}  // namespace pagoda::bench
