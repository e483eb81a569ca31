#include "kv_offload/block_file.h"

#include <xxhash.h>

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace pagoda::kv_offload {
namespace {

using block_manager::BlockHash;

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

absl::Status Corrupt(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("KV block file: ", what));
}

// Header bytes for a given extra key size and block size.
int64_t HeaderBytes(int64_t extra_key_bytes, int64_t block_size) {
  return kBlockFileFixedHeader + extra_key_bytes + block_size * 4;
}

}  // namespace

std::string BlockFileName(const BlockHash& hash) {
  return absl::StrFormat("%016x%016x.kvb", hash.high, hash.low);
}

std::string EncodeBlockFile(const ModelFingerprint& fingerprint, const BlockRecord& record) {
  const BlockIdentity& id = record.identity;
  const int64_t header = HeaderBytes(static_cast<int64_t>(id.extra_key.size()),
                                     static_cast<int64_t>(id.tokens.size()));
  std::string out;
  out.reserve(static_cast<size_t>(header) + record.payload.size() + 8);
  out.append(kBlockFileMagic, sizeof(kBlockFileMagic));
  PutU32(&out, kBlockFileVersion);
  PutU32(&out, static_cast<uint32_t>(header));
  PutU64(&out, fingerprint.low);
  PutU64(&out, fingerprint.high);
  PutU32(&out, static_cast<uint32_t>(id.tokens.size()));
  PutU32(&out, id.parent.has_value() ? 1u : 0u);
  PutU64(&out, id.hash.low);
  PutU64(&out, id.hash.high);
  const BlockHash parent = id.parent.value_or(BlockHash{});
  PutU64(&out, parent.low);
  PutU64(&out, parent.high);
  PutU64(&out, record.payload.size());
  PutU32(&out, static_cast<uint32_t>(id.extra_key.size()));
  PutU32(&out, 0);
  out.append(id.extra_key);
  for (const TokenId token : id.tokens) PutU32(&out, static_cast<uint32_t>(token));
  out.append(record.payload);
  PutU64(&out, XXH3_64bits(out.data(), out.size()));
  return out;
}

absl::StatusOr<int64_t> BlockFileHeaderBytes(absl::string_view fixed_header) {
  if (fixed_header.size() < static_cast<size_t>(kBlockFileFixedHeader)) {
    return Corrupt("shorter than a header");
  }
  if (std::memcmp(fixed_header.data(), kBlockFileMagic, sizeof(kBlockFileMagic)) != 0) {
    return Corrupt("bad magic");
  }
  if (GetU32(fixed_header.data() + 8) != kBlockFileVersion) {
    return Corrupt(absl::StrCat("format version ", GetU32(fixed_header.data() + 8), ", not ",
                                kBlockFileVersion));
  }
  return static_cast<int64_t>(GetU32(fixed_header.data() + 12));
}

absl::StatusOr<BlockIdentity> DecodeBlockFileHeader(absl::string_view header, int64_t file_bytes,
                                                    const BlockFileExpectation& expect) {
  absl::StatusOr<int64_t> header_bytes = BlockFileHeaderBytes(header);
  if (!header_bytes.ok()) return header_bytes.status();
  const char* p = header.data();
  const ModelFingerprint fingerprint{.low = GetU64(p + 16), .high = GetU64(p + 24)};
  if (fingerprint != expect.fingerprint) return Corrupt("written by another model or KV layout");
  if (GetU32(p + 32) != static_cast<uint32_t>(expect.block_size)) {
    return Corrupt("another block size");
  }
  const uint32_t flags = GetU32(p + 36);
  if ((flags & ~1u) != 0 || GetU32(p + 84) != 0) return Corrupt("unknown flags");
  const uint64_t payload_bytes = GetU64(p + 72);
  if (payload_bytes != static_cast<uint64_t>(expect.payload_bytes)) {
    return Corrupt("another payload size");
  }
  const uint32_t extra_key_bytes = GetU32(p + 80);
  if (extra_key_bytes > static_cast<uint32_t>(kMaxExtraKeyBytes)) return Corrupt("extra key");
  if (*header_bytes != HeaderBytes(extra_key_bytes, expect.block_size)) {
    return Corrupt("inconsistent header size");
  }
  if (static_cast<int64_t>(header.size()) < *header_bytes) return Corrupt("truncated header");
  if (file_bytes != *header_bytes + expect.payload_bytes + 8) return Corrupt("truncated or padded");
  BlockIdentity id;
  id.hash = BlockHash{.low = GetU64(p + 40), .high = GetU64(p + 48)};
  if ((flags & 1u) != 0) id.parent = BlockHash{.low = GetU64(p + 56), .high = GetU64(p + 64)};
  id.extra_key.assign(p + kBlockFileFixedHeader, extra_key_bytes);
  if (id.parent.has_value() && !id.extra_key.empty()) return Corrupt("extra key on a later block");
  const char* tokens = p + kBlockFileFixedHeader + extra_key_bytes;
  id.tokens.resize(expect.block_size);
  for (int i = 0; i < expect.block_size; ++i) {
    id.tokens[i] = static_cast<TokenId>(GetU32(tokens + 4 * i));
  }
  if (expect.hasher != nullptr) {
    const BlockHash* parent = id.parent.has_value() ? &*id.parent : nullptr;
    if (expect.hasher->HashBlock(parent, id.tokens, id.extra_key) != id.hash) {
      return Corrupt("the hash is not the content's");
    }
  }
  return id;
}

absl::StatusOr<BlockRecord> DecodeBlockFile(absl::string_view bytes,
                                            const BlockFileExpectation& expect) {
  absl::StatusOr<BlockIdentity> id =
      DecodeBlockFileHeader(bytes, static_cast<int64_t>(bytes.size()), expect);
  if (!id.ok()) return id.status();
  const size_t body = bytes.size() - 8;
  if (XXH3_64bits(bytes.data(), body) != GetU64(bytes.data() + body)) {
    return Corrupt("checksum mismatch");
  }
  BlockRecord record;
  record.identity = *std::move(id);
  const size_t header = body - static_cast<size_t>(expect.payload_bytes);
  record.payload.assign(bytes.data() + header, static_cast<size_t>(expect.payload_bytes));
  return record;
}

}  // namespace pagoda::kv_offload
