// Fuzz target: the bytes choose the pool's options and a sequence of scheduler operations,
// run through KvCacheHarness, which checks every invariant after every operation.

#include <cstddef>
#include <cstdint>

#include "block_manager/testing/kv_cache_workload.h"
#include "common/check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pagoda::block_manager::testing;
  ByteChoices choices(data, size);
  const HarnessOptions options = RandomHarnessOptions(choices);
  WorkloadCounts counts;
  const absl::Status status = RunWorkload(options, choices, /*max_ops=*/1000, &counts);
  PAGODA_CHECK(status.ok()) << status;
  return 0;
}
