// Fuzz target: any bytes as a KV block file. The decoder must never crash, and whatever it
// accepts must encode back to the very same bytes (so nothing unchecked slips through).

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/check.h"
#include "kv_offload/block_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pagoda::kv_offload;
  static const pagoda::block_manager::BlockHasher hasher(4);
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  // Both with and without the hash check, and for two payload sizes.
  for (const bool check_hash : {true, false}) {
    for (const int64_t payload : {int64_t{0}, int64_t{16}}) {
      const BlockFileExpectation expect{.fingerprint = {.low = 1, .high = 2},
                                        .block_size = 4,
                                        .payload_bytes = payload,
                                        .hasher = check_hash ? &hasher : nullptr};
      absl::StatusOr<BlockIdentity> header =
          DecodeBlockFileHeader(bytes, static_cast<int64_t>(bytes.size()), expect);
      absl::StatusOr<BlockRecord> record = DecodeBlockFile(bytes, expect);
      if (record.ok()) {
        PAGODA_CHECK(header.ok());
        PAGODA_CHECK(EncodeBlockFile(expect.fingerprint, *record) == bytes);
      }
    }
  }
  return 0;
}
