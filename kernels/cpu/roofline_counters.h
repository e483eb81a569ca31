#pragma once

#include <string>

#include "benchmark/benchmark.h"

// The kernel benchmarks' counters against the machine's limits (roofline.h). Benchmarks only.
namespace pagoda::kernels::cpu {

// Counter `name`: `amount` per iteration, per second of the iteration's time.
inline void SetRate(benchmark::State& state, const std::string& name, double amount) {
  state.counters[name] = benchmark::Counter(amount, benchmark::Counter::kIsIterationInvariantRate);
}

// Counter `name`: that rate as a fraction of a measured limit `limit_per_second` (same unit as
// `amount`); left out when the limit is unknown (0: the CPU lacks what it measures).
inline void SetFractionOf(benchmark::State& state, const std::string& name, double amount,
                          double limit_per_second) {
  if (limit_per_second > 0) SetRate(state, name, amount / limit_per_second);
}

}  // namespace pagoda::kernels::cpu
