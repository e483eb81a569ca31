#pragma once

// The gRPC service pagoda.v1.TextGeneration on the callback API. Includes the generated gRPC
// stubs (heavy: TOOLCHAIN.md pitfall 10); only pagoda_server.cc and tests include this header.

#include <atomic>
#include <functional>
#include <string>

#include "absl/time/time.h"
#include "engine/engine.h"
#include "pagoda/v1/text_generation_service.grpc.pb.h"
#include "server/authenticator.h"
#include "server/prometheus_metrics.h"
#include "server/request_registry.h"

namespace pagoda::server {

// Validates requests (server/generate_request.h), submits them to the engine and streams its
// outputs back; answers the info, tokenizer and Abort RPCs.
//
// Threads: gRPC reactions and engine sinks never block; a Generate stream is written one
// message at a time, the engine thread queueing messages and OnWriteDone starting the next.
// A client cancel or an expired deadline aborts the request in the engine.
//
// Lifetime: until SetEngine, every RPC but GetServerInfo and Abort (which finds nothing to
// abort) fails with UNAVAILABLE (the model is loading) once its request has parsed. The engine and
// metrics passed to SetEngine must outlive every RPC of this service (stop the grpc::Server first).
// The service must outlive the engine: requests the engine still holds report their end to the
// service's registry.
//
// Authentication: with an authenticator, every RPC of this service first checks the
// `authorization` metadata and fails with UNAUTHENTICATED (counted as a rejection with reason
// "unauthenticated" once the metrics exist) before it looks at its request. The health and
// reflection services are separate and never check it.
//
// Every RPC takes its request as raw bytes and parses it here (server/message_parsing.h),
// before anything else but the authentication: invalid UTF-8 in a string field is an
// INVALID_ARGUMENT naming the field ("request_ids[2]: must be valid UTF-8"), and bytes that are
// no request at all are an INVALID_ARGUMENT too, rather than the bare UNIMPLEMENTED that gRPC's
// own deserialization answers before a handler runs. Responses are serialized here as well.
class TextGenerationService final
    : public v1::TextGeneration::WithRawCallbackMethod_Generate<
          v1::TextGeneration::WithRawCallbackMethod_Abort<
              v1::TextGeneration::WithRawCallbackMethod_GetModelInfo<
                  v1::TextGeneration::WithRawCallbackMethod_GetServerInfo<
                      v1::TextGeneration::WithRawCallbackMethod_Tokenize<
                          v1::TextGeneration::WithRawCallbackMethod_Detokenize<
                              v1::TextGeneration::Service>>>>>> {
 public:
  struct Options {
    std::string version;                  // ServerInfo.version
    absl::Time start_time = absl::Now();  // ServerInfo start time and uptime
    int max_waiting_requests = 0;         // ServerInfo.max_num_waiting_requests
    absl::Duration queue_full_retry_after = absl::Seconds(1);
    // Null: no authentication. Must outlive the service.
    const Authenticator* authenticator = nullptr;
    // Called once, from any thread (often the engine thread), when a request ends with an
    // engine failure. Must not block.
    std::function<void()> on_engine_failure;
  };

  explicit TextGenerationService(Options options);
  ~TextGenerationService() override;

  // Makes the loaded engine available. Call once; neither may be null.
  void SetEngine(engine::Engine* engine, PrometheusMetrics* metrics);
  // From now on Generate fails with UNAVAILABLE (DRAINING) and ServerInfo.draining is true.
  // Requests already accepted go on. Idempotent.
  void StartDrain();

  // Unfinished Generate requests (reserved ids): for tests and shutdown logs.
  int num_unfinished_requests() const { return registry_.size(); }

  // The RPCs. Each request and response is the serialized message its name says
  // (proto/pagoda/v1/text_generation_service.proto).

  // v1::GenerateRequest in, a stream of v1::GenerateResponse out.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request) override;
  // v1::AbortRequest in, v1::AbortResponse out.
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* context,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;
  // v1::GetModelInfoRequest in, v1::ModelInfo out.
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
  // v1::GetServerInfoRequest in, v1::ServerInfo out.
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const grpc::ByteBuffer* request,
                                          grpc::ByteBuffer* response) override;
  // v1::TokenizeRequest in, v1::TokenizeResponse out.
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  // v1::DetokenizeRequest in, v1::DetokenizeResponse out.
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;

 private:
  class GenerateCall;
  class GenerateReactor;

  // Validates, registers and submits one Generate request; on success the call streams from
  // then on. `reactor` is not yet returned to gRPC.
  absl::Status StartGenerate(const v1::GenerateRequest& request, const std::string& request_id,
                             absl::Time arrival, GenerateReactor* reactor);
  // An error of Engine::Submit, which carries its reason, with the retry hint added.
  absl::Status SubmitError(const absl::Status& status) const;
  // The engine once loaded, else Unavailable.
  absl::StatusOr<engine::Engine*> LoadedEngine() const;
  void ReportEngineFailure();
  // OK without an authenticator or with a valid token; else Unauthenticated, counted.
  absl::Status Authenticate(const grpc::CallbackServerContext& context) const;
  // The one body of every unary RPC: Authenticate, parse `request` as a `Request`, call
  // `answer` (absl::StatusOr<Response>(const Request&), Response a protobuf message; it must
  // not block), serialize its response into `response` and finish with its status.
  template <typename Request, typename Answer>
  grpc::ServerUnaryReactor* HandleUnary(grpc::CallbackServerContext* context,
                                        const grpc::ByteBuffer& request, grpc::ByteBuffer* response,
                                        Answer answer);

  const Options options_;
  std::atomic<engine::Engine*> engine_{nullptr};
  std::atomic<PrometheusMetrics*> metrics_{nullptr};
  std::atomic<bool> draining_{false};
  std::atomic<bool> engine_failed_{false};
  // Tokenize and Detokenize calls running now, at most kMaxTokenizerCalls: the others are
  // refused with RESOURCE_EXHAUSTED at once, so that they never hold every gRPC thread and
  // health checks and Generate keep answering.
  std::atomic<int> tokenizer_calls_{0};
  RequestRegistry registry_;
};

}  // namespace pagoda::server
