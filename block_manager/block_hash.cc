#include "block_manager/block_hash.h"

// The state struct is only visible with static-linking definitions; it lives on the stack here.
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "common/check.h"

namespace pagoda::block_manager {
namespace {

// Domain tags keep "first block with extra key" and "later block" inputs from ever being the
// same byte string, whatever the key and tokens are.
constexpr uint8_t kFirstBlockTag = 0x01;
constexpr uint8_t kChainedBlockTag = 0x02;

}  // namespace

BlockHasher::BlockHasher(int block_size, uint64_t seed) : block_size_(block_size), seed_(seed) {
  PAGODA_CHECK_GT(block_size, 0);
}

BlockHash BlockHasher::HashBlock(const BlockHash* parent, absl::Span<const TokenId> block_tokens,
                                 absl::string_view extra_key) const {
  PAGODA_CHECK_EQ(static_cast<int>(block_tokens.size()), block_size_);
  XXH3_state_t state;
  XXH3_128bits_reset_withSeed(&state, seed_);
  if (parent == nullptr) {
    XXH3_128bits_update(&state, &kFirstBlockTag, sizeof(kFirstBlockTag));
    // Length first, so that (key, tokens) pairs cannot alias by moving bytes between the two.
    const uint64_t key_size = extra_key.size();
    XXH3_128bits_update(&state, &key_size, sizeof(key_size));
    XXH3_128bits_update(&state, extra_key.data(), extra_key.size());
  } else {
    XXH3_128bits_update(&state, &kChainedBlockTag, sizeof(kChainedBlockTag));
    XXH3_128bits_update(&state, &parent->low, sizeof(parent->low));
    XXH3_128bits_update(&state, &parent->high, sizeof(parent->high));
  }
  XXH3_128bits_update(&state, block_tokens.data(), block_tokens.size() * sizeof(TokenId));
  const XXH128_hash_t digest = XXH3_128bits_digest(&state);
  return BlockHash{.low = digest.low64, .high = digest.high64};
}

void BlockHasher::Extend(absl::Span<const TokenId> tokens, absl::string_view extra_key,
                         std::vector<BlockHash>* hashes) const {
  const size_t num_full_blocks = tokens.size() / block_size_;
  PAGODA_CHECK_LE(hashes->size(), num_full_blocks) << "hashes cover more blocks than tokens hold";
  for (size_t i = hashes->size(); i < num_full_blocks; ++i) {
    const BlockHash* parent = i == 0 ? nullptr : &(*hashes)[i - 1];
    hashes->push_back(HashBlock(parent, tokens.subspan(i * block_size_, block_size_), extra_key));
  }
}

}  // namespace pagoda::block_manager
