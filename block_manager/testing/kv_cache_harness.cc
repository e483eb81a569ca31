#include "block_manager/testing/kv_cache_harness.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace pagoda::block_manager::testing {
namespace {

absl::Status Violation(const std::string& what) { return absl::InternalError(what); }

}  // namespace

KvCacheHarness::KvCacheHarness(const HarnessOptions& options)
    : options_(options), hasher_(options.manager.block_size, /*seed=*/0x5eed) {
  auto manager = KvCacheManager::Create(options.manager);
  PAGODA_CHECK(manager.ok()) << manager.status();
  manager_ = std::move(manager).value();
  options_.check_events = options.check_events && options.hash_mode == HashMode::kReal;
  manager_->EnableEvents(options_.check_events);
  slots_.resize(static_cast<size_t>(options.manager.num_blocks) * options.manager.block_size);
}

RequestId KvCacheHarness::AddRequest(std::vector<TokenId> prompt, std::string cache_salt) {
  PAGODA_CHECK(!prompt.empty());
  const RequestId id(next_id_++);
  Request& request = requests_[id];
  request.tokens = std::move(prompt);
  request.salt = std::move(cache_salt);
  return id;
}

void KvCacheHarness::ExtendHashes(Request& request) const {
  if (options_.hash_mode == HashMode::kReal) {
    hasher_.Extend(request.tokens, request.salt, &request.hashes);
    return;
  }
  const size_t bs = options_.manager.block_size;
  for (size_t i = request.hashes.size(); i < request.tokens.size() / bs; ++i) {
    request.hashes.push_back(BlockHash{.low = static_cast<uint64_t>(request.tokens[i * bs]) % 3});
  }
}

SequenceView KvCacheHarness::View(RequestId id, Request& request) {
  ExtendHashes(request);
  return SequenceView{.id = id,
                      .tokens = request.tokens,
                      .block_hashes = request.hashes,
                      .extra_key = request.salt,
                      .num_computed_tokens = request.num_computed};
}

int KvCacheHarness::InternPrefix(const Request& request, int num_tokens) {
  // With a colliding hash the salt cannot separate tenants (it only enters the hash), but K/V
  // depend on tokens alone, so content is compared without it there.
  PrefixKey key(options_.hash_mode == HashMode::kReal ? request.salt : "",
                std::vector<TokenId>(request.tokens.begin(), request.tokens.begin() + num_tokens));
  const auto [it, inserted] = prefixes_.emplace(std::move(key), prefixes_.size());
  return it->second;
}

void KvCacheHarness::WriteSlots(const Request& request, int from, int to) {
  const int bs = options_.manager.block_size;
  for (int p = from; p < to; ++p) {
    slots_[static_cast<size_t>(request.table[p / bs].value()) * bs + p % bs] =
        InternPrefix(request, p + 1);
  }
}

absl::Status KvCacheHarness::CheckTableContent(RequestId id, const Request& request,
                                               int num_tokens) const {
  const int bs = options_.manager.block_size;
  for (int p = 0; p < num_tokens; ++p) {
    const BlockId block = request.table[p / bs];
    const std::optional<int>& slot = slots_[static_cast<size_t>(block.value()) * bs + p % bs];
    PrefixKey key(options_.hash_mode == HashMode::kReal ? request.salt : "",
                  std::vector<TokenId>(request.tokens.begin(), request.tokens.begin() + p + 1));
    const auto it = prefixes_.find(key);
    if (!slot.has_value() || it == prefixes_.end() || *slot != it->second) {
      return Violation(absl::StrCat("request ", id.value(), " token ", p, " in block ",
                                    block.value(), " does not hold its K/V"));
    }
  }
  return absl::OkStatus();
}

absl::Status KvCacheHarness::CheckHit(RequestId id, const Request& request,
                                      const PrefixHit& hit) const {
  const int bs = options_.manager.block_size;
  const int num_hit = static_cast<int>(hit.blocks.size());
  if (hit.num_tokens != num_hit * bs) return Violation("hit tokens != hit blocks * block size");
  if (num_hit > (static_cast<int>(request.tokens.size()) - 1) / bs) {
    return Violation("hit leaves no token to compute");
  }
  if (std::set<BlockId>(hit.blocks.begin(), hit.blocks.end()).size() != hit.blocks.size()) {
    return Violation("hit repeats a block");
  }
  Request probe = request;
  probe.table = hit.blocks;
  return CheckTableContent(id, probe, hit.num_tokens);
}

int KvCacheHarness::BestPossibleHitBlocks(const Request& request) const {
  const int bs = options_.manager.block_size;
  const int max_blocks = (static_cast<int>(request.tokens.size()) - 1) / bs;
  int best = 0;
  for (; best < max_blocks; ++best) {
    bool found = false;
    for (int b = 0; b < manager_->num_blocks() && !found; ++b) {
      if (!manager_->pool().IsCached(BlockId(b))) continue;
      bool all = true;
      for (int o = 0; o < bs && all; ++o) {
        const int p = best * bs + o;
        PrefixKey key(options_.hash_mode == HashMode::kReal ? request.salt : "",
                      std::vector<TokenId>(request.tokens.begin(), request.tokens.begin() + p + 1));
        const auto it = prefixes_.find(key);
        const std::optional<int>& slot = slots_[static_cast<size_t>(b) * bs + o];
        all = it != prefixes_.end() && slot.has_value() && *slot == it->second;
      }
      found = all;
    }
    if (!found) break;
  }
  return best;
}

absl::Status KvCacheHarness::CheckAllocation(RequestId id, Request& request, bool allocated,
                                             int num_new_tokens, int available_before) {
  const absl::Span<const BlockId> table = manager_->GetBlockTable(id);
  const int needed = manager_->BlocksForTokens(request.num_computed + num_new_tokens);
  if (!allocated) {
    if (!std::equal(table.begin(), table.end(), request.table.begin(), request.table.end())) {
      return Violation(absl::StrCat("failed allocation changed the table of ", id.value()));
    }
    if (manager_->pool().num_available_blocks() != available_before) {
      return Violation("failed allocation changed the free list");
    }
    return absl::OkStatus();
  }
  if (static_cast<int>(table.size()) != std::max<int>(needed, request.table.size())) {
    return Violation(
        absl::StrCat("request ", id.value(), " has ", table.size(), " blocks, needs ", needed));
  }
  if (!std::equal(request.table.begin(), request.table.end(), table.begin())) {
    return Violation(absl::StrCat("table of ", id.value(), " is not append-only"));
  }
  // Fresh blocks must not be in anybody's table.
  for (size_t i = request.table.size(); i < table.size(); ++i) {
    for (const auto& [other_id, other] : requests_) {
      if (std::find(other.table.begin(), other.table.end(), table[i]) != other.table.end()) {
        return Violation(absl::StrCat("block ", table[i].value(), " given to ", id.value(),
                                      " is still in the table of ", other_id.value()));
      }
    }
  }
  request.table.assign(table.begin(), table.end());
  return absl::OkStatus();
}

absl::Status KvCacheHarness::ApplyAllocation(RequestId id, Request& request, const char* what,
                                             bool allocated, bool should_fit, int num_new_tokens,
                                             int available_before) {
  if (allocated != should_fit) {
    return Violation(absl::StrCat(what, " of ", id.value(), " returned ", allocated,
                                  ", the naive rule says ", should_fit));
  }
  if (absl::Status s = CheckAllocation(id, request, allocated, num_new_tokens, available_before);
      !s.ok()) {
    return s;
  }
  if (allocated) {
    WriteSlots(request, request.num_computed, request.num_computed + num_new_tokens);
    request.num_computed += num_new_tokens;
  }
  return absl::OkStatus();
}

absl::Status KvCacheHarness::Admit(RequestId id, int max_new_tokens, bool* admitted) {
  *admitted = false;
  Request& request = requests_.at(id);
  PAGODA_CHECK(!request.running);
  const int64_t evictions_before = manager_->Stats().num_evictions;
  const SequenceView view = View(id, request);
  const PrefixHit hit = manager_->GetComputedBlocks(
      view, request.preempted ? LookupKind::kResumedAfterPreemption : LookupKind::kNewRequest);
  if (absl::Status s = CheckHit(id, request, hit); !s.ok()) return s;
  const int best = BestPossibleHitBlocks(request);
  const int num_hit = static_cast<int>(hit.blocks.size());
  if (num_hit > best) return Violation("hit longer than any cached content allows");
  if (options_.hash_mode == HashMode::kReal && evictions_before == 0 && num_hit != best) {
    return Violation(absl::StrCat("hit ", num_hit, " blocks, ", best, " were cached"));
  }

  const int num_new =
      std::min(max_new_tokens, static_cast<int>(request.tokens.size()) - hit.num_tokens);
  const int available_before = manager_->pool().num_available_blocks();
  // The naive admission rule: the whole sequence plus the watermark must fit in what is free
  // now, counting cached hit blocks that nobody uses as taken from the free list.
  int revived = 0;
  for (const BlockId b : hit.blocks) {
    bool used = false;
    for (const auto& [other_id, other] : requests_) {
      used |= std::find(other.table.begin(), other.table.end(), b) != other.table.end();
    }
    revived += used ? 0 : 1;
  }
  const int whole = manager_->BlocksForTokens(static_cast<int>(request.tokens.size())) - num_hit;
  const int watermark =
      static_cast<int>(options_.manager.watermark_ratio * options_.manager.num_blocks);
  const bool should_fit = whole + revived + watermark <= available_before;

  const bool allocated = manager_->AllocateSlots(
      view, hit, SlotRequest{.num_new_tokens = num_new, .admission = Admission::kNewRequest});
  if (allocated) {
    request.num_computed = hit.num_tokens;
    request.num_hit_blocks = num_hit;
    request.table = hit.blocks;
    num_hit_blocks_ += num_hit;
  }
  if (absl::Status s = ApplyAllocation(id, request, "admission", allocated, should_fit, num_new,
                                       available_before);
      !s.ok()) {
    return s;
  }
  if (allocated) {
    request.running = true;
    request.preempted = false;
    *admitted = true;
  }
  return CheckAfterOperation();
}

absl::Status KvCacheHarness::Step(RequestId id, int max_new_tokens, TokenId next_token,
                                  bool* scheduled) {
  *scheduled = false;
  Request& request = requests_.at(id);
  PAGODA_CHECK(request.running);
  if (absl::Status s = CheckTableContent(id, request, request.num_computed); !s.ok()) return s;
  if (request.num_computed == static_cast<int>(request.tokens.size())) {
    request.tokens.push_back(next_token);
  }
  const int num_new =
      std::min(max_new_tokens, static_cast<int>(request.tokens.size()) - request.num_computed);
  const int available_before = manager_->pool().num_available_blocks();
  const int missing = std::max<int>(
      0, manager_->BlocksForTokens(request.num_computed + num_new) - request.table.size());
  const bool should_fit = missing <= available_before;
  const bool allocated = manager_->AllocateSlots(View(id, request), PrefixHit{},
                                                 SlotRequest{.num_new_tokens = num_new});
  if (absl::Status s =
          ApplyAllocation(id, request, "step", allocated, should_fit, num_new, available_before);
      !s.ok()) {
    return s;
  }
  *scheduled = allocated;
  return CheckAfterOperation();
}

absl::Status KvCacheHarness::Preempt(RequestId id) {
  Request& request = requests_.at(id);
  PAGODA_CHECK(request.running);
  manager_->Free(id);
  request.table.clear();
  request.num_computed = 0;
  request.num_hit_blocks = 0;
  request.running = false;
  request.preempted = true;
  return CheckAfterOperation();
}

absl::Status KvCacheHarness::Finish(RequestId id) {
  manager_->Free(id);
  requests_.erase(id);
  return CheckAfterOperation();
}

absl::Status KvCacheHarness::ResetPrefixCache() {
  const bool in_use = manager_->pool().num_used_blocks() > 0;
  const bool reset = manager_->ResetPrefixCache();
  if (reset == in_use) return Violation("ResetPrefixCache ignored whether blocks are in use");
  if (reset && manager_->Stats().num_cached_blocks != 0) {
    return Violation("cached blocks survived a reset");
  }
  return CheckAfterOperation();
}

absl::Status KvCacheHarness::CheckAfterOperation() {
  if (options_.check_events) {
    const std::vector<KvCacheEvent> events = manager_->TakeEvents();
    if (absl::Status status = mirror_.Apply(events, manager_->block_size()); !status.ok()) {
      return Violation(absl::StrCat("KV events: ", status.message()));
    }
    if (absl::Status status = mirror_.Compare(manager_->pool().ListCachedBlocks());
        !status.ok()) {
      return Violation(absl::StrCat("KV events: ", status.message()));
    }
  }
  return CheckInvariants();
}

absl::Status KvCacheHarness::CheckInvariants() const {
  const BlockPool& pool = manager_->pool();
  const KvCacheStats stats = manager_->Stats();
  if (stats.num_used_blocks + stats.num_cached_blocks + stats.num_free_blocks != stats.num_blocks) {
    return Violation("used + cached + free != capacity");
  }
  // Ref counts from the harness's own tables; sharing only through prefix hits.
  std::vector<int> refs(manager_->num_blocks(), 0);
  std::vector<int> owners(manager_->num_blocks(), 0);  // tables holding it outside their hit
  int num_running = 0;
  for (const auto& [id, request] : requests_) {
    if (!request.running) {
      if (!request.table.empty() || !manager_->GetBlockTable(id).empty()) {
        return Violation(absl::StrCat("waiting request ", id.value(), " holds blocks"));
      }
      continue;
    }
    ++num_running;
    const absl::Span<const BlockId> table = manager_->GetBlockTable(id);
    if (!std::equal(table.begin(), table.end(), request.table.begin(), request.table.end())) {
      return Violation(absl::StrCat("manager and harness disagree on the table of ", id.value()));
    }
    if (std::set<BlockId>(table.begin(), table.end()).size() != table.size()) {
      return Violation(absl::StrCat("table of ", id.value(), " repeats a block"));
    }
    for (size_t i = 0; i < table.size(); ++i) {
      ++refs[table[i].value()];
      if (static_cast<int>(i) >= request.num_hit_blocks) ++owners[table[i].value()];
    }
  }
  if (manager_->num_requests() != num_running) return Violation("manager tracks stray requests");
  int used = 0;
  int cached = 0;
  for (int b = 0; b < manager_->num_blocks(); ++b) {
    const BlockId block(b);
    if (pool.ref_count(block) != refs[b]) {
      return Violation(absl::StrCat("block ", b, " ref count ", pool.ref_count(block), ", in ",
                                    refs[b], " tables"));
    }
    if (owners[b] > 1) {
      return Violation(absl::StrCat("block ", b, " shared without a prefix hit"));
    }
    used += refs[b] > 0 ? 1 : 0;
    cached += pool.IsCached(block) ? 1 : 0;
    const BlockState expected = refs[b] > 0            ? BlockState::kUsed
                                : pool.IsCached(block) ? BlockState::kCached
                                                       : BlockState::kFree;
    if (pool.state(block) != expected) return Violation(absl::StrCat("block ", b, " state"));
  }
  if (stats.num_used_blocks != used) return Violation("used block count is off");
  if (pool.num_available_blocks() != manager_->num_blocks() - used) {
    return Violation("free list size is off");
  }
  if (static_cast<int>(pool.FreeListForTesting().size()) != pool.num_available_blocks()) {
    return Violation("free list links are broken");
  }
  if (pool.num_indexed_hashes() != cached) return Violation("hash index size is off");
  if (stats.prefix_hit_tokens > stats.prefix_queried_tokens ||
      stats.preempted_prefix_hit_tokens > stats.preempted_prefix_queried_tokens) {
    return Violation("more prefix hits than queries");
  }
  return absl::OkStatus();
}

absl::Status KvCacheHarness::FinishAllAndCheckNoLeaks() {
  while (!requests_.empty()) {
    if (absl::Status s = Finish(requests_.begin()->first); !s.ok()) return s;
  }
  const KvCacheStats stats = manager_->Stats();
  if (stats.num_used_blocks != 0 || manager_->num_requests() != 0 ||
      manager_->pool().num_available_blocks() != manager_->num_blocks()) {
    return Violation(absl::StrCat("leaked ", stats.num_used_blocks, " blocks"));
  }
  return absl::OkStatus();
}

std::vector<RequestId> KvCacheHarness::waiting() const {
  std::vector<RequestId> ids;
  for (const auto& [id, request] : requests_) {
    if (!request.running) ids.push_back(id);
  }
  return ids;
}

std::vector<RequestId> KvCacheHarness::running() const {
  std::vector<RequestId> ids;
  for (const auto& [id, request] : requests_) {
    if (request.running) ids.push_back(id);
  }
  return ids;
}

}  // namespace pagoda::block_manager::testing
