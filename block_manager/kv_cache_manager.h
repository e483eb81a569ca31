#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "block_manager/block_hash.h"
#include "block_manager/block_pool.h"
#include "block_manager/kv_cache_stats.h"
#include "common/attention_window.h"
#include "common/ids.h"

namespace pagoda::block_manager {

struct KvCacheManagerOptions {
  int num_blocks = 0;   // > 0
  int block_size = 16;  // tokens per block, > 0
  bool enable_prefix_caching = true;
  // Fraction of num_blocks, in [0, 1), that must stay available after admitting a new request
  // (AllocateSlots with Admission::kNewRequest). Headroom for the running requests' decodes,
  // which cuts preemptions (vLLM PR #44594). Running requests may use it.
  double watermark_ratio = 0.0;
  // What every layer attends (the model's sliding window, or StreamingLLM's sinks and window):
  // a block no later query of its request attends is freed at once and its table entry set to
  // kNullBlock. full() (the default): blocks are kept until the request ends.
  common::AttentionWindow window;
};

// What the manager reads of a request's sequence. A view: valid for the duration of one call.
struct SequenceView {
  RequestId id;
  // Prompt plus generated tokens so far.
  absl::Span<const TokenId> tokens;
  // Chained hash of every full block of `tokens` (BlockHasher::Extend); only read when prefix
  // caching is on.
  absl::Span<const BlockHash> block_hashes;
  // What the first block's hash folded in (the cache salt): reported in KV events only.
  absl::string_view extra_key;
  // Tokens whose K/V are already in the request's blocks (0 for a request not yet admitted or
  // preempted).
  int num_computed_tokens = 0;
};

enum class LookupKind {
  kNewRequest,
  kResumedAfterPreemption,  // counted apart in the statistics
};

// The longest cached prefix of a request, from GetComputedBlocks(). Its blocks are only
// guaranteed to be valid until the next call that allocates or frees. Under a window, blocks the
// request will never read (before the window of its first new token) are kNullBlock: their
// content may have been evicted, the chain proven through their identities.
struct PrefixHit {
  std::vector<BlockId> blocks;
  int num_tokens = 0;  // blocks.size() * block_size
  std::optional<CacheEntryId> last_entry;
  // The lookup, for the statistics: they count it when AllocateSlots admits the request with
  // this hit, so that a request looked up again every step while it waits to fit counts once.
  int num_queried_tokens = 0;  // 0: no lookup (prefix caching off, or none asked)
  LookupKind kind = LookupKind::kNewRequest;
};

// The table entry of a block freed because no later query attends it.
inline constexpr BlockId kNullBlock{-1};

enum class Admission {
  kRunning,     // a running request growing its table
  kNewRequest,  // first allocation of a waiting request: the whole sequence and the
                // watermark must fit, so that it will not be preempted on its next chunk
};

struct SlotRequest {
  int num_new_tokens = 0;        // tokens to be computed this step
  int num_lookahead_tokens = 0;  // extra slots beyond them (speculative decoding)
  Admission admission = Admission::kRunning;
  // kNewRequest only: blocks that must stay available after the admission beyond the
  // watermark (the running requests' expected growth: scheduler::GrowthReserve).
  int num_reserved_blocks = 0;
  // The new tokens' K/V will be loaded from a lower tier, not computed: their full blocks are
  // registered in the prefix cache only by CommitLoadedBlocks, once their content is there.
  bool defer_registration = false;
};

// vLLM V1's KV-cache manager: per-request, append-only block tables over a BlockPool, with
// prefix caching. The scheduler calls, per step:
//   GetComputedBlocks (admission only) -> AllocateSlots -> ... -> Free when a request ends
//   or is preempted.
// Allocation is all-or-nothing; running out of blocks is an outcome (false), not an error.
//
// Not thread-safe: confined to the engine thread.
class KvCacheManager {
 public:
  static absl::StatusOr<std::unique_ptr<KvCacheManager>> Create(
      const KvCacheManagerOptions& options);

  KvCacheManager(const KvCacheManager&) = delete;
  KvCacheManager& operator=(const KvCacheManager&) = delete;

  int block_size() const { return pool_.block_size(); }
  int num_blocks() const { return pool_.num_blocks(); }
  // Blocks an admission must leave free (floor(watermark_ratio * num_blocks)).
  int num_watermark_blocks() const { return watermark_blocks_; }
  const KvCacheManagerOptions& options() const { return options_; }

  // The longest cached prefix of `seq.tokens`, block aligned, always leaving at least the last
  // token to compute (its logits are needed). The statistics count the lookup once AllocateSlots
  // admits the request with it (PrefixHit::num_queried_tokens). Empty when prefix caching is
  // off. Precondition: the request holds no blocks.
  PrefixHit GetComputedBlocks(const SequenceView& seq, LookupKind kind = LookupKind::kNewRequest);

  // Makes room for `slots.num_new_tokens` more tokens after seq.num_computed_tokens plus the
  // prefix hit (which must come from GetComputedBlocks in this step, or be empty): appends `hit`
  // and as many new blocks as needed to the request's table, then registers every block that
  // the new tokens fill in the prefix cache. Returns false and changes nothing when the
  // available blocks do not suffice. Preconditions: the new tokens exist in seq.tokens; a
  // non-empty hit only for a request that holds no blocks.
  [[nodiscard]] bool AllocateSlots(const SequenceView& seq, const PrefixHit& hit,
                                   const SlotRequest& slots);

  // Registers the full blocks of the request's first `num_tokens` tokens that are not yet
  // registered (after a load from a lower tier filled them; see SlotRequest).
  void CommitLoadedBlocks(const SequenceView& seq, int num_tokens);

  // With a window, first frees the blocks that no query from the first new token on attends
  // (their entries become kNullBlock), which admission and growth then count as available.
  //
  // Releases all blocks of `id` (tail blocks first, so they are evicted first) and forgets the
  // request. Cached blocks stay reusable until evicted. No-op for an unknown id.
  void Free(RequestId id);
  // Free for a request preempted in the step that allocated for it: only its first
  // `num_computed_tokens` tokens have K/V, so the blocks after them that this step registered
  // leave the prefix cache first (their content will never be written).
  void FreeUncomputed(RequestId id, int num_computed_tokens);

  // The request's block table, in token order. Empty for an unknown id. Valid until the next
  // non-const call.
  absl::Span<const BlockId> GetBlockTable(RequestId id) const;
  int num_requests() const { return static_cast<int>(requests_.size()); }

  // Blocks needed to hold `num_tokens` tokens.
  int BlocksForTokens(int num_tokens) const;
  // Blocks a request of `num_tokens` tokens holds at most while computing chunks of up to
  // `chunk` tokens: BlocksForTokens(num_tokens), or less under a window.
  int MaxLiveBlocks(int num_tokens, int chunk) const;
  // Live (non-null) entries of the request's table.
  int NumLiveBlocks(RequestId id) const;

  // Drops all cached prefixes; only possible when no block is in use.
  [[nodiscard]] bool ResetPrefixCache() { return pool_.ResetPrefixCache(); }

  KvCacheStats Stats() const;
  const BlockPool& pool() const { return pool_; }

  // KV events (BlockPool::EnableEvents): the prefix cache's changes since the last call.
  void EnableEvents(bool enable) { pool_.EnableEvents(enable); }
  std::vector<KvCacheEvent> TakeEvents() { return pool_.TakeEvents(); }
  // Evicted content (BlockPool::EnableEvictionCapture), for the tiers below.
  void EnableEvictionCapture(bool enable) { pool_.EnableEvictionCapture(enable); }
  std::vector<EvictedContent> TakeEvictedContent() { return pool_.TakeEvictedContent(); }

 private:
  struct RequestBlocks {
    std::vector<BlockId> table;  // kNullBlock where a dead block was freed
    int num_dead_blocks = 0;     // table[0, num_dead_blocks) past the sinks are checked
    int num_registered_blocks = 0;
    // The cache entry of the content of table[num_registered_blocks - 1].
    std::optional<CacheEntryId> last_entry;
  };

  explicit KvCacheManager(const KvCacheManagerOptions& options);
  void RegisterFullBlocks(const SequenceView& seq, int num_tokens, RequestBlocks* request);
  // Adds an admitted request's lookup to the statistics (lookups_).
  void CountLookup(const PrefixHit& hit);
  // GetComputedBlocks under a window (docs/architecture.md, "Windows").
  void FindWindowedHit(const SequenceView& seq, int max_hit_blocks, PrefixHit* hit) const;
  // Frees the blocks of `request` that no query at `first_query` or later attends.
  void FreeDeadBlocks(int first_query, RequestBlocks* request);
  bool IsDeadBlock(int index, int first_query) const;

  const KvCacheManagerOptions options_;
  const int watermark_blocks_;
  BlockPool pool_;
  absl::flat_hash_map<RequestId, RequestBlocks> requests_;
  KvCacheStats lookups_;  // only the prefix-lookup counters are used
};

}  // namespace pagoda::block_manager
