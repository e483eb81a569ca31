#pragma once

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "common/ids.h"

namespace pagoda::scheduler {

// One request's part of a step.
class Request;

struct ScheduledRequest {
  RequestId id;
  // The request's record, owned by the scheduler: valid until Scheduler::FinishRequest.
  Request* request = nullptr;
  // Tokens already in the cache before this step; the step computes tokens
  // [num_computed_tokens, num_computed_tokens + num_new_tokens) of the request's sequence.
  int num_computed_tokens = 0;
  int num_new_tokens = 0;
  // Whether the step reaches the end of the request's known tokens, so that the logits of its
  // last token are sampled (a decode, or the last chunk of a prompt). False for a prompt chunk
  // that leaves tokens for later steps.
  bool samples = false;
  // Whether the request was admitted in this step (new, or resumed after preemption).
  bool newly_admitted = false;
  // Of those tokens, how many the prefix cache supplied at admission (0 unless newly_admitted).
  int num_prefix_hit_tokens = 0;
  // The request's whole block table, in token order. A view into the KV-cache manager: valid
  // until the next Scheduler call that allocates or frees blocks.
  absl::Span<const BlockId> block_table;
  // How many entries at the end of block_table were allocated in this step.
  int num_new_blocks = 0;
};

// A request admitted with blocks to read from a lower tier (Scheduler::FinishLoad ends it).
struct LoadPlan {
  RequestId id;
  Request* request = nullptr;
  int first_block = 0;          // index in the request's chain of block hashes
  std::vector<BlockId> blocks;  // the device blocks to fill, for blocks first_block.. on
};

// The plain-data output of Scheduler::Schedule(): what the engine runs in one step.
struct StepPlan {
  // Running requests first (in running order), then the requests admitted this step.
  std::vector<ScheduledRequest> requests;
  // Requests preempted in this step: their blocks were freed and they wait again.
  std::vector<RequestId> preempted;
  int num_scheduled_tokens = 0;  // sum of num_new_tokens, <= the token budget
  // Requests admitted in this step whose next blocks load from a lower tier first.
  std::vector<LoadPlan> loads;

  bool empty() const { return requests.empty(); }
};

}  // namespace pagoda::scheduler
