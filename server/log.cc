#include "server/log.h"

#include <cstdio>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/stubs/logging.h"

namespace pagoda::server {

void LogLine(absl::string_view message) {
  const std::string line =
      absl::StrCat(absl::FormatTime("%Y-%m-%d %H:%M:%E3S", absl::Now(), absl::LocalTimeZone()),
                   " pagodad: ", message, "\n");
  // One fwrite per line: stdio locks the stream for the call.
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

LogRateLimiter::LogRateLimiter(int burst, absl::Duration window, std::function<absl::Time()> now)
    : burst_(burst), window_(window), now_(std::move(now)) {}

std::optional<std::string> LogRateLimiter::Admit(absl::string_view key,
                                                 absl::string_view message) {
  const absl::Time now = now_();
  absl::MutexLock lock(&mu_);
  if (windows_.size() >= kMaxKeys && !windows_.contains(key)) {
    // Forget the windows that have ended; if none has, the new key shares the limit's fate.
    for (auto it = windows_.begin(); it != windows_.end();) {
      const Window& old = it->second;
      if (now - old.start >= window_ && old.dropped == 0) {
        windows_.erase(it++);
      } else {
        ++it;
      }
    }
    if (windows_.size() >= kMaxKeys) return std::nullopt;
  }
  Window& w = windows_[key];
  std::string note;
  if (w.lines == 0 || now - w.start >= window_) {
    if (w.dropped > 0) note = absl::StrCat(" (", w.dropped, " similar lines suppressed)");
    w = Window{.start = now};
  }
  if (w.lines >= burst_) {
    ++w.dropped;
    return std::nullopt;
  }
  ++w.lines;
  return absl::StrCat(message, note);
}

namespace {

void ProtobufLogHandler(google::protobuf::LogLevel level, const char* filename, int line,
                        const std::string& message) {
  static auto* const limiter = new LogRateLimiter(5, absl::Minutes(1));
  const char* const kLevels[] = {"INFO", "WARNING", "ERROR", "FATAL"};
  const std::string key = absl::StrCat(filename, ":", line);
  if (std::optional<std::string> admitted = limiter->Admit(key, message)) {
    LogLine(absl::StrCat("libprotobuf ", kLevels[level < 0 || level > 3 ? 2 : level], " ", key,
                         "] ", *admitted));
  }
}

}  // namespace

void InstallProtobufLogRateLimit() { google::protobuf::SetLogHandler(&ProtobufLogHandler); }

}  // namespace pagoda::server
