#pragma once

#include <optional>
#include <string>

#include "absl/types/span.h"
#include "block_manager/kv_cache_events.h"

namespace pagoda::kv_events {

// What every event of a batch shares.
struct EncodingOptions {
  int block_size = 16;
  // The tier the events describe: "GPU" for the engine's own KV pool, whatever the device (the
  // value vLLM and llm-d use for the primary tier; docs/kv_events.md).
  std::string medium = "GPU";
  std::optional<int> data_parallel_rank = 0;
};

// The msgpack payload of one batch, in vLLM's current format (schema version 1 in
// docs/kv_events.md): EventBatch = [ts, [event...], data_parallel_rank], each event a map keyed
// by "type" (BlockStored, BlockRemoved, AllBlocksCleared).
std::string EncodeEventBatch(double timestamp_seconds,
                             absl::Span<const block_manager::KvCacheEvent> events,
                             const EncodingOptions& options);

}  // namespace pagoda::kv_events
