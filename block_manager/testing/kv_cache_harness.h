#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "block_manager/block_hash.h"
#include "block_manager/kv_cache_manager.h"
#include "block_manager/testing/kv_event_mirror.h"
#include "common/ids.h"

namespace pagoda::block_manager::testing {

// How the harness hashes blocks for the manager.
enum class HashMode {
  kReal,       // BlockHasher: collisions practically never happen
  kColliding,  // a deliberately weak hash with constant collisions, ignoring the cache salt:
               // proves that hits are confirmed by content, never trusted from the hash
};

struct HarnessOptions {
  KvCacheManagerOptions manager;
  HashMode hash_mode = HashMode::kReal;
  // Records KV events and, after every operation, checks that a subscriber applying them sees
  // exactly the pool's cached blocks (real hashes only: the colliding hash shares 64-bit keys).
  bool check_events = true;
};

// Drives a KvCacheManager the way the scheduler and the model runner will, while keeping an
// independent, naive model of what every KV slot holds:
//   - each slot records the exact token prefix (and cache salt) whose K/V the "model" wrote
//     there, interned in an ordered map; writing happens when a step computes tokens;
//   - every prefix hit is checked slot by slot against the request's own prefix, and every
//     running request's table is re-read before it computes, so a block shared or reused
//     wrongly is caught as wrong content, whatever the manager's bookkeeping says;
//   - ref counts, states and counters are recomputed from the harness's own copy of the
//     block tables and compared with the manager's.
// Every operation returns a non-OK status describing the first violated property.
// Single-threaded.
class KvCacheHarness {
 public:
  explicit KvCacheHarness(const HarnessOptions& options);

  // A new waiting request. Returns its id.
  RequestId AddRequest(std::vector<TokenId> prompt, std::string cache_salt);
  // Looks up the prefix cache and allocates the first `max_new_tokens` (capped to what is
  // left) of a waiting request. Sets *admitted.
  absl::Status Admit(RequestId id, int max_new_tokens, bool* admitted);
  // A running request computes up to `max_new_tokens` more tokens. When its sequence is fully
  // computed it first "samples" `next_token` (a decode step). Sets *scheduled.
  absl::Status Step(RequestId id, int max_new_tokens, TokenId next_token, bool* scheduled);
  // Frees a running request's blocks and puts it back to waiting with its tokens (recompute).
  absl::Status Preempt(RequestId id);
  // Ends a request, waiting or running.
  absl::Status Finish(RequestId id);
  // Resets the prefix cache when nothing is in use (otherwise checks that it refuses).
  absl::Status ResetPrefixCache();
  // Checks every global invariant (also run at the end of every operation).
  absl::Status CheckInvariants() const;
  // The KV events of the last operation applied to the mirror, compared with the pool, then
  // CheckInvariants(): what every operation runs last.
  absl::Status CheckAfterOperation();
  // Ends every request and checks that no block leaked.
  absl::Status FinishAllAndCheckNoLeaks();

  std::vector<RequestId> waiting() const;
  std::vector<RequestId> running() const;
  int num_tokens(RequestId id) const { return static_cast<int>(requests_.at(id).tokens.size()); }
  const KvCacheManager& manager() const { return *manager_; }
  int64_t num_hit_blocks() const { return num_hit_blocks_; }

 private:
  struct Request {
    std::vector<TokenId> tokens;
    std::string salt;
    std::vector<BlockHash> hashes;
    int num_computed = 0;
    bool running = false;
    bool preempted = false;
    std::vector<BlockId> table;  // the harness's own copy
    int num_hit_blocks = 0;      // leading table entries that came from a prefix hit
  };
  using PrefixKey = std::pair<std::string, std::vector<TokenId>>;

  SequenceView View(RequestId id, Request& request);
  void ExtendHashes(Request& request) const;
  int InternPrefix(const Request& request, int num_tokens);
  absl::Status CheckTableContent(RequestId id, const Request& request, int num_tokens) const;
  absl::Status CheckHit(RequestId id, const Request& request, const PrefixHit& hit) const;
  absl::Status CheckAllocation(RequestId id, Request& request, bool allocated, int num_new_tokens,
                               int available_before);
  // Compares the manager's answer with the naive rule, checks the table, and on success
  // "computes" the new tokens into their slots.
  absl::Status ApplyAllocation(RequestId id, Request& request, const char* what, bool allocated,
                               bool should_fit, int num_new_tokens, int available_before);
  int BestPossibleHitBlocks(const Request& request) const;
  void WriteSlots(const Request& request, int from, int to);

  HarnessOptions options_;
  std::unique_ptr<KvCacheManager> manager_;
  BlockHasher hasher_;
  uint64_t next_id_ = 1;
  std::map<RequestId, Request> requests_;
  // The naive model of the pool: slot -> interned prefix whose K/V it holds.
  std::vector<std::optional<int>> slots_;
  std::map<PrefixKey, int> prefixes_;
  int64_t num_hit_blocks_ = 0;
  KvEventMirror mirror_;
};

}  // namespace pagoda::block_manager::testing
