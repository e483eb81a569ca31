#include "kv_offload/cost_model.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/check.h"
#include "kv_offload/disk_tier.h"

namespace pagoda::kv_offload {
namespace {

constexpr double kWeight = 0.2;

double Ewma(double old_value, double sample) {
  return old_value <= 0 ? sample : (1 - kWeight) * old_value + kWeight * sample;
}

}  // namespace

ReloadCostModel::ReloadCostModel(ReloadPolicy policy, int block_size,
                                 double prefill_tokens_per_second,
                                 std::vector<double> tier_seconds_per_block)
    : policy_(policy),
      block_size_(block_size),
      prefill_tokens_per_second_(prefill_tokens_per_second),
      tier_seconds_per_block_(std::move(tier_seconds_per_block)) {
  PAGODA_CHECK_GT(block_size, 0);
}

double ReloadCostModel::recompute_seconds_per_block() const {
  return prefill_tokens_per_second_ <= 0 ? 0 : block_size_ / prefill_tokens_per_second_;
}

bool ReloadCostModel::ShouldLoad(int tier) const {
  if (policy_ == ReloadPolicy::kAlways) return true;
  return tier_seconds_per_block_[tier] < recompute_seconds_per_block();
}

void ReloadCostModel::ObservePrefill(int64_t tokens, double seconds) {
  if (tokens <= 0 || seconds <= 0) return;
  prefill_tokens_per_second_ =
      Ewma(prefill_tokens_per_second_, static_cast<double>(tokens) / seconds);
}

void ReloadCostModel::ObserveLoad(int tier, int blocks, double seconds) {
  if (blocks <= 0 || seconds <= 0) return;
  tier_seconds_per_block_[tier] = Ewma(tier_seconds_per_block_[tier], seconds / blocks);
}

std::string ReloadCostModel::Describe(const std::vector<std::string>& media) const {
  std::string out =
      absl::StrFormat("recompute %.3f ms/block (%.0f prefill tok/s)",
                      recompute_seconds_per_block() * 1e3, prefill_tokens_per_second_);
  for (size_t t = 0; t < tier_seconds_per_block_.size(); ++t) {
    absl::StrAppendFormat(&out, "; %s load %.3f ms/block -> %s", media[t],
                          tier_seconds_per_block_[t] * 1e3,
                          ShouldLoad(static_cast<int>(t)) ? "load" : "recompute");
  }
  if (policy_ == ReloadPolicy::kAlways) out += " (policy always)";
  return out;
}

absl::StatusOr<double> ProbeDiskSecondsPerBlock(const std::string& dir, int64_t payload_bytes,
                                                int samples) {
  std::string payload(static_cast<size_t>(payload_bytes), '\0');
  std::mt19937_64 rng(payload_bytes);
  for (char& c : payload) c = static_cast<char>(rng());
  std::vector<std::string> paths;
  for (int i = 0; i < samples; ++i) {
    paths.push_back(absl::StrCat(dir, "/probe-", ::getpid(), "-", i, ".probe"));
    absl::Status written = WriteFileAtomically(paths.back(), payload, ".w");
    if (!written.ok()) {
      for (const std::string& p : paths) ::unlink(p.c_str());
      return written;
    }
  }
  // Cold reads: synced, then dropped from the page cache (as far as the kernel lets us).
  for (const std::string& p : paths) {
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
  std::vector<double> seconds;
  for (const std::string& p : paths) {
    const absl::Time start = absl::Now();
    absl::StatusOr<std::string> bytes = ReadWholeFile(p);
    if (bytes.ok()) {
      volatile uint64_t checksum = XXH3_64bits(bytes->data(), bytes->size());
      (void)checksum;
    }
    seconds.push_back(absl::ToDoubleSeconds(absl::Now() - start));
    ::unlink(p.c_str());
  }
  std::sort(seconds.begin(), seconds.end());
  return seconds[seconds.size() / 2];
}

double ProbeHostSecondsPerBlock(int64_t payload_bytes) {
  std::string a(static_cast<size_t>(payload_bytes), 'a');
  std::string b(static_cast<size_t>(payload_bytes), 'b');
  const absl::Time start = absl::Now();
  constexpr int kCopies = 16;
  for (int i = 0; i < kCopies; ++i) {
    std::memcpy(i % 2 ? a.data() : b.data(), i % 2 ? b.data() : a.data(), a.size());
  }
  volatile char sink = a[a.size() / 2];
  (void)sink;
  // A load copies twice (out of the tier, into the device pool).
  return 2 * absl::ToDoubleSeconds(absl::Now() - start) / kCopies;
}

}  // namespace pagoda::kv_offload
