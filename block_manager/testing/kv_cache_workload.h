#pragma once

#include <cstddef>
#include <cstdint>
#include <random>

#include "absl/status/status.h"
#include "block_manager/testing/kv_cache_harness.h"

namespace pagoda::block_manager::testing {

// Where a workload takes its decisions from: a seeded PRNG (randomized tests) or the bytes of
// a fuzz input.
class ChoiceSource {
 public:
  virtual ~ChoiceSource() = default;
  // A value in [0, n), n > 0.
  virtual int Next(int n) = 0;
  // True once a byte source has run out; a PRNG never does.
  virtual bool exhausted() const = 0;
};

class RandomChoices final : public ChoiceSource {
 public:
  explicit RandomChoices(uint64_t seed) : rng_(seed) {}
  int Next(int n) override { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  bool exhausted() const override { return false; }

 private:
  std::mt19937_64 rng_;
};

class ByteChoices final : public ChoiceSource {
 public:
  ByteChoices(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  int Next(int n) override { return pos_ < size_ ? data_[pos_++] % n : 0; }
  bool exhausted() const override { return pos_ >= size_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// What a workload did, so tests can prove it reached the interesting cases.
struct WorkloadCounts {
  int64_t ops = 0;
  int64_t admissions = 0;
  int64_t failed_allocations = 0;
  int64_t preemptions = 0;
  int64_t hit_blocks = 0;
  int64_t evictions = 0;
};

// Harness options drawn from `choices`: a small pool (so blocks run out), block sizes 1..16,
// prefix caching mostly on, a watermark sometimes, the colliding hash sometimes.
HarnessOptions RandomHarnessOptions(ChoiceSource& choices);

// Runs up to `max_ops` random operations (new requests sharing prompt prefixes, admissions,
// prefill chunks and decodes, preemptions, finishes, cache resets) through a KvCacheHarness,
// then ends every request and checks for leaks. Returns the first violation found.
absl::Status RunWorkload(const HarnessOptions& options, ChoiceSource& choices, int max_ops,
                         WorkloadCounts* counts);

}  // namespace pagoda::block_manager::testing
