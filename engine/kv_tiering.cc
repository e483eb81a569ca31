#include "engine/kv_tiering.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/check.h"
#include "common/status_macros.h"
#include "model/forward_batch.h"

namespace pagoda::engine {

using kv_offload::BlockIdentity;
using kv_offload::BlockRecord;

absl::StatusOr<double> MeasurePrefillTokensPerSecond(runner::ModelRunner& runner, int num_tokens) {
  const int bs = runner.block_size();
  num_tokens =
      std::min({num_tokens, runner.num_kv_blocks() * bs, runner.config().max_position_embeddings});
  if (num_tokens <= 0) return absl::InvalidArgumentError("no room to measure prefill");
  std::vector<TokenId> tokens(num_tokens);
  for (int i = 0; i < num_tokens; ++i) tokens[i] = (i * 7919 + 13) % runner.config().vocab_size;
  const int num_blocks = (num_tokens + bs - 1) / bs;
  std::vector<BlockId> table;
  for (int b = 0; b < num_blocks; ++b) table.push_back(BlockId(b));
  model::ForwardBatchBuilder builder;
  builder.Reset(bs, num_blocks);
  builder.AddRequest(tokens, 0, num_tokens, absl::MakeConstSpan(table), model::LogitsRows::kLast);
  std::vector<float> logits;
  PAGODA_RETURN_IF_ERROR(runner.Execute(builder.batch(), &logits));  // warm-up
  const absl::Time start = absl::Now();
  PAGODA_RETURN_IF_ERROR(runner.Execute(builder.batch(), &logits));
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return seconds > 0 ? num_tokens / seconds : 1e12;
}

absl::StatusOr<std::unique_ptr<KvTiering>> KvTiering::Create(const KvTieringOptions& options,
                                                             runner::ModelRunner* runner) {
  PAGODA_CHECK(runner != nullptr);
  const int64_t payload = runner->kv_block_bytes();
  if (payload <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv-offload: the ", runner->backend_name(), " runner cannot copy KV blocks"));
  }
  kv_offload::KvOffloadOptions store_options{.block_size = runner->block_size(),
                                             .payload_bytes = payload,
                                             .fingerprint = options.fingerprint,
                                             .host_bytes = options.host_bytes,
                                             .disk_dir = options.disk_dir,
                                             .disk_bytes = options.disk_bytes,
                                             .io_threads = options.io_threads,
                                             .log = options.log};
  store_options.host_allocator = [runner](int64_t bytes) {
    if (char* pinned = runner->AllocateHostMemory(bytes)) {
      return kv_offload::HostBuffer(pinned, [runner](char* p) { runner->FreeHostMemory(p); });
    }
    return kv_offload::AllocatePlainHostMemory(bytes);
  };
  PAGODA_ASSIGN_OR_RETURN(std::unique_ptr<kv_offload::KvOffloadStore> store,
                          kv_offload::KvOffloadStore::Create(store_options));
  std::vector<double> tier_seconds;
  for (int t = 0; t < store->num_tiers(); ++t) {
    if (store->tier(t).medium() == "disk") {
      PAGODA_ASSIGN_OR_RETURN(const double s,
                              kv_offload::ProbeDiskSecondsPerBlock(options.disk_dir, payload));
      tier_seconds.push_back(s);
    } else {
      tier_seconds.push_back(kv_offload::ProbeHostSecondsPerBlock(payload));
    }
  }
  double prefill = options.prefill_tokens_per_second.value_or(0);
  if (!options.prefill_tokens_per_second.has_value()) {
    PAGODA_ASSIGN_OR_RETURN(prefill, MeasurePrefillTokensPerSecond(*runner, 512));
  }
  kv_offload::ReloadCostModel cost(options.policy, runner->block_size(), prefill,
                                   std::move(tier_seconds));
  return std::unique_ptr<KvTiering>(new KvTiering(runner, std::move(store), std::move(cost)));
}

KvTiering::KvTiering(runner::ModelRunner* runner, std::unique_ptr<kv_offload::KvOffloadStore> store,
                     kv_offload::ReloadCostModel cost)
    : runner_(runner), store_(std::move(store)), cost_(std::move(cost)) {}

int KvTiering::MatchForLoad(const scheduler::Request& request, int first_block, int max_blocks) {
  const int bs = runner_->block_size();
  const absl::Span<const block_manager::BlockHash> hashes = request.block_hashes();
  Match match;
  for (int i = first_block; i < first_block + max_blocks; ++i) {
    BlockIdentity id;
    id.hash = hashes[i];
    if (i > 0) id.parent = hashes[i - 1];
    if (i == 0) id.extra_key = request.cache_salt();
    const absl::Span<const TokenId> tokens = request.tokens().subspan(i * bs, bs);
    id.tokens.assign(tokens.begin(), tokens.end());
    match.blocks.push_back(std::move(id));
  }
  const int found = store_->Match(match.blocks, &match.tiers);
  // A run is loaded up to the first block the cost model would rather recompute.
  int load = 0;
  while (load < found && cost_.ShouldLoad(match.tiers[load])) ++load;
  recompute_blocks_ += found - load;
  matches_.erase(request.id());
  if (load == 0) return 0;
  match.blocks.resize(load);
  match.tiers.resize(load);
  matches_.emplace(request.id(), std::move(match));
  return load;
}

void KvTiering::StartLoads(const std::vector<scheduler::LoadPlan>& loads) {
  for (const scheduler::LoadPlan& plan : loads) {
    const auto it = matches_.find(plan.id);
    PAGODA_CHECK(it != matches_.end()) << "a load the tiers did not offer";
    Match match = std::move(it->second);
    matches_.erase(it);
    PAGODA_CHECK_EQ(match.blocks.size(), plan.blocks.size());
    load_blocks_ += static_cast<int64_t>(plan.blocks.size());
    const uint64_t ticket = store_->Load(std::move(match.blocks), std::move(match.tiers));
    in_flight_.emplace(ticket, InFlight{.id = plan.id,
                                        .request = plan.request,
                                        .device_blocks = plan.blocks,
                                        .start = absl::Now()});
  }
  matches_.clear();  // requests that matched but were not admitted look up again
}

bool KvTiering::has_completed_loads() { return store_->has_completed_loads(); }

absl::Status KvTiering::FinishLoads(scheduler::Scheduler& scheduler) {
  for (kv_offload::LoadResult& result : store_->TakeCompletedLoads()) {
    const auto it = in_flight_.find(result.ticket);
    PAGODA_CHECK(it != in_flight_.end());
    const InFlight flight = std::move(it->second);
    in_flight_.erase(it);
    const double seconds = absl::ToDoubleSeconds(absl::Now() - flight.start);
    if (!result.tiers.empty()) {
      load_seconds_.emplace_back(result.tiers.back(), seconds);
      cost_.ObserveLoad(result.tiers.back(), static_cast<int>(result.blocks.size()),
                        result.seconds);
    }
    // An aborted request gave its blocks back: they may already be someone else's.
    const scheduler::Request* request = scheduler.GetRequest(flight.id);
    if (request != flight.request || request->state() != scheduler::RequestState::kLoading) {
      continue;
    }
    int loaded = 0;
    for (const BlockRecord& record : result.blocks) {
      PAGODA_RETURN_IF_ERROR(
          runner_->WriteKvBlock(flight.device_blocks[loaded], record.payload.data()));
      ++loaded;
    }
    PAGODA_CHECK(scheduler.FinishLoad(flight.id, loaded));
  }
  return absl::OkStatus();
}

absl::Status KvTiering::Spill(std::vector<block_manager::EvictedContent> evicted) {
  return SpillBlocks(std::move(evicted), /*wait_for_room=*/false).status();
}

absl::StatusOr<int64_t> KvTiering::SpillBlocks(std::vector<block_manager::EvictedContent> blocks,
                                               bool wait_for_room) {
  int64_t spilled = 0;
  for (block_manager::EvictedContent& content : blocks) {
    if (content.extra_key.size() > static_cast<size_t>(kv_offload::kMaxExtraKeyBytes) ||
        store_->Holds(content.hash)) {
      continue;
    }
    BlockRecord record;
    record.identity = {.hash = content.hash,
                       .parent = content.parent_hash,
                       .extra_key = std::move(content.extra_key),
                       .tokens = std::move(content.tokens)};
    record.payload.resize(static_cast<size_t>(runner_->kv_block_bytes()));
    PAGODA_RETURN_IF_ERROR(runner_->ReadKvBlock(content.block, record.payload.data()));
    bool queued = false;
    if (!wait_for_room) {
      queued = store_->Spill(std::move(record));
    } else if (!(queued = store_->Spill(record))) {
      store_->WaitIdle();  // the pending-bytes bound: let the I/O threads catch up
      queued = store_->Spill(std::move(record));
    }
    spilled += queued ? 1 : 0;
  }
  spilled_blocks_ += spilled;
  return spilled;
}

absl::StatusOr<int64_t> KvTiering::WriteBack(std::vector<block_manager::EvictedContent> cached) {
  // At most what the bottom tier holds (a GPU pool can be many times the disk tier: writing
  // more would only evict what was just written, and slow the shutdown); the earliest
  // registered first, which puts the heads of the chains on disk.
  const int64_t fits =
      store_->tier(store_->num_tiers() - 1).stats().capacity_bytes / runner_->kv_block_bytes();
  if (static_cast<int64_t>(cached.size()) > fits) cached.erase(cached.begin() + fits, cached.end());
  PAGODA_ASSIGN_OR_RETURN(const int64_t written,
                          SpillBlocks(std::move(cached), /*wait_for_room=*/true));
  store_->WaitIdle();
  return written + store_->PersistHostTier();
}

void KvTiering::ObserveStep(int prompt_tokens, int tokens, double seconds) {
  // Prefill-dominated steps only: decode steps run at memory speed, not prefill speed.
  if (prompt_tokens >= 4 * runner_->block_size() && prompt_tokens * 5 >= tokens * 4) {
    cost_.ObservePrefill(prompt_tokens, seconds);
  }
}

block_manager::KvOffloadStats KvTiering::TakeStats(int num_loading_requests) {
  block_manager::KvOffloadStats stats = store_->stats();
  stats.load_blocks = load_blocks_;
  stats.recompute_blocks = recompute_blocks_;
  stats.spilled_blocks = spilled_blocks_;
  stats.num_loading_requests = num_loading_requests;
  stats.load_seconds = std::move(load_seconds_);
  load_seconds_.clear();
  return stats;
}

std::string KvTiering::Describe() const {
  std::vector<std::string> media;
  std::string tiers;
  for (int t = 0; t < store_->num_tiers(); ++t) {
    media.emplace_back(store_->tier(t).medium());
    const block_manager::KvTierStats s = store_->tier(t).stats();
    absl::StrAppendFormat(&tiers, "%s%s %.1f MiB (%d blocks held)", t > 0 ? ", " : "", media.back(),
                          s.capacity_bytes / 1048576.0, s.num_blocks);
  }
  return absl::StrCat("KV offload: ", tiers, "; ", runner_->kv_block_bytes(), " bytes per block; ",
                      cost_.Describe(media));
}

}  // namespace pagoda::engine
