#include "kv_offload/block_file.h"

#include <random>

#include "gtest/gtest.h"
#include "kv_offload/testing/test_blocks.h"

namespace pagoda::kv_offload {
namespace {

using testing::Expect;
using testing::kFingerprint;
using testing::MakeChain;

TEST(BlockFileTest, RoundTripsFirstAndChainedBlocks) {
  const block_manager::BlockHasher hasher(16);
  std::mt19937_64 rng(1);
  const std::vector<BlockRecord> chain = MakeChain(hasher, 3, 1000, rng, "salt");
  for (const BlockRecord& r : chain) {
    const std::string bytes = EncodeBlockFile(kFingerprint, r);
    absl::StatusOr<BlockRecord> back = DecodeBlockFile(bytes, Expect(hasher, 1000));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->identity, r.identity);
    EXPECT_EQ(back->payload, r.payload);
    absl::StatusOr<BlockIdentity> header =
        DecodeBlockFileHeader(bytes, static_cast<int64_t>(bytes.size()), Expect(hasher, 1000));
    ASSERT_TRUE(header.ok()) << header.status();
    EXPECT_EQ(*header, r.identity);
  }
  EXPECT_EQ(BlockFileName(chain[0].identity.hash).size(), 32u + 4u);
}

TEST(BlockFileTest, EveryFlippedByteAndEveryTruncationIsRejected) {
  const block_manager::BlockHasher hasher(4);
  std::mt19937_64 rng(2);
  const BlockRecord r = MakeChain(hasher, 2, 40, rng)[1];
  const std::string bytes = EncodeBlockFile(kFingerprint, r);
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string bad = bytes;
    bad[i] ^= 0x20;
    EXPECT_EQ(DecodeBlockFile(bad, Expect(hasher, 40)).status().code(), absl::StatusCode::kDataLoss)
        << "byte " << i;
  }
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(DecodeBlockFile(bytes.substr(0, n), Expect(hasher, 40)).ok()) << n;
  }
  EXPECT_FALSE(DecodeBlockFile(bytes + "x", Expect(hasher, 40)).ok());
}

TEST(BlockFileTest, AnotherModelBlockSizeOrPayloadIsRejected) {
  const block_manager::BlockHasher hasher(4);
  std::mt19937_64 rng(3);
  const BlockRecord r = MakeChain(hasher, 1, 40, rng)[0];
  const std::string bytes = EncodeBlockFile(kFingerprint, r);
  BlockFileExpectation other = Expect(hasher, 40);
  other.fingerprint.low ^= 1;
  EXPECT_FALSE(DecodeBlockFile(bytes, other).ok());
  EXPECT_FALSE(DecodeBlockFile(bytes, Expect(hasher, 41)).ok());
  const block_manager::BlockHasher eight(8);
  EXPECT_FALSE(DecodeBlockFile(bytes, Expect(eight, 40)).ok());
}

TEST(BlockFileTest, AHashThatIsNotTheContentsIsRejected) {
  // A well-formed file whose checksum is right but whose hash names other content.
  const block_manager::BlockHasher hasher(4);
  std::mt19937_64 rng(4);
  BlockRecord r = MakeChain(hasher, 1, 8, rng)[0];
  r.identity.tokens[0] += 1;
  const std::string bytes = EncodeBlockFile(kFingerprint, r);
  EXPECT_EQ(DecodeBlockFile(bytes, Expect(hasher, 8)).status().code(), absl::StatusCode::kDataLoss);
  BlockFileExpectation no_hasher = Expect(hasher, 8);
  no_hasher.hasher = nullptr;
  EXPECT_TRUE(DecodeBlockFile(bytes, no_hasher).ok());
}

}  // namespace
}  // namespace pagoda::kv_offload
