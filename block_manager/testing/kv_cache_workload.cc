#include "block_manager/testing/kv_cache_workload.h"

#include <string>
#include <vector>

namespace pagoda::block_manager::testing {
namespace {

constexpr int kMaxRequests = 12;
constexpr int kMaxSequenceTokens = 160;
// A tiny vocabulary makes equal blocks, and so prefix hits, common.
constexpr int kVocabulary = 4;

RequestId Pick(const std::vector<RequestId>& ids, ChoiceSource& choices) {
  return ids[choices.Next(static_cast<int>(ids.size()))];
}

std::vector<TokenId> RandomTokens(ChoiceSource& choices, int n) {
  std::vector<TokenId> tokens(n);
  for (TokenId& t : tokens) t = choices.Next(kVocabulary);
  return tokens;
}

}  // namespace

HarnessOptions RandomHarnessOptions(ChoiceSource& choices) {
  static constexpr int kBlockSizes[] = {1, 2, 3, 4, 8, 16};
  HarnessOptions options;
  options.manager.block_size = kBlockSizes[choices.Next(6)];
  options.manager.num_blocks = 4 + choices.Next(60);
  options.manager.enable_prefix_caching = choices.Next(8) != 0;
  options.manager.watermark_ratio = choices.Next(4) == 0 ? 0.1 : 0.0;
  options.hash_mode = choices.Next(4) == 0 ? HashMode::kColliding : HashMode::kReal;
  options.check_events = choices.Next(4) != 0;
  return options;
}

absl::Status RunWorkload(const HarnessOptions& options, ChoiceSource& choices, int max_ops,
                         WorkloadCounts* counts) {
  KvCacheHarness harness(options);
  const int bs = options.manager.block_size;
  // Shared prompt prefixes ("system prompts") of 0..3 blocks plus a little.
  std::vector<std::vector<TokenId>> templates;
  for (int i = 0; i < 3; ++i) templates.push_back(RandomTokens(choices, choices.Next(3 * bs + 2)));

  for (int op = 0; op < max_ops && !choices.exhausted(); ++op) {
    ++counts->ops;
    const std::vector<RequestId> waiting = harness.waiting();
    const std::vector<RequestId> running = harness.running();
    absl::Status status;
    switch (choices.Next(9)) {
      case 0:
      case 1: {
        if (static_cast<int>(waiting.size() + running.size()) >= kMaxRequests) break;
        std::vector<TokenId> prompt = templates[choices.Next(3)];
        const std::vector<TokenId> tail = RandomTokens(choices, 1 + choices.Next(3 * bs + 8));
        prompt.insert(prompt.end(), tail.begin(), tail.end());
        harness.AddRequest(std::move(prompt), choices.Next(4) == 0 ? "tenant-b" : "");
        break;
      }
      case 2:
      case 3: {
        if (waiting.empty()) break;
        bool admitted = false;
        status = harness.Admit(Pick(waiting, choices), 1 + choices.Next(4 * bs + 4), &admitted);
        counts->admissions += admitted ? 1 : 0;
        counts->failed_allocations += admitted ? 0 : 1;
        break;
      }
      case 4:
      case 5:
      case 6: {
        if (running.empty()) break;
        const RequestId id = Pick(running, choices);
        if (harness.num_tokens(id) >= kMaxSequenceTokens) {
          status = harness.Finish(id);
          break;
        }
        bool scheduled = false;
        const int max_new = choices.Next(2) == 0 ? 1 : 1 + choices.Next(3 * bs + 4);
        status = harness.Step(id, max_new, choices.Next(kVocabulary), &scheduled);
        if (status.ok() && !scheduled) {
          // Out of blocks: preempt the request, as the scheduler would (recompute).
          ++counts->failed_allocations;
          ++counts->preemptions;
          status = harness.Preempt(id);
        }
        break;
      }
      case 7: {
        if (waiting.empty() && running.empty()) break;
        std::vector<RequestId> all = waiting;
        all.insert(all.end(), running.begin(), running.end());
        status = harness.Finish(Pick(all, choices));
        break;
      }
      default: {
        if (!running.empty() && choices.Next(6) != 0) {
          ++counts->preemptions;
          status = harness.Preempt(Pick(running, choices));
        } else {
          status = harness.ResetPrefixCache();
        }
        break;
      }
    }
    if (!status.ok()) return status;
  }
  counts->hit_blocks += harness.num_hit_blocks();
  counts->evictions += harness.manager().Stats().num_evictions;
  return harness.FinishAllAndCheckNoLeaks();
}

}  // namespace pagoda::block_manager::testing
