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
// Lifetime: until SetEngine, every RPC but GetServerInfo fails with UNAVAILABLE (the model is
// loading). The engine and metrics passed to SetEngine must outlive every RPC of this service
// (stop the grpc::Server first). The service must outlive the engine: requests the engine
// still holds report their end to the service's registry.
//
// Authentication: with an authenticator, every RPC of this service first checks the
// `authorization` metadata and fails with UNAUTHENTICATED (counted as a rejection with reason
// "unauthenticated" once the metrics exist) before it looks at its request. The health and
// reflection services are separate and never check it.
//
// Generate and Tokenize take their requests as raw bytes and parse them here
// (server/message_parsing.h), so that invalid UTF-8 in a string field is an INVALID_ARGUMENT
// naming the field rather than gRPC's bare UNIMPLEMENTED for an unparsable request.
class TextGenerationService final
    : public v1::TextGeneration::WithRawCallbackMethod_Generate<
          v1::TextGeneration::WithRawCallbackMethod_Tokenize<v1::TextGeneration::CallbackService>> {
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

  // Streams serialized v1::GenerateResponse messages for a serialized v1::GenerateRequest.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* context,
                                  const v1::AbortRequest* request,
                                  v1::AbortResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const v1::GetModelInfoRequest* request,
                                         v1::ModelInfo* response) override;
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const v1::GetServerInfoRequest* request,
                                          v1::ServerInfo* response) override;
  // v1::TokenizeRequest in, v1::TokenizeResponse out, serialized.
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context,
                                       const v1::DetokenizeRequest* request,
                                       v1::DetokenizeResponse* response) override;

 private:
  class GenerateCall;
  class GenerateReactor;

  // Validates, registers and submits one Generate request; on success the call streams from
  // then on. `reactor` is not yet returned to gRPC.
  absl::Status StartGenerate(const v1::GenerateRequest& request, const std::string& request_id,
                             absl::Time arrival, GenerateReactor* reactor);
  // Maps an error of Engine::Submit to the API's status and reason.
  absl::Status SubmitError(const absl::Status& status) const;
  // The engine once loaded, else Unavailable.
  absl::StatusOr<engine::Engine*> LoadedEngine() const;
  void ReportEngineFailure();
  // OK without an authenticator or with a valid token; else Unauthenticated, counted.
  absl::Status Authenticate(const grpc::CallbackServerContext& context) const;

  const Options options_;
  std::atomic<engine::Engine*> engine_{nullptr};
  std::atomic<PrometheusMetrics*> metrics_{nullptr};
  std::atomic<bool> draining_{false};
  std::atomic<bool> engine_failed_{false};
  RequestRegistry registry_;
};

}  // namespace pagoda::server
