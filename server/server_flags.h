#pragma once

// pagodad's command line, in the spirit of vLLM's (`--max-num-seqs 64`, `--port=50051`).
// Flags take their value as `--name value` or `--name=value`; underscores may replace dashes.
// Pure functions; thread-safe.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "server/server_options.h"

namespace pagoda::server {

struct ParsedFlags {
  ServerOptions options;
  bool help = false;  // --help or -h: print ServerUsage() and exit
};

// Parses the arguments after the program name. InvalidArgument naming the flag for an unknown
// flag, a missing or malformed value, a value out of range, or a positional argument.
absl::StatusOr<ParsedFlags> ParseServerFlags(absl::Span<const std::string> args);

// Whether --host names this machine only: "localhost", 127.0.0.0/8 or ::1 (bracketed or
// not). Anything else, 0.0.0.0 and :: included, is reachable from the network.
bool IsLoopbackHost(absl::string_view host);

// The --help text: every flag, its default and what it does.
std::string ServerUsage();

// A byte count: an integer or decimal number with an optional unit, binary (Ki, Mi, Gi, Ti,
// also spelled KiB...) or decimal (K/k, M, G, T, also KB...); "B" or none = bytes. Fractions of
// a byte are dropped: "1.5KiB" = 1536, "2GiB" = 2147483648, "512MB" = 512000000.
absl::StatusOr<int64_t> ParseByteSize(absl::string_view text);

// "2.00 GiB", "512.00 MiB", "100 B": for logs.
std::string FormatByteSize(int64_t bytes);

}  // namespace pagoda::server
