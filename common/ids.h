#pragma once

#include <cstdint>

#include "common/strong_id.h"

namespace pagoda {

// A token of the model's vocabulary, 0 <= id < vocab_size. Plain integer because token ids travel
// in large arrays through kernels; the alias documents intent.
using TokenId = int32_t;

// Index of a KV-cache block in the block pool, 0 <= id < num_blocks. The same id addresses the
// block in every layer's K and V pools.
struct BlockIdTag {};
using BlockId = common::StrongId<BlockIdTag, int32_t>;

// Engine-internal identity of a request, unique for the life of the process. The client-visible
// request id (a string) is mapped to one of these by the engine.
struct RequestIdTag {};
using RequestId = common::StrongId<RequestIdTag, uint64_t>;

}  // namespace pagoda
