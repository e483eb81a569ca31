#include "server/text_generation_service.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <memory>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/check.h"
#include "common/status_macros.h"
#include "engine/request_identity.h"
#include "grpcpp/grpcpp.h"
#include "server/error_reason.h"
#include "server/generate_request.h"
#include "server/generate_response.h"
#include "server/grpc_status.h"
#include "server/message_parsing.h"
#include "server/model_info.h"

namespace pagoda::server {
namespace {

constexpr absl::string_view kRequestIdKey = "x-request-id";
constexpr absl::string_view kAuthorizationKey = "authorization";

std::optional<absl::string_view> Header(const grpc::CallbackServerContext& context,
                                        absl::string_view key) {
  const auto& metadata = context.client_metadata();
  const auto it = metadata.find(grpc::string_ref(key.data(), key.size()));
  if (it == metadata.end()) return std::nullopt;
  return absl::string_view(it->second.data(), it->second.size());
}

// Finishes a unary RPC with `status`.
grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* context,
                                      const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status, context));
  return reactor;
}

bool IsEngineFailure(const absl::Status& status) {
  return GetErrorReason(status) == ErrorReason::kEngineFailure;
}

// The raw methods' requests and responses.
std::string ToBytes(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (!buffer.Dump(&slices).ok()) return bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return bytes;
}

grpc::ByteBuffer Serialize(const google::protobuf::Message& message) {
  const std::string bytes = message.SerializeAsString();
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

// Every RPC's request goes through here, so that every RPC answers an unparsable request alike
// (ParseMessage's INVALID_ARGUMENT naming the field).
template <typename Request>
absl::StatusOr<Request> ParseRequest(const grpc::ByteBuffer& bytes) {
  Request request;
  PAGODA_RETURN_IF_ERROR(ParseMessage(ToBytes(bytes), request));
  return request;
}

}  // namespace

// The state of one accepted Generate call, shared by its reactor (gRPC threads) and the engine
// (as the request's sink, on the engine thread). It outlives whichever of the two ends last.
//
// Messages are written one at a time: whoever finds no write in flight and something to send
// takes the writer role under mu_ and starts the write (or the Finish, or both for the last
// message) after releasing it; OnWriteDone hands the role on. gRPC runs OnDone only after
// Finish, and Finish is called only when no write is in flight, so the reactor outlives every
// write and Finish started here.
class TextGenerationService::GenerateCall final : public engine::RequestSink {
 public:
  GenerateCall(TextGenerationService* service, engine::Engine* engine, std::string request_id,
               RequestRegistry::Ticket ticket, ResponseOptions options,
               double seconds_before_engine, GenerateReactor* reactor)
      : service_(service),
        engine_(engine),
        request_id_(std::move(request_id)),
        ticket_(ticket),
        options_(options),
        seconds_before_engine_(seconds_before_engine),
        reactor_(reactor) {}

  void SetEngineId(RequestId id) {
    absl::MutexLock lock(&mu_);
    engine_id_ = id;
  }

  // RequestSink, engine thread.
  void OnChunk(engine::OutputChunk chunk) override {
    if (!options_.stream || (chunk.token_ids.empty() && chunk.text.empty())) return;
    Push(MakeChunkResponse(request_id_, chunk, options_), std::nullopt);
  }
  void OnComplete(engine::RequestCompletion completion) override {
    service_->registry_.Release(request_id_, ticket_);
    if (!completion.status.ok()) {
      const absl::Status status = CompletionError(completion.status);
      if (IsEngineFailure(status)) service_->ReportEngineFailure();
      Push(std::nullopt, status);
      return;
    }
    Push(MakeCompleteResponse(request_id_, completion, options_, seconds_before_engine_),
         absl::OkStatus());
  }

  // Reactions, gRPC threads.
  void OnWriteDone(bool ok) {
    Action action;
    std::optional<RequestId> abort;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {
        // The stream broke (the client went away): nothing more can be written.
        pending_.clear();
        abort = EndLocked(absl::CancelledError("the response stream was closed"));
      }
      action = NextActionLocked();
    }
    if (abort.has_value()) engine_->Abort(*abort);
    Run(action);
  }
  void OnCancel() {
    Action action;
    std::optional<RequestId> abort;
    {
      absl::MutexLock lock(&mu_);
      pending_.clear();
      abort = EndLocked(absl::CancelledError("cancelled by the client or its deadline"));
      action = NextActionLocked();
    }
    // Frees the request's blocks in the engine's next step.
    if (abort.has_value()) engine_->Abort(*abort);
    Run(action);
  }
  void OnDone() {
    absl::MutexLock lock(&mu_);
    reactor_ = nullptr;
  }

 private:
  // What the writer-role holder does once it has released mu_.
  struct Action {
    enum class Kind { kNone, kWrite, kWriteAndFinish, kFinish } kind = Kind::kNone;
    GenerateReactor* reactor = nullptr;
    absl::Status status;  // kWriteAndFinish, kFinish
  };

  // An engine failure is INTERNAL with ENGINE_FAILURE; refusals the engine made on its own
  // thread keep their code.
  static absl::Status CompletionError(const absl::Status& status) {
    switch (status.code()) {
      case absl::StatusCode::kInvalidArgument:
      case absl::StatusCode::kAlreadyExists:
      case absl::StatusCode::kResourceExhausted:
      case absl::StatusCode::kFailedPrecondition:
        return status;
      default:
        return WithErrorReason(
            absl::InternalError(absl::StrCat("engine failure: ", status.message())),
            ErrorReason::kEngineFailure);
    }
  }

  // Ends the call early with `status` (unless it already ended); returns the engine request
  // to abort, if it is still running there.
  std::optional<RequestId> EndLocked(absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!ended_) {
      ended_ = true;
      final_status_ = std::move(status);
    }
    if (engine_done_ || abort_sent_) return std::nullopt;
    abort_sent_ = engine_id_.has_value();
    return engine_id_;
  }

  // Queues a message and/or the final status (which marks the engine's end of the request).
  void Push(std::optional<v1::GenerateResponse> message, std::optional<absl::Status> final) {
    // Serialized outside the lock, on the engine thread.
    std::optional<grpc::ByteBuffer> bytes;
    if (message.has_value()) bytes = Serialize(*message);
    Action action;
    {
      absl::MutexLock lock(&mu_);
      if (final.has_value()) engine_done_ = true;
      if (reactor_ == nullptr || ended_) return;
      if (bytes.has_value()) pending_.push_back(*std::move(bytes));
      if (final.has_value()) {
        ended_ = true;
        final_status_ = *std::move(final);
      }
      action = NextActionLocked();
    }
    Run(action);
  }

  Action NextActionLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finishing_ || reactor_ == nullptr) return {};
    if (!pending_.empty()) {
      in_flight_ = std::move(pending_.front());
      pending_.pop_front();
      if (pending_.empty() && ended_ && final_status_.ok()) {
        // The last message goes out with the status: one batch, no extra round trip in which
        // a deadline could expire after the client already has its Complete.
        finishing_ = true;
        return {.kind = Action::Kind::kWriteAndFinish, .reactor = reactor_};
      }
      writing_ = true;
      return {.kind = Action::Kind::kWrite, .reactor = reactor_};
    }
    if (ended_) {
      finishing_ = true;
      return {.kind = Action::Kind::kFinish, .reactor = reactor_, .status = final_status_};
    }
    return {};
  }

  void Run(const Action& action);

  TextGenerationService* const service_;
  engine::Engine* const engine_;
  const std::string request_id_;
  const RequestRegistry::Ticket ticket_;
  const ResponseOptions options_;
  const double seconds_before_engine_;

  absl::Mutex mu_;
  GenerateReactor* reactor_ ABSL_GUARDED_BY(mu_);  // null after OnDone
  std::optional<RequestId> engine_id_ ABSL_GUARDED_BY(mu_);
  std::deque<grpc::ByteBuffer> pending_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;  // the final status is known
  absl::Status final_status_ ABSL_GUARDED_BY(mu_);
  bool engine_done_ ABSL_GUARDED_BY(mu_) = false;  // the engine completed the request
  bool abort_sent_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;    // a write is in flight
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;  // Finish was called
  // The message being written; touched only by the writer-role holder.
  grpc::ByteBuffer in_flight_;
};

// The gRPC side of a Generate call. Without a call (the request was refused before it was
// accepted) it only finishes with the refusal. Deletes itself in OnDone.
class TextGenerationService::GenerateReactor final
    : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  GenerateReactor(grpc::CallbackServerContext* context, std::atomic<PrometheusMetrics*>* metrics)
      : context_(context), metrics_(metrics) {}

  grpc::CallbackServerContext* context() const { return context_; }
  // Before the reactor is returned to gRPC.
  void set_call(std::shared_ptr<GenerateCall> call) { call_ = std::move(call); }

  // Refuses the call. `counted`: the refusal was already counted (Authenticate does); otherwise
  // it is counted once the call is done, as "cancelled" when the client cancelled it: a call
  // reset right after it was sent reaches the handler with its request cut short, before gRPC
  // reports the cancellation, and must not count as an invalid request.
  void Refuse(const absl::Status& status, bool counted = false) {
    if (!counted) rejection_label_ = RejectionLabel(status);
    Finish(ToGrpcStatus(status, context_));
  }

  void OnWriteDone(bool ok) override {
    if (call_ != nullptr) call_->OnWriteDone(ok);
  }
  void OnCancel() override {
    cancelled_.store(true);
    if (call_ != nullptr) call_->OnCancel();
  }
  void OnDone() override {
    if (call_ != nullptr) call_->OnDone();
    if (!rejection_label_.empty()) {
      if (PrometheusMetrics* metrics = metrics_->load(std::memory_order_acquire)) {
        metrics->OnRequestRejected(cancelled_.load() || context_->IsCancelled()
                                       ? RejectionLabel(absl::CancelledError(""))
                                       : rejection_label_);
      }
    }
    delete this;
  }

 private:
  grpc::CallbackServerContext* const context_;
  std::atomic<PrometheusMetrics*>* const metrics_;
  std::shared_ptr<GenerateCall> call_;
  std::string rejection_label_;  // set by Refuse when the refusal is still to be counted
  std::atomic<bool> cancelled_{false};
};

void TextGenerationService::GenerateCall::Run(const Action& action) {
  switch (action.kind) {
    case Action::Kind::kNone:
      return;
    case Action::Kind::kWrite:
      action.reactor->StartWrite(&in_flight_);
      return;
    case Action::Kind::kWriteAndFinish:
      // No OnWriteDone follows; in_flight_ lives until OnDone (the reactor holds this call).
      action.reactor->StartWriteAndFinish(&in_flight_, grpc::WriteOptions(),
                                          ToGrpcStatus(action.status, action.reactor->context()));
      return;
    case Action::Kind::kFinish:
      action.reactor->Finish(ToGrpcStatus(action.status, action.reactor->context()));
      return;
  }
}

TextGenerationService::TextGenerationService(Options options) : options_(std::move(options)) {}

TextGenerationService::~TextGenerationService() = default;

void TextGenerationService::SetEngine(engine::Engine* engine, PrometheusMetrics* metrics) {
  PAGODA_CHECK(engine != nullptr && metrics != nullptr);
  metrics_.store(metrics, std::memory_order_release);
  engine_.store(engine, std::memory_order_release);
}

void TextGenerationService::StartDrain() { draining_.store(true, std::memory_order_release); }

absl::StatusOr<engine::Engine*> TextGenerationService::LoadedEngine() const {
  engine::Engine* engine = engine_.load(std::memory_order_acquire);
  if (engine == nullptr) return absl::UnavailableError("the model is still loading");
  return engine;
}

void TextGenerationService::ReportEngineFailure() {
  if (!engine_failed_.exchange(true) && options_.on_engine_failure) options_.on_engine_failure();
}

absl::Status TextGenerationService::Authenticate(const grpc::CallbackServerContext& context) const {
  if (options_.authenticator == nullptr) return absl::OkStatus();
  absl::Status status = options_.authenticator->Check(Header(context, kAuthorizationKey));
  if (!status.ok()) {
    if (PrometheusMetrics* metrics = metrics_.load(std::memory_order_acquire)) {
      metrics->OnRequestRejected(RejectionLabel(status));
    }
  }
  return status;
}

absl::Status TextGenerationService::SubmitError(const absl::Status& status) const {
  // The engine attached the reason; the retry hint is the server's.
  if (GetErrorReason(status) == ErrorReason::kQueueFull) {
    return WithRetryAfter(status, options_.queue_full_retry_after);
  }
  return status;
}

absl::Status TextGenerationService::StartGenerate(const v1::GenerateRequest& request,
                                                  const std::string& request_id, absl::Time arrival,
                                                  GenerateReactor* reactor) {
  PAGODA_ASSIGN_OR_RETURN(engine::Engine * engine, LoadedEngine());
  if (draining_.load(std::memory_order_acquire)) {
    return WithErrorReason(
        absl::UnavailableError("the server is draining; retry on another replica"),
        ErrorReason::kDraining);
  }
  if (engine_failed_.load()) {
    return WithErrorReason(absl::InternalError("the engine failed; this server must be restarted"),
                           ErrorReason::kEngineFailure);
  }
  PAGODA_ASSIGN_OR_RETURN(engine::EngineRequest engine_request,
                          ParseGenerateRequest(request, engine->info(), engine->tokenizer()));
  engine_request.external_id = request_id;
  PAGODA_ASSIGN_OR_RETURN(const RequestRegistry::Ticket ticket, registry_.Reserve(request_id));

  const ResponseOptions response_options{.stream = request.stream(),
                                         .usage_every_chunk = request.usage_every_chunk()};
  auto call = std::make_shared<GenerateCall>(
      this, engine, request_id, ticket, response_options,
      std::max(0.0, absl::ToDoubleSeconds(absl::Now() - arrival)), reactor);
  reactor->set_call(call);
  absl::StatusOr<RequestId> id = engine->Submit(std::move(engine_request), call);
  if (!id.ok()) {
    registry_.Release(request_id, ticket);
    reactor->set_call(nullptr);
    return SubmitError(id.status());
  }
  call->SetEngineId(*id);
  if (registry_.Bind(request_id, ticket, *id)) engine->Abort(*id);
  return absl::OkStatus();
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* TextGenerationService::Generate(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request_bytes) {
  const absl::Time arrival = absl::Now();
  auto* reactor = new GenerateReactor(context, &metrics_);
  if (absl::Status status = Authenticate(*context); !status.ok()) {
    reactor->Refuse(status, /*counted=*/true);  // counted by Authenticate
    return reactor;
  }
  absl::StatusOr<v1::GenerateRequest> request = ParseRequest<v1::GenerateRequest>(*request_bytes);
  absl::Status status = request.status();
  if (status.ok()) {
    absl::StatusOr<std::string> request_id =
        engine::ResolveRequestId(request->request_id(), Header(*context, kRequestIdKey));
    if (request_id.ok()) {
      context->AddInitialMetadata(std::string(kRequestIdKey), *request_id);
      status = StartGenerate(*request, *request_id, arrival, reactor);
    } else {
      status = request_id.status();
    }
  }
  if (!status.ok()) reactor->Refuse(status);  // counted when the call is done
  return reactor;
}

template <typename Request, typename Answer>
grpc::ServerUnaryReactor* TextGenerationService::HandleUnary(grpc::CallbackServerContext* context,
                                                             const grpc::ByteBuffer& request,
                                                             grpc::ByteBuffer* response,
                                                             Answer answer) {
  if (absl::Status status = Authenticate(*context); !status.ok()) {
    return FinishUnary(context, status);
  }
  absl::StatusOr<Request> parsed = ParseRequest<Request>(request);
  if (!parsed.ok()) return FinishUnary(context, parsed.status());
  const auto answered = answer(*parsed);
  if (answered.ok()) *response = Serialize(*answered);
  return FinishUnary(context, answered.status());
}

grpc::ServerUnaryReactor* TextGenerationService::Abort(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request_bytes,
                                                       grpc::ByteBuffer* response_bytes) {
  return HandleUnary<v1::AbortRequest>(
      context, *request_bytes, response_bytes,
      [this](const v1::AbortRequest& request) -> absl::StatusOr<v1::AbortResponse> {
        if (request.request_ids_size() > kMaxAbortRequestIds) {
          return WithErrorReason(
              absl::InvalidArgumentError(absl::StrCat("request_ids: at most ", kMaxAbortRequestIds,
                                                      " ids, got ", request.request_ids_size())),
              ErrorReason::kInvalidField);
        }
        std::vector<RequestId> to_abort;
        const std::vector<std::string> ids(request.request_ids().begin(),
                                           request.request_ids().end());
        v1::AbortResponse response;
        response.set_num_found(static_cast<uint32_t>(registry_.MarkForAbort(ids, to_abort)));
        if (engine::Engine* engine = engine_.load(std::memory_order_acquire)) {
          for (RequestId id : to_abort) engine->Abort(id);
        }
        return response;
      });
}

grpc::ServerUnaryReactor* TextGenerationService::GetModelInfo(grpc::CallbackServerContext* context,
                                                              const grpc::ByteBuffer* request_bytes,
                                                              grpc::ByteBuffer* response_bytes) {
  return HandleUnary<v1::GetModelInfoRequest>(
      context, *request_bytes, response_bytes,
      [this](const v1::GetModelInfoRequest& request) -> absl::StatusOr<v1::ModelInfo> {
        PAGODA_ASSIGN_OR_RETURN(engine::Engine * engine, LoadedEngine());
        PAGODA_RETURN_IF_ERROR(engine::CheckModelName(request.model(), engine->info().model_name));
        return MakeModelInfo(engine->info());
      });
}

grpc::ServerUnaryReactor* TextGenerationService::GetServerInfo(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request_bytes,
    grpc::ByteBuffer* response_bytes) {
  return HandleUnary<v1::GetServerInfoRequest>(
      context, *request_bytes, response_bytes,
      [this](const v1::GetServerInfoRequest& /*request*/) -> absl::StatusOr<v1::ServerInfo> {
        const absl::Time now = absl::Now();
        v1::ServerInfo info;
        info.set_version(options_.version);
        info.set_max_num_waiting_requests(static_cast<uint32_t>(options_.max_waiting_requests));
        info.set_draining(draining_.load(std::memory_order_acquire));
        info.set_uptime_seconds(absl::ToDoubleSeconds(now - options_.start_time));
        info.set_start_time_unix_seconds(
            absl::ToDoubleSeconds(options_.start_time - absl::UnixEpoch()));
        if (engine::Engine* engine = engine_.load(std::memory_order_acquire)) {
          const engine::EngineSnapshot snapshot = engine->Snapshot();
          info.set_num_requests_running(static_cast<uint32_t>(snapshot.num_running));
          info.set_num_requests_waiting(static_cast<uint32_t>(snapshot.num_waiting));
          info.set_kv_cache_usage_ratio(snapshot.kv.usage_ratio);
        }
        return info;
      });
}

// Holds one of the tokenizer slots (TextGenerationService::tokenizer_calls_) while it lives.
class TokenizerSlot {
 public:
  explicit TokenizerSlot(std::atomic<int>& calls) : calls_(calls) {
    static const int limit = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / 2);
    held_ = calls_.fetch_add(1) < limit;
    if (!held_) calls_.fetch_sub(1);
  }
  ~TokenizerSlot() {
    if (held_) calls_.fetch_sub(1);
  }
  TokenizerSlot(const TokenizerSlot&) = delete;
  TokenizerSlot& operator=(const TokenizerSlot&) = delete;

  absl::Status status() const {
    return held_ ? absl::OkStatus()
                 : absl::ResourceExhaustedError(
                       "too many Tokenize/Detokenize calls at once on this server; retry");
  }

 private:
  std::atomic<int>& calls_;
  bool held_ = false;
};

grpc::ServerUnaryReactor* TextGenerationService::Tokenize(grpc::CallbackServerContext* context,
                                                          const grpc::ByteBuffer* request_bytes,
                                                          grpc::ByteBuffer* response_bytes) {
  return HandleUnary<v1::TokenizeRequest>(
      context, *request_bytes, response_bytes,
      [this](const v1::TokenizeRequest& request) -> absl::StatusOr<v1::TokenizeResponse> {
        PAGODA_ASSIGN_OR_RETURN(engine::Engine * engine, LoadedEngine());
        const TokenizerSlot slot(tokenizer_calls_);
        PAGODA_RETURN_IF_ERROR(slot.status());
        return server::Tokenize(request, engine->info(), engine->tokenizer());
      });
}

grpc::ServerUnaryReactor* TextGenerationService::Detokenize(grpc::CallbackServerContext* context,
                                                            const grpc::ByteBuffer* request_bytes,
                                                            grpc::ByteBuffer* response_bytes) {
  return HandleUnary<v1::DetokenizeRequest>(
      context, *request_bytes, response_bytes,
      [this](const v1::DetokenizeRequest& request) -> absl::StatusOr<v1::DetokenizeResponse> {
        PAGODA_ASSIGN_OR_RETURN(engine::Engine * engine, LoadedEngine());
        const TokenizerSlot slot(tokenizer_calls_);
        PAGODA_RETURN_IF_ERROR(slot.status());
        return server::Detokenize(request, engine->info(), engine->tokenizer());
      });
}

}  // namespace pagoda::server
