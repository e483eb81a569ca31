#pragma once

#include <cstdint>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/ids.h"

namespace pagoda::block_manager {

// 128-bit chained hash of one full KV-cache block:
//   h_0 = H(seed; no parent, tokens of block 0, extra key)
//   h_i = H(seed; h_{i-1},  tokens of block i)
// The extra key (a cache salt, an adapter name) enters the first block only; the chain carries it
// to every later block, as in vLLM. Equal hashes do not prove equal content: the prefix cache
// confirms every hit by comparing token ids (see BlockPool::FindCached).
struct BlockHash {
  uint64_t low = 0;
  uint64_t high = 0;

  friend bool operator==(const BlockHash&, const BlockHash&) = default;

  template <typename H>
  friend H AbslHashValue(H h, const BlockHash& hash) {
    // Already uniformly distributed: the low word is enough to spread table buckets.
    return H::combine(std::move(h), hash.low);
  }
};

// Computes the chained hashes of a request's full blocks. Stateless apart from its options, so
// one instance serves every request. Thread-compatible.
class BlockHasher {
 public:
  // `block_size` > 0 tokens per block. `seed` makes hashes differ across deployments (hash values
  // are never exposed to clients, so a fixed seed is fine; a random one hides them further).
  explicit BlockHasher(int block_size, uint64_t seed = 0);

  int block_size() const { return block_size_; }

  // Appends to `hashes` the hash of every full block of `tokens` beyond the first
  // hashes->size() blocks, which must be the hashes of the same tokens and extra key. Call it
  // again as tokens are appended: each block is hashed once. A partial last block gets no hash.
  void Extend(absl::Span<const TokenId> tokens, absl::string_view extra_key,
              std::vector<BlockHash>* hashes) const;

  // The hash of one block. `parent` is the previous block's hash, or nullptr for the first block
  // (which alone folds in `extra_key`). `block_tokens` holds exactly block_size() tokens.
  BlockHash HashBlock(const BlockHash* parent, absl::Span<const TokenId> block_tokens,
                      absl::string_view extra_key) const;

 private:
  int block_size_;
  uint64_t seed_;
};

}  // namespace pagoda::block_manager
