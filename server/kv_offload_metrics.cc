#include "server/kv_offload_metrics.h"

namespace pagoda::server {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;
using prometheus::Labels;

const Histogram::BucketBoundaries kLoadBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                  0.005,  0.01,    0.025,  0.05,  0.1,
                                                  0.25,   0.5,     1.0,    2.5,   10.0};

void Advance(Counter& counter, int64_t now, int64_t last) {
  if (now > last) counter.Increment(static_cast<double>(now - last));
}

}  // namespace

KvOffloadMetrics::KvOffloadMetrics(prometheus::Registry& registry, const std::string& model_name,
                                   const std::vector<std::string>& media) {
  const Labels labels{{"model_name", model_name}};
  const auto counters = [&](const std::string& name, const std::string& help) -> Family<Counter>& {
    return prometheus::BuildCounter().Name(name).Help(help).Labels(labels).Register(registry);
  };
  const auto gauges = [&](const std::string& name, const std::string& help) -> Family<Gauge>& {
    return prometheus::BuildGauge().Name(name).Help(help).Labels(labels).Register(registry);
  };
  Family<Counter>& queries = counters("pagoda_kv_offload_queries_total",
                                      "KV blocks looked up in a tier, past the device hit.");
  Family<Counter>& hits =
      counters("pagoda_kv_offload_hits_total", "KV blocks found in a tier (identity confirmed).");
  Family<Counter>& loads =
      counters("pagoda_kv_offload_loads_total", "KV blocks read back from a tier, verified.");
  Family<Counter>& read = counters("pagoda_kv_offload_read_bytes_total", "Bytes read by loads.");
  Family<Counter>& written =
      counters("pagoda_kv_offload_written_bytes_total", "Bytes written by spills.");
  Family<Counter>& stored = counters("pagoda_kv_offload_stored_blocks_total",
                                     "KV blocks stored in a tier (spilled to it).");
  Family<Counter>& evicted =
      counters("pagoda_kv_offload_evicted_blocks_total", "KV blocks a tier dropped to make room.");
  Family<Counter>& corrupt = counters(
      "pagoda_kv_offload_corrupt_total",
      "Stored KV blocks found damaged or foreign (header, size, checksum, model fingerprint): "
      "skipped, deleted, never served.");
  Family<Counter>& write_errors = counters("pagoda_kv_offload_write_errors_total",
                                           "Failed writes (a full disk stops spilling).");
  Family<Gauge>& used = gauges("pagoda_kv_offload_used_bytes", "Bytes a tier holds.");
  Family<Gauge>& capacity = gauges("pagoda_kv_offload_capacity_bytes", "A tier's capacity.");
  Family<Gauge>& blocks = gauges("pagoda_kv_offload_blocks", "KV blocks a tier holds.");
  Family<Histogram>& latency =
      prometheus::BuildHistogram()
          .Name("pagoda_kv_offload_load_seconds")
          .Help("From issuing a request's load to its completion, by the tier of its last block.")
          .Labels(labels)
          .Register(registry);
  for (const std::string& medium : media) {
    const Labels m{{"medium", medium}};
    tiers_.push_back(Tier{.queries = &queries.Add(m),
                          .hits = &hits.Add(m),
                          .loads = &loads.Add(m),
                          .read_bytes = &read.Add(m),
                          .written_bytes = &written.Add(m),
                          .stored = &stored.Add(m),
                          .evicted = &evicted.Add(m),
                          .corrupt = &corrupt.Add(m),
                          .write_errors = &write_errors.Add(m),
                          .used_bytes = &used.Add(m),
                          .capacity_bytes = &capacity.Add(m),
                          .blocks = &blocks.Add(m),
                          .load_seconds = &latency.Add(m, kLoadBuckets),
                          .last = {}});
  }
  Family<Counter>& decisions =
      counters("pagoda_kv_offload_decisions_total",
               "KV blocks found below the pool, by the cost model's choice: load, or recompute.");
  load_blocks_ = &decisions.Add({{"decision", "load"}});
  recompute_blocks_ = &decisions.Add({{"decision", "recompute"}});
  spilled_ = &counters("pagoda_kv_offload_spilled_blocks_total",
                       "KV blocks evicted from the pool and queued for the tiers.")
                  .Add({});
  spills_dropped_ = &counters("pagoda_kv_offload_spills_dropped_total",
                              "Evicted KV blocks not spilled: the I/O queue was full.")
                         .Add({});
  loading_requests_ =
      &gauges("pagoda_kv_offload_loading_requests", "Requests waiting for their blocks to load.")
           .Add({});
}

void KvOffloadMetrics::Update(const block_manager::KvOffloadStats& stats) {
  for (size_t t = 0; t < tiers_.size() && t < stats.tiers.size(); ++t) {
    Tier& tier = tiers_[t];
    const block_manager::KvTierStats& now = stats.tiers[t];
    Advance(*tier.queries, now.queries, tier.last.queries);
    Advance(*tier.hits, now.hits, tier.last.hits);
    Advance(*tier.loads, now.loads, tier.last.loads);
    Advance(*tier.read_bytes, now.read_bytes, tier.last.read_bytes);
    Advance(*tier.written_bytes, now.written_bytes, tier.last.written_bytes);
    Advance(*tier.stored, now.stored_blocks, tier.last.stored_blocks);
    Advance(*tier.evicted, now.evicted_blocks, tier.last.evicted_blocks);
    Advance(*tier.corrupt, now.corrupt_blocks, tier.last.corrupt_blocks);
    Advance(*tier.write_errors, now.write_errors, tier.last.write_errors);
    tier.used_bytes->Set(static_cast<double>(now.used_bytes));
    tier.capacity_bytes->Set(static_cast<double>(now.capacity_bytes));
    tier.blocks->Set(static_cast<double>(now.num_blocks));
    tier.last = now;
  }
  for (const auto& [tier, seconds] : stats.load_seconds) {
    if (tier >= 0 && tier < static_cast<int>(tiers_.size()))
      tiers_[tier].load_seconds->Observe(seconds);
  }
  Advance(*load_blocks_, stats.load_blocks, last_.load_blocks);
  Advance(*recompute_blocks_, stats.recompute_blocks, last_.recompute_blocks);
  Advance(*spilled_, stats.spilled_blocks, last_.spilled_blocks);
  Advance(*spills_dropped_, stats.spills_dropped, last_.spills_dropped);
  loading_requests_->Set(stats.num_loading_requests);
  last_.load_blocks = stats.load_blocks;
  last_.recompute_blocks = stats.recompute_blocks;
  last_.spilled_blocks = stats.spilled_blocks;
  last_.spills_dropped = stats.spills_dropped;
}

}  // namespace pagoda::server
