#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "common/ids.h"

namespace pagoda::block_manager {

// The free list of the block pool: an intrusive doubly-linked list over block indices, with O(1)
// push at either end, pop from the front and removal from the middle (to revive a cached block
// that a prefix-cache hit touches). The front is the next block to be handed out, i.e. the
// least recently freed. Links live in two arrays made once; nothing is allocated afterwards.
//
// Not thread-safe: owned by BlockPool on the engine thread.
class FreeBlockQueue {
 public:
  // Starts with every block 0..num_blocks-1 in the queue, in id order.
  explicit FreeBlockQueue(int num_blocks);

  int size() const { return size_; }
  int capacity() const { return num_blocks_; }
  bool Contains(BlockId block) const;

  // Precondition: size() > 0.
  BlockId PopFront();
  // Precondition: `block` is not in the queue.
  void PushBack(BlockId block);
  void PushFront(BlockId block);
  // Precondition: `block` is in the queue.
  void Remove(BlockId block);

  // The queue from front to back; O(size), for tests and invariant checks.
  std::vector<BlockId> ToVector() const;

 private:
  // Two sentinel nodes follow the blocks: kHead = num_blocks, kTail = num_blocks + 1.
  int32_t head() const { return num_blocks_; }
  int32_t tail() const { return num_blocks_ + 1; }
  void InsertAfter(int32_t node, int32_t block);

  int num_blocks_;
  int size_ = 0;
  std::vector<int32_t> prev_;
  std::vector<int32_t> next_;
  std::vector<bool> in_queue_;
};

}  // namespace pagoda::block_manager
