#include "server/error_reason.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace pagoda::server {
namespace {

constexpr char kRetryAfterUrl[] = "type.googleapis.com/pagoda.RetryAfterMs";

}  // namespace

absl::Status WithRetryAfter(absl::Status status, absl::Duration retry_after) {
  const int64_t ms = std::max<int64_t>(
      1, static_cast<int64_t>(std::ceil(absl::ToDoubleMilliseconds(retry_after))));
  status.SetPayload(kRetryAfterUrl, absl::Cord(absl::StrCat(ms)));
  return status;
}

std::optional<int64_t> GetRetryAfterMs(const absl::Status& status) {
  const auto payload = status.GetPayload(kRetryAfterUrl);
  int64_t ms = 0;
  if (!payload.has_value() || !absl::SimpleAtoi(std::string(*payload), &ms)) return std::nullopt;
  return ms;
}

std::string RejectionLabel(const absl::Status& status) {
  if (const auto reason = GetErrorReason(status)) {
    return absl::AsciiStrToLower(ErrorReasonName(*reason));
  }
  return absl::AsciiStrToLower(absl::StatusCodeToString(status.code()));
}

}  // namespace pagoda::server
