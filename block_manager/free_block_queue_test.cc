#include "block_manager/free_block_queue.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pagoda::block_manager {
namespace {

using ::testing::ElementsAre;

TEST(FreeBlockQueueTest, StartsWithEveryBlockInIdOrder) {
  FreeBlockQueue queue(4);
  EXPECT_EQ(queue.size(), 4);
  EXPECT_THAT(queue.ToVector(), ElementsAre(BlockId(0), BlockId(1), BlockId(2), BlockId(3)));
}

TEST(FreeBlockQueueTest, PopsFromTheFrontAndPushesAtEitherEnd) {
  FreeBlockQueue queue(4);
  EXPECT_EQ(queue.PopFront(), BlockId(0));
  EXPECT_EQ(queue.PopFront(), BlockId(1));
  EXPECT_FALSE(queue.Contains(BlockId(0)));
  queue.PushBack(BlockId(0));
  queue.PushFront(BlockId(1));
  EXPECT_THAT(queue.ToVector(), ElementsAre(BlockId(1), BlockId(2), BlockId(3), BlockId(0)));
  EXPECT_EQ(queue.size(), 4);
}

TEST(FreeBlockQueueTest, RemovesFromTheMiddleAndEnds) {
  FreeBlockQueue queue(5);
  queue.Remove(BlockId(2));
  queue.Remove(BlockId(0));
  queue.Remove(BlockId(4));
  EXPECT_THAT(queue.ToVector(), ElementsAre(BlockId(1), BlockId(3)));
  EXPECT_EQ(queue.size(), 2);
  EXPECT_TRUE(queue.Contains(BlockId(3)));
  EXPECT_FALSE(queue.Contains(BlockId(2)));
  queue.Remove(BlockId(1));
  queue.Remove(BlockId(3));
  EXPECT_EQ(queue.size(), 0);
  EXPECT_TRUE(queue.ToVector().empty());
  queue.PushBack(BlockId(4));
  EXPECT_EQ(queue.PopFront(), BlockId(4));
}

TEST(FreeBlockQueueDeathTest, RejectsDoubleInsertAndEmptyPop) {
  FreeBlockQueue queue(2);
  EXPECT_DEATH(queue.PushBack(BlockId(1)), "already free");
  queue.PopFront();
  queue.PopFront();
  EXPECT_DEATH(queue.PopFront(), "empty free list");
  EXPECT_DEATH(queue.Remove(BlockId(0)), "not free");
}

}  // namespace
}  // namespace pagoda::block_manager
