#include "runner/cuda/step_layout.h"

#include <algorithm>
#include <cstring>

#include "common/check.h"

namespace pagoda::runner::cuda {
namespace {

constexpr int64_t kAlignment = 16;

int64_t AlignUp(int64_t n) { return (n + kAlignment - 1) / kAlignment * kAlignment; }

template <typename T>
T* At(std::vector<std::byte>& out, int64_t offset) {
  return reinterpret_cast<T*>(out.data() + offset);
}

}  // namespace

AttentionSplit SplitAttention(absl::Span<const int32_t> query_start) {
  AttentionSplit split;
  const int32_t num_requests = static_cast<int32_t>(query_start.size()) - 1;
  int32_t first_multi = num_requests;
  int32_t last_multi = -1;
  for (int32_t r = 0; r < num_requests; ++r) {
    if (query_start[r + 1] - query_start[r] > 1) {
      first_multi = std::min(first_multi, r);
      last_multi = r;
    }
  }
  if (last_multi >= 0) {
    split.prefill_begin = first_multi;
    split.prefill_end = last_multi + 1;
  }
  for (int32_t r = 0; r < num_requests; ++r) {
    const bool in_prefill = r >= split.prefill_begin && r < split.prefill_end;
    if (!in_prefill && query_start[r + 1] - query_start[r] == 1) {
      split.decode_requests.push_back(r);
    }
  }
  return split;
}

StepLayout LayoutFor(const StepShape& s) {
  StepLayout l;
  int64_t at = 0;
  const auto take = [&](int64_t bytes) {
    const int64_t offset = at;
    at = AlignUp(at + bytes);
    return offset;
  };
  const int64_t i32 = sizeof(int32_t);
  l.token_ids = take(s.num_tokens * i32);
  l.positions = take(s.num_tokens * i32);
  l.slot_mapping = take(s.num_tokens * int64_t{sizeof(int64_t)});
  l.logits_indices = take(s.num_logits * i32);
  l.decode_rows = take(s.num_decode_requests * i32);
  l.decode_context_lens = take(s.num_decode_requests * i32);
  l.prefill_query_start = take((s.num_prefill_requests + 1) * i32);
  l.prefill_context_lens = take(s.num_prefill_requests * i32);
  l.prefill_block_tables = take(int64_t{s.num_prefill_requests} * s.table_width * i32);
  l.decode_block_tables = take(int64_t{s.num_decode_requests} * s.table_width * i32);
  l.size_bytes = at;
  return l;
}

PackedStep PackStep(const model::ForwardBatch& batch, const AttentionSplit& split,
                    const StepPadding* padding, std::vector<std::byte>* out) {
  const int32_t num_tokens = static_cast<int32_t>(batch.token_ids.size());
  const int32_t num_decode = static_cast<int32_t>(split.decode_requests.size());
  PackedStep packed;
  StepShape& shape = packed.shape;
  if (padding != nullptr) {
    PAGODA_CHECK(split.decode_only() && num_tokens <= padding->num_tokens &&
                 batch.max_blocks_per_request <= padding->table_width);
    shape = {.num_tokens = padding->num_tokens,
             .num_decode_requests = padding->num_tokens,
             .num_prefill_requests = 0,
             .num_logits = padding->num_tokens,
             .table_width = padding->table_width};
  } else {
    shape = {.num_tokens = num_tokens,
             .num_decode_requests = num_decode,
             .num_prefill_requests = split.prefill_end - split.prefill_begin,
             .num_logits = static_cast<int32_t>(batch.logits_indices.size()),
             .table_width = batch.max_blocks_per_request};
  }
  packed.layout = LayoutFor(shape);
  const StepLayout& l = packed.layout;
  packed.decode_table_rows = padding != nullptr ? num_decode : shape.num_decode_requests;
  packed.decode_table_width = padding != nullptr ? batch.max_blocks_per_request : shape.table_width;
  // Zero-filled: padding tokens get id 0 and position 0, padding requests context 0, and unused
  // table entries block 0 (never read: only a row's first ceil(context / block_size) are).
  const int64_t table_bytes =
      int64_t{packed.decode_table_rows} * packed.decode_table_width * int64_t{sizeof(int32_t)};
  out->assign(static_cast<size_t>(l.decode_block_tables + table_bytes), std::byte{0});

  std::copy(batch.token_ids.begin(), batch.token_ids.end(), At<int32_t>(*out, l.token_ids));
  std::copy(batch.positions.begin(), batch.positions.end(), At<int32_t>(*out, l.positions));
  int64_t* slots = At<int64_t>(*out, l.slot_mapping);
  std::copy(batch.slot_mapping.begin(), batch.slot_mapping.end(), slots);
  std::fill(slots + num_tokens, slots + shape.num_tokens, int64_t{-1});

  int32_t* logits = At<int32_t>(*out, l.logits_indices);
  if (padding != nullptr) {
    for (int32_t i = 0; i < shape.num_logits; ++i) logits[i] = i;
  } else {
    std::copy(batch.logits_indices.begin(), batch.logits_indices.end(), logits);
  }

  const int32_t width = batch.max_blocks_per_request;
  const auto copy_row = [&](int32_t request, int32_t* dst_row) {
    std::copy_n(batch.block_tables.begin() + static_cast<int64_t>(request) * width, width, dst_row);
  };
  int32_t* decode_rows = At<int32_t>(*out, l.decode_rows);
  int32_t* decode_lens = At<int32_t>(*out, l.decode_context_lens);
  int32_t* decode_tables = At<int32_t>(*out, l.decode_block_tables);
  for (int32_t i = 0; i < num_decode; ++i) {
    const int32_t r = split.decode_requests[i];
    decode_rows[i] = batch.query_start[r];
    decode_lens[i] = batch.context_lens[r];
    packed.max_decode_context_len = std::max(packed.max_decode_context_len, decode_lens[i]);
    copy_row(r, decode_tables + static_cast<int64_t>(i) * packed.decode_table_width);
  }
  // Padding request i owns token row i: in a decode-only batch the real requests own rows
  // [0, num_decode), so i is a padding token's row, where context 0 makes the kernel write zeros.
  for (int32_t i = num_decode; i < shape.num_decode_requests; ++i) decode_rows[i] = i;

  int32_t* prefill_starts = At<int32_t>(*out, l.prefill_query_start);
  int32_t* prefill_lens = At<int32_t>(*out, l.prefill_context_lens);
  int32_t* prefill_tables = At<int32_t>(*out, l.prefill_block_tables);
  for (int32_t r = split.prefill_begin; r < split.prefill_end; ++r) {
    const int32_t i = r - split.prefill_begin;
    prefill_starts[i] = batch.query_start[r];
    prefill_lens[i] = batch.context_lens[r];
    copy_row(r, prefill_tables + static_cast<int64_t>(i) * shape.table_width);
  }
  if (!split.decode_only()) {
    prefill_starts[shape.num_prefill_requests] = batch.query_start[split.prefill_end];
    packed.num_prefill_tokens =
        batch.query_start[split.prefill_end] - batch.query_start[split.prefill_begin];
  }
  return packed;
}

}  // namespace pagoda::runner::cuda
