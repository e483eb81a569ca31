// Cost of the KV-cache bookkeeping per engine step: 256 running requests each decode one
// token (a new block every block_size steps) and finished requests are replaced by new ones
// whose prompts share a prefix, so allocation, prefix lookup, registration, free and lazy
// eviction all happen in the measured loop. Reported per request per step, without and with
// KV events recorded (and taken once per step, as the engine does for its sink).
//
// Run: ./build/block_manager/kv_cache_manager_benchmark

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "block_manager/block_hash.h"
#include "block_manager/kv_cache_manager.h"
#include "common/check.h"

namespace pagoda::block_manager {
namespace {

struct Sequence {
  RequestId id;
  std::vector<TokenId> tokens;
  std::vector<BlockHash> hashes;
  int num_computed = 0;
  int num_to_generate = 0;
};

class Workload {
 public:
  Workload(int num_requests, int block_size, int prompt_len, int output_len, bool events)
      : hasher_(block_size),
        prompt_len_(prompt_len),
        output_len_(output_len),
        events_(events),
        rng_(1) {
    // Room for every request at full length plus 50% for the prefix cache to keep.
    const int blocks_per_request = (prompt_len + output_len) / block_size + 2;
    manager_ = KvCacheManager::Create({.num_blocks = num_requests * blocks_per_request * 3 / 2,
                                       .block_size = block_size})
                   .value();
    manager_->EnableEvents(events);
    for (int i = 0; i < 64; ++i) system_prompt_.push_back(static_cast<TokenId>(rng_() % 32000));
    for (int i = 0; i < num_requests; ++i) {
      sequences_.push_back(NewSequence());
      Admit(sequences_.back());
    }
  }

  // One engine step of bookkeeping; returns the number of requests scheduled.
  int Step() {
    for (Sequence& seq : sequences_) {
      if (seq.num_to_generate == 0) {
        manager_->Free(seq.id);
        seq = NewSequence();
        Admit(seq);
        continue;
      }
      seq.tokens.push_back(static_cast<TokenId>(rng_() % 32000));
      hasher_.Extend(seq.tokens, "", &seq.hashes);
      const bool ok = manager_->AllocateSlots(View(seq), {}, {.num_new_tokens = 1});
      PAGODA_CHECK(ok) << "the benchmark pool is sized to never run out";
      ++seq.num_computed;
      --seq.num_to_generate;
    }
    // What the engine does at the end of a step with a KV-event sink attached.
    if (events_) num_events_ += static_cast<int64_t>(manager_->TakeEvents().size());
    return static_cast<int>(sequences_.size());
  }

  const KvCacheManager& manager() const { return *manager_; }
  int64_t num_events() const { return num_events_; }

 private:
  Sequence NewSequence() {
    Sequence seq{.id = RequestId(next_id_++), .tokens = system_prompt_};
    while (static_cast<int>(seq.tokens.size()) < prompt_len_) {
      seq.tokens.push_back(static_cast<TokenId>(rng_() % 32000));
    }
    seq.num_to_generate = 1 + static_cast<int>(rng_() % output_len_);
    hasher_.Extend(seq.tokens, "", &seq.hashes);
    return seq;
  }

  SequenceView View(const Sequence& seq) const {
    return SequenceView{.id = seq.id,
                        .tokens = seq.tokens,
                        .block_hashes = seq.hashes,
                        .num_computed_tokens = seq.num_computed};
  }

  void Admit(Sequence& seq) {
    const PrefixHit hit = manager_->GetComputedBlocks(View(seq));
    const int n = static_cast<int>(seq.tokens.size()) - hit.num_tokens;
    const bool ok = manager_->AllocateSlots(
        View(seq), hit, {.num_new_tokens = n, .admission = Admission::kNewRequest});
    PAGODA_CHECK(ok) << "the benchmark pool is sized to never run out";
    seq.num_computed = static_cast<int>(seq.tokens.size());
  }

  BlockHasher hasher_;
  int prompt_len_;
  int output_len_;
  bool events_;
  int64_t num_events_ = 0;
  std::mt19937_64 rng_;
  std::unique_ptr<KvCacheManager> manager_;
  std::vector<TokenId> system_prompt_;
  std::vector<Sequence> sequences_;
  uint64_t next_id_ = 1;
};

void BM_DecodeStep(benchmark::State& state) {
  Workload workload(/*num_requests=*/static_cast<int>(state.range(0)), /*block_size=*/16,
                    /*prompt_len=*/256, /*output_len=*/256, /*events=*/state.range(1) != 0);
  int64_t request_steps = 0;
  for (auto _ : state) request_steps += workload.Step();
  state.counters["ns_per_request_step"] =
      benchmark::Counter(static_cast<double>(request_steps),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["evictions"] = static_cast<double>(workload.manager().Stats().num_evictions);
  state.counters["hit_rate"] =
      static_cast<double>(workload.manager().Stats().prefix_hit_tokens) /
      static_cast<double>(workload.manager().Stats().prefix_queried_tokens);
  state.counters["events"] = static_cast<double>(workload.num_events());
  state.SetItemsProcessed(request_steps);
}
// Args: running requests, KV events recorded (0/1).
BENCHMARK(BM_DecodeStep)
    ->ArgsProduct({{256, 1024}, {0, 1}})
    ->ArgNames({"requests", "events"})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace pagoda::block_manager

BENCHMARK_MAIN();
