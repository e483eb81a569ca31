#include "engine/engine_core.h"

#include <algorithm>
#include <iterator>
#include <limits>
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

// A request scoring its prompt computes at most this many tokens per step: each is a logits row
// (256 x a 128k vocabulary = 128 MiB of f32 at most).
constexpr int kMaxScoredTokensPerStep = 256;

}  // namespace

// A request's one record: the scheduler's Request (tokens, progress, blocks), which the
// scheduler owns, extended with the engine's state. Plans hand out stable pointers to it, so a
// generated token costs no lookup.
struct EngineCore::RequestState final : scheduler::Request {
  std::string external_id;
  sampling::SamplingParams sampling;
  StoppingOptions stopping;
  std::shared_ptr<RequestSink> sink;
  sampling::SamplerState sampler;
  // Never sampled before min_tokens output tokens: the EOS ids (unless ignored) and the stop ids.
  std::vector<TokenId> banned_before_min_tokens;
  std::optional<tokenizer::IncrementalDetokenizer> detokenizer;
  std::optional<tokenizer::StopStringMatcher> stop_matcher;
  std::string output_text;
  absl::Time arrival;
  std::optional<absl::Time> first_scheduled;
  std::optional<absl::Time> first_token;
  absl::Time last_token;
  StopKind stop_kind = StopKind::kNone;
  size_t stop_string_index = 0;
  bool finished = false;
  // With sampling.logprobs >= 0: the runner's answer for this step's token, and every output
  // token's so far (one per output token).
  sampling::TokenLogprobs step_logprobs;
  std::vector<sampling::TokenLogprobs> output_logprobs;
  // With sampling.prompt_logprobs >= 0: entry i scores prompt token i + 1 (computed at
  // position i), in order; a recomputation after preemption does not add them again.
  std::vector<sampling::TokenLogprobs> prompt_logprobs;

  RequestState(RequestId request_id, EngineRequest& request,
               std::shared_ptr<RequestSink> request_sink, absl::Time arrival_time)
      : scheduler::Request(request_id, std::move(request.prompt_tokens), request.priority,
                           std::move(request.cache_salt)),
        external_id(std::move(request.external_id)),
        sampling(std::move(request.sampling)),
        stopping(std::move(request.stopping)),
        sink(std::move(request_sink)),
        sampler(sampling.seed, tokens()),
        arrival(arrival_time) {
    // Prompt log-probabilities need the logits of every prompt token: no prefix-cache hit, and
    // chunks of at most kMaxScoredTokensPerStep so a step's logits stay bounded (rows x vocab).
    if (sampling.prompt_logprobs >= 0) {
      set_skips_prefix_cache(true);
      set_max_tokens_per_step(kMaxScoredTokensPerStep);
    }
  }
};

EngineCore::RequestState& EngineCore::StateOf(scheduler::Request& request) {
  // Every request the scheduler holds was added by AddRequest, as a RequestState.
  return static_cast<RequestState&>(request);
}

absl::StatusOr<std::unique_ptr<EngineCore>> EngineCore::Create(
    std::string model_name, std::unique_ptr<runner::ModelRunner> runner,
    std::unique_ptr<tokenizer::Tokenizer> tokenizer, const EngineCoreOptions& options,
    const common::Clock* clock) {
  PAGODA_CHECK(runner != nullptr);
  const model::ModelConfig& config = runner->config();
  if (options.scheduler.max_model_len > config.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_model_len = ", options.scheduler.max_model_len,
        " exceeds the model's max_position_embeddings = ", config.max_position_embeddings));
  }
  const common::AttentionWindow window = runner->kv_window();
  if (!window.full() && !config.sliding_window.has_value() &&
      window.sliding_window > options.scheduler.max_model_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("--streaming-window ", window.sliding_window,
                     " exceeds max_model_len = ", options.scheduler.max_model_len));
  }
  if (tokenizer != nullptr && tokenizer->vocab_size() > config.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("the tokenizer has ", tokenizer->vocab_size(),
                     " tokens, more than the model's vocab_size = ", config.vocab_size));
  }
  std::unique_ptr<EngineCore> core(new EngineCore(std::move(model_name), std::move(runner),
                                                  std::move(tokenizer), options, clock));
  scheduler::SchedulerOptions scheduler_options = options.scheduler;
  scheduler_options.unbounded_length = core->info_.streaming;
  PAGODA_ASSIGN_OR_RETURN(
      core->scheduler_,
      scheduler::Scheduler::Create(scheduler_options,
                                   {.num_blocks = core->runner_->num_kv_blocks(),
                                    .block_size = core->runner_->block_size(),
                                    .enable_prefix_caching = options.enable_prefix_caching,
                                    .watermark_ratio = options.watermark_ratio,
                                    .window = window}));
  if (options.kv_tiering.enabled()) {
    if (!options.enable_prefix_caching) {
      return absl::InvalidArgumentError(
          "--kv-offload-dir/--kv-host-cache-bytes need prefix caching");
    }
    if (!window.full()) {
      return absl::InvalidArgumentError(
          "--kv-offload-dir/--kv-host-cache-bytes: not with a KV-cache window (sliding window or "
          "attention sinks)");
    }
    PAGODA_ASSIGN_OR_RETURN(core->tiering_,
                            KvTiering::Create(options.kv_tiering, core->runner_.get()));
    core->scheduler_->set_external_prefix_cache(core->tiering_.get());
    core->scheduler_->mutable_kv_cache().EnableEvictionCapture(true);
    core->info_.kv_offload_details = core->tiering_->Describe();
    for (int t = 0; t < core->tiering_->store().num_tiers(); ++t) {
      core->info_.kv_offload_media.emplace_back(core->tiering_->store().tier(t).medium());
    }
  }
  return core;
}

bool EngineCore::has_work() const {
  return scheduler_->has_schedulable() || (tiering_ != nullptr && tiering_->has_completed_loads());
}

void EngineCore::set_load_notifier(std::function<void()> notify) {
  if (tiering_ != nullptr) tiering_->set_on_load_complete(std::move(notify));
}

absl::Status EngineCore::TierStep(const scheduler::StepPlan& plan) {
  PAGODA_RETURN_IF_ERROR(tiering_->Spill(scheduler_->mutable_kv_cache().TakeEvictedContent()));
  tiering_->StartLoads(plan.loads);
  return absl::OkStatus();
}

EngineCore::EngineCore(std::string model_name, std::unique_ptr<runner::ModelRunner> runner,
                       std::unique_ptr<tokenizer::Tokenizer> tokenizer,
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
  info_.kv_static_scales = runner_->kv_static_scales();
  info_.weight_dtype = runner_->weight_dtype();
  info_.backend = runner_->backend_name();
  info_.backend_details = runner_->Describe();
  info_.has_tokenizer = tokenizer_ != nullptr;
  info_.prefix_caching = options.enable_prefix_caching;
  info_.max_num_seqs = options.scheduler.max_num_seqs;
  info_.max_num_batched_tokens = options.scheduler.max_num_batched_tokens;
  info_.step_time_ratio = options.scheduler.step_time_ratio;
  info_.kv_window = runner_->kv_window();
  // A window on a model without one is StreamingLLM's, which lets requests run on.
  info_.streaming = !info_.kv_window.full() && !config.sliding_window.has_value();
  info_.vocab_size = config.vocab_size;
  if (tokenizer_ != nullptr && !tokenizer_->eos_ids().empty()) {
    info_.eos_token_ids = tokenizer_->eos_ids();
  } else {
    info_.eos_token_ids = config.eos_token_ids;
  }
  info_.bos_token_id = tokenizer_ != nullptr ? tokenizer_->bos_id() : config.bos_token_id;
}

EngineCore::~EngineCore() {
  if (tiering_ == nullptr) return;
  // The hot prefixes were never evicted, so never spilled: write them down for the next run.
  // Every registered block's K/V were written by a step that ran (the engine stops between
  // steps); blocks still loading were not registered.
  (void)tiering_->WriteBack(scheduler_->kv_cache().pool().ListCachedContent());
}

absl::Status EngineCore::ValidateRequest(const EngineRequest& request) const {
  return ValidateEngineRequest(request, info_);
}

absl::Status EngineCore::AddRequest(RequestId id, EngineRequest request,
                                    std::shared_ptr<RequestSink> sink) {
  PAGODA_CHECK(sink != nullptr);
  if (scheduler_->GetRequest(id) != nullptr) {
    return absl::AlreadyExistsError(absl::StrCat("request ", id.value(), " is unfinished"));
  }
  const bool detokenize = request.detokenize && tokenizer_ != nullptr;
  auto state = std::make_unique<RequestState>(id, request, std::move(sink), clock_->Now());
  if (!state->stopping.ignore_eos) state->banned_before_min_tokens = info_.eos_token_ids;
  state->banned_before_min_tokens.insert(state->banned_before_min_tokens.end(),
                                         state->stopping.stop_token_ids.begin(),
                                         state->stopping.stop_token_ids.end());
  const int max_output = state->stopping.max_tokens.value_or(info_.max_model_len);
  // Streaming requests may run past max_model_len when max_tokens says so.
  const int64_t length_cap = info_.streaming && state->stopping.max_tokens.has_value()
                                 ? int64_t{std::numeric_limits<int>::max()} / 2
                                 : int64_t{info_.max_model_len};
  state->set_max_num_tokens(static_cast<int>(
      std::min<int64_t>(int64_t{state->num_prompt_tokens()} + max_output, length_cap)));
  if (detokenize) {
    state->detokenizer.emplace(
        *tokenizer_, tokenizer::IncrementalDetokenizer::Options{
                         .skip_special_tokens = state->stopping.keep_special_tokens
                                                    ? tokenizer::SkipSpecialTokens::kNo
                                                    : tokenizer::SkipSpecialTokens::kYes});
    if (!state->stopping.stop_strings.empty()) {
      state->stop_matcher.emplace(tokenizer::StopStringMatcher::Options{
          .stop_strings = state->stopping.stop_strings,
          .include_stop_str_in_output = state->stopping.include_stop_str_in_output});
    }
  }
  return scheduler_->AddRequest(std::move(state));
}

bool EngineCore::Abort(RequestId id) {
  scheduler::Request* request = scheduler_->GetRequest(id);
  if (request == nullptr) return false;
  Finish(StateOf(*request), FinishReason::kAbort, clock_->Now(), absl::OkStatus());
  return true;
}

void EngineCore::AbortAll() { FailAll(absl::OkStatus()); }

absl::Span<const TokenId> EngineCore::BannedTokens(const RequestState& state) {
  if (state.num_output_tokens() >= state.stopping.min_tokens) return {};
  return state.banned_before_min_tokens;
}

void EngineCore::BuildBatch(const scheduler::StepPlan& plan) {
  int32_t max_blocks = 0;
  for (const scheduler::ScheduledRequest& r : plan.requests) {
    max_blocks = std::max(max_blocks, static_cast<int32_t>(r.block_table.size()));
  }
  batch_builder_.Reset(info_.block_size, max_blocks);
  batch_sampled_.clear();
  batch_score_positions_.clear();
  for (const scheduler::ScheduledRequest& r : plan.requests) {
    RequestState& state = StateOf(*r.request);
    const int first = r.num_computed_tokens;
    const int end = first + r.num_new_tokens;
    // Scoring rows: the prompt positions not yet scored, each predicting the next prompt token.
    int score_begin = 0;
    int score_end = 0;
    if (state.sampling.prompt_logprobs >= 0) {
      score_begin = std::max(first, static_cast<int>(state.prompt_logprobs.size()));
      score_end = std::min(end, state.num_prompt_tokens() - 1);
    }
    batch_builder_.AddRequest(r.request->tokens(), first, end, absl::MakeConstSpan(r.block_table),
                              score_begin, score_end, r.samples);
    for (int p = score_begin; p < score_end; ++p) {
      batch_sampled_.push_back(&state);
      batch_score_positions_.push_back(p);
    }
    if (r.samples) {
      batch_sampled_.push_back(&state);
      batch_score_positions_.push_back(-1);
    }
  }
}

absl::Status EngineCore::Step() {
  const absl::Time start = clock_->Now();
  StepMetrics metrics;
  absl::Status status;
  // Loads that finished since the last step join the running requests first.
  if (tiering_ != nullptr) status = tiering_->FinishLoads(*scheduler_);
  if (!status.ok()) {
    FailAll(status);
  } else if (scheduler_->has_requests()) {
    const scheduler::StepPlan plan = scheduler_->Schedule();
    metrics.schedule_seconds = Seconds(clock_->Now() - start);
    metrics.num_preemptions = static_cast<int>(plan.preempted.size());
    metrics.num_scheduled_tokens = plan.num_scheduled_tokens;
    if (tiering_ != nullptr) status = TierStep(plan);
    if (status.ok() && !plan.empty()) {
      status = RunStep(plan, metrics);
      if (status.ok()) scheduler_->ObserveStepTime(metrics.model_seconds);
    }
    if (status.ok() && tiering_ != nullptr) {
      tiering_->ObserveStep(metrics.num_prompt_tokens, metrics.num_scheduled_tokens,
                            metrics.model_seconds);
    }
    if (!status.ok()) FailAll(status);
    PublishKvEvents();
  } else if (finished_metrics_.empty()) {
    PublishKvEvents();        // a resync may still be due
    return absl::OkStatus();  // nothing ran and nothing ended: nothing to report
  }
  // Reported also for a step that only publishes requests ended outside it (aborts while idle)
  // or by an engine failure, so every finished request is counted once, in time.
  metrics.num_running = scheduler_->num_running();
  metrics.num_waiting = scheduler_->num_waiting();
  metrics.kv = scheduler_->kv_cache().Stats();
  metrics.num_computed_tokens_running = scheduler_->NumComputedTokensRunning();
  metrics.new_token_ratio = scheduler_->growth_reserve_ratio();
  if (tiering_ != nullptr) metrics.kv_offload = tiering_->TakeStats(scheduler_->num_loading());
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

void EngineCore::BuildSamplingRows() {
  batch_rows_.clear();
  batch_scores_.resize(batch_sampled_.size());  // before pointers into it are taken
  for (size_t row = 0; row < batch_sampled_.size(); ++row) {
    RequestState* state = batch_sampled_[row];
    const int position = batch_score_positions_[row];
    if (position >= 0) {
      batch_rows_.push_back(runner::SamplingRow{.params = &state->sampling,
                                                .state = &state->sampler,
                                                .logprobs = &batch_scores_[row],
                                                .score_target = state->tokens()[position + 1]});
      continue;
    }
    batch_rows_.push_back(runner::SamplingRow{
        .params = &state->sampling,
        .state = &state->sampler,
        .banned_tokens = BannedTokens(*state),
        .logprobs = state->sampling.logprobs >= 0 ? &state->step_logprobs : nullptr});
  }
}

absl::Status EngineCore::CheckStepTokens() const {
  if (step_tokens_.size() != batch_sampled_.size()) {
    return absl::InternalError(absl::StrCat("the runner returned ", step_tokens_.size(),
                                            " tokens for ", batch_sampled_.size(), " rows"));
  }
  for (size_t row = 0; row < step_tokens_.size(); ++row) {
    const absl::StatusOr<TokenId>& token = step_tokens_[row];
    if (!token.ok() && batch_score_positions_[row] >= 0) {
      return absl::InternalError(
          absl::StrCat("the runner failed a prompt-scoring row: ", token.status().message()));
    }
    if (token.ok() && (*token < 0 || *token >= info_.vocab_size)) {
      return absl::InternalError(absl::StrCat("the runner chose token ", *token,
                                              ", outside the vocabulary [0, ", info_.vocab_size,
                                              ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status EngineCore::RunStep(const scheduler::StepPlan& plan, StepMetrics& metrics) {
  const absl::Time step_start = clock_->Now();
  for (const scheduler::ScheduledRequest& r : plan.requests) {
    RequestState& state = StateOf(*r.request);
    if (!state.first_scheduled.has_value()) {
      state.first_scheduled = step_start;
      metrics.queue_seconds.push_back(Seconds(step_start - state.arrival));
    }
    // Prefill work: everything but a running request's one decode token.
    const bool decode = !r.newly_admitted && r.num_computed_tokens >= state.num_prompt_tokens();
    if (!decode) metrics.num_prompt_tokens += r.num_new_tokens;
  }

  BuildBatch(plan);
  BuildSamplingRows();
  const absl::Time model_start = clock_->Now();
  PAGODA_RETURN_IF_ERROR(runner_->ExecuteStep(batch_builder_.batch(), batch_rows_, &step_tokens_));
  metrics.model_seconds = Seconds(clock_->Now() - model_start);
  // Every token is checked before any request moves on, so that an engine failure leaves no
  // request half-advanced.
  PAGODA_RETURN_IF_ERROR(CheckStepTokens());
  const absl::Time now = clock_->Now();
  for (size_t row = 0; row < batch_sampled_.size(); ++row) {
    RequestState& state = *batch_sampled_[row];  // Finish() below destroys it
    absl::StatusOr<TokenId>& token = step_tokens_[row];
    if (batch_score_positions_[row] >= 0) {
      // A scoring row comes before its request's sampling row, which may finish it.
      if (token.ok() &&
          static_cast<size_t>(batch_score_positions_[row]) == state.prompt_logprobs.size()) {
        state.prompt_logprobs.push_back(std::move(batch_scores_[row]));
      }
      continue;
    }
    if (!token.ok()) {
      // Only this request fails (its logits had no samplable token); the step goes on.
      Finish(state, FinishReason::kAbort, now, std::move(token).status());
    } else {
      ProcessToken(state, *token, now, metrics);
    }
  }
  return absl::OkStatus();
}

void EngineCore::ProcessToken(RequestState& state, TokenId token, absl::Time now,
                              StepMetrics& metrics) {
  RecordToken(state, token, now, metrics);
  // Stop tokens cannot occur before min_tokens (they are banned from sampling); stop strings
  // are checked from the min_tokens-th token on.
  const bool stops_checked = state.num_output_tokens() >= state.stopping.min_tokens;
  StopKind stop = stops_checked ? CheckStopToken(state, token) : StopKind::kNone;
  const bool length = stop == StopKind::kNone && state.num_tokens() >= state.max_num_tokens();
  std::string text = EmitText(state, token, stops_checked, length, stop);
  Emit(state, token, std::move(text), now, stop, length);
}

void EngineCore::RecordToken(RequestState& state, TokenId token, absl::Time now,
                             StepMetrics& metrics) {
  scheduler_->AppendToken(state, token);
  state.sampler.AddOutputToken(token);
  ++metrics.num_generation_tokens;
  if (!state.first_token.has_value()) {
    state.first_token = now;
    metrics.ttft_seconds.push_back(Seconds(now - state.arrival));
  } else {
    metrics.inter_token_seconds.push_back(Seconds(now - state.last_token));
  }
  state.last_token = now;
}

StopKind EngineCore::CheckStopToken(const RequestState& state, TokenId token) const {
  if (!state.stopping.ignore_eos && Contains(info_.eos_token_ids, token)) return StopKind::kEos;
  if (Contains(state.stopping.stop_token_ids, token)) return StopKind::kStopTokenId;
  return StopKind::kNone;
}

std::string EngineCore::EmitText(RequestState& state, TokenId token, bool stops_checked,
                                 bool length, StopKind& stop) {
  if (!state.detokenizer.has_value()) return "";
  // A stop token's own text is part of the output only on request.
  std::string delta;
  if (stop == StopKind::kNone || state.stopping.include_stop_str_in_output) {
    delta = state.detokenizer->Append({token});
  }
  if (stop != StopKind::kNone || length) delta += state.detokenizer->Flush();
  // Before min_tokens stop strings are not checked: the text bypasses the matcher.
  if (!state.stop_matcher.has_value() || !stops_checked) return delta;
  tokenizer::StopStringMatcher::Result result = state.stop_matcher->Append(delta);
  std::string text = std::move(result.text);
  if (result.stop_index.has_value() && stop == StopKind::kNone) {
    stop = StopKind::kStopString;
    state.stop_string_index = *result.stop_index;
  } else if (stop != StopKind::kNone || length) {
    text += state.stop_matcher->Flush();
  }
  return text;
}

void EngineCore::Emit(RequestState& state, TokenId token, std::string text, absl::Time now,
                      StopKind stop, bool length) {
  state.output_text += text;
  OutputChunk chunk;
  chunk.token_ids.push_back(token);
  chunk.text = std::move(text);
  if (state.sampling.logprobs >= 0) {
    // The runner filled step_logprobs for this very token (SamplingRow::logprobs).
    state.output_logprobs.push_back(state.step_logprobs);
    chunk.logprobs.push_back(std::move(state.step_logprobs));
  }
  if (state.sampling.prompt_logprobs >= 0 && state.num_output_tokens() == 1) {
    chunk.prompt_logprobs = state.prompt_logprobs;
  }
  chunk.usage = {.prompt_tokens = state.num_prompt_tokens(),
                 .completion_tokens = state.num_output_tokens(),
                 .cached_prompt_tokens = state.num_cached_prompt_tokens()};
  state.sink->OnChunk(std::move(chunk));
  if (stop != StopKind::kNone) {
    state.stop_kind = stop;
    Finish(state, FinishReason::kStop, now, absl::OkStatus());
  } else if (length) {
    Finish(state, FinishReason::kLength, now, absl::OkStatus());
  }
}

void EngineCore::Finish(RequestState& state, FinishReason reason, absl::Time now,
                        absl::Status status) {
  PAGODA_CHECK(!state.finished);
  state.finished = true;
  RequestCompletion completion;
  completion.status = std::move(status);
  completion.finish_reason = reason;
  const absl::Span<const TokenId> output = state.output_tokens();
  if (reason == FinishReason::kStop) {
    completion.stop_kind = state.stop_kind;
    if (state.stop_kind == StopKind::kStopTokenId) {
      completion.stop_token_id = output.back();
    } else if (state.stop_kind == StopKind::kStopString) {
      completion.stop_string = state.stopping.stop_strings[state.stop_string_index];
    }
  }
  completion.token_ids.assign(output.begin(), output.end());
  completion.text = std::move(state.output_text);
  completion.logprobs = std::move(state.output_logprobs);
  completion.prompt_logprobs = std::move(state.prompt_logprobs);
  const int num_output = static_cast<int>(output.size());
  completion.usage = {.prompt_tokens = state.num_prompt_tokens(),
                      .completion_tokens = num_output,
                      .cached_prompt_tokens = state.num_cached_prompt_tokens()};
  completion.timings = {
      .queue_seconds = Seconds(state.first_scheduled.value_or(now) - state.arrival),
      .ttft_seconds =
          state.first_token.has_value() ? Seconds(*state.first_token - state.arrival) : 0.0,
      .e2e_seconds = Seconds(now - state.arrival),
      .num_preemptions = state.num_preemptions()};

  FinishedRequestMetrics finished{.finish_reason = reason,
                                  .prompt_tokens = state.num_prompt_tokens(),
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

  // Frees the blocks and destroys the record (`state`): take the sink out first.
  const std::shared_ptr<RequestSink> sink = std::move(state.sink);
  PAGODA_CHECK(scheduler_->FinishRequest(state.id()));
  sink->OnComplete(std::move(completion));
}

void EngineCore::set_kv_event_sink(block_manager::KvEventSink* sink) {
  kv_event_sink_ = sink;
  scheduler_->mutable_kv_cache().EnableEvents(sink != nullptr);
  // The tiers may hold blocks already (a disk tier from the last run): announce them.
  if (tiering_ != nullptr) tiering_->store().EnableEvents(sink != nullptr);
  kv_resync_pending_ = sink != nullptr && tiering_ != nullptr;
}

void EngineCore::PublishKvEvents() {
  if (kv_event_sink_ == nullptr) return;
  using block_manager::KvCacheEvent;
  std::vector<KvCacheEvent> events = scheduler_->mutable_kv_cache().TakeEvents();
  // A cleared pool (AllBlocksCleared) clears every tier for a subscriber: the tiers'
  // blocks are announced again, as after a dropped batch.
  const bool resync =
      kv_resync_pending_ || std::any_of(events.begin(), events.end(), [](const KvCacheEvent& e) {
        return e.kind == KvCacheEvent::Kind::kAllBlocksCleared;
      });
  // The cache as it is now subsumes this step's changes.
  if (resync) events = block_manager::ResyncEvents(ListCachedBlocks());
  if (tiering_ != nullptr) {
    std::vector<KvCacheEvent> tiers = tiering_->store().TakeEvents(/*snapshot=*/resync);
    events.insert(events.end(), std::make_move_iterator(tiers.begin()),
                  std::make_move_iterator(tiers.end()));
  }
  if (events.empty()) return;
  kv_resync_pending_ = !kv_event_sink_->Publish(std::move(events));
}

void EngineCore::FailAll(const absl::Status& status) {
  const absl::Time now = clock_->Now();
  for (const RequestId id : scheduler_->RequestIds()) {
    Finish(StateOf(*scheduler_->GetRequest(id)), FinishReason::kAbort, now, status);
  }
}

}  // namespace pagoda::engine
