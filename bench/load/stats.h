#pragma once

#include <vector>

namespace pagoda::bench {

// Summary statistics of a sample, in the sample's unit. All zero for an empty sample.
struct Summary {
  double mean = 0;
  double median = 0;
  double stddev = 0;  // population
  double p90 = 0;
  double p99 = 0;
  double max = 0;
};

// Percentiles by linear interpolation between closest ranks (NumPy's default, as vLLM uses).
double Percentile(std::vector<double> sample, double percent);
Summary Summarize(const std::vector<double>& sample);

}  // namespace pagoda::bench
