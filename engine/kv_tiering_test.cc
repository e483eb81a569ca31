// The engine with tiers below its KV pool (engine/kv_tiering.h), on the real CPU model built by
// the factory: a prefix evicted from the pool comes back from the disk tier with the very
// tokens a recomputation gives, also after a restart; what cannot be tiered is refused.

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "block_manager/kv_cache_events.h"
#include "engine/engine_factory.h"
#include "engine/offline.h"
#include "gtest/gtest.h"
#include "kv_offload/testing/temp_dir.h"

namespace pagoda::engine {
namespace {

// Keeps the last step's tier figures.
class LastStep : public MetricsObserver {
 public:
  void OnStep(const StepMetrics& step) override {
    if (!step.kv_offload.has_value()) return;
    // Loads finished over all steps, not just the last one.
    loads_finished += static_cast<int>(step.kv_offload->load_seconds.size());
    last = step.kv_offload;
  }
  void OnRequestFinished(const FinishedRequestMetrics&) override {}
  std::optional<block_manager::KvOffloadStats> last;
  int loads_finished = 0;
};

EngineConfig TieredConfig(const std::string& dir) {
  EngineConfig config;
  config.model = "dummy:tiny";
  config.weight_dtype = model::DType::kF32;
  config.kv_cache_dtype = model::DType::kF32;
  config.block_size = 16;
  config.kv_cache_memory_bytes = 32 * 16 * 512;  // 32 blocks of 8 KiB (F32, 512 B per token)
  config.max_model_len = 256;
  config.max_num_seqs = 4;
  config.max_num_batched_tokens = 128;
  config.num_threads = 2;
  config.seed = 5;
  config.kv_offload_dir = dir;
  config.kv_offload_bytes = 64 << 20;
  config.kv_offload_reload = kv_offload::ReloadPolicy::kAlways;
  return config;
}

int CountBlockFiles(const std::string& dir) {
  int n = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir)) {
    n += f.path().extension() == ".kvb" ? 1 : 0;
  }
  return n;
}

EngineRequest Prompt(int salt, int length = 100) {
  EngineRequest r;
  for (int t = 0; t < length; ++t) r.prompt_tokens.push_back(1 + (salt * 37 + t * 11) % 250);
  r.sampling.temperature = 0.0f;
  r.stopping.max_tokens = 12;
  r.stopping.ignore_eos = true;
  return r;
}

RequestCompletion RunOne(EngineCore& core, const EngineRequest& request) {
  absl::StatusOr<std::vector<RequestCompletion>> done = GenerateOffline(core, {request});
  EXPECT_TRUE(done.ok()) << done.status();
  return done.ok() ? (*done)[0] : RequestCompletion{};
}

TEST(KvTieringTest, AnEvictedPrefixComesBackFromDiskWithTheTokensOfARecomputation) {
  kv_offload::testing::ScopedTempDir dir;
  // The cold reference: no tiers.
  EngineConfig plain = TieredConfig("");
  plain.kv_offload_dir.clear();
  auto reference = CreateEngineCore(plain);
  ASSERT_TRUE(reference.ok()) << reference.status();
  const RequestCompletion cold = RunOne(**reference, Prompt(0));

  LastStep observer;
  {
    auto core = CreateEngineCore(TieredConfig(dir.path()));
    ASSERT_TRUE(core.ok()) << core.status();
    (*core)->set_metrics_observer(&observer);
    EXPECT_NE((*core)->info().kv_offload_details.find("disk"), std::string::npos);
    EXPECT_EQ(RunOne(**core, Prompt(0)).token_ids, cold.token_ids);
    for (int salt = 1; salt <= 8; ++salt) RunOne(**core, Prompt(salt));  // evicts prompt 0
    ASSERT_TRUE(observer.last.has_value());
    EXPECT_GT(observer.last->spilled_blocks, 0);
    // The spills are written on the I/O threads: under load they may still be in flight
    // (unmatched, so recomputed) when the prompt comes back.
    (*core)->WaitForKvOffload();
    const RequestCompletion again = RunOne(**core, Prompt(0));
    EXPECT_EQ(again.token_ids, cold.token_ids);
    EXPECT_GE(again.usage.cached_prompt_tokens, 16);
    EXPECT_GT(observer.last->load_blocks, 0);
    EXPECT_GT(observer.last->tiers[0].loads, 0);
    EXPECT_GT(observer.loads_finished, 0);
    EXPECT_EQ(observer.last->num_loading_requests, 0);
  }
  // A restart: the pool is empty, the disk tier is not.
  auto restarted = CreateEngineCore(TieredConfig(dir.path()));
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  const RequestCompletion after = RunOne(**restarted, Prompt(0));
  EXPECT_EQ(after.token_ids, cold.token_ids);
  EXPECT_EQ(after.usage.cached_prompt_tokens, 96);  // every full block but the last token's
}

TEST(KvTieringTest, PrefixesStillInThePoolAreWrittenBackAtShutdown) {
  // A hot prefix is never evicted, so never spilled: shutdown writes it to disk, and a restart
  // serves it from there.
  kv_offload::testing::ScopedTempDir dir;
  RequestCompletion first;
  {
    auto core = CreateEngineCore(TieredConfig(dir.path()));
    ASSERT_TRUE(core.ok()) << core.status();
    first = RunOne(**core, Prompt(0));
  }
  EXPECT_GE(CountBlockFiles(dir.path()), 6);  // 112 tokens: 7 blocks, of which 6 full ones
  auto restarted = CreateEngineCore(TieredConfig(dir.path()));
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  const RequestCompletion after = RunOne(**restarted, Prompt(0));
  EXPECT_EQ(after.token_ids, first.token_ids);
  EXPECT_EQ(after.usage.cached_prompt_tokens, 96);
}

TEST(KvTieringTest, WriteBackStopsAtTheDiskTiersCapacityKeepingTheChainHeads) {
  kv_offload::testing::ScopedTempDir dir;
  EngineConfig config = TieredConfig(dir.path());
  config.kv_offload_bytes = 3 * 8192 + 1024;  // three 8 KiB blocks and their file headers
  {
    auto core = CreateEngineCore(config);
    ASSERT_TRUE(core.ok()) << core.status();
    RunOne(**core, Prompt(0));  // 7 blocks cached, 6 of them full
  }
  EXPECT_EQ(CountBlockFiles(dir.path()), 3);
  auto restarted = CreateEngineCore(config);
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  // The first three blocks of the chain: what was registered first.
  EXPECT_EQ(RunOne(**restarted, Prompt(0)).usage.cached_prompt_tokens, 48);
}

TEST(KvTieringTest, ConcurrentRequestsSharingATieredPrefixAllMatchTheirRecomputation) {
  kv_offload::testing::ScopedTempDir dir;
  EngineConfig plain = TieredConfig("");
  plain.kv_offload_dir.clear();
  plain.enable_prefix_caching = false;
  auto reference = CreateEngineCore(plain);
  ASSERT_TRUE(reference.ok());
  std::vector<EngineRequest> requests;
  for (int i = 0; i < 4; ++i) {
    EngineRequest r = Prompt(0, 80);  // one shared 80-token history, four different turns
    for (int t = 0; t < 5 + 3 * i; ++t) r.prompt_tokens.push_back(200 + i * 5 + t);
    requests.push_back(std::move(r));
  }
  auto expected = GenerateOffline(**reference, requests);
  ASSERT_TRUE(expected.ok());
  auto core = CreateEngineCore(TieredConfig(dir.path()));
  ASSERT_TRUE(core.ok());
  RunOne(**core, Prompt(0, 80));
  for (int salt = 1; salt <= 8; ++salt) RunOne(**core, Prompt(salt));
  (*core)->WaitForKvOffload();  // the spills written, not still in flight on the I/O threads
  auto tiered = GenerateOffline(**core, requests);
  ASSERT_TRUE(tiered.ok());
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ((*tiered)[i].token_ids, (*expected)[i].token_ids) << i;
    EXPECT_GE((*tiered)[i].usage.cached_prompt_tokens, 64) << i;
  }
}

// Collects every batch; each medium's view of what is held, built from the events.
class EventLog : public block_manager::KvEventSink {
 public:
  bool Publish(std::vector<block_manager::KvCacheEvent> events) override {
    using Kind = block_manager::KvCacheEvent::Kind;
    bool announcing = false;  // after AllBlocksCleared: what is held, not what just moved
    for (const block_manager::KvCacheEvent& e : events) {
      if (e.kind == Kind::kAllBlocksCleared) {
        held.clear();
        announcing = true;
      }
      for (const uint64_t h : e.block_hashes) {
        std::set<uint64_t>& medium = held[e.medium.empty() ? "GPU" : e.medium];
        if (e.kind == Kind::kBlockStored) {
          EXPECT_TRUE(medium.insert(h).second) << e.medium << " stored twice: " << h;
          // A spilled block left the pool first.
          if (e.medium == "DISK" && !announcing) {
            EXPECT_TRUE(removed_from_pool.contains(h)) << h;
          }
        } else {
          EXPECT_EQ(medium.erase(h), 1u) << e.medium << " removed, never stored: " << h;
          if (e.medium.empty()) removed_from_pool.insert(h);
        }
      }
    }
    batches.push_back(std::move(events));
    return true;
  }
  std::vector<std::vector<block_manager::KvCacheEvent>> batches;
  std::map<std::string, std::set<uint64_t>> held;
  std::set<uint64_t> removed_from_pool;
};

// Steps an idle engine until the events describe every file of the disk tier (spills finish
// on I/O threads after the step that queued them).
bool AwaitDiskEvents(EngineCore& core, EventLog& log, const std::string& dir) {
  for (int i = 0; i < 500; ++i) {
    EXPECT_TRUE(core.Step().ok());
    if (static_cast<int>(log.held["DISK"].size()) == CountBlockFiles(dir)) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return false;
}

TEST(KvTieringTest, TierBlocksArePublishedAsKvEventsWithTheirMedium) {
  kv_offload::testing::ScopedTempDir dir;
  {
    EventLog log;
    auto core = CreateEngineCore(TieredConfig(dir.path()));
    ASSERT_TRUE(core.ok()) << core.status();
    (*core)->set_kv_event_sink(&log);
    for (int salt = 0; salt <= 8; ++salt) RunOne(**core, Prompt(salt));  // evicts and spills
    ASSERT_TRUE(AwaitDiskEvents(**core, log, dir.path()))
        << log.held["DISK"].size() << " DISK blocks published, files "
        << CountBlockFiles(dir.path());
    EXPECT_GT(log.held["DISK"].size(), 0u);
    EXPECT_EQ(log.held["GPU"].size(), (*core)->ListCachedBlocks().size());
  }
  // A restart announces the warm tier before any request: AllBlocksCleared, then its blocks.
  EventLog log;
  auto core = CreateEngineCore(TieredConfig(dir.path()));
  ASSERT_TRUE(core.ok()) << core.status();
  (*core)->set_kv_event_sink(&log);
  ASSERT_TRUE((*core)->Step().ok());
  ASSERT_EQ(log.batches.size(), 1u);
  EXPECT_EQ(log.batches[0][0].kind, block_manager::KvCacheEvent::Kind::kAllBlocksCleared);
  EXPECT_EQ(static_cast<int>(log.held["DISK"].size()), CountBlockFiles(dir.path()));
  EXPECT_TRUE(log.held["GPU"].empty());
}

TEST(KvTieringTest, WhatCannotBeTieredIsRefusedNamingTheFlag) {
  kv_offload::testing::ScopedTempDir dir;
  EngineConfig config = TieredConfig(dir.path());
  config.enable_prefix_caching = false;
  absl::StatusOr<std::unique_ptr<EngineCore>> core = CreateEngineCore(config);
  ASSERT_FALSE(core.ok());
  EXPECT_NE(core.status().message().find("--kv-offload-dir"), std::string::npos) << core.status();
  config = TieredConfig(dir.path());
  config.attention_sinks = 4;
  config.streaming_window = 64;
  core = CreateEngineCore(config);
  ASSERT_FALSE(core.ok());
  EXPECT_NE(core.status().message().find("window"), std::string::npos) << core.status();
  config = TieredConfig(dir.path() + "/a/b/c");  // a parent that does not exist
  core = CreateEngineCore(config);
  ASSERT_FALSE(core.ok());
  EXPECT_NE(core.status().message().find("kv-offload-dir"), std::string::npos) << core.status();
}

}  // namespace
}  // namespace pagoda::engine
