#include "block_manager/free_block_queue.h"

#include "common/check.h"

namespace pagoda::block_manager {

FreeBlockQueue::FreeBlockQueue(int num_blocks)
    : num_blocks_(num_blocks),
      prev_(num_blocks + 2),
      next_(num_blocks + 2),
      in_queue_(num_blocks, false) {
  PAGODA_CHECK_GE(num_blocks, 0);
  next_[head()] = tail();
  prev_[tail()] = head();
  for (int32_t b = 0; b < num_blocks; ++b) PushBack(BlockId(b));
}

bool FreeBlockQueue::Contains(BlockId block) const {
  PAGODA_CHECK(block.value() >= 0 && block.value() < num_blocks_) << block;
  return in_queue_[block.value()];
}

void FreeBlockQueue::InsertAfter(int32_t node, int32_t block) {
  PAGODA_CHECK(!Contains(BlockId(block))) << "block " << block << " is already free";
  const int32_t after = next_[node];
  prev_[block] = node;
  next_[block] = after;
  next_[node] = block;
  prev_[after] = block;
  in_queue_[block] = true;
  ++size_;
}

void FreeBlockQueue::PushBack(BlockId block) { InsertAfter(prev_[tail()], block.value()); }

void FreeBlockQueue::PushFront(BlockId block) { InsertAfter(head(), block.value()); }

void FreeBlockQueue::Remove(BlockId block) {
  PAGODA_CHECK(Contains(block)) << "block " << block << " is not free";
  const int32_t b = block.value();
  next_[prev_[b]] = next_[b];
  prev_[next_[b]] = prev_[b];
  in_queue_[b] = false;
  --size_;
}

BlockId FreeBlockQueue::PopFront() {
  PAGODA_CHECK_GT(size_, 0) << "pop from an empty free list";
  const BlockId front(next_[head()]);
  Remove(front);
  return front;
}

std::vector<BlockId> FreeBlockQueue::ToVector() const {
  std::vector<BlockId> blocks;
  blocks.reserve(size_);
  for (int32_t b = next_[head()]; b != tail(); b = next_[b]) blocks.push_back(BlockId(b));
  return blocks;
}

}  // namespace pagoda::block_manager
