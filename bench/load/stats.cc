#include "bench/load/stats.h"

#include <algorithm>
#include <cmath>

namespace pagoda::bench {

double Percentile(std::vector<double> sample, double percent) {
  if (sample.empty()) return 0;
  std::sort(sample.begin(), sample.end());
  const double rank = percent / 100.0 * static_cast<double>(sample.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, sample.size() - 1);
  return sample[lo] + (sample[hi] - sample[lo]) * (rank - static_cast<double>(lo));
}

Summary Summarize(const std::vector<double>& sample) {
  Summary s;
  if (sample.empty()) return s;
  double sum = 0;
  for (const double x : sample) sum += x;
  s.mean = sum / static_cast<double>(sample.size());
  double squares = 0;
  for (const double x : sample) squares += (x - s.mean) * (x - s.mean);
  s.stddev = std::sqrt(squares / static_cast<double>(sample.size()));
  s.median = Percentile(sample, 50);
  s.p90 = Percentile(sample, 90);
  s.p99 = Percentile(sample, 99);
  s.max = *std::max_element(sample.begin(), sample.end());
  return s;
}

}  // namespace pagoda::bench
