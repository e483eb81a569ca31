#pragma once

// The one place where an absl::Status becomes a grpc::Status (STYLE.md). Everything inside the
// server works with absl::Status; the gRPC reactions call this at the edge.

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace grpc {
class ServerContextBase;
}  // namespace grpc

namespace pagoda::server {

// Same code and message. When `status` carries an error reason or a retry hint
// (server/error_reason.h) and `context` is not null, adds the `pagoda-error-reason` and
// `pagoda-retry-after-ms` trailing metadata to `context`; an INVALID_ARGUMENT without a reason
// gets INVALID_FIELD, an INTERNAL without one ENGINE_FAILURE. Call before the RPC is finished,
// from the thread that finishes it.
grpc::Status ToGrpcStatus(const absl::Status& status, grpc::ServerContextBase* context);

}  // namespace pagoda::server
