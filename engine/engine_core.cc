#include "engine/engine_core.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/status_macros.h"
#include "engine/request_validation.h"

namespace pagoda::engine {

namespace {

double Seconds(absl::Duration d) { return absl::ToDoubleSeconds(d); }

bool Contains(const std::vector<TokenId>& ids, TokenId id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

}  // namespace

// The engine's per-request state beside the scheduler's Request.
struct EngineCore::RequestState {
  RequestId id;
  std::string external_id;
  sampling::SamplingParams sampling;
  StoppingOptions stopping;
  std::shared_ptr<RequestSink> sink;
  sampling::SamplerState sampler;
  // Never sampled before min_tokens output tokens: the EOS ids (unless ignored) and the stop ids.
  std::vector<TokenId> banned_before_min_tokens;
  std::optional<model::IncrementalDetokenizer> detokenizer;
  std::optional<model::StopStringMatcher> stop_matcher;
  int num_prompt_tokens = 0;
  int max_num_tokens = 0;  // prompt plus output tokens at most
  std::vector<TokenId> output_tokens;
  std::string output_text;
  absl::Time arrival;
  std::optional<absl::Time> first_scheduled;
  std::optional<absl::Time> first_token;
  absl::Time last_token;
  StopKind stop_kind = StopKind::kNone;
  size_t stop_string_index = 0;
  bool finished = false;

  RequestState(RequestId request_id, EngineRequest& request,
               std::shared_ptr<RequestSink> request_sink, absl::Time arrival_time)
      : id(request_id),
        external_id(std::move(request.external_id)),
        sampling(std::move(request.sampling)),
        stopping(std::move(request.stopping)),
        sink(std::move(request_sink)),
        sampler(sampling.seed, request.prompt_tokens),
        num_prompt_tokens(static_cast<int>(request.prompt_tokens.size())),
        arrival(arrival_time) {}
};

absl::StatusOr<std::unique_ptr<EngineCore>> EngineCore::Create(
    std::string model_name, std::unique_ptr<ModelRunner> runner,
    std::unique_ptr<model::Tokenizer> tokenizer, const EngineCoreOptions& options,
    const common::Clock* clock) {
  PAGODA_CHECK(runner != nullptr);
  const model::ModelConfig& config = runner->config();
  if (options.scheduler.max_model_len > config.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_model_len = ", options.scheduler.max_model_len,
        " exceeds the model's max_position_embeddings = ", config.max_position_embeddings));
  }
  if (config.sliding_window.has_value() &&
      *config.sliding_window < options.scheduler.max_model_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("the model uses sliding-window attention (window ", *config.sliding_window,
                     "), which is not implemented: set max_model_len <= ", *config.sliding_window));
  }
  if (tokenizer != nullptr && tokenizer->vocab_size() > config.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("the tokenizer has ", tokenizer->vocab_size(),
                     " tokens, more than the model's vocab_size = ", config.vocab_size));
  }
  std::unique_ptr<EngineCore> core(new EngineCore(std::move(model_name), std::move(runner),
                                                  std::move(tokenizer), options, clock));
  PAGODA_ASSIGN_OR_RETURN(
      core->kv_cache_,
      block_manager::KvCacheManager::Create({.num_blocks = core->runner_->num_kv_blocks(),
                                             .block_size = core->runner_->block_size(),
                                             .enable_prefix_caching = options.enable_prefix_caching,
                                             .watermark_ratio = options.watermark_ratio}));
  PAGODA_ASSIGN_OR_RETURN(core->scheduler_,
                          scheduler::Scheduler::Create(options.scheduler, core->kv_cache_.get()));
  return core;
}

EngineCore::EngineCore(std::string model_name, std::unique_ptr<ModelRunner> runner,
                       std::unique_ptr<model::Tokenizer> tokenizer,
                       const EngineCoreOptions& options, const common::Clock* clock)
    : runner_(std::move(runner)),
      tokenizer_(std::move(tokenizer)),
      clock_(clock != nullptr ? clock : &common::Clock::Real()) {
  const model::ModelConfig& config = runner_->config();
  info_.model_name = std::move(model_name);
  info_.config = config;
  info_.max_model_len = options.scheduler.max_model_len;
  info_.block_size = runner_->block_size();
  info_.num_kv_blocks = runner_->num_kv_blocks();
  info_.kv_dtype = runner_->kv_dtype();
  info_.weight_dtype = runner_->weight_dtype();
  info_.backend = runner_->backend_name();
  info_.backend_details = runner_->Describe();
  info_.has_tokenizer = tokenizer_ != nullptr;
  info_.prefix_caching = options.enable_prefix_caching;
  info_.max_num_seqs = options.scheduler.max_num_seqs;
  info_.max_num_batched_tokens = options.scheduler.max_num_batched_tokens;
  info_.vocab_size = config.vocab_size;
  if (tokenizer_ != nullptr && !tokenizer_->eos_ids().empty()) {
    info_.eos_token_ids = tokenizer_->eos_ids();
  } else {
    info_.eos_token_ids = config.eos_token_ids;
  }
  info_.bos_token_id = tokenizer_ != nullptr ? tokenizer_->bos_id() : config.bos_token_id;
}

EngineCore::~EngineCore() = default;

absl::Status EngineCore::ValidateRequest(const EngineRequest& request) const {
  return ValidateEngineRequest(request, info_);
}

absl::Status EngineCore::AddRequest(RequestId id, EngineRequest request,
                                    std::shared_ptr<RequestSink> sink) {
  PAGODA_CHECK(sink != nullptr);
  if (requests_.contains(id)) {
    return absl::AlreadyExistsError(absl::StrCat("request ", id.value(), " is unfinished"));
  }
  auto state = std::make_unique<RequestState>(id, request, std::move(sink), clock_->Now());
  if (!state->stopping.ignore_eos) state->banned_before_min_tokens = info_.eos_token_ids;
  state->banned_before_min_tokens.insert(state->banned_before_min_tokens.end(),
                                         state->stopping.stop_token_ids.begin(),
                                         state->stopping.stop_token_ids.end());
  const int max_output = request.stopping.max_tokens.value_or(info_.max_model_len);
  state->max_num_tokens = static_cast<int>(
      std::min<int64_t>(int64_t{state->num_prompt_tokens} + max_output, info_.max_model_len));
  if (request.detokenize && tokenizer_ != nullptr) {
    state->detokenizer.emplace(*tokenizer_,
                               model::IncrementalDetokenizer::Options{
                                   .skip_special_tokens = state->stopping.keep_special_tokens
                                                              ? model::SkipSpecialTokens::kNo
                                                              : model::SkipSpecialTokens::kYes});
    if (!state->stopping.stop_strings.empty()) {
      state->stop_matcher.emplace(model::StopStringMatcher::Options{
          .stop_strings = state->stopping.stop_strings,
          .include_stop_str_in_output = state->stopping.include_stop_str_in_output});
    }
  }
  PAGODA_RETURN_IF_ERROR(scheduler_->AddRequest(std::make_unique<scheduler::Request>(
      id, std::move(request.prompt_tokens), request.priority, std::move(request.cache_salt))));
  requests_.emplace(id, std::move(state));
  return absl::OkStatus();
}

bool EngineCore::Abort(RequestId id) {
  const auto it = requests_.find(id);
  if (it == requests_.end()) return false;
  Finish(*it->second, FinishReason::kAbort, clock_->Now(), absl::OkStatus());
  requests_.erase(it);
  return true;
}

void EngineCore::AbortAll() {
  const absl::Time now = clock_->Now();
  for (auto& [id, state] : requests_) Finish(*state, FinishReason::kAbort, now, absl::OkStatus());
  requests_.clear();
}

absl::Span<const TokenId> EngineCore::BannedTokens(const RequestState& state) {
  if (static_cast<int>(state.output_tokens.size()) >= state.stopping.min_tokens) return {};
  return state.banned_before_min_tokens;
}

void EngineCore::BuildBatch(const scheduler::StepPlan& plan) {
  int32_t max_blocks = 0;
  for (const scheduler::ScheduledRequest& r : plan.requests) {
    max_blocks = std::max(max_blocks, static_cast<int32_t>(r.block_table.size()));
  }
  batch_builder_.Reset(info_.block_size, max_blocks);
  batch_sampled_.clear();
  for (const scheduler::ScheduledRequest& r : plan.requests) {
    batch_builder_.AddRequest(scheduler_->GetRequest(r.id)->tokens(), r.num_computed_tokens,
                              r.num_computed_tokens + r.num_new_tokens,
                              absl::MakeConstSpan(r.block_table),
                              r.samples ? model::LogitsRows::kLast : model::LogitsRows::kNone);
    if (r.samples) batch_sampled_.push_back(r.id);
  }
}

absl::Status EngineCore::Step() {
  const absl::Time start = clock_->Now();
  StepMetrics metrics;
  absl::Status status;
  if (scheduler_->has_requests()) {
    const scheduler::StepPlan plan = scheduler_->Schedule();
    metrics.schedule_seconds = Seconds(clock_->Now() - start);
    metrics.num_preemptions = static_cast<int>(plan.preempted.size());
    metrics.num_scheduled_tokens = plan.num_scheduled_tokens;
    if (!plan.empty()) status = RunStep(plan, metrics);
    if (!status.ok()) FailAll(status);
  } else if (finished_metrics_.empty()) {
    return absl::OkStatus();  // nothing ran and nothing ended: nothing to report
  }
  // Reported also for a step that only publishes requests ended outside it (aborts while idle)
  // or by an engine failure, so every finished request is counted once, in time.
  metrics.num_running = scheduler_->num_running();
  metrics.num_waiting = scheduler_->num_waiting();
  metrics.kv = kv_cache_->Stats();
  metrics.num_computed_tokens_running = scheduler_->NumComputedTokensRunning();
  metrics.step_seconds = Seconds(clock_->Now() - start);
  if (observer_ != nullptr) {
    for (const FinishedRequestMetrics& finished : finished_metrics_) {
      observer_->OnRequestFinished(finished);
    }
    observer_->OnStep(metrics);
  }
  finished_metrics_.clear();
  return status;
}

absl::Status EngineCore::RunStep(const scheduler::StepPlan& plan, StepMetrics& metrics) {
  const absl::Time step_start = clock_->Now();
  for (const scheduler::ScheduledRequest& r : plan.requests) {
    RequestState& state = *requests_.at(r.id);
    if (!state.first_scheduled.has_value()) {
      state.first_scheduled = step_start;
      metrics.queue_seconds.push_back(Seconds(step_start - state.arrival));
    }
    // Prefill work: everything but a running request's one decode token.
    const bool decode = !r.newly_admitted && r.num_computed_tokens >= state.num_prompt_tokens;
    if (!decode) metrics.num_prompt_tokens += r.num_new_tokens;
  }

  BuildBatch(plan);
  const model::ForwardBatch batch = batch_builder_.batch();
  batch_rows_.clear();
  for (const RequestId id : batch_sampled_) {
    RequestState& state = *requests_.at(id);
    batch_rows_.push_back(SamplingRow{.params = &state.sampling,
                                      .state = &state.sampler,
                                      .banned_tokens = BannedTokens(state)});
  }
  const absl::Time model_start = clock_->Now();
  PAGODA_RETURN_IF_ERROR(runner_->ExecuteStep(batch, batch_rows_, &step_tokens_));
  metrics.model_seconds = Seconds(clock_->Now() - model_start);
  if (step_tokens_.size() != batch_sampled_.size()) {
    return absl::InternalError(absl::StrCat("the runner returned ", step_tokens_.size(),
                                            " tokens for ", batch_sampled_.size(), " rows"));
  }

  const absl::Time now = clock_->Now();
  std::vector<RequestId> ended;
  for (size_t row = 0; row < batch_sampled_.size(); ++row) {
    RequestState& state = *requests_.at(batch_sampled_[row]);
    absl::StatusOr<TokenId>& token = step_tokens_[row];
    if (!token.ok()) {
      // Only this request fails (its logits had no samplable token); the step goes on.
      Finish(state, FinishReason::kAbort, now, std::move(token).status());
      ended.push_back(state.id);
      continue;
    }
    if (*token < 0 || *token >= info_.vocab_size) {
      return absl::InternalError(absl::StrCat("the runner chose token ", *token,
                                              ", outside the vocabulary [0, ", info_.vocab_size,
                                              ")"));
    }
    if (ProcessToken(state, *token, now, metrics)) ended.push_back(state.id);
  }
  for (const RequestId id : ended) requests_.erase(id);
  return absl::OkStatus();
}

bool EngineCore::ProcessToken(RequestState& state, TokenId token, absl::Time now,
                              StepMetrics& metrics) {
  scheduler_->AppendToken(state.id, token);
  state.sampler.AddOutputToken(token);
  state.output_tokens.push_back(token);
  ++metrics.num_generation_tokens;
  if (!state.first_token.has_value()) {
    state.first_token = now;
    metrics.ttft_seconds.push_back(Seconds(now - state.arrival));
  } else {
    metrics.inter_token_seconds.push_back(Seconds(now - state.last_token));
  }
  state.last_token = now;

  const int num_output = static_cast<int>(state.output_tokens.size());
  // Stop tokens cannot occur before min_tokens (they are banned from sampling); stop strings
  // are checked from the min_tokens-th token on.
  const bool stops_checked = num_output >= state.stopping.min_tokens;
  StopKind stop = StopKind::kNone;
  if (stops_checked) {
    if (!state.stopping.ignore_eos && Contains(info_.eos_token_ids, token)) {
      stop = StopKind::kEos;
    } else if (Contains(state.stopping.stop_token_ids, token)) {
      stop = StopKind::kStopTokenId;
    }
  }
  const bool length = stop == StopKind::kNone &&
                      scheduler_->GetRequest(state.id)->num_tokens() >= state.max_num_tokens;

  std::string text;
  if (state.detokenizer.has_value()) {
    // A stop token's own text is part of the output only on request.
    std::string delta;
    if (stop == StopKind::kNone || state.stopping.include_stop_str_in_output) {
      delta = state.detokenizer->Append({token});
    }
    if (stop != StopKind::kNone || length) delta += state.detokenizer->Flush();
    if (state.stop_matcher.has_value() && stops_checked) {
      model::StopStringMatcher::Result result = state.stop_matcher->Append(delta);
      text = std::move(result.text);
      if (result.stop_index.has_value() && stop == StopKind::kNone) {
        stop = StopKind::kStopString;
        state.stop_string_index = *result.stop_index;
      } else if (stop != StopKind::kNone || length) {
        text += state.stop_matcher->Flush();
      }
    } else {
      // Before min_tokens stop strings are not checked: the text bypasses the matcher.
      text = std::move(delta);
    }
  }
  state.output_text += text;

  OutputChunk chunk;
  chunk.token_ids.push_back(token);
  chunk.text = std::move(text);
  chunk.usage = {
      .prompt_tokens = state.num_prompt_tokens,
      .completion_tokens = num_output,
      .cached_prompt_tokens = scheduler_->GetRequest(state.id)->num_cached_prompt_tokens()};
  state.sink->OnChunk(std::move(chunk));

  if (stop != StopKind::kNone) {
    state.stop_kind = stop;
    Finish(state, FinishReason::kStop, now, absl::OkStatus());
    return true;
  }
  if (length) {
    Finish(state, FinishReason::kLength, now, absl::OkStatus());
    return true;
  }
  return false;
}

void EngineCore::Finish(RequestState& state, FinishReason reason, absl::Time now,
                        absl::Status status) {
  PAGODA_CHECK(!state.finished);
  state.finished = true;
  const scheduler::Request* request = scheduler_->GetRequest(state.id);
  PAGODA_CHECK(request != nullptr);
  RequestCompletion completion;
  completion.status = std::move(status);
  completion.finish_reason = reason;
  if (reason == FinishReason::kStop) {
    completion.stop_kind = state.stop_kind;
    if (state.stop_kind == StopKind::kStopTokenId) {
      completion.stop_token_id = state.output_tokens.back();
    } else if (state.stop_kind == StopKind::kStopString) {
      completion.stop_string = state.stopping.stop_strings[state.stop_string_index];
    }
  }
  completion.token_ids = std::move(state.output_tokens);
  completion.text = std::move(state.output_text);
  const int num_output = static_cast<int>(completion.token_ids.size());
  completion.usage = {.prompt_tokens = state.num_prompt_tokens,
                      .completion_tokens = num_output,
                      .cached_prompt_tokens = request->num_cached_prompt_tokens()};
  completion.timings = {
      .queue_seconds = Seconds(state.first_scheduled.value_or(now) - state.arrival),
      .ttft_seconds =
          state.first_token.has_value() ? Seconds(*state.first_token - state.arrival) : 0.0,
      .e2e_seconds = Seconds(now - state.arrival),
      .num_preemptions = request->num_preemptions()};

  FinishedRequestMetrics finished{.finish_reason = reason,
                                  .prompt_tokens = state.num_prompt_tokens,
                                  .generation_tokens = num_output,
                                  .cached_prompt_tokens = completion.usage.cached_prompt_tokens,
                                  .e2e_seconds = completion.timings.e2e_seconds,
                                  .queue_seconds = completion.timings.queue_seconds,
                                  .num_preemptions = completion.timings.num_preemptions};
  if (num_output >= 2) {
    finished.time_per_output_token_seconds =
        (completion.timings.e2e_seconds - completion.timings.ttft_seconds) / (num_output - 1);
  }
  finished_metrics_.push_back(finished);

  PAGODA_CHECK(scheduler_->FinishRequest(state.id));
  state.sink->OnComplete(std::move(completion));
  state.sink.reset();
}

void EngineCore::FailAll(const absl::Status& status) {
  const absl::Time now = clock_->Now();
  for (auto& [id, state] : requests_) Finish(*state, FinishReason::kAbort, now, status);
  requests_.clear();
}

}  // namespace pagoda::engine
