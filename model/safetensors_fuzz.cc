// Fuzzes the safetensors parser: arbitrary bytes as a whole file. Any input must give a header
// or an error; every tensor that parses must lie inside the input (checked by reading it all, so
// ASan catches an out-of-bounds pointer). The same bytes also go to ParseModelConfig, whose JSON
// field access must never throw.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/types/span.h"
#include "model/model_config.h"
#include "model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)pagoda::model::ParseModelConfig(
      std::string_view(reinterpret_cast<const char*>(data), size));
  const absl::StatusOr<pagoda::model::SafetensorsHeader> header =
      pagoda::model::ParseSafetensors(absl::MakeConstSpan(data, size));
  if (!header.ok()) return 0;
  uint8_t checksum = 0;
  for (const pagoda::model::TensorInfo& tensor : header->tensors) {
    if (tensor.num_elements() * pagoda::model::DTypeSize(tensor.dtype) != tensor.size_bytes()) {
      __builtin_trap();
    }
    for (int64_t i = 0; i < tensor.size_bytes(); ++i) checksum ^= tensor.data[i];
  }
  volatile uint8_t sink = checksum;
  (void)sink;
  return 0;
}
