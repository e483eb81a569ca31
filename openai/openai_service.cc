#include "openai/openai_service.h"

#include <algorithm>
#include <iterator>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/error_reason.h"
#include "engine/request_identity.h"
#include "engine/request_validation.h"
#include "nlohmann/json.hpp"
#include "openai/completion_request.h"
#include "openai/json_fields.h"
#include "openai/logprobs_json.h"
#include "openai/responses.h"
#include "openai/sampling_fields.h"

namespace pagoda::openai {
namespace {

using nlohmann::json;

constexpr size_t kMaxLoggedFieldNames = 256;
constexpr size_t kMaxDetokenizeIds = 1 << 20;

http::Response JsonResponse(const json& body) {
  http::Response response;
  response.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return response;
}

int64_t UnixSeconds(absl::Time t) { return absl::ToUnixSeconds(t); }

// The request id a client gave in X-Request-Id, checked, or a new one.
absl::StatusOr<std::string> RequestIdOf(const http::Request& request) {
  const std::string* header = request.Header("x-request-id");
  return engine::ResolveRequestId(
      "", header == nullptr ? std::nullopt : std::optional<absl::string_view>(*header));
}

// A body's `model` (empty: the served one) against the served model's name.
absl::Status CheckModel(const std::string& model, const engine::Engine& engine) {
  return engine::CheckModelName(model, engine.info().model_name);
}

// The loaded engine (with a tokenizer) and the parsed body of /tokenize or /detokenize.
struct TokenizerRoute {
  engine::Engine* engine;
  json body;
};

// The start both tokenizer routes share: the serving engine, the body as a JSON object, its
// `model` checked; FailedPrecondition naming `field` without a tokenizer.
absl::StatusOr<TokenizerRoute> StartTokenizerRoute(absl::StatusOr<engine::Engine*> serving,
                                                   const http::Request& request,
                                                   absl::string_view field) {
  PAGODA_ASSIGN_OR_RETURN(engine::Engine * engine, std::move(serving));
  PAGODA_ASSIGN_OR_RETURN(json object, ParseJsonObject(request.body));
  JsonFields fields(object);
  std::optional<std::string> model;
  PAGODA_RETURN_IF_ERROR(fields.String("model", model));
  if (model.has_value()) {
    PAGODA_RETURN_IF_ERROR(engine::CheckModelName(*model, engine->info().model_name));
  }
  if (engine->tokenizer() == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(field, ": this model has no tokenizer"));
  }
  return TokenizerRoute{.engine = engine, .body = std::move(object)};
}

}  // namespace

// One POST /v1/completions: its choices (one engine request per prompt), streamed or gathered.
// Engine outputs arrive on the engine thread, the client's leaving on the HTTP thread; one mutex
// orders them, and every responder call is made under it, so that a stream's events go out in
// order (those produced before the stream's head is sent wait in `pending_`).
class OpenAiService::CompletionCall : public std::enable_shared_from_this<CompletionCall> {
 public:
  CompletionCall(const OpenAiService* service, engine::Engine* engine,
                 std::shared_ptr<http::Responder> responder, ResponseIds ids,
                 std::string request_id, const CompletionRequest& request)
      : service_(service),
        engine_(engine),
        responder_(std::move(responder)),
        ids_(std::move(ids)),
        request_id_(std::move(request_id)),
        stream_(request.stream),
        include_usage_(request.include_usage),
        continuous_usage_(request.continuous_usage_stats),
        echo_events_(!stream_    ? ""
                     : ids_.chat ? RoleEvents(ids_, request.prompts.size())
                                 : EchoEvents(ids_, request.echo_texts)),
        logprobs_json_(request.logprobs >= 0 || request.prompt_logprobs >= 0
                           ? std::optional<LogprobsJson>(LogprobsJson(
                                 engine->tokenizer(), {.chat = ids_.chat,
                                                       .logprobs = request.logprobs,
                                                       .prompt_logprobs = request.prompt_logprobs,
                                                       .echo = request.echo}))
                           : std::nullopt),
        results_(request.prompts.size()),
        text_offsets_(request.prompts.size(), 0),
        remaining_(static_cast<int>(request.prompts.size())) {
    for (size_t i = 0; i < request.echo_texts.size(); ++i) results_[i].text = request.echo_texts[i];
    for (size_t i = 0; i < request.prompts.size(); ++i) {
      results_[i].first_prompt_token = request.prompts[i].prompt_tokens.front();
    }
  }

  // Validates and submits every prompt. An error before the first prompt is taken is returned,
  // for the caller to answer; after it, this call reports errors itself (as an error event, or
  // as the error response once every choice has ended).
  absl::Status Start(std::vector<engine::EngineRequest> prompts);
  void OnChunk(int index, engine::OutputChunk chunk);
  void OnComplete(int index, engine::RequestCompletion completion);
  void OnClientGone();

 private:
  class Sink;

  // Records the engine ids of the submitted choices (aborting them if the call already ended);
  // passes a submission error on.
  absl::Status Submitted(absl::StatusOr<std::vector<RequestId>> ids);
  void Complete(int index, engine::RequestCompletion completion) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Finish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Emit(std::string event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The events that open a chat stream: each choice's role.
  static std::string RoleEvents(const ResponseIds& ids, size_t num_choices);
  // The events that open a stream with the echoed prompts.
  static std::string EchoEvents(const ResponseIds& ids, const std::vector<std::string>& texts);
  // Aborts every submitted choice (outside the lock: Engine::Abort takes the engine's).
  void AbortAll() ABSL_LOCKS_EXCLUDED(mu_);

  const OpenAiService* const service_;
  engine::Engine* const engine_;
  const std::shared_ptr<http::Responder> responder_;
  const ResponseIds ids_;
  const std::string request_id_;  // the X-Request-Id answered
  const bool stream_;
  const bool include_usage_;
  const bool continuous_usage_;
  const std::string echo_events_;
  // Set when the request asked for log-probabilities.
  const std::optional<LogprobsJson> logprobs_json_;

  absl::Mutex mu_;
  std::vector<RequestId> engine_ids_ ABSL_GUARDED_BY(mu_);
  bool client_gone_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;  // the stream's head is sent
  std::string pending_ ABSL_GUARDED_BY(mu_);   // events before the head
  std::vector<ChoiceResult> results_ ABSL_GUARDED_BY(mu_);
  // Each streamed choice's text length so far, in code points (completions' text_offset).
  std::vector<int> text_offsets_ ABSL_GUARDED_BY(mu_);
  int remaining_ ABSL_GUARDED_BY(mu_);  // choices not yet ended
  std::optional<absl::Status> failure_ ABSL_GUARDED_BY(mu_);
};

// Hands one choice's outputs to its call.
class OpenAiService::CompletionCall::Sink final : public engine::RequestSink {
 public:
  Sink(std::shared_ptr<CompletionCall> call, int index) : call_(std::move(call)), index_(index) {}
  void OnChunk(engine::OutputChunk chunk) override { call_->OnChunk(index_, std::move(chunk)); }
  void OnComplete(engine::RequestCompletion completion) override {
    call_->OnComplete(index_, std::move(completion));
  }

 private:
  const std::shared_ptr<CompletionCall> call_;
  const int index_;
};

absl::Status OpenAiService::CompletionCall::Start(std::vector<engine::EngineRequest> prompts) {
  // The prompts after the first are checked before any is taken, so that a bad one is a plain
  // 400; the first is checked by its Submit, before anything has been sent either.
  for (size_t i = 1; i < prompts.size(); ++i) {
    PAGODA_RETURN_IF_ERROR(engine::ValidateEngineRequest(prompts[i], engine_->info()));
  }
  std::weak_ptr<CompletionCall> weak = weak_from_this();
  responder_->OnDisconnect([weak] {
    if (std::shared_ptr<CompletionCall> call = weak.lock()) call->OnClientGone();
  });
  // All choices at once (Engine::SubmitAll): they run in the same steps whatever the thread
  // timing, so a seeded request samples the same tokens every time, and a full queue refuses
  // the whole call rather than some of its choices.
  const size_t num_prompts = prompts.size();
  std::vector<std::pair<engine::EngineRequest, std::shared_ptr<engine::RequestSink>>> submissions;
  for (size_t i = 0; i < num_prompts; ++i) {
    prompts[i].external_id = num_prompts == 1 ? request_id_ : absl::StrCat(request_id_, "-", i);
    submissions.emplace_back(std::move(prompts[i]),
                             std::make_shared<Sink>(shared_from_this(), static_cast<int>(i)));
  }
  PAGODA_RETURN_IF_ERROR(Submitted(engine_->SubmitAll(std::move(submissions))));
  absl::MutexLock lock(&mu_);
  if (!stream_) return absl::OkStatus();
  http::Response head;
  head.content_type = "text/event-stream";
  head.headers.emplace_back("X-Request-Id", request_id_);
  head.body = echo_events_ + pending_;
  pending_.clear();
  responder_->StartStream(std::move(head));
  started_ = true;
  if (remaining_ == 0) responder_->End();
  return absl::OkStatus();
}

absl::Status OpenAiService::CompletionCall::Submitted(absl::StatusOr<std::vector<RequestId>> ids) {
  if (!ids.ok()) return ids.status();
  bool abort = false;
  {
    absl::MutexLock lock(&mu_);
    engine_ids_.insert(engine_ids_.end(), ids->begin(), ids->end());
    abort = client_gone_ || failure_.has_value();
  }
  if (abort) {
    for (const RequestId id : *ids) engine_->Abort(id);
  }
  return absl::OkStatus();
}

std::string OpenAiService::CompletionCall::RoleEvents(const ResponseIds& ids, size_t num_choices) {
  std::string events;
  for (size_t i = 0; i < num_choices; ++i) {
    events += SseEvent(ChatRoleChunkJson(ids, static_cast<int>(i)));
  }
  return events;
}

std::string OpenAiService::CompletionCall::EchoEvents(const ResponseIds& ids,
                                                      const std::vector<std::string>& texts) {
  std::string events;
  for (size_t i = 0; i < texts.size(); ++i) {
    if (texts[i].empty()) continue;
    events += SseEvent(CompletionChunkJson(ids, static_cast<int>(i), texts[i], nullptr, nullptr));
  }
  return events;
}

void OpenAiService::CompletionCall::Emit(std::string event) {
  if (started_) {
    responder_->Write(std::move(event));
  } else {
    pending_ += event;
  }
}

void OpenAiService::CompletionCall::OnChunk(int index, engine::OutputChunk chunk) {
  // Text held back (an incomplete UTF-8 sequence, a possible stop string) makes no event,
  // unless the chunk carries usage or log-probabilities.
  const bool logprobs =
      logprobs_json_.has_value() && (!chunk.logprobs.empty() || !chunk.prompt_logprobs.empty());
  if (!stream_ || (chunk.text.empty() && !continuous_usage_ && !logprobs)) return;
  absl::MutexLock lock(&mu_);
  if (failure_.has_value()) return;
  nlohmann::json logprobs_object;  // null
  std::optional<nlohmann::json> prompt_logprobs;
  if (logprobs) {
    logprobs_object =
        logprobs_json_->ChoiceLogprobs(results_[index].first_prompt_token, chunk.prompt_logprobs,
                                       chunk.logprobs, &text_offsets_[index]);
    // The prompt's come with a choice's first chunk.
    if (logprobs_json_->wants_prompt_logprobs() && !chunk.prompt_logprobs.empty()) {
      prompt_logprobs = logprobs_json_->PromptLogprobs(chunk.prompt_logprobs);
    }
  }
  Emit(SseEvent(CompletionChunkJson(ids_, index, chunk.text, nullptr,
                                    continuous_usage_ ? &chunk.usage : nullptr, &logprobs_object,
                                    prompt_logprobs.has_value() ? &*prompt_logprobs : nullptr)));
}

void OpenAiService::CompletionCall::OnComplete(int index, engine::RequestCompletion completion) {
  bool failed_now = false;
  {
    absl::MutexLock lock(&mu_);
    const bool failed_before = failure_.has_value();
    Complete(index, std::move(completion));
    failed_now = !failed_before && failure_.has_value();
  }
  if (failed_now) AbortAll();
}

void OpenAiService::CompletionCall::Complete(int index, engine::RequestCompletion completion) {
  if (!completion.status.ok()) {
    if (!failure_.has_value()) {
      failure_ = completion.status;
      if (completion.status.code() == absl::StatusCode::kInternal &&
          service_->options_.on_engine_failure) {
        service_->options_.on_engine_failure();
      }
    }
  } else if (!failure_.has_value()) {
    if (stream_) {
      Emit(SseEvent(CompletionChunkJson(ids_, index, "", &completion,
                                        continuous_usage_ ? &completion.usage : nullptr)));
    }
    results_[index].text += completion.text;
    results_[index].completion = std::move(completion);
  }
  if (--remaining_ == 0) Finish();
}

void OpenAiService::CompletionCall::Finish() {
  if (!stream_) {
    http::Response response;
    if (failure_.has_value()) {
      response = ErrorResponse(*failure_, service_->options_.queue_full_retry_after);
    } else {
      response.body =
          CompletionJson(ids_, results_, logprobs_json_.has_value() ? &*logprobs_json_ : nullptr);
    }
    response.headers.emplace_back("X-Request-Id", request_id_);
    responder_->Send(std::move(response));
    return;
  }
  if (failure_.has_value()) {
    Emit(SseEvent(ErrorJson(*failure_)));
  } else if (include_usage_) {
    Emit(SseEvent(CompletionUsageChunkJson(ids_, TotalUsage(results_, ids_.n))));
  }
  Emit(std::string(kSseDone));
  if (started_) responder_->End();  // else Start ends the stream once its head is out
}

void OpenAiService::CompletionCall::OnClientGone() {
  {
    absl::MutexLock lock(&mu_);
    client_gone_ = true;
  }
  AbortAll();
}

void OpenAiService::CompletionCall::AbortAll() {
  std::vector<RequestId> ids;
  {
    absl::MutexLock lock(&mu_);
    ids = engine_ids_;
  }
  for (const RequestId id : ids) engine_->Abort(id);
}

OpenAiService::OpenAiService(Options options) : options_(std::move(options)) {}

OpenAiService::~OpenAiService() = default;

void OpenAiService::SetEngine(engine::Engine* engine,
                              std::shared_ptr<const chat_template::ChatTemplates> templates) {
  {
    absl::MutexLock lock(&templates_mu_);
    templates_ = std::move(templates);
  }
  engine_.store(engine);
}

void OpenAiService::StartDrain() { draining_.store(true); }

absl::StatusOr<engine::Engine*> OpenAiService::ServingEngine() const {
  engine::Engine* engine = engine_.load();
  if (engine == nullptr) return absl::UnavailableError("the model is still loading");
  if (draining_.load()) {
    return engine::WithErrorReason(
        absl::UnavailableError("the server is draining; retry on another replica"),
        engine::ErrorReason::kDraining);
  }
  return engine;
}

void OpenAiService::Refuse(const absl::Status& status, http::Responder& responder) {
  if (options_.on_refused) options_.on_refused(status);
  responder.Send(ErrorResponse(status, options_.queue_full_retry_after));
}

void OpenAiService::LogUnknownFields(const std::vector<std::string>& names) {
  if (names.empty() || !options_.log) return;
  absl::MutexLock lock(&log_mu_);
  for (const std::string& name : names) {
    if (logged_fields_.size() >= kMaxLoggedFieldNames) return;
    if (logged_fields_.insert(name).second) {
      options_.log(absl::StrCat("OpenAI API: ignoring the unknown request field \"",
                                absl::CHexEscape(name.substr(0, 64)), "\" (logged once)"));
    }
  }
}

void OpenAiService::Completions(const http::Request& request,
                                std::shared_ptr<http::Responder> responder) {
  const absl::Time arrival = absl::Now();
  absl::StatusOr<engine::Engine*> engine = ServingEngine();
  if (!engine.ok()) return Refuse(engine.status(), *responder);
  absl::StatusOr<std::string> request_id = RequestIdOf(request);
  if (!request_id.ok()) return Refuse(request_id.status(), *responder);
  absl::StatusOr<CompletionRequest> parsed =
      ParseCompletionRequest(request.body, (*engine)->info(), (*engine)->tokenizer());
  if (!parsed.ok()) return Refuse(parsed.status(), *responder);
  if (absl::Status status = CheckModel(parsed->model, **engine); !status.ok()) {
    return Refuse(status, *responder);
  }
  LogUnknownFields(parsed->unknown_fields);
  ResponseIds ids{.id = absl::StrCat("cmpl-", *request_id),
                  .created = UnixSeconds(arrival),
                  .model = (*engine)->info().model_name,
                  .n = parsed->n};
  auto call = std::make_shared<CompletionCall>(this, *engine, responder, std::move(ids),
                                               *request_id, *parsed);
  if (absl::Status status = call->Start(std::move(parsed->prompts)); !status.ok()) {
    return Refuse(status, *responder);
  }
}

void OpenAiService::Tokenize(const http::Request& request,
                             std::shared_ptr<http::Responder> responder) {
  absl::StatusOr<TokenizerRoute> route = StartTokenizerRoute(ServingEngine(), request, "prompt");
  if (!route.ok()) return Refuse(route.status(), *responder);
  JsonFields fields(route->body);
  std::optional<std::string> prompt;
  std::optional<bool> add_special;
  const bool chat = fields.Present("messages");
  absl::Status status = chat ? absl::OkStatus() : fields.String("prompt", prompt);
  if (status.ok()) status = fields.Bool("add_special_tokens", add_special);
  if (status.ok() && chat) {
    // A conversation is rendered with the chat template first, as /v1/chat/completions does
    // (and then, by default, no special tokens are added: the template wrote them).
    std::string source;
    absl::StatusOr<chat_template::RenderRequest> render = ChatRenderRequest(request.body, source);
    const std::shared_ptr<const chat_template::ChatTemplates> templates = ChatTemplates();
    absl::StatusOr<std::string> text =
        render.ok() ? RenderChat(*render, source,
                                 ChatContextOf(*route->engine, templates.get(), absl::Now()))
                    : render.status();
    if (text.ok()) prompt = *std::move(text);
    status = text.status();
    if (!add_special.has_value()) add_special = false;
  }
  if (status.ok() && !prompt.has_value()) status = FieldError("prompt", "required");
  if (!status.ok()) return Refuse(status, *responder);
  const std::vector<TokenId> tokens = route->engine->tokenizer()->Encode(
      *prompt, add_special.value_or(true) ? tokenizer::AddSpecialTokens::kYes
                                          : tokenizer::AddSpecialTokens::kNo);
  responder->Send(JsonResponse({{"count", tokens.size()},
                                {"max_model_len", route->engine->info().max_model_len},
                                {"tokens", tokens}}));
}

void OpenAiService::Detokenize(const http::Request& request,
                               std::shared_ptr<http::Responder> responder) {
  absl::StatusOr<TokenizerRoute> route = StartTokenizerRoute(ServingEngine(), request, "tokens");
  if (!route.ok()) return Refuse(route.status(), *responder);
  JsonFields fields(route->body);
  std::vector<int64_t> ids;
  if (absl::Status status =
          fields.Ints("tokens", kMaxDetokenizeIds, 0, route->engine->info().vocab_size - 1, ids);
      !status.ok()) {
    return Refuse(status, *responder);
  }
  const std::vector<TokenId> tokens(ids.begin(), ids.end());
  responder->Send(JsonResponse(
      {{"prompt", route->engine->tokenizer()->Decode(tokens, tokenizer::SkipSpecialTokens::kNo)}}));
}

void OpenAiService::Models(const http::Request&, std::shared_ptr<http::Responder> responder) {
  engine::Engine* engine = engine_.load();
  json data = json::array();
  if (engine != nullptr) {
    const engine::EngineInfo& info = engine->info();
    data.push_back({{"id", info.model_name},
                    {"object", "model"},
                    {"created", UnixSeconds(options_.start_time)},
                    {"owned_by", "pagoda"},
                    {"root", info.model_name},
                    {"parent", nullptr},
                    {"max_model_len", info.max_model_len}});
    // Pagoda's own fields: how the model attends (vLLM reports none of these).
    json& model = data.back();
    if (info.config.sliding_window.has_value()) {
      model["sliding_window"] = *info.config.sliding_window;
    }
    if (info.streaming) {
      model["attention_sinks"] = info.kv_window.sink_tokens;
      model["streaming_window"] = info.kv_window.sliding_window;
    }
  }
  responder->Send(JsonResponse({{"object", "list"}, {"data", std::move(data)}}));
}

void OpenAiService::Health(const http::Request&, std::shared_ptr<http::Responder> responder) {
  absl::StatusOr<engine::Engine*> engine = ServingEngine();
  absl::Status status = engine.status();
  if (status.ok() && !(*engine)->Snapshot().healthy) {
    status = absl::UnavailableError("the engine failed; this server must be restarted");
  }
  if (!status.ok()) return responder->Send(ErrorResponse(status, absl::ZeroDuration()));
  responder->Send(JsonResponse(json::object()));
}

void OpenAiService::Version(const http::Request&, std::shared_ptr<http::Responder> responder) {
  responder->Send(JsonResponse({{"version", options_.version}}));
}

void OpenAiService::Metrics(const http::Request&, std::shared_ptr<http::Responder> responder) {
  responder->Send(http::Response{.content_type = "text/plain; version=0.0.4; charset=utf-8",
                                 .body = options_.render_metrics()});
}

void OpenAiService::KvCacheBlocks(const http::Request&,
                                  std::shared_ptr<http::Responder> responder) {
  absl::StatusOr<engine::Engine*> engine = ServingEngine();
  if (!engine.ok()) return Refuse(engine.status(), *responder);
  absl::StatusOr<engine::KvCacheDump> dump = (*engine)->DumpKvCache(absl::Seconds(5));
  if (!dump.ok()) return Refuse(dump.status(), *responder);
  json blocks = json::array();
  for (const block_manager::CachedBlockInfo& block : dump->blocks) {
    blocks.push_back(
        {{"block_hash", block.block_hash},
         {"parent_block_hash",
          block.parent_block_hash.has_value() ? json(*block.parent_block_hash) : json(nullptr)},
         {"token_ids", block.token_ids},
         {"extra_keys", block.extra_key.empty() ? json(nullptr) : json::array({block.extra_key})},
         {"in_use", block.in_use}});
  }
  responder->Send(JsonResponse({{"medium", "GPU"},
                                {"block_size", (*engine)->info().block_size},
                                {"num_requests", dump->num_requests},
                                {"blocks", std::move(blocks)}}));
}

void OpenAiService::ChatCompletions(const http::Request& request,
                                    std::shared_ptr<http::Responder> responder) {
  const absl::Time arrival = absl::Now();
  absl::StatusOr<engine::Engine*> engine = ServingEngine();
  if (!engine.ok()) return Refuse(engine.status(), *responder);
  absl::StatusOr<std::string> request_id = RequestIdOf(request);
  if (!request_id.ok()) return Refuse(request_id.status(), *responder);
  const std::shared_ptr<const chat_template::ChatTemplates> templates = ChatTemplates();
  absl::StatusOr<ChatRequest> chat =
      ParseChatRequest(request.body, ChatContextOf(**engine, templates.get(), arrival));
  if (!chat.ok()) return Refuse(chat.status(), *responder);
  if (absl::Status status = CheckModel(chat->model, **engine); !status.ok()) {
    return Refuse(status, *responder);
  }
  LogUnknownFields(chat->unknown_fields);
  CompletionRequest as_completion;
  as_completion.stream = chat->stream;
  as_completion.include_usage = chat->include_usage;
  as_completion.continuous_usage_stats = chat->continuous_usage_stats;
  as_completion.logprobs = chat->logprobs;
  as_completion.n = chat->n;
  as_completion.prompts = std::move(chat->prompts);
  ResponseIds ids{.id = absl::StrCat("chatcmpl-", *request_id),
                  .created = UnixSeconds(arrival),
                  .model = (*engine)->info().model_name,
                  .chat = true,
                  .n = chat->n};
  auto call = std::make_shared<CompletionCall>(this, *engine, responder, std::move(ids),
                                               *request_id, as_completion);
  if (absl::Status status = call->Start(std::move(as_completion.prompts)); !status.ok()) {
    return Refuse(status, *responder);
  }
}

void OpenAiService::CompletionsRender(const http::Request& request,
                                      std::shared_ptr<http::Responder> responder) {
  absl::StatusOr<engine::Engine*> engine = ServingEngine();
  if (!engine.ok()) return Refuse(engine.status(), *responder);
  absl::StatusOr<CompletionRequest> parsed =
      ParseCompletionRequest(request.body, (*engine)->info(), (*engine)->tokenizer());
  if (!parsed.ok()) return Refuse(parsed.status(), *responder);
  if (absl::Status status = CheckModel(parsed->model, **engine); !status.ok()) {
    return Refuse(status, *responder);
  }
  json rendered = json::array();
  for (const engine::EngineRequest& prompt : parsed->prompts) {
    rendered.push_back({{"token_ids", prompt.prompt_tokens}});
  }
  responder->Send(JsonResponse(rendered));
}

void OpenAiService::ChatCompletionsRender(const http::Request& request,
                                          std::shared_ptr<http::Responder> responder) {
  absl::StatusOr<engine::Engine*> engine = ServingEngine();
  if (!engine.ok()) return Refuse(engine.status(), *responder);
  const std::shared_ptr<const chat_template::ChatTemplates> templates = ChatTemplates();
  absl::StatusOr<ChatRequest> chat =
      ParseChatRequest(request.body, ChatContextOf(**engine, templates.get(), absl::Now()));
  if (!chat.ok()) return Refuse(chat.status(), *responder);
  if (absl::Status status = CheckModel(chat->model, **engine); !status.ok()) {
    return Refuse(status, *responder);
  }
  responder->Send(
      JsonResponse({{"token_ids", chat->prompt.prompt_tokens}, {"prompt", chat->prompt_text}}));
}

ChatContext OpenAiService::ChatContextOf(const engine::Engine& engine,
                                         const chat_template::ChatTemplates* templates,
                                         absl::Time now) {
  return ChatContext{
      .info = &engine.info(), .tokenizer = engine.tokenizer(), .templates = templates, .now = now};
}

std::shared_ptr<const chat_template::ChatTemplates> OpenAiService::ChatTemplates() const {
  absl::MutexLock lock(&templates_mu_);
  return templates_;
}

void OpenAiService::Handle(const http::Request& request,
                           std::shared_ptr<http::Responder> responder) {
  struct Route {
    absl::string_view path;
    absl::string_view method;
    bool authenticated;
    void (OpenAiService::*answer)(const http::Request&, std::shared_ptr<http::Responder>);
  };
  static constexpr Route kRoutes[] = {
      {"/health", "GET", false, &OpenAiService::Health},
      {"/version", "GET", false, &OpenAiService::Version},
      {"/metrics", "GET", false, &OpenAiService::Metrics},
      {"/v1/models", "GET", true, &OpenAiService::Models},
      {"/v1/completions", "POST", true, &OpenAiService::Completions},
      {"/v1/chat/completions", "POST", true, &OpenAiService::ChatCompletions},
      {"/v1/completions/render", "POST", true, &OpenAiService::CompletionsRender},
      {"/v1/chat/completions/render", "POST", true, &OpenAiService::ChatCompletionsRender},
      {"/tokenize", "POST", true, &OpenAiService::Tokenize},
      {"/detokenize", "POST", true, &OpenAiService::Detokenize},
      {"/debug/kv_cache_blocks", "GET", true, &OpenAiService::KvCacheBlocks}};
  const auto route = std::find_if(std::begin(kRoutes), std::end(kRoutes),
                                  [&](const Route& r) { return r.path == request.path; });
  if (route == std::end(kRoutes) || (route->path == "/metrics" && !options_.render_metrics) ||
      (absl::StartsWith(route->path, "/debug/") && !options_.debug_endpoints)) {
    return responder->Send(ErrorResponse(
        absl::NotFoundError(absl::StrCat("no route ", request.method, " ", request.path)), {}));
  }
  if (request.method != route->method && !(route->method == "GET" && request.method == "HEAD")) {
    http::Response response = ErrorResponse(
        absl::InvalidArgumentError(absl::StrCat(request.path, " takes ", route->method)), {});
    response.status = 405;
    response.headers.emplace_back("Allow", std::string(route->method));
    return responder->Send(std::move(response));
  }
  // Parsing a large body holds this thread for a while: only so many at once.
  const bool large = request.body.size() > kLargeBodyBytes && options_.max_large_requests > 0;
  if (large && large_requests_.fetch_add(1) >= options_.max_large_requests) {
    large_requests_.fetch_sub(1);
    return Refuse(absl::ResourceExhaustedError(absl::StrCat(
                      "too many large requests (over ", kLargeBodyBytes, " bytes) at once; retry")),
                  *responder);
  }
  absl::Cleanup release = [this, large] {
    if (large) large_requests_.fetch_sub(1);
  };
  if (route->authenticated && options_.authenticate) {
    if (absl::Status status = options_.authenticate(request.Header("authorization"));
        !status.ok()) {
      return Refuse(status, *responder);
    }
  }
  (this->*route->answer)(request, std::move(responder));
}

}  // namespace pagoda::openai
