#include "server/generate_response.h"

namespace pagoda::server {
namespace {

void FillUsage(const engine::Usage& usage, v1::Usage& out) {
  out.set_prompt_tokens(static_cast<uint32_t>(usage.prompt_tokens));
  out.set_completion_tokens(static_cast<uint32_t>(usage.completion_tokens));
  out.set_cached_prompt_tokens(static_cast<uint32_t>(usage.cached_prompt_tokens));
}

// A point the request never reached stays 0 (the API's convention).
double SinceArrival(double engine_seconds, double seconds_before_engine) {
  return engine_seconds > 0 ? engine_seconds + seconds_before_engine : 0.0;
}

void FillLogprobs(const std::vector<sampling::TokenLogprobs>& logprobs,
                  google::protobuf::RepeatedPtrField<v1::TokenLogprob>& out) {
  out.Reserve(static_cast<int>(logprobs.size()));
  for (const sampling::TokenLogprobs& lp : logprobs) {
    v1::TokenLogprob* entry = out.Add();
    entry->set_token_id(static_cast<uint32_t>(lp.token));
    entry->set_logprob(lp.logprob);
    entry->set_rank(static_cast<uint32_t>(lp.rank));
    for (const auto& [id, logprob] : lp.top) {
      v1::TopLogprob* top = entry->add_top();
      top->set_token_id(static_cast<uint32_t>(id));
      top->set_logprob(logprob);
    }
  }
}

}  // namespace

v1::FinishReason ToProtoFinishReason(engine::FinishReason reason) {
  switch (reason) {
    case engine::FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case engine::FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case engine::FinishReason::kAbort:
      return v1::FINISH_REASON_ABORT;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

v1::GenerateResponse MakeChunkResponse(const std::string& request_id,
                                       const engine::OutputChunk& chunk,
                                       const ResponseOptions& options) {
  v1::GenerateResponse response;
  response.set_request_id(request_id);
  v1::GenerateResponse::Chunk* out = response.mutable_chunk();
  out->mutable_token_ids()->Add(chunk.token_ids.begin(), chunk.token_ids.end());
  out->set_text(chunk.text);
  FillLogprobs(chunk.logprobs, *out->mutable_logprobs());
  if (options.stream && options.usage_every_chunk) FillUsage(chunk.usage, *out->mutable_usage());
  return response;
}

v1::GenerateResponse MakeCompleteResponse(const std::string& request_id,
                                          const engine::RequestCompletion& completion,
                                          const ResponseOptions& options,
                                          double seconds_before_engine) {
  v1::GenerateResponse response;
  response.set_request_id(request_id);
  v1::GenerateResponse::Complete* out = response.mutable_complete();
  out->set_finish_reason(ToProtoFinishReason(completion.finish_reason));
  if (completion.finish_reason == engine::FinishReason::kStop) {
    switch (completion.stop_kind) {
      case engine::StopKind::kEos:
        out->set_eos(true);
        break;
      case engine::StopKind::kStopTokenId:
        out->set_stop_token_id(static_cast<uint32_t>(completion.stop_token_id));
        break;
      case engine::StopKind::kStopString:
        out->set_stop_string(completion.stop_string);
        break;
      case engine::StopKind::kNone:
        break;
    }
  }
  if (!options.stream) {
    out->mutable_token_ids()->Add(completion.token_ids.begin(), completion.token_ids.end());
    out->set_text(completion.text);
    FillLogprobs(completion.logprobs, *out->mutable_logprobs());
  }
  // Not in Chunks: they come whole at the end, streamed or not.
  FillLogprobs(completion.prompt_logprobs, *out->mutable_prompt_logprobs());
  FillUsage(completion.usage, *out->mutable_usage());
  const engine::Timings& t = completion.timings;
  v1::Timings* timings = out->mutable_timings();
  timings->set_queue_seconds(SinceArrival(t.queue_seconds, seconds_before_engine));
  timings->set_ttft_seconds(SinceArrival(t.ttft_seconds, seconds_before_engine));
  timings->set_e2e_seconds(SinceArrival(t.e2e_seconds, seconds_before_engine));
  timings->set_num_preemptions(static_cast<uint32_t>(t.num_preemptions));
  return response;
}

}  // namespace pagoda::server
