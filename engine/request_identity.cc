#include "engine/request_identity.h"

#include <cstdint>
#include <random>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "engine/error_reason.h"

namespace pagoda::engine {

absl::Status ValidateRequestId(absl::string_view id, absl::string_view field) {
  if (id.empty()) return InvalidFieldError(absl::StrCat(field, ": must not be empty"));
  if (id.size() > static_cast<size_t>(kMaxRequestIdBytes)) {
    return InvalidFieldError(
        absl::StrCat(field, ": at most ", kMaxRequestIdBytes, " bytes, got ", id.size()));
  }
  for (size_t i = 0; i < id.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(id[i]);
    if (c < 0x21 || c > 0x7e) {
      return InvalidFieldError(absl::StrFormat(
          "%s: must be printable ASCII without spaces (0x21-0x7E), got byte 0x%02X at %d", field, c,
          i));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ResolveRequestId(absl::string_view request_id,
                                             std::optional<absl::string_view> header) {
  if (!request_id.empty()) {
    PAGODA_RETURN_IF_ERROR(ValidateRequestId(request_id, "request_id"));
    return std::string(request_id);
  }
  if (header.has_value() && !header->empty()) {
    PAGODA_RETURN_IF_ERROR(ValidateRequestId(*header, "x-request-id"));
    return std::string(*header);
  }
  return NewRequestId();
}

std::string NewRequestId() {
  static absl::Mutex mu(absl::kConstInit);
  static std::mt19937_64* rng ABSL_GUARDED_BY(mu) = nullptr;
  uint64_t hi = 0;
  uint64_t lo = 0;
  {
    absl::MutexLock lock(&mu);
    if (rng == nullptr) rng = new std::mt19937_64(std::random_device{}());  // never freed
    hi = (*rng)();
    lo = (*rng)();
  }
  hi = (hi & ~uint64_t{0xf000}) | 0x4000;                      // version 4
  lo = (lo & ~(uint64_t{0xc} << 60)) | (uint64_t{0x8} << 60);  // variant 10xx
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", hi >> 32, (hi >> 16) & 0xffff, hi & 0xffff,
                         lo >> 48, lo & 0xffffffffffffULL);
}

absl::Status CheckModelName(absl::string_view requested, absl::string_view served) {
  if (requested.empty() || requested == served) return absl::OkStatus();
  return absl::NotFoundError(absl::StrCat("model: \"", absl::CHexEscape(requested),
                                          "\" is not served; this server serves \"", served, "\""));
}

}  // namespace pagoda::engine
