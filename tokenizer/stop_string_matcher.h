#pragma once

// Finds stop strings in streamed text across delta (token) boundaries.
//
// Text that could be the beginning of a stop string is held back until it is known not to be
// one, so a client never sees part of a stop string that is later cut. The first stop string to
// occur (earliest start; at equal starts, the one listed first) ends the stream: the text before
// it is emitted, followed by the stop string itself when include_stop_str_in_output is set.
//
// Not thread-safe (one per request).

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pagoda::tokenizer {

class StopStringMatcher {
 public:
  struct Options {
    std::vector<std::string> stop_strings;  // valid UTF-8; empty strings are ignored
    bool include_stop_str_in_output = false;
  };

  struct Result {
    std::string text;                  // text to emit now (valid UTF-8 if the input is)
    std::optional<size_t> stop_index;  // index in stop_strings of the stop that matched
  };

  explicit StopStringMatcher(Options options);

  // Feeds the next text delta. After a stop matched, further calls return nothing.
  Result Append(std::string_view delta);

  // At the end of a stream that did not stop: the text still held back.
  std::string Flush();

  bool stopped() const { return stopped_; }

 private:
  // Length of the longest suffix of pending_ that is a proper prefix of some stop string.
  size_t HeldBackLength() const;

  Options options_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace pagoda::tokenizer
