#include "server/grpc_status.h"

#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "grpcpp/server_context.h"
#include "server/error_reason.h"

namespace pagoda::server {
namespace {

grpc::StatusCode ToGrpcCode(absl::StatusCode code) {
  // absl::StatusCode mirrors the canonical gRPC codes number for number.
  const int value = static_cast<int>(code);
  if (value < 0 || value > static_cast<int>(grpc::StatusCode::UNAUTHENTICATED)) {
    return grpc::StatusCode::UNKNOWN;
  }
  return static_cast<grpc::StatusCode>(value);
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status, grpc::ServerContextBase* context) {
  if (status.ok()) return grpc::Status::OK;
  if (context != nullptr) {
    std::optional<ErrorReason> reason = GetErrorReason(status);
    if (!reason.has_value() && status.code() == absl::StatusCode::kInvalidArgument) {
      reason = ErrorReason::kInvalidField;
    }
    if (!reason.has_value() && status.code() == absl::StatusCode::kInternal) {
      reason = ErrorReason::kEngineFailure;
    }
    if (reason.has_value()) {
      context->AddTrailingMetadata("pagoda-error-reason", std::string(ErrorReasonName(*reason)));
    }
    if (const auto retry_after_ms = GetRetryAfterMs(status)) {
      context->AddTrailingMetadata("pagoda-retry-after-ms", absl::StrCat(*retry_after_ms));
    }
  }
  return grpc::Status(ToGrpcCode(status.code()), std::string(status.message()));
}

}  // namespace pagoda::server
