#include "bench/load/workload.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <random>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace pagoda::bench {

absl::StatusOr<std::vector<BenchRequest>> MakeSyntheticRequests(const SyntheticOptions& o) {
  if (o.num_prompts <= 0) return absl::InvalidArgumentError("--num-prompts must be positive");
  if (o.input_len <= 0 || o.output_len <= 0) {
    return absl::InvalidArgumentError("--input-len and --output-len must be positive");
  }
  if (!(o.range_ratio >= 0.0 && o.range_ratio < 1.0)) {
    return absl::InvalidArgumentError("--range-ratio must be in [0, 1)");
  }
  if (o.prefix_len < 0) return absl::InvalidArgumentError("--prefix-len must be >= 0");
  if (o.vocab_size <= o.first_token_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("vocabulary of ", o.vocab_size, " tokens is too small"));
  }
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<uint32_t> token(static_cast<uint32_t>(o.first_token_id),
                                                static_cast<uint32_t>(o.vocab_size - 1));
  const auto length = [&](int mean) {
    const int lo = std::max(1, static_cast<int>(std::floor(mean * (1.0 - o.range_ratio))));
    const int hi = std::max(lo, static_cast<int>(std::ceil(mean * (1.0 + o.range_ratio))));
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };
  std::vector<uint32_t> prefix(o.prefix_len);
  for (uint32_t& t : prefix) t = token(rng);
  std::vector<BenchRequest> requests(o.num_prompts);
  for (BenchRequest& r : requests) {
    const int own = length(o.input_len);
    r.prompt_token_ids = prefix;
    for (int i = 0; i < own; ++i) r.prompt_token_ids.push_back(token(rng));
    r.input_len = static_cast<int>(r.prompt_token_ids.size());
    r.output_len = length(o.output_len);
  }
  return requests;
}

absl::StatusOr<std::vector<BenchRequest>> LoadJsonlRequests(const std::string& path,
                                                            int num_prompts,
                                                            int default_output_len) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("--dataset: cannot open ", path));
  std::vector<BenchRequest> records;
  std::string line;
  int line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    const std::string where = absl::StrCat(path, ":", line_number, ": ");
    if (!j.is_object()) return absl::InvalidArgumentError(where + "not a JSON object");
    BenchRequest r;
    if (j.contains("prompt") && j["prompt"].is_string()) {
      r.prompt_text = j["prompt"].get<std::string>();
    } else if (j.contains("prompt_token_ids") && j["prompt_token_ids"].is_array()) {
      for (const auto& id : j["prompt_token_ids"]) {
        if (!id.is_number_unsigned()) {
          return absl::InvalidArgumentError(where + "prompt_token_ids must be non-negative");
        }
        r.prompt_token_ids.push_back(id.get<uint32_t>());
      }
      r.input_len = static_cast<int>(r.prompt_token_ids.size());
    } else {
      return absl::InvalidArgumentError(where + "needs \"prompt\" or \"prompt_token_ids\"");
    }
    r.output_len = default_output_len;
    if (j.contains("output_len")) {
      if (!j["output_len"].is_number_unsigned() || j["output_len"].get<int64_t>() < 1) {
        return absl::InvalidArgumentError(where + "output_len must be a positive integer");
      }
      r.output_len = j["output_len"].get<int>();
    }
    records.push_back(std::move(r));
  }
  if (records.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no records"));
  std::vector<BenchRequest> requests;
  for (int i = 0; i < num_prompts; ++i) requests.push_back(records[i % records.size()]);
  return requests;
}

std::vector<double> ArrivalOffsets(int n, double request_rate, double burstiness, uint64_t seed) {
  std::vector<double> offsets(n, 0.0);
  if (!std::isfinite(request_rate)) return offsets;
  std::mt19937_64 rng(seed ^ 0x5bd1e995ull);
  std::gamma_distribution<double> gap(burstiness, 1.0 / (request_rate * burstiness));
  double t = 0;
  for (int i = 0; i < n; ++i) {
    offsets[i] = t;
    t += gap(rng);
  }
  return offsets;
}

}  // namespace pagoda::bench
