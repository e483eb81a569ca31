#pragma once

#include <cstdint>
#include <memory>

// Scratch that a kernel would otherwise allocate on every call: x rounded, split or packed for a
// product, a block of widened weights. A prompt's is megabytes, and a fresh std::vector of that
// size costs page faults and zeroing on every call for what is overwritten anyway.
namespace pagoda::kernels::cpu {

// At least `count` T of the calling thread's, living from call to call (grown, never shrunk;
// the contents unspecified), one buffer per Tag (an empty struct naming its user). Only a
// pointer and a size are thread_local; the buffer is on the heap (TOOLCHAIN.md: no large TLS).
// Valid until this thread's next call with the same Tag; other threads may read it meanwhile
// (e.g. the pool's workers reading x prepared by the calling thread).
template <typename Tag, typename T>
T* ThreadScratch(int64_t count) {
  thread_local std::unique_ptr<T[]> storage;
  thread_local int64_t capacity = 0;
  if (count > capacity) {
    storage = std::make_unique_for_overwrite<T[]>(static_cast<size_t>(count));
    capacity = count;
  }
  return storage.get();
}

}  // namespace pagoda::kernels::cpu
