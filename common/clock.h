#pragma once

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace pagoda::common {

// Source of the current time, injectable so tests control it. Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;

  // The process-wide real clock. Never null; never destroyed.
  static const Clock& Real();
};

// A clock that moves only when told to. Not thread-safe: for single-threaded tests.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::UnixEpoch()) : now_(start) {}
  absl::Time Now() const override { return now_; }
  void Advance(absl::Duration d) { now_ += d; }

 private:
  absl::Time now_;
};

}  // namespace pagoda::common
