#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace pagoda::server {

// Writes one line to stderr, prefixed with the local time and "pagodad": the daemon's
// operational log (start-up facts, listening addresses, drain progress). Thread-safe; lines of
// concurrent callers never interleave.
void LogLine(absl::string_view message);

// Rate limit for repeated log lines: per key, at most `burst` lines per `window`; the others are
// dropped and counted, and the next line let through after the window says how many were. A
// client can make a line repeat (one per malformed request), so nothing it sends may make the
// log grow without bound. Thread-safe. Keys are kept at most kMaxKeys at a time.
class LogRateLimiter {
 public:
  static constexpr size_t kMaxKeys = 1024;

  LogRateLimiter(int burst, absl::Duration window,
                 std::function<absl::Time()> now = [] { return absl::Now(); });

  // The line to write for `message` under `key`, or nullopt to drop it.
  std::optional<std::string> Admit(absl::string_view key, absl::string_view message);

 private:
  struct Window {
    absl::Time start;
    int lines = 0;
    int64_t dropped = 0;
  };
  const int burst_;
  const absl::Duration window_;
  const std::function<absl::Time()> now_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Window> windows_ ABSL_GUARDED_BY(mu_);
};

// Sends protobuf's own log lines (e.g. one ERROR per request whose string field is not UTF-8)
// through LogLine, at most 5 per source line a minute.
void InstallProtobufLogRateLimit();

}  // namespace pagoda::server
