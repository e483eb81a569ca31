#pragma once

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace pagoda::bench {

// Fetches http://host:port/path over plain HTTP/1.0 (blocking, with a timeout) and returns
// the body. For scraping pagodad's /metrics; not a general HTTP client.
absl::StatusOr<std::string> HttpGet(const std::string& host, int port, const std::string& path,
                                    int timeout_ms = 2000);

// Sums of the samples of each metric in a Prometheus text exposition, by sample name (labels
// dropped, values of all label sets added): {"pagoda_num_preemptions_total": 3, ...}.
absl::flat_hash_map<std::string, double> ParsePrometheusText(const std::string& text);

}  // namespace pagoda::bench
