#include "tokenizer/stop_string_matcher.h"

#include <algorithm>
#include <utility>

namespace pagoda::tokenizer {

StopStringMatcher::StopStringMatcher(Options options) : options_(std::move(options)) {
  std::erase_if(options_.stop_strings, [](const std::string& s) { return s.empty(); });
}

size_t StopStringMatcher::HeldBackLength() const {
  size_t held = 0;
  for (const std::string& stop : options_.stop_strings) {
    const size_t max_len = std::min(stop.size() - 1, pending_.size());
    for (size_t len = max_len; len > held; --len) {
      if (pending_.compare(pending_.size() - len, len, stop, 0, len) == 0) {
        held = len;
        break;
      }
    }
  }
  return held;
}

StopStringMatcher::Result StopStringMatcher::Append(std::string_view delta) {
  Result result;
  if (stopped_) return result;
  pending_.append(delta);
  // pending_ holds less than one stop string of old text plus the delta, so searching all of
  // it costs O(delta + longest stop string) per call.
  size_t best_pos = std::string::npos;
  for (size_t i = 0; i < options_.stop_strings.size(); ++i) {
    const size_t pos = pending_.find(options_.stop_strings[i]);
    if (pos < best_pos) {
      best_pos = pos;
      result.stop_index = i;
    }
  }
  if (result.stop_index.has_value()) {
    const std::string& stop = options_.stop_strings[*result.stop_index];
    result.text = pending_.substr(0, best_pos);
    if (options_.include_stop_str_in_output) result.text += stop;
    pending_.clear();
    stopped_ = true;
    return result;
  }
  const size_t keep = HeldBackLength();
  result.text = pending_.substr(0, pending_.size() - keep);
  pending_.erase(0, pending_.size() - keep);
  return result;
}

std::string StopStringMatcher::Flush() {
  std::string rest = std::move(pending_);
  pending_.clear();
  return rest;
}

}  // namespace pagoda::tokenizer
