#pragma once

// Blocks for the KV-offload tests: chains of identities with their true hashes and random
// payloads.

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "block_manager/block_hash.h"
#include "kv_offload/block_file.h"

namespace pagoda::kv_offload::testing {

inline constexpr ModelFingerprint kFingerprint{.low = 0x1234, .high = 0x5678};

// A chain of `n` blocks of `block_size` random tokens under `extra_key`, each with a payload of
// `payload_bytes` random bytes.
inline std::vector<BlockRecord> MakeChain(const block_manager::BlockHasher& hasher, int n,
                                          int64_t payload_bytes, std::mt19937_64& rng,
                                          const std::string& extra_key = "") {
  std::vector<BlockRecord> chain;
  for (int i = 0; i < n; ++i) {
    BlockRecord r;
    r.identity.tokens.resize(hasher.block_size());
    for (TokenId& t : r.identity.tokens) t = static_cast<TokenId>(rng() % 32000);
    if (i == 0) {
      r.identity.extra_key = extra_key;
    } else {
      r.identity.parent = chain.back().identity.hash;
    }
    const block_manager::BlockHash* parent =
        r.identity.parent.has_value() ? &*r.identity.parent : nullptr;
    r.identity.hash = hasher.HashBlock(parent, r.identity.tokens, r.identity.extra_key);
    r.payload.resize(static_cast<size_t>(payload_bytes));
    for (char& c : r.payload) c = static_cast<char>(rng());
    chain.push_back(std::move(r));
  }
  return chain;
}

inline BlockFileExpectation Expect(const block_manager::BlockHasher& hasher,
                                   int64_t payload_bytes) {
  return {.fingerprint = kFingerprint,
          .block_size = hasher.block_size(),
          .payload_bytes = payload_bytes,
          .hasher = &hasher};
}

}  // namespace pagoda::kv_offload::testing
