#pragma once

// Host-side preparation of one step for the CUDA model runner: how a step's attention is split
// between the decode and the prefill kernel, and the packing of the step's metadata into one
// buffer that a single host-to-device copy moves. Pure functions of the batch (no CUDA), tested
// without a GPU.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "model/forward_batch.h"

namespace pagoda::runner::cuda {

// Which requests of a step each attention kernel takes.
struct AttentionSplit {
  // Requests with exactly one query token outside the prefill range (decodes, and one-token
  // prefill chunks, which are the same computation): the decode kernel, one query each. Ascending.
  std::vector<int32_t> decode_requests;
  // Requests [prefill_begin, prefill_end): the prefill kernel. The smallest range that holds
  // every request with more than one query token (the kernel needs contiguous token rows);
  // empty when there is none.
  int32_t prefill_begin = 0;
  int32_t prefill_end = 0;

  bool decode_only() const { return prefill_begin == prefill_end; }
};

// query_start: [num_requests + 1], ascending (ForwardBatch::query_start).
AttentionSplit SplitAttention(absl::Span<const int32_t> query_start);

// Sizes that fix the packed layout. A CUDA graph replays fixed device addresses, so every step
// replayed through one graph must have the same layout: the runner packs graph steps with the
// graph's sizes (padding), and sizes the device buffer for the largest layout it will see.
struct StepShape {
  int32_t num_tokens = 0;            // per-token arrays (padded tokens included)
  int32_t num_decode_requests = 0;   // decode arrays (padded requests included)
  int32_t num_prefill_requests = 0;  // prefill arrays
  int32_t num_logits = 0;            // logits rows
  int32_t table_width = 0;           // block-table row length of both kernels' tables
};

// Byte offsets of the packed arrays from the buffer's start, each 16-byte aligned (the
// kernels' vector loads), in this order. The decode block table comes last, so that a graph step
// can send only the used part of its rows (PackedStep).
struct StepLayout {
  int64_t token_ids = 0;            // int32 [num_tokens]; padding: 0
  int64_t positions = 0;            // int32 [num_tokens]; padding: 0
  int64_t slot_mapping = 0;         // int64 [num_tokens]; padding: -1 (skipped by the cache write)
  int64_t logits_indices = 0;       // int32 [num_logits]: token rows whose logits are computed
  int64_t decode_rows = 0;          // int32 [num_decode_requests]: each one's token row
  int64_t decode_context_lens = 0;  // int32 [num_decode_requests]; padding: 0 (writes zeros)
  // Absolute token rows, [num_prefill_requests + 1] (the kernel takes query_start[r] and
  // query_start[r + 1] as request r's rows).
  int64_t prefill_query_start = 0;
  int64_t prefill_context_lens = 0;  // int32 [num_prefill_requests]
  int64_t prefill_block_tables = 0;  // int32 [num_prefill_requests, table_width]
  int64_t decode_block_tables = 0;   // int32 [num_decode_requests, table_width]
  int64_t size_bytes = 0;

  friend bool operator==(const StepLayout&, const StepLayout&) = default;
};

StepLayout LayoutFor(const StepShape& shape);

// What PackStep packed. The packed bytes are the device buffer's image up to
// layout.decode_block_tables, then the decode table's first `decode_table_rows` rows with
// `decode_table_width` entries each, dense. Without padding that is the whole table (width
// shape.table_width), so the packed bytes are the device image. A graph step packs only its real
// requests' rows at the batch's own width, and the runner copies them into the graph's wider
// rows (kernels::cuda::CopyRowsAsync): a graph sized for max_model_len would otherwise move
// max_model_len / block_size entries per row every step. The rest of the device table may hold
// anything, since a kernel reads only the first ceil(context / block_size) entries of a row and
// padding rows have context 0.
struct PackedStep {
  StepShape shape;
  StepLayout layout;
  int32_t max_decode_context_len = 0;  // over the decode requests (0 without any)
  int32_t num_prefill_tokens = 0;      // query tokens of the prefill range
  int32_t decode_table_rows = 0;
  int32_t decode_table_width = 0;
};

// Padding a packed step up to a CUDA graph's sizes.
struct StepPadding {
  int32_t num_tokens = 0;  // >= the batch's tokens; also the decode requests and logits rows
  int32_t table_width = 0;
};

// Packs `batch` (validated: see model::ValidateForwardBatch) into `out`, resized to what is
// packed (above). Without `padding`, the shape is the batch's own (table_width =
// batch.max_blocks_per_request). With it the batch must be decode-only with at most
// padding->num_tokens tokens and a table no wider than padding->table_width; it is packed with
// num_tokens = num_decode_requests = num_logits = padding->num_tokens (logits_indices = every
// row, in order) so that the layout is the graph's.
PackedStep PackStep(const model::ForwardBatch& batch, const AttentionSplit& split,
                    const StepPadding* padding, std::vector<std::byte>* out);

}  // namespace pagoda::runner::cuda
