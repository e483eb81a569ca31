#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/ids.h"
#include "sampling/logprobs.h"
#include "sampling/sampling_params.h"

namespace pagoda::engine {

// The limits of a request that ValidateEngineRequest (engine/request_validation.h) enforces for
// every front end, documented in proto/pagoda/v1 and docs/api.md.
inline constexpr int kMaxCacheSaltBytes = 256;
inline constexpr int kMaxStopStrings = 16;
inline constexpr int kMaxStopStringBytes = 256;
inline constexpr int kMaxStopTokenIds = 64;

// When a request stops (vLLM's StoppingParams). Generation ends at the first of: an EOS token
// (unless ignore_eos), a token of stop_token_ids, a stop string, max_tokens output tokens, or
// the sequence reaching max_model_len tokens.
struct StoppingOptions {
  // Output tokens at most, >= 1, and prompt + max_tokens <= max_model_len. Unset: until
  // max_model_len.
  std::optional<int> max_tokens;
  // Before this many output tokens exist, EOS and stop_token_ids are never sampled and stop
  // strings are not checked. In [0, max_tokens].
  int min_tokens = 0;
  // Matched on the output text (needs a tokenizer); the first to occur wins. At most 16, each
  // 1 to 256 bytes of UTF-8 (front ends check the encoding where they decode the wire).
  std::vector<std::string> stop_strings;
  std::vector<TokenId> stop_token_ids;  // at most 64, in the vocabulary
  bool ignore_eos = false;
  // Whether the matched stop string, or the text of the stop token, ends the output text.
  bool include_stop_str_in_output = false;
  // Whether special tokens (BOS, EOS, control tokens) produce text. Token ids are unaffected.
  bool keep_special_tokens = false;
};

// A tokenized request, as a front end hands it to the engine, which validates it
// (ValidateEngineRequest) before anything else sees it.
struct EngineRequest {
  // The client's id (GenerateRequest.request_id or x-request-id), for logs. May be empty.
  std::string external_id;
  std::vector<TokenId> prompt_tokens;  // not empty; every id < vocab size
  // What the client called the prompt, for error messages ("text", "token_ids.ids",
  // "messages"): "prompt_tokens[3]: ..." becomes "token_ids.ids[3]: ...".
  std::string prompt_field = "prompt";
  sampling::SamplingParams sampling;
  StoppingOptions stopping;
  // Requests with different salts never share prefix-cache blocks. At most 256 bytes.
  std::string cache_salt;
  int priority = 0;  // lower first, under the priority queue policy
  // Whether chunks carry text (needs a tokenizer). Token ids are always sent.
  bool detokenize = true;
};

enum class FinishReason {
  kStop,    // EOS, a stop token id or a stop string
  kLength,  // max_tokens or max_model_len
  kAbort,   // Abort(), a client cancel or deadline, or a drain
};

// Which stop condition ended a request with FinishReason::kStop.
enum class StopKind { kNone, kEos, kStopTokenId, kStopString };

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
  // Prompt tokens served from the prefix cache at the first admission.
  int cached_prompt_tokens = 0;
};

// Seconds since the request reached the engine (EngineCore::AddRequest).
struct Timings {
  double queue_seconds = 0;  // to the start of the first step that scheduled it
  double ttft_seconds = 0;   // to its first output token handed to the sink
  double e2e_seconds = 0;    // to its completion
  int num_preemptions = 0;
};

// New output since the previous chunk.
struct OutputChunk {
  std::vector<TokenId> token_ids;  // at least one (one per step in this version)
  std::string text;                // valid UTF-8; empty without detokenization
  Usage usage;                     // cumulative
  // One per token_ids entry when sampling.logprobs >= 0, else empty.
  std::vector<sampling::TokenLogprobs> logprobs;
  // On a request's first chunk with sampling.prompt_logprobs >= 0: the prompt's, as
  // RequestCompletion::prompt_logprobs will hold them (streams get them early). Else empty.
  std::vector<sampling::TokenLogprobs> prompt_logprobs;
};

// The end of a request: exactly one per accepted request.
struct RequestCompletion {
  // OK, or the engine failure that ended the request (then finish_reason is kAbort).
  absl::Status status;
  FinishReason finish_reason = FinishReason::kAbort;
  StopKind stop_kind = StopKind::kNone;
  TokenId stop_token_id = 0;  // with StopKind::kStopTokenId
  std::string stop_string;    // with StopKind::kStopString: the entry that matched
  // The whole output (also already sent in chunks): every token id, stop token included, and
  // the whole text after stop-string and special-token handling.
  std::vector<TokenId> token_ids;
  std::string text;
  // One per token_ids entry when sampling.logprobs >= 0, else empty.
  std::vector<sampling::TokenLogprobs> logprobs;
  // With sampling.prompt_logprobs >= 0: one per prompt token but the first (entry i scores
  // prompt token i + 1); fewer when the request ended before its prompt was computed.
  std::vector<sampling::TokenLogprobs> prompt_logprobs;
  Usage usage;
  Timings timings;
};

// Receives one request's output. Called on the engine thread only, in order: zero or more
// OnChunk, then exactly one OnComplete, after which the engine drops its reference. Must not
// block (hand the data to another thread and return).
class RequestSink {
 public:
  virtual ~RequestSink() = default;
  virtual void OnChunk(OutputChunk chunk) = 0;
  virtual void OnComplete(RequestCompletion completion) = 0;
};

}  // namespace pagoda::engine
