#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "block_manager/block_hash.h"
#include "common/ids.h"

namespace pagoda::scheduler {

enum class RequestState {
  kWaiting,  // queued: never admitted, or preempted (its blocks freed, to be recomputed)
  kRunning,  // admitted: holds KV blocks and is scheduled every step it has tokens to compute
  kLoading,  // admitted: holds KV blocks whose K/V are being read from a lower tier; scheduled
             // (as running) once the load ends
};

// What the scheduler knows of one request: its tokens and how many of them have their K/V in the
// request's blocks. The one record of a request: the engine derives its per-request state from
// it (engine/engine_core.cc), so nothing is kept in a second map. Like vLLM V1 there are no prefill
// and decode phases: every step closes part of the gap num_computed_tokens() < num_tokens().
// Created by the engine, then owned by the Scheduler from AddRequest() until the request finishes.
//
// Not thread-safe: confined to the engine thread.
class Request {
 public:
  // `prompt` is not empty. `priority`: lower is served earlier (priority policy only).
  // `cache_salt` separates prefix-cache namespaces (requests with different salts never share
  // blocks).
  Request(RequestId id, std::vector<TokenId> prompt, int priority = 0, std::string cache_salt = {})
      : id_(id),
        tokens_(std::move(prompt)),
        num_prompt_tokens_(static_cast<int>(tokens_.size())),
        priority_(priority),
        cache_salt_(std::move(cache_salt)) {}

  virtual ~Request() = default;
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;

  RequestId id() const { return id_; }
  // Prompt followed by the generated tokens.
  absl::Span<const TokenId> tokens() const { return tokens_; }
  absl::Span<const TokenId> output_tokens() const {
    return absl::MakeConstSpan(tokens_).subspan(num_prompt_tokens_);
  }
  int num_tokens() const { return static_cast<int>(tokens_.size()); }
  int num_prompt_tokens() const { return num_prompt_tokens_; }
  int num_output_tokens() const { return num_tokens() - num_prompt_tokens_; }
  // Tokens whose K/V are in the request's blocks (counting this step's scheduled tokens once
  // Schedule() returned: the model writes them during the step).
  int num_computed_tokens() const { return num_computed_tokens_; }
  int priority() const { return priority_; }
  const std::string& cache_salt() const { return cache_salt_; }
  // True: admission takes no prefix-cache hit, so every prompt token is computed (prompt
  // log-probabilities need their logits); its blocks are still cached for others. Set by the
  // creator before Scheduler::AddRequest.
  bool skips_prefix_cache() const { return skips_prefix_cache_; }
  void set_skips_prefix_cache(bool skips) { skips_prefix_cache_ = skips; }
  // At most this many tokens computed per step (0: no limit beyond the step's budget). Set by
  // the creator before Scheduler::AddRequest, e.g. to bound the logits rows of a scored prompt.
  int max_tokens_per_step() const { return max_tokens_per_step_; }
  void set_max_tokens_per_step(int n) { max_tokens_per_step_ = n; }
  // Prompt plus output tokens at most (the prompt plus max_tokens), or 0 when only
  // max_model_len bounds it. Set by the creator before Scheduler::AddRequest; the scheduler's
  // growth reserve (SchedulerOptions::growth_reserve) keeps room for part of what is left.
  int max_num_tokens() const { return max_num_tokens_; }
  void set_max_num_tokens(int n) { max_num_tokens_ = n; }
  RequestState state() const { return state_; }
  int num_preemptions() const { return num_preemptions_; }
  // Prompt tokens served from the prefix cache at the first admission (vLLM's
  // num_cached_tokens; re-admissions after preemption do not change it).
  int num_cached_prompt_tokens() const { return num_cached_prompt_tokens_; }
  // Arrival order, assigned by Scheduler::AddRequest (ties in priority).
  uint64_t arrival_seq() const { return arrival_seq_; }
  // Chained hashes of the full blocks of tokens() (prefix caching only).
  absl::Span<const block_manager::BlockHash> block_hashes() const { return block_hashes_; }

 private:
  friend class Scheduler;

  RequestId id_;
  std::vector<TokenId> tokens_;
  int num_prompt_tokens_;
  int priority_;
  std::string cache_salt_;
  bool skips_prefix_cache_ = false;
  int max_tokens_per_step_ = 0;
  int max_num_tokens_ = 0;
  int num_computed_tokens_ = 0;
  RequestState state_ = RequestState::kWaiting;
  int num_preemptions_ = 0;
  int num_cached_prompt_tokens_ = 0;
  bool ever_admitted_ = false;
  uint64_t arrival_seq_ = 0;
  std::vector<block_manager::BlockHash> block_hashes_;
};

}  // namespace pagoda::scheduler
