#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace pagoda::kv_offload {

enum class ReloadPolicy {
  kAuto,    // load a block when reading it is expected to beat recomputing it
  kAlways,  // load whatever a tier holds (tests, and operators who know better)
};

// Load or recompute? Per block, loading from tier t costs seconds_per_block(t) (read, verify,
// copy in; measured at start-up, then from every load), recomputing costs block_size / the
// model's prefill tokens per second (measured at start-up, then from prefill-heavy steps). Both
// are exponentially weighted averages (weight 0.2 for each new observation). The comparison
// is per block, so a run of blocks is loaded exactly when one of them would be.
//
// Not thread-safe: the engine thread owns it.
class ReloadCostModel {
 public:
  // `tier_seconds_per_block`: one entry per tier, top first.
  ReloadCostModel(ReloadPolicy policy, int block_size, double prefill_tokens_per_second,
                  std::vector<double> tier_seconds_per_block);

  bool ShouldLoad(int tier) const;
  void ObservePrefill(int64_t tokens, double seconds);
  void ObserveLoad(int tier, int blocks, double seconds);

  double recompute_seconds_per_block() const;
  double load_seconds_per_block(int tier) const { return tier_seconds_per_block_[tier]; }
  double prefill_tokens_per_second() const { return prefill_tokens_per_second_; }
  ReloadPolicy policy() const { return policy_; }
  // The decision inputs, for the start-up log.
  std::string Describe(const std::vector<std::string>& media) const;

 private:
  ReloadPolicy policy_;
  int block_size_;
  double prefill_tokens_per_second_;
  std::vector<double> tier_seconds_per_block_;
};

// Measures a tier: the seconds to read back and verify one block of `payload_bytes` from a
// cold file in `dir` (written, synced and dropped from the page cache first), the median of
// `samples` files. The probe files are removed.
absl::StatusOr<double> ProbeDiskSecondsPerBlock(const std::string& dir, int64_t payload_bytes,
                                                int samples = 8);
// The same for host memory: one copy of a block.
double ProbeHostSecondsPerBlock(int64_t payload_bytes);

}  // namespace pagoda::kv_offload
