#include "server/authenticator.h"

#include <cstdint>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace pagoda::server {
namespace {

constexpr absl::string_view kFlag = "--auth-token-file";
constexpr absl::string_view kScheme = "bearer ";

}  // namespace

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  // The loop runs over the presented value `a` only, so its time says nothing about `b`; a
  // length difference is folded into the result rather than returned early.
  uint64_t diff = static_cast<uint64_t>(a.size() ^ b.size());
  if (b.empty()) return a.empty();
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i]) ^ static_cast<unsigned char>(b[i % b.size()]);
  }
  return diff == 0;
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::FromFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::InvalidArgumentError(absl::StrCat(kFlag, ": cannot read '", path, "'"));
  }
  std::stringstream contents;
  contents << file.rdbuf();
  if (file.bad()) {
    return absl::InvalidArgumentError(absl::StrCat(kFlag, ": cannot read '", path, "'"));
  }
  absl::StatusOr<std::unique_ptr<Authenticator>> authenticator = FromText(contents.str());
  if (!authenticator.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(authenticator.status().message(), " (in '", path, "')"));
  }
  return authenticator;
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::FromText(absl::string_view text) {
  std::vector<std::string> tokens;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || absl::StartsWith(line, "#")) continue;
    for (char c : line) {
      if (c <= ' ' || c > '~') {
        return absl::InvalidArgumentError(absl::StrCat(
            kFlag, ": the token on line ", line_number,
            " has a space or a character that is not visible ASCII (one token per line)"));
      }
    }
    tokens.emplace_back(line);
  }
  if (tokens.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kFlag, ": no token (one per line; blank lines and # comments are ignored)"));
  }
  return std::unique_ptr<Authenticator>(new Authenticator(std::move(tokens)));
}

absl::Status Authenticator::Check(std::optional<absl::string_view> authorization) const {
  if (!authorization.has_value()) {
    return absl::UnauthenticatedError(
        "this server requires the metadata 'authorization: Bearer <token>'");
  }
  if (authorization->size() < kScheme.size() ||
      !absl::EqualsIgnoreCase(authorization->substr(0, kScheme.size()), kScheme)) {
    return absl::UnauthenticatedError(
        "the 'authorization' metadata must have the form 'Bearer <token>'");
  }
  const absl::string_view presented =
      absl::StripLeadingAsciiWhitespace(authorization->substr(kScheme.size()));
  // Every token is compared, so the time does not tell which one (if any) matched.
  bool match = false;
  for (const std::string& token : tokens_) match |= ConstantTimeEquals(presented, token);
  if (!match) return absl::UnauthenticatedError("invalid bearer token");
  return absl::OkStatus();
}

}  // namespace pagoda::server
