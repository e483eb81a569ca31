#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "block_manager/block_hash.h"
#include "common/ids.h"

namespace pagoda::kv_offload {

// What a stored block must match to be served: the model, its KV dtype, block size and
// tokenizer, folded into 128 bits by the engine (docs/architecture.md, "KV offload").
struct ModelFingerprint {
  uint64_t low = 0;
  uint64_t high = 0;
  friend bool operator==(const ModelFingerprint&, const ModelFingerprint&) = default;
};

// Who a block is: its chained hash, its parent's (none for a sequence's first block), the
// extra key (cache salt) a first block folds in, and its tokens. A lookup confirms all of it, as
// the device prefix cache confirms a hit.
struct BlockIdentity {
  block_manager::BlockHash hash;
  std::optional<block_manager::BlockHash> parent;
  std::string extra_key;  // first blocks only
  std::vector<TokenId> tokens;

  friend bool operator==(const BlockIdentity&, const BlockIdentity&) = default;
};

// One block's K/V of every layer (the runner's layout, ModelRunner::ReadKvBlock) and who it is.
struct BlockRecord {
  BlockIdentity identity;
  std::string payload;
};

// The on-disk form of one block (one file). Little-endian:
//   0   magic "PGKVBLK\n"          8
//   8   format version (1)         u32
//   12  header bytes (payload at)  u32
//   16  model fingerprint          16
//   32  block size (tokens)        u32
//   36  flags (bit 0: has parent)  u32
//   40  block hash                 16
//   56  parent hash (0 if none)    16
//   72  payload bytes              u64
//   80  extra key bytes            u32
//   84  reserved (0)               u32
//   88  extra key, then block_size int32 token ids
//   header bytes: payload, then an XXH3-64 checksum (u64) of every byte before it.
inline constexpr char kBlockFileMagic[8] = {'P', 'G', 'K', 'V', 'B', 'L', 'K', '\n'};
inline constexpr uint32_t kBlockFileVersion = 1;
inline constexpr int kBlockFileFixedHeader = 88;
// Extra keys longer than this are not stored (such a block is simply not spilled).
inline constexpr int kMaxExtraKeyBytes = 4096;

// What a block file must be to be served.
struct BlockFileExpectation {
  ModelFingerprint fingerprint;
  int block_size = 0;
  int64_t payload_bytes = 0;
  // Confirms that the stored hash is the hash of the stored parent, extra key and tokens, so a
  // file can only ever be served under the hash of its own content. May be null (then only the
  // stored fields are read).
  const block_manager::BlockHasher* hasher = nullptr;
};

std::string EncodeBlockFile(const ModelFingerprint& fingerprint, const BlockRecord& record);

// The header's size in bytes, from its fixed part (the first kBlockFileFixedHeader bytes); an
// error when those are not a block file of this version.
absl::StatusOr<int64_t> BlockFileHeaderBytes(absl::string_view fixed_header);

// Reads the identity from a file's header (its first BlockFileHeaderBytes bytes, or more) and
// checks it against `expect`; the payload and checksum are not read. DataLoss for anything that
// is not a valid header of a block `expect` allows. `file_bytes` (the file's size) must equal
// the header plus payload plus checksum.
absl::StatusOr<BlockIdentity> DecodeBlockFileHeader(absl::string_view header, int64_t file_bytes,
                                                    const BlockFileExpectation& expect);

// Decodes and verifies a whole file (header, size, checksum). DataLoss for any defect.
absl::StatusOr<BlockRecord> DecodeBlockFile(absl::string_view bytes,
                                            const BlockFileExpectation& expect);

// The file name of a block: its 128-bit hash in hex, ".kvb".
std::string BlockFileName(const block_manager::BlockHash& hash);

}  // namespace pagoda::kv_offload
