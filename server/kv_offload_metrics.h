#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "block_manager/kv_cache_stats.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace pagoda::server {

// The Prometheus series of the tiers below the KV pool (docs/operations.md, "KV offload"),
// per tier labelled medium="cpu"|"disk". Engine thread only (Update), like PrometheusMetrics'
// OnStep: it advances counters by the deltas of the engine's cumulative figures.
class KvOffloadMetrics {
 public:
  KvOffloadMetrics(prometheus::Registry& registry, const std::string& model_name,
                   const std::vector<std::string>& media);
  void Update(const block_manager::KvOffloadStats& stats);

 private:
  struct Tier {
    prometheus::Counter* queries;
    prometheus::Counter* hits;
    prometheus::Counter* loads;
    prometheus::Counter* read_bytes;
    prometheus::Counter* written_bytes;
    prometheus::Counter* stored;
    prometheus::Counter* evicted;
    prometheus::Counter* corrupt;
    prometheus::Counter* write_errors;
    prometheus::Gauge* used_bytes;
    prometheus::Gauge* capacity_bytes;
    prometheus::Gauge* blocks;
    prometheus::Histogram* load_seconds;
    block_manager::KvTierStats last;
  };
  std::vector<Tier> tiers_;
  prometheus::Counter* load_blocks_;
  prometheus::Counter* recompute_blocks_;
  prometheus::Counter* spilled_;
  prometheus::Counter* spills_dropped_;
  prometheus::Gauge* loading_requests_;
  block_manager::KvOffloadStats last_;
};

}  // namespace pagoda::server
