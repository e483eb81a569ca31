#pragma once

// Test support: every metric family pagodad exports (docs/metrics.md), for the tests that check
// a rendering or a real scrape carries all of them.

#include <array>

namespace pagoda::server::testing {

inline constexpr std::array<const char*, 25> kExportedMetricFamilies = {
    "pagoda_num_requests_running",
    "pagoda_num_requests_waiting",
    "pagoda_kv_cache_usage_ratio",
    "pagoda_kv_cache_blocks",
    "pagoda_kv_cache_capacity_blocks",
    "pagoda_cache_config_info",
    "pagoda_kv_cache_evictions_total",
    "pagoda_prefix_cache_queried_tokens_total",
    "pagoda_prefix_cache_hit_tokens_total",
    "pagoda_num_preemptions_total",
    "pagoda_request_success_total",
    "pagoda_requests_rejected_total",
    "pagoda_prompt_tokens_total",
    "pagoda_generation_tokens_total",
    "pagoda_time_to_first_token_seconds",
    "pagoda_inter_token_latency_seconds",
    "pagoda_request_time_per_output_token_seconds",
    "pagoda_e2e_request_latency_seconds",
    "pagoda_request_queue_time_seconds",
    "pagoda_request_prompt_tokens",
    "pagoda_request_generation_tokens",
    "pagoda_iteration_tokens",
    "pagoda_engine_step_duration_seconds",
    "pagoda_engine_healthy",
    "pagoda_new_token_ratio",
};

}  // namespace pagoda::server::testing
