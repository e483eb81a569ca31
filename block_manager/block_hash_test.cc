#include "block_manager/block_hash.h"

#include <cstring>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "gtest/gtest.h"

namespace pagoda::block_manager {
namespace {

TEST(BlockHasherTest, HashesOnlyFullBlocksAndExtendsIncrementally) {
  const BlockHasher hasher(4);
  std::vector<TokenId> tokens = {1, 2, 3, 4, 5, 6, 7};
  std::vector<BlockHash> hashes;
  hasher.Extend(tokens, "", &hashes);
  ASSERT_EQ(hashes.size(), 1u);
  tokens.push_back(8);
  hasher.Extend(tokens, "", &hashes);
  ASSERT_EQ(hashes.size(), 2u);

  std::vector<BlockHash> at_once;
  hasher.Extend(tokens, "", &at_once);
  EXPECT_EQ(at_once, hashes);
}

TEST(BlockHasherTest, ChainsOverTheWholePrefix) {
  const BlockHasher hasher(2);
  std::vector<BlockHash> a;
  std::vector<BlockHash> b;
  hasher.Extend(std::vector<TokenId>{1, 2, 9, 9}, "", &a);
  hasher.Extend(std::vector<TokenId>{1, 3, 9, 9}, "", &b);
  // Same second block, different first block: the second hashes differ too.
  EXPECT_NE(a[0], b[0]);
  EXPECT_NE(a[1], b[1]);
}

TEST(BlockHasherTest, ExtraKeyAndSeedSeparateOtherwiseEqualPrefixes) {
  const std::vector<TokenId> tokens = {5, 6, 7, 8};
  std::vector<BlockHash> plain, salted, other_seed;
  BlockHasher(2).Extend(tokens, "", &plain);
  BlockHasher(2).Extend(tokens, "tenant-a", &salted);
  BlockHasher(2, /*seed=*/7).Extend(tokens, "", &other_seed);
  EXPECT_NE(plain[0], salted[0]);
  EXPECT_NE(plain[1], salted[1]);  // carried by the chain
  EXPECT_NE(plain[0], other_seed[0]);
}

TEST(BlockHasherTest, FirstBlockNeverAliasesAChainedBlock) {
  // A first block whose extra key spells out a parent hash must not equal the chained block.
  const BlockHasher hasher(1);
  const std::vector<TokenId> block = {42};
  const BlockHash parent = hasher.HashBlock(nullptr, block, "");
  std::string fake_parent(sizeof(parent), '\0');
  std::memcpy(fake_parent.data(), &parent, sizeof(parent));
  EXPECT_NE(hasher.HashBlock(&parent, block, ""), hasher.HashBlock(nullptr, block, fake_parent));
}

TEST(BlockHasherTest, DistinctBlocksGetDistinctHashes) {
  const BlockHasher hasher(2);
  absl::flat_hash_set<BlockHash> seen;
  for (TokenId a = 0; a < 200; ++a) {
    for (TokenId b = 0; b < 200; ++b) {
      const std::vector<TokenId> block = {a, b};
      EXPECT_TRUE(seen.insert(hasher.HashBlock(nullptr, block, "")).second);
    }
  }
}

}  // namespace
}  // namespace pagoda::block_manager
