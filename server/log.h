#pragma once

#include "absl/strings/string_view.h"

namespace pagoda::server {

// Writes one line to stderr, prefixed with the local time and "pagodad": the daemon's
// operational log (start-up facts, listening addresses, drain progress). Thread-safe; lines of
// concurrent callers never interleave.
void LogLine(absl::string_view message);

}  // namespace pagoda::server
