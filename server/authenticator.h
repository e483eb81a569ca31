#pragma once

// Bearer-token authentication of the pagoda.v1.TextGeneration RPCs (--auth-token-file). Holds
// no gRPC types: the service passes it the `authorization` metadata value.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pagoda::server {

// Accepts a call whose `authorization` metadata is `Bearer <token>` (the scheme in any case,
// RFC 6750) for one of a fixed set of tokens.
//
// Immutable after construction; thread-safe.
class Authenticator {
 public:
  // Tokens from a file: one per line; surrounding whitespace is trimmed, blank lines and lines
  // starting with '#' are ignored. InvalidArgument naming --auth-token-file when the file
  // cannot be read, holds no token, or a token has characters other than visible ASCII
  // (tokens travel as HTTP/2 header values). Never puts a token into an error message.
  static absl::StatusOr<std::unique_ptr<Authenticator>> FromFile(const std::string& path);
  // The same rules applied to the file's contents.
  static absl::StatusOr<std::unique_ptr<Authenticator>> FromText(absl::string_view text);

  // OK when `authorization` (the metadata value; nullopt when absent) carries a known token,
  // else Unauthenticated with a message that never echoes what the client sent. The
  // comparison takes the same time whichever token, and whichever byte of it, differs.
  absl::Status Check(std::optional<absl::string_view> authorization) const;

  int num_tokens() const { return static_cast<int>(tokens_.size()); }

 private:
  explicit Authenticator(std::vector<std::string> tokens) : tokens_(std::move(tokens)) {}

  const std::vector<std::string> tokens_;  // not empty
};

// a == b, in a time that depends only on a.size(): every byte of `a` is compared.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

}  // namespace pagoda::server
