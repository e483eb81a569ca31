#include "proto/testing/full_messages.h"

#include <cstdint>
#include <utility>

namespace pagoda::proto::testing {
namespace {

v1::SamplingParams FullSampling() {
  v1::SamplingParams sampling;
  sampling.set_temperature(0.0f);
  sampling.set_top_p(0.9f);
  sampling.set_top_k(40);
  sampling.set_min_p(0.05f);
  sampling.set_seed(0);
  sampling.set_repetition_penalty(1.1f);
  sampling.set_presence_penalty(0.5f);
  sampling.set_frequency_penalty(-0.5f);
  (*sampling.mutable_logit_bias())[7] = -100.0f;
  (*sampling.mutable_logit_bias())[9] = 2.5f;
  return sampling;
}

v1::StoppingParams FullStopping() {
  v1::StoppingParams stopping;
  stopping.set_max_tokens(64);
  stopping.set_min_tokens(4);
  stopping.add_stop("\n\n");
  stopping.add_stop("END");
  stopping.add_stop_token_ids(13);
  stopping.set_ignore_eos(true);
  stopping.set_include_stop_str_in_output(true);
  stopping.set_keep_special_tokens(true);
  return stopping;
}

void SetFullTokenLogprob(v1::TokenLogprob& logprob) {
  logprob.set_token_id(11);
  logprob.set_logprob(-0.25f);
  logprob.set_rank(2);
  v1::TopLogprob* top = logprob.add_top();
  top->set_token_id(12);
  top->set_logprob(-1.5f);
}

void SetFullUsage(uint32_t completion_tokens, v1::Usage& usage) {
  usage.set_prompt_tokens(40);
  usage.set_completion_tokens(completion_tokens);
  usage.set_cached_prompt_tokens(32);
}

}  // namespace

v1::GenerateRequest FullGenerateRequest(PromptKind prompt) {
  v1::GenerateRequest request;
  request.set_request_id("req-42");
  request.set_model("tiny-llama");
  switch (prompt) {
    case PromptKind::kText:
      request.set_text("Once upon a time");
      break;
    case PromptKind::kTokenIds:
      for (uint32_t id : {1u, 9038u, 2501u}) request.mutable_token_ids()->add_ids(id);
      break;
  }
  *request.mutable_sampling() = FullSampling();
  *request.mutable_stopping() = FullStopping();
  request.set_stream(true);
  request.set_usage_every_chunk(true);
  request.set_n(1);
  request.mutable_logprobs()->set_top_logprobs(5);
  request.mutable_logprobs()->set_prompt_logprobs(true);
  request.set_priority(-3);
  request.set_truncate_prompt_tokens(100);
  request.set_no_add_special_tokens(true);
  request.set_cache_salt("tenant-a");
  (*request.mutable_extra())["key"] = "value";
  return request;
}

v1::GenerateResponse FullChunkResponse() {
  v1::GenerateResponse response;
  response.set_request_id("req-42");
  v1::GenerateResponse::Chunk& chunk = *response.mutable_chunk();
  chunk.set_index(1);
  chunk.add_token_ids(11);
  chunk.set_text(" there");
  SetFullTokenLogprob(*chunk.add_logprobs());
  SetFullUsage(/*completion_tokens=*/1, *chunk.mutable_usage());
  return response;
}

v1::GenerateResponse FullCompleteResponse(StopReasonKind stop_reason) {
  v1::GenerateResponse response;
  response.set_request_id("req-42");
  v1::GenerateResponse::Complete& complete = *response.mutable_complete();
  complete.set_index(1);
  complete.set_finish_reason(v1::FINISH_REASON_STOP);
  switch (stop_reason) {
    case StopReasonKind::kEos:
      complete.set_eos(true);
      break;
    case StopReasonKind::kStopTokenId:
      complete.set_stop_token_id(13);
      break;
    case StopReasonKind::kStopString:
      complete.set_stop_string("END");
      break;
  }
  complete.add_token_ids(11);
  complete.add_token_ids(13);
  complete.set_text(" there");
  SetFullTokenLogprob(*complete.add_logprobs());
  SetFullTokenLogprob(*complete.add_prompt_logprobs());
  SetFullUsage(/*completion_tokens=*/2, *complete.mutable_usage());
  v1::Timings& timings = *complete.mutable_timings();
  timings.set_queue_seconds(0.002);
  timings.set_ttft_seconds(0.04);
  timings.set_e2e_seconds(0.5);
  timings.set_num_preemptions(2);
  return response;
}

v1::AbortRequest FullAbortRequest() {
  v1::AbortRequest request;
  request.add_request_ids("req-42");
  request.add_request_ids("req-43");
  return request;
}

v1::AbortResponse FullAbortResponse() {
  v1::AbortResponse response;
  response.set_num_found(1);
  return response;
}

v1::GetModelInfoRequest FullGetModelInfoRequest() {
  v1::GetModelInfoRequest request;
  request.set_model("tiny-llama");
  return request;
}

v1::ModelInfo FullModelInfo() {
  v1::ModelInfo info;
  info.set_model_name("tiny-llama");
  info.set_max_model_len(2048);
  info.set_vocab_size(32000);
  info.add_eos_token_ids(2);
  info.add_eos_token_ids(128009);
  info.set_bos_token_id(0);
  info.set_block_size(16);
  info.set_num_kv_blocks(4096);
  info.set_kv_cache_dtype(v1::DATA_TYPE_BFLOAT16);
  info.set_weight_dtype(v1::DATA_TYPE_FLOAT32);
  info.set_supports_text_input(true);
  info.set_prefix_caching_enabled(true);
  info.set_backend(v1::BACKEND_CUDA);
  info.set_max_num_seqs(256);
  info.set_max_num_batched_tokens(8192);
  info.set_num_layers(22);
  info.set_num_attention_heads(32);
  info.set_num_kv_heads(4);
  info.set_head_dim(64);
  info.set_hidden_size(2048);
  info.set_sliding_window(4096);
  info.set_kv_window_frees_blocks(true);
  info.set_attention_sinks(4);
  info.set_streaming_window(1020);
  return info;
}

v1::ServerInfo FullServerInfo() {
  v1::ServerInfo info;
  info.set_version("0.1.0");
  info.set_num_requests_running(7);
  info.set_num_requests_waiting(3);
  info.set_max_num_waiting_requests(1024);
  info.set_kv_cache_usage_ratio(0.625);
  info.set_draining(true);
  info.set_uptime_seconds(3600.5);
  info.set_start_time_unix_seconds(1.7e9);
  return info;
}

v1::TokenizeRequest FullTokenizeRequest() {
  v1::TokenizeRequest request;
  request.set_model("tiny-llama");
  request.set_text("Hello world");
  request.set_no_add_special_tokens(true);
  request.set_return_token_strings(true);
  return request;
}

v1::TokenizeResponse FullTokenizeResponse() {
  v1::TokenizeResponse response;
  response.add_token_ids(15043);
  response.add_token_ids(3186);
  response.add_token_strings("▁Hello");
  response.add_token_strings("▁world");
  return response;
}

v1::DetokenizeRequest FullDetokenizeRequest() {
  v1::DetokenizeRequest request;
  request.set_model("tiny-llama");
  request.add_token_ids(15043);
  request.add_token_ids(3186);
  request.set_keep_special_tokens(true);
  return request;
}

v1::DetokenizeResponse FullDetokenizeResponse() {
  v1::DetokenizeResponse response;
  response.set_text("Hello world");
  return response;
}

std::vector<std::unique_ptr<google::protobuf::Message>> AllFullMessages() {
  std::vector<std::unique_ptr<google::protobuf::Message>> messages;
  auto add = [&messages](auto message) {
    messages.push_back(std::make_unique<decltype(message)>(std::move(message)));
  };
  add(FullGenerateRequest(PromptKind::kText));
  add(FullGenerateRequest(PromptKind::kTokenIds));
  add(FullChunkResponse());
  add(FullCompleteResponse(StopReasonKind::kEos));
  add(FullCompleteResponse(StopReasonKind::kStopTokenId));
  add(FullCompleteResponse(StopReasonKind::kStopString));
  add(FullAbortRequest());
  add(FullAbortResponse());
  add(FullGetModelInfoRequest());
  add(FullModelInfo());
  add(v1::GetServerInfoRequest());
  add(FullServerInfo());
  add(FullTokenizeRequest());
  add(FullTokenizeResponse());
  add(FullDetokenizeRequest());
  add(FullDetokenizeResponse());
  return messages;
}

}  // namespace pagoda::proto::testing
