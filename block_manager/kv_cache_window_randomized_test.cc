// Model-based randomized test of the KV-cache manager under a window (sliding window or
// StreamingLLM sinks): random admissions with prefix lookups, chunked steps, decodes,
// preemptions and finishes, on small pools where blocks are freed behind the window, evicted,
// and proven again through the pool's evicted identities. A naive model records, for every
// slot, the token prefix whose K/V was last written there; after every operation:
//   - every running request's table has a null entry only where no query from its next token
//     on can attend, and every live entry holds exactly the request's own K/V;
//   - every prefix hit's live entries hold the request's K/V, its null ones are dead for the
//     hit's end, and the blocks the window reads are never null;
//   - a request holds no more than MaxLiveBlocks after an allocation;
//   - the pool's ref counts equal the tables' live entries; nothing leaks at the end.

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "block_manager/block_hash.h"
#include "block_manager/kv_cache_manager.h"
#include "common/status_macros.h"
#include "gtest/gtest.h"

namespace pagoda::block_manager {
namespace {

struct Sequence {
  std::vector<TokenId> tokens;
  std::vector<BlockHash> hashes;
  int num_computed = 0;
  bool running = false;
};

class WindowWorkload {
 public:
  WindowWorkload(uint64_t seed, const KvCacheManagerOptions& options)
      : rng_(seed), options_(options), hasher_(options.block_size) {
    manager_ = KvCacheManager::Create(options).value();
    slots_.assign(static_cast<size_t>(options.num_blocks) * options.block_size, -1);
  }

  absl::Status Run(int num_ops) {
    for (int op = 0; op < num_ops; ++op) {
      const int kind = Uniform(0, 9);
      absl::Status s;
      if (kind <= 1 || requests_.empty()) {
        AddRequest();
      } else if (kind <= 3) {
        s = AdmitOne();
      } else if (kind <= 7) {
        s = StepOne();
      } else if (kind == 8) {
        PreemptOne();
      } else {
        FinishOne();
      }
      if (s.ok()) s = Check();
      if (!s.ok()) return absl::InternalError(absl::StrCat("op ", op, ": ", s.message()));
    }
    for (auto& [id, seq] : requests_) manager_->Free(id);
    if (manager_->Stats().num_used_blocks != 0) return absl::InternalError("blocks leaked");
    return absl::OkStatus();
  }

  int64_t hit_tokens = 0;
  int64_t hit_null_entries = 0;  // hit entries the window never reads (content maybe evicted)
  int64_t freed_dead = 0;

 private:
  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  int bs() const { return options_.block_size; }
  const common::AttentionWindow& window() const { return options_.window; }

  bool Dead(int block_index, int first_query) const {
    return window().IsDead(block_index * bs(), first_query) &&
           window().IsDead((block_index + 1) * bs() - 1, first_query);
  }

  // Prompts share prefixes: a few stems from a 3-letter alphabet.
  void AddRequest() {
    Sequence seq;
    const int stem = Uniform(0, 2);
    const int stem_len = Uniform(0, 24);
    for (int i = 0; i < stem_len; ++i) seq.tokens.push_back((stem * 7 + i * i) % 3);
    const int own = Uniform(1, 12);
    for (int i = 0; i < own; ++i) seq.tokens.push_back(Uniform(0, 2));
    requests_.emplace(RequestId(next_id_++), std::move(seq));
  }

  SequenceView View(RequestId id, Sequence& seq) {
    hasher_.Extend(seq.tokens, {}, &seq.hashes);
    return {.id = id,
            .tokens = seq.tokens,
            .block_hashes = seq.hashes,
            .num_computed_tokens = seq.num_computed};
  }

  int PrefixId(const Sequence& seq, int length) {
    const auto [it, inserted] = prefixes_.emplace(
        std::vector<TokenId>(seq.tokens.begin(), seq.tokens.begin() + length), prefixes_.size());
    return it->second;
  }

  // Whether block `block` holds, at offset o, the K/V of seq.tokens[0, base + o] for every o
  // with base + o < limit.
  bool Holds(BlockId block, const Sequence& seq, int base, int limit) {
    for (int o = 0; o < bs() && base + o < limit; ++o) {
      if (slots_[static_cast<size_t>(block.value()) * bs() + o] != PrefixId(seq, base + o + 1)) {
        return false;
      }
    }
    return true;
  }

  absl::Status CheckHit(Sequence& seq, const PrefixHit& hit) {
    for (size_t i = 0; i < hit.blocks.size(); ++i) {
      const int index = static_cast<int>(i);
      if (hit.blocks[i] == kNullBlock) {
        if (!Dead(index, hit.num_tokens)) return absl::InternalError("a hit nulls a live block");
        ++hit_null_entries;  // its content may be gone: proven by the pool's identities
        continue;
      }
      if (!Holds(hit.blocks[i], seq, index * bs(), hit.num_tokens)) {
        return absl::InternalError(absl::StrCat("hit block ", i, " holds other K/V"));
      }
    }
    return absl::OkStatus();
  }

  // The K/V of positions [from, to) written into the request's table.
  absl::Status Write(RequestId id, Sequence& seq, int from, int to) {
    const absl::Span<const BlockId> table = manager_->GetBlockTable(id);
    for (int p = from; p < to; ++p) {
      if (static_cast<size_t>(p / bs()) >= table.size() || table[p / bs()] == kNullBlock) {
        return absl::InternalError(absl::StrCat("no block for new token ", p));
      }
      slots_[static_cast<size_t>(table[p / bs()].value()) * bs() + p % bs()] = PrefixId(seq, p + 1);
    }
    return absl::OkStatus();
  }

  absl::Status AdmitOne() {
    for (auto& [id, seq] : requests_) {
      if (seq.running) continue;
      const PrefixHit hit = manager_->GetComputedBlocks(View(id, seq));
      PAGODA_RETURN_IF_ERROR(CheckHit(seq, hit));
      const int n = std::min(Uniform(1, 8), static_cast<int>(seq.tokens.size()) - hit.num_tokens);
      SequenceView view = View(id, seq);
      view.num_computed_tokens = 0;
      if (!manager_->AllocateSlots(view, hit,
                                   {.num_new_tokens = n, .admission = Admission::kNewRequest})) {
        return absl::OkStatus();
      }
      hit_tokens += hit.num_tokens;
      seq.running = true;
      seq.num_computed = hit.num_tokens;
      return Advance(id, seq, n);
    }
    return absl::OkStatus();
  }

  // After an allocation for n tokens from seq.num_computed: writes them, checks the bound.
  absl::Status Advance(RequestId id, Sequence& seq, int n) {
    PAGODA_RETURN_IF_ERROR(Write(id, seq, seq.num_computed, seq.num_computed + n));
    const int live = manager_->NumLiveBlocks(id);
    if (live > manager_->MaxLiveBlocks(static_cast<int>(seq.tokens.size()), n)) {
      return absl::InternalError(absl::StrCat("holds ", live, " blocks, more than the window's"));
    }
    seq.num_computed += n;
    return absl::OkStatus();
  }

  absl::Status StepOne() {
    std::vector<RequestId> running;
    for (const auto& [id, seq] : requests_) {
      if (seq.running) running.push_back(id);
    }
    if (running.empty()) return absl::OkStatus();
    const RequestId id = running[Uniform(0, static_cast<int>(running.size()) - 1)];
    Sequence& seq = requests_.at(id);
    if (seq.num_computed == static_cast<int>(seq.tokens.size())) {
      seq.tokens.push_back(Uniform(0, 2));  // sampled
    }
    const int n = std::min(Uniform(1, 6), static_cast<int>(seq.tokens.size()) - seq.num_computed);
    const int live_before = manager_->NumLiveBlocks(id);
    if (!manager_->AllocateSlots(View(id, seq), {}, {.num_new_tokens = n})) {
      PreemptRequest(id, seq);  // as the scheduler does when nothing else can give way
      return absl::OkStatus();
    }
    freed_dead += std::max(0, live_before - manager_->NumLiveBlocks(id));
    return Advance(id, seq, n);
  }

  void PreemptRequest(RequestId id, Sequence& seq) {
    manager_->Free(id);
    seq.running = false;
    seq.num_computed = 0;
  }

  void PreemptOne() {
    for (auto& [id, seq] : requests_) {
      if (seq.running && Uniform(0, 1) == 0) return PreemptRequest(id, seq);
    }
  }

  void FinishOne() {
    if (requests_.empty()) return;
    auto it = requests_.begin();
    std::advance(it, Uniform(0, static_cast<int>(requests_.size()) - 1));
    manager_->Free(it->first);
    requests_.erase(it);
  }

  absl::Status Check() {
    absl::flat_hash_map<int32_t, int> refs;
    for (auto& [id, seq] : requests_) {
      const absl::Span<const BlockId> table = manager_->GetBlockTable(id);
      if (!seq.running) {
        if (!table.empty()) return absl::InternalError("a waiting request holds blocks");
        continue;
      }
      if (static_cast<int>(table.size()) < (seq.num_computed + bs() - 1) / bs()) {
        return absl::InternalError("a table shorter than its computed tokens");
      }
      for (size_t i = 0; i < table.size(); ++i) {
        const int index = static_cast<int>(i);
        if (table[i] == kNullBlock) {
          if (!Dead(index, seq.num_computed)) {
            return absl::InternalError(absl::StrCat("request ", id.value(), " lost live block ", i,
                                                    " at ", seq.num_computed, " computed"));
          }
          continue;
        }
        ++refs[table[i].value()];
        if (!Holds(table[i], seq, index * bs(), seq.num_computed)) {
          return absl::InternalError(
              absl::StrCat("request ", id.value(), " block ", i, " does not hold its K/V"));
        }
      }
    }
    for (int b = 0; b < manager_->num_blocks(); ++b) {
      const auto it = refs.find(b);
      if (manager_->pool().ref_count(BlockId(b)) != (it == refs.end() ? 0 : it->second)) {
        return absl::InternalError(absl::StrCat("block ", b, "'s ref count is off"));
      }
    }
    return absl::OkStatus();
  }

  std::mt19937_64 rng_;
  KvCacheManagerOptions options_;
  BlockHasher hasher_;
  std::unique_ptr<KvCacheManager> manager_;
  std::map<RequestId, Sequence> requests_;
  std::map<std::vector<TokenId>, int> prefixes_;
  std::vector<int> slots_;  // prefix id written in each slot, -1 for none
  uint64_t next_id_ = 1;
};

TEST(KvCacheWindowRandomizedTest, WindowsAndSinksKeepEveryInvariantOnRandomWorkloads) {
  int64_t hit_tokens = 0, hit_null_entries = 0, freed = 0;
  for (uint64_t seed = 0; seed < 600; ++seed) {
    std::mt19937_64 rng(seed);
    const auto pick = [&](std::vector<int> values) {
      return values[std::uniform_int_distribution<size_t>(0, values.size() - 1)(rng)];
    };
    KvCacheManagerOptions options;
    options.block_size = pick({1, 2, 4});
    options.window.sliding_window = pick({1, 2, 3, 5, 8, 13});
    options.window.sink_tokens = pick({0, 0, 1, 3, 5});
    // Big enough for one request's window plus an 8-token chunk, small enough to evict.
    options.num_blocks =
        KvCacheManager::Create(
            {.num_blocks = 1, .block_size = options.block_size, .window = options.window})
            .value()
            ->MaxLiveBlocks(1 << 20, 8) +
        pick({0, 2, 6, 20});
    WindowWorkload workload(seed, options);
    const absl::Status status = workload.Run(300);
    ASSERT_TRUE(status.ok()) << "seed " << seed << " bs " << options.block_size << " window "
                             << options.window.sliding_window << " sinks "
                             << options.window.sink_tokens << ": " << status;
    hit_tokens += workload.hit_tokens;
    hit_null_entries += workload.hit_null_entries;
    freed += workload.freed_dead;
  }
  // The workloads reach the cases that matter.
  EXPECT_GT(hit_tokens, 10000);
  EXPECT_GT(hit_null_entries, 1000);
  EXPECT_GT(freed, 10000);
  RecordProperty("hit_tokens", std::to_string(hit_tokens));
  RecordProperty("hit_null_entries", std::to_string(hit_null_entries));
  RecordProperty("dead_blocks_freed", std::to_string(freed));
}

}  // namespace
}  // namespace pagoda::block_manager
