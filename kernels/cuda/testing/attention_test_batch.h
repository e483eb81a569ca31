#pragma once

// Host side of the paged-attention tests (GPU and CPU emulation; tests only): a batch of
// requests with a random paged cache and queries, and the CPU reference's output for it.
//
// K/V and queries are N(0, 1) values (queries times query_scale) rounded to T, so the reference
// (an f32 cache holding the same values) sees exactly what the kernels see. Cache slots that no
// request owns, whole unused blocks and the block that unused table entries point at hold NaN,
// so a kernel that reads past a context, or a table entry it should not, poisons its output.
//
// The kernels see the queries and write the outputs in a strided layout [num_tokens,
// token_stride] with padding after each token's heads (as in a fused QKV activation); query
// padding is NaN and output padding must keep its sentinel bits, as must the rows of tokens a
// call does not own.
//
// Tolerance: |kernel - cpu| <= atol + rtol * |cpu| per element with (atol, rtol) = (1e-2, 1e-2)
// for bf16 and (2e-3, 2e-3) for fp16. Outputs are convex combinations of N(0, 1) values, so
// these bound the kernels' two roundings (P to T for the P V product, output to T) with margin.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/cuda/half_types.h"
#include "kernels/cuda/paged_attention_decode.h"
#include "kernels/paged_kv_cache.h"

namespace pagoda::kernels::cuda::testing {

inline constexpr uint16_t kSentinelBits = 0x7fff;  // a NaN in both bf16 and fp16

struct TestRequest {
  int context_len;
  int num_queries;
};

struct AttentionCase {
  int head_dim = 128;
  int num_kv_heads = 2;
  int group = 4;  // query heads per KV head
  int block_size = 16;
  std::vector<TestRequest> requests;
  bool share_first_block = false;  // request 1 reuses request 0's first block (a prefix hit)
  float query_scale = 1.0f;        // > 1 sharpens the softmax towards one key
  int token_stride_padding = 8;    // elements after each token's heads in q and out
  // A sliding window: blocks no query of a request attends get a null (-1) table entry and
  // stay NaN, as the block manager frees them.
  common::AttentionWindow window;

  std::string Describe() const {
    std::vector<std::string> reqs;
    for (const TestRequest& r : requests)
      reqs.push_back(absl::StrCat(r.context_len, ":", r.num_queries));
    return absl::StrCat("d=", head_dim, " kv_heads=", num_kv_heads, " group=", group,
                        " bs=", block_size, " q_scale=", query_scale, " window=", window.sliding_window,
                        " requests(ctx:n)=[",
                        absl::StrJoin(reqs, ","), "]");
  }
};

inline std::vector<TestRequest> Decodes(const std::vector<int>& context_lens) {
  std::vector<TestRequest> requests;
  for (const int c : context_lens) requests.push_back({c, 1});
  return requests;
}

template <typename T>
struct Tolerance;
template <>
struct Tolerance<__nv_bfloat16> {
  static constexpr float kAbs = 1e-2f;
  static constexpr float kRel = 1e-2f;
  static constexpr const char* kName = "bf16";
};
template <>
struct Tolerance<__half> {
  static constexpr float kAbs = 2e-3f;
  static constexpr float kRel = 2e-3f;
  static constexpr const char* kName = "fp16";
};

inline cpu::ThreadPool& ReferencePool() {
  static cpu::ThreadPool* pool =
      new cpu::ThreadPool(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  return *pool;
}

// A case's batch on the host: the cache in f32 (values already rounded to T), its tables, and
// the queries, dense [num_tokens, num_heads, head_dim].
struct HostBatch {
  int num_heads = 0;
  int num_blocks = 0;
  int max_blocks = 0;
  int num_tokens = 0;
  std::vector<float> key_cache, value_cache;  // [num_blocks, num_kv_heads, block_size, head_dim]
  std::vector<int32_t> tables, query_start, context_lens;
  std::vector<float> query;
};

template <typename T>
HostBatch BuildBatch(const AttentionCase& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  HostBatch b;
  b.num_heads = c.num_kv_heads * c.group;
  const int d = c.head_dim;
  const int bs = c.block_size;
  const int num_requests = static_cast<int>(c.requests.size());
  int total_blocks = 0;
  b.max_blocks = 1;
  for (const TestRequest& r : c.requests) {
    const int nb = (r.context_len + bs - 1) / bs;
    b.max_blocks = std::max(b.max_blocks, nb);
    total_blocks += nb;
  }
  // Two spare blocks nobody owns; unused table entries point at one of them.
  b.num_blocks = total_blocks + 2;
  std::vector<int32_t> physical(b.num_blocks);
  std::iota(physical.begin(), physical.end(), 0);
  std::shuffle(physical.begin(), physical.end(), rng);
  const int32_t poison_block = physical[total_blocks];
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const size_t elements = static_cast<size_t>(b.num_blocks) * c.num_kv_heads * bs * d;
  b.key_cache.assign(elements, nan);
  b.value_cache.assign(elements, nan);
  b.tables.assign(static_cast<size_t>(num_requests) * b.max_blocks, poison_block);
  std::vector<bool> written(static_cast<size_t>(b.num_blocks) * bs, false);
  b.query_start = {0};
  int next_physical = 0;
  for (int r = 0; r < num_requests; ++r) {
    const TestRequest& req = c.requests[r];
    int32_t* table = b.tables.data() + static_cast<size_t>(r) * b.max_blocks;
    const int nb = (req.context_len + bs - 1) / bs;
    for (int i = 0; i < nb; ++i) {
      // Dead: every position before the first query's window.
      const bool dead =
          c.window.IsDead(std::min(req.context_len, (i + 1) * bs) - 1,
                          req.context_len - req.num_queries) &&
          c.window.IsDead(i * bs, req.context_len - req.num_queries);
      table[i] = dead ? -1 : physical[next_physical++];
    }
    if (c.share_first_block && r == 1 && nb > 0 && c.requests[0].context_len > 0) {
      table[0] = b.tables[0];
    }
    for (int pos = 0; pos < req.context_len; ++pos) {
      const int64_t block = table[pos / bs];
      if (block < 0) continue;
      const int64_t slot = block * bs + pos % bs;
      if (written[slot]) continue;  // a shared block keeps its first owner's values
      written[slot] = true;
      for (int h = 0; h < c.num_kv_heads; ++h) {
        const size_t base = static_cast<size_t>(((block * c.num_kv_heads + h) * bs + pos % bs) * d);
        for (int i = 0; i < d; ++i) {
          b.key_cache[base + i] = RoundToHost<T>(normal(rng));
          b.value_cache[base + i] = RoundToHost<T>(normal(rng));
        }
      }
    }
    b.query_start.push_back(b.query_start.back() + req.num_queries);
    b.context_lens.push_back(req.context_len);
  }
  b.num_tokens = b.query_start.back();
  b.query.resize(static_cast<size_t>(b.num_tokens) * b.num_heads * d);
  for (float& x : b.query) x = RoundToHost<T>(normal(rng) * c.query_scale);
  return b;
}

// cpu::PagedAttention on the same cache: [num_tokens, num_heads, head_dim].
inline std::vector<float> Reference(const AttentionCase& c, HostBatch& b) {
  std::vector<float> out(b.query.size(), std::numeric_limits<float>::quiet_NaN());
  const PagedKvCacheView<float> view{b.key_cache.data(), b.value_cache.data(), b.num_blocks,
                                     c.num_kv_heads,     c.block_size,         c.head_dim};
  cpu::PagedAttention(
      cpu::PagedAttentionArgs<float>{.query = b.query.data(),
                                     .output = out.data(),
                                     .num_heads = b.num_heads,
                                     .cache = view,
                                     .query_start = b.query_start,
                                     .context_lens = b.context_lens,
                                     .block_tables = b.tables,
                                     .max_blocks_per_request = b.max_blocks,
                                     .scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim)),
                                     .window = c.window},
      ReferencePool());
  return out;
}

inline int64_t TokenStride(const AttentionCase& c, const HostBatch& b) {
  return static_cast<int64_t>(b.num_heads) * c.head_dim + c.token_stride_padding;
}

// The queries as the kernels read them: [num_tokens, TokenStride] with NaN padding.
template <typename T>
std::vector<T> StridedQuery(const AttentionCase& c, const HostBatch& b) {
  const int64_t stride = TokenStride(c, b);
  const int64_t row = static_cast<int64_t>(b.num_heads) * c.head_dim;
  std::vector<T> query(static_cast<size_t>(b.num_tokens * stride),
                       FromFloatHost<T>(std::numeric_limits<float>::quiet_NaN()));
  for (int64_t t = 0; t < b.num_tokens; ++t) {
    for (int64_t i = 0; i < row; ++i)
      query[t * stride + i] = FromFloatHost<T>(b.query[t * row + i]);
  }
  return query;
}

// An output array [num_tokens, TokenStride] holding the sentinel everywhere.
template <typename T>
std::vector<T> SentinelOutput(const AttentionCase& c, const HostBatch& b) {
  return std::vector<T>(static_cast<size_t>(b.num_tokens * TokenStride(c, b)),
                        FromBits<T>(kSentinelBits));
}

// Compares the rows of `checked_tokens` in `got` ([num_tokens, TokenStride]) with the reference;
// every other element, padding included, must still hold the sentinel.
template <typename T>
void ExpectMatches(const AttentionCase& c, const HostBatch& b, const std::vector<T>& got,
                   const std::vector<float>& want, const std::vector<bool>& checked_tokens,
                   const std::string& what) {
  const int64_t stride = TokenStride(c, b);
  const int64_t row = static_cast<int64_t>(b.num_heads) * c.head_dim;
  ASSERT_EQ(static_cast<int64_t>(got.size()), b.num_tokens * stride);
  int64_t bad = 0;
  int64_t clobbered = 0;
  float max_error = 0.0f;
  for (int64_t t = 0; t < b.num_tokens; ++t) {
    for (int64_t i = 0; i < stride; ++i) {
      const T g = got[t * stride + i];
      if (i >= row || !checked_tokens[t]) {
        clobbered += BitsOf(g) != kSentinelBits;
        continue;
      }
      const float w = want[t * row + i];
      const float value = ToFloatHost(g);
      const float error = std::fabs(value - w);
      max_error = std::max(max_error, std::isnan(error) ? INFINITY : error);
      if (!(error <= Tolerance<T>::kAbs + Tolerance<T>::kRel * std::fabs(w))) {
        if (++bad <= 5) {
          ADD_FAILURE() << what << " " << Tolerance<T>::kName << ": token " << t << " head "
                        << i / c.head_dim << " dim " << i % c.head_dim << ": got " << value
                        << ", want " << w << "\n  " << c.Describe();
        }
      }
    }
  }
  EXPECT_EQ(bad, 0) << what << " " << Tolerance<T>::kName << " " << c.Describe() << " max error "
                    << max_error;
  EXPECT_EQ(clobbered, 0) << what << ": elements outside the output rows were written";
}

inline int MaxContext(const AttentionCase& c) {
  int max_context = 1;
  for (const TestRequest& r : c.requests) max_context = std::max(max_context, r.context_len);
  return max_context;
}

// A decode plan that cuts contexts into `partition_size` tokens, with room for the longest.
inline PagedDecodePlan SplitPlan(const AttentionCase& c, int partition_size) {
  return {.partition_size = partition_size,
          .max_num_partitions = (MaxContext(c) + partition_size - 1) / partition_size};
}

}  // namespace pagoda::kernels::cuda::testing
