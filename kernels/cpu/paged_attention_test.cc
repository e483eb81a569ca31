#include "kernels/cpu/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <limits>
#include <numeric>
#include <random>
#include <type_traits>
#include <typeinfo>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/attention_blocks.h"
#include "kernels/cpu/avx2_math.h"
#include "kernels/cpu/avx512_math.h"
#include "kernels/cpu/matmul_amx.h"

namespace pagoda::kernels::cpu {
namespace {

// A request of the test batch: its whole sequence's K/V (dense, the reference's input) and how
// many of its last tokens are queries this step.
struct TestRequest {
  int context_len;
  int num_queries;
};

struct Case {
  int head_dim;
  int num_kv_heads;
  int group;  // query heads per KV head
  int block_size;
  std::vector<TestRequest> requests;
  bool share_first_block = false;  // two requests point at one physical block
  common::AttentionWindow window;  // blocks no query attends get a null (-1) table entry
  bool sink_query = false;         // separate random queries for the sink keys
  // Queries N(0, gain^2): above 1, peaked softmax weights (the loose check against the
  // unquantized K/V, whose bounds are stated for N(0, 1) queries, is then left out).
  float query_gain = 1.0f;
};

// How far quantization may move x (its head's scale `scale`): half a step of the type's grid,
// which for FP8 is relative to |x| (mantissa bits) down to the subnormal step.
template <typename T>
float QuantizationBound(float x, float scale) {
  if constexpr (std::is_same_v<T, int8_t>) {
    return 0.5f * scale;
  } else if constexpr (std::is_same_v<T, Fp8E4M3>) {
    return std::max(std::fabs(x) * 0.0625f, 0.5f * std::ldexp(scale, -9));
  } else {
    return std::max(std::fabs(x) * 0.125f, 0.5f * std::ldexp(scale, -16));
  }
}

template <typename T>
float RoundTo(float x) {
  if constexpr (kScaled<T>) {
    return x;  // quantized by ReshapeAndCache itself, with the token's scale
  } else {
    T stored;
    FromFloat(x, &stored);
    return ToFloat(stored);
  }
}

// Replaces a request's K/V ([context_len, kv_heads, head_dim]) with what the 8-bit cache holds
// for them, dequantized, so the tight reference sees exactly the cache; checks on the way that
// quantization moved each value by at most half a step of its grid, plus rounding.
template <typename T>
void ReadBackDequantized(const PagedKvCacheView<T>& c, const int32_t* table, int context_len,
                         std::vector<float>& k, std::vector<float>& v) {
  for (int p = 0; p < context_len; ++p) {
    const int64_t block = table[p / c.block_size];
    if (block < 0) continue;  // a dead block: never written, never read
    for (int h = 0; h < c.num_kv_heads; ++h) {
      const int64_t at_scale = c.ScaleIndex(block, h, p % c.block_size);
      const bool per_token = c.key_scale != nullptr;  // else FP8's static per-head scales
      const float k_scale = per_token ? Bf16ToFloat(c.key_scale[at_scale]) : c.head_key_scale[h];
      const float v_scale =
          per_token ? Bf16ToFloat(c.value_scale[at_scale]) : c.head_value_scale[h];
      const int64_t at_cache = c.Offset(block, h, p % c.block_size);
      for (int i = 0; i < c.head_dim; ++i) {
        const size_t at = (static_cast<size_t>(p) * c.num_kv_heads + h) * c.head_dim + i;
        const float dk = ToFloat(c.key[at_cache + i]) * k_scale;
        ASSERT_LE(std::fabs(dk - k[at]), QuantizationBound<T>(k[at], k_scale) * 1.01f + 1e-6f);
        k[at] = dk;
        v[at] = ToFloat(c.value[at_cache + i]) * v_scale;
      }
    }
  }
}

// An 8-bit cache against attention over the unquantized K/V: a looser, stated tolerance per
// type, on N(0,1) values (|v| up to about 4 here). An output is a convex combination of V rows,
// so its error is about the grid's half step on the largest |v|, plus what the K errors do to
// the weights. int8 (a head's step about 3 / 127): each element within 0.05, the mean within
// 0.01. E4M3 (3 mantissa bits, half step 1/16 of |v|): 0.25 and 0.03. E5M2 (2 bits, 1/8):
// 0.5 and 0.06.
template <typename T>
void ExpectNearUnquantized(absl::Span<const float> got, const std::vector<float>& expected,
                           int request) {
  const float max_error = std::is_same_v<T, int8_t>    ? 0.05f
                          : std::is_same_v<T, Fp8E4M3> ? 0.25f
                                                       : 0.5f;
  const double max_mean = std::is_same_v<T, int8_t>    ? 0.01
                          : std::is_same_v<T, Fp8E4M3> ? 0.03
                                                       : 0.06;
  double total_error = 0;
  float worst = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    total_error += std::fabs(got[i] - expected[i]);
    worst = std::max(worst, std::fabs(got[i] - expected[i]));
  }
  const double mean = total_error / static_cast<double>(expected.size());
  EXPECT_LE(worst, max_error) << "request " << request;
  EXPECT_LT(mean, max_mean) << "request " << request;
  if (std::getenv("PAGODA_PRINT_QUANT_ERROR") != nullptr) {
    std::printf("%s worst %.4f mean %.5f\n", typeid(T).name(), worst, mean);
  }
}

// Dense causal attention: the reference. With a window, the query at `last` sees positions p
// with p <= last and (p > last - W or p < S), written out directly rather than through
// common::AttentionWindow; sink positions (p < S, outside the window) use `sink_q` when given.
void DenseAttention(const std::vector<float>& q, const std::vector<float>& k,
                    const std::vector<float>& v, int num_q, int ctx, int heads, int kv_heads, int d,
                    float scale, float* out, common::AttentionWindow window = {},
                    const std::vector<float>* sink_q = nullptr) {
  const int group = heads / kv_heads;
  const int w = window.sliding_window;
  for (int i = 0; i < num_q; ++i) {
    const int last = ctx - num_q + i;
    for (int h = 0; h < heads; ++h) {
      const int kh = h / group;
      std::vector<double> s(last + 1, -std::numeric_limits<double>::infinity());
      double mx = -std::numeric_limits<double>::infinity();
      for (int p = 0; p <= last; ++p) {
        const bool in_window = w == 0 || p > last - w;
        const bool is_sink = !in_window && p < window.sink_tokens;
        if (!in_window && !is_sink) continue;
        const std::vector<float>& query = is_sink && sink_q != nullptr ? *sink_q : q;
        double dot = 0;
        for (int x = 0; x < d; ++x)
          dot += query[(i * heads + h) * d + x] * k[(p * kv_heads + kh) * d + x];
        s[p] = dot * scale;
        mx = std::max(mx, s[p]);
      }
      double sum = 0;
      for (double& e : s) sum += (e = std::exp(e - mx));
      for (int x = 0; x < d; ++x) {
        double acc = 0;
        for (int p = 0; p <= last; ++p) {
          if (s[p] != 0) acc += s[p] / sum * v[(p * kv_heads + kh) * d + x];
        }
        out[(i * heads + h) * d + x] = static_cast<float>(acc);
      }
    }
  }
}

// True when no query of a request (the last `num_queries` of `context_len` positions) attends
// any position of block `b`: its table entry may be null and its slots unwritten.
bool BlockIsDead(const common::AttentionWindow& w, int b, int block_size, int context_len,
                 int num_queries) {
  const int first_query = context_len - num_queries;
  for (int p = b * block_size; p < std::min(context_len, (b + 1) * block_size); ++p) {
    if (!w.IsDead(p, first_query)) return false;
  }
  return true;
}

// Which path prefill chunks take: the default (query blocks, on AMX where the CPU has it), the
// query blocks on AVX-512, or the per-query path; kAvx2: the AVX2 kernels, query blocks included
// (what a CPU without AVX-512 runs), on a CPU that has AVX-512; kAvx2PerQuery: there, every
// query on the AVX2 per-query kernel; kPerHead: decodes a task per (token, KV head) where a
// balanced batch would take whole blocks.
enum class Path { kDefault, kNoAmx, kPerQuery, kAvx2, kAvx2PerQuery, kPerHead };

// A test batch: the paged cache (every slot not written NaN), its block tables, and each
// request's K/V (as the cache holds them, dequantized) and queries for the dense reference.
template <typename T>
struct TestBatch {
  std::vector<T> key_cache, value_cache;
  std::vector<uint16_t> key_scales, value_scales;
  std::vector<float> head_key_scales, head_value_scales;
  PagedKvCacheView<T> cache;
  int max_blocks = 1;
  std::vector<int32_t> physical;  // the blocks requests take, in a random order
  int next_physical = 0;
  std::vector<int32_t> tables, query_start = {0}, context_lens;
  std::vector<std::vector<float>> ks, vs, qs, sqs;
  std::vector<std::vector<float>> original_ks, original_vs;  // 8-bit: before quantization
};

// The cache and tables of case c, all NaN, with per-token scales or (FP8, `static_scales`)
// static per-head ones.
template <typename T>
void AllocateCache(const Case& c, bool static_scales, std::mt19937& rng, TestBatch<T>& b) {
  int total_blocks = 0;
  for (const TestRequest& r : c.requests) {
    const int n = (r.context_len + c.block_size - 1) / c.block_size;
    b.max_blocks = std::max(b.max_blocks, n);
    total_blocks += n;
  }
  // Physical blocks: a random permutation, plus spare blocks that nobody uses.
  const int num_blocks = total_blocks + 3;
  b.physical.resize(num_blocks);
  std::iota(b.physical.begin(), b.physical.end(), 0);
  std::shuffle(b.physical.begin(), b.physical.end(), rng);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // Everything not written stays NaN: reading an unused block or slot poisons the output.
  // (int8: the scales are NaN, which poisons the dequantized value the same way.)
  T nan_element{};
  if constexpr (!std::is_same_v<T, int8_t>) FromFloat(nan, &nan_element);  // FP8: its NaN code
  const size_t slots = static_cast<size_t>(num_blocks) * c.num_kv_heads * c.block_size;
  b.key_cache.assign(slots * c.head_dim, nan_element);
  b.value_cache.assign(b.key_cache.size(), nan_element);
  b.key_scales.assign(slots, FloatToBf16(nan));
  b.value_scales.assign(slots, FloatToBf16(nan));
  b.cache = {b.key_cache.data(), b.value_cache.data(), num_blocks,
             c.num_kv_heads,     c.block_size,         c.head_dim};
  b.head_key_scales.resize(c.num_kv_heads);
  b.head_value_scales.resize(c.num_kv_heads);
  if constexpr (kScaled<T>) {
    for (int h = 0; h < c.num_kv_heads; ++h) {
      b.head_key_scales[h] = (6.0f + h) / ScaledMax<T>();
      b.head_value_scales[h] = (7.0f + h) / ScaledMax<T>();
    }
    if (static_scales) {
      b.cache.head_key_scale = b.head_key_scales.data();
      b.cache.head_value_scale = b.head_value_scales.data();
    } else {
      b.cache.key_scale = b.key_scales.data();
      b.cache.value_scale = b.value_scales.data();
    }
  }
  // Unused table entries point at a block index that does not exist.
  b.tables.assign(c.requests.size() * b.max_blocks, 1 << 20);
}

// Request r of case c: its blocks, random K/V written through ReshapeAndCache (dead blocks'
// positions skipped), and its queries.
template <typename T>
void AddRequest(const Case& c, int r, std::mt19937& rng, std::normal_distribution<float>& dist,
                TestBatch<T>& b) {
  const TestRequest& req = c.requests[r];
  const int d = c.head_dim;
  int32_t* table = &b.tables[r * b.max_blocks];
  const int nb = (req.context_len + c.block_size - 1) / c.block_size;
  for (int i = 0; i < nb; ++i) {
    table[i] = BlockIsDead(c.window, i, c.block_size, req.context_len, req.num_queries)
                   ? -1
                   : b.physical[b.next_physical++];
  }
  std::vector<float> k(static_cast<size_t>(req.context_len) * c.num_kv_heads * d);
  std::vector<float> v(k.size());
  std::vector<float> q(static_cast<size_t>(req.num_queries) * c.num_kv_heads * c.group * d);
  std::vector<float> sq(c.sink_query ? q.size() : 0);
  for (float& x : k) x = RoundTo<T>(dist(rng));
  for (float& x : v) x = RoundTo<T>(dist(rng));
  for (float& x : q) x = c.query_gain * dist(rng);
  for (float& x : sq) x = dist(rng);
  if (c.share_first_block && r == 1 && req.context_len >= c.block_size &&
      c.requests[0].context_len >= c.block_size) {
    // Request 1 reuses request 0's first block (a prefix-cache hit): same K/V there.
    table[0] = b.tables[0];
    std::copy(b.ks[0].begin(), b.ks[0].begin() + c.block_size * c.num_kv_heads * d, k.begin());
    std::copy(b.vs[0].begin(), b.vs[0].begin() + c.block_size * c.num_kv_heads * d, v.begin());
  }
  // Only the positions of live blocks are written: dead ones stay NaN.
  std::vector<int64_t> slots;
  std::vector<float> live_k, live_v;
  const size_t row = static_cast<size_t>(c.num_kv_heads) * d;
  for (int p = 0; p < req.context_len; ++p) {
    const int32_t block = table[p / c.block_size];
    if (block < 0) continue;
    slots.push_back(static_cast<int64_t>(block) * c.block_size + p % c.block_size);
    live_k.insert(live_k.end(), k.begin() + p * row, k.begin() + (p + 1) * row);
    live_v.insert(live_v.end(), v.begin() + p * row, v.begin() + (p + 1) * row);
  }
  ReshapeAndCache(live_k.data(), live_v.data(), slots, b.cache);
  if constexpr (kScaled<T>) {
    b.original_ks.push_back(k);
    b.original_vs.push_back(v);
    ReadBackDequantized(b.cache, table, req.context_len, k, v);
  }
  b.ks.push_back(std::move(k));
  b.vs.push_back(std::move(v));
  b.qs.push_back(std::move(q));
  b.sqs.push_back(std::move(sq));
  b.query_start.push_back(b.query_start.back() + req.num_queries);
  b.context_lens.push_back(req.context_len);
}

// The kernel's output against dense attention over what the cache holds (tightly) and, for an
// 8-bit cache with N(0, 1) queries, over the unquantized K/V (ExpectNearUnquantized).
template <typename T>
void ExpectMatchesDense(const Case& c, const TestBatch<T>& b, const std::vector<float>& output,
                        float scale) {
  const int heads = c.num_kv_heads * c.group;
  const int d = c.head_dim;
  // Tolerance: f32 accumulation against a double reference; outputs are convex combinations
  // of N(0,1) values, so an absolute bound is meaningful.
  constexpr float kTolerance = 2e-5f * 64;
  for (size_t r = 0; r < c.requests.size(); ++r) {
    const TestRequest& req = c.requests[r];
    std::vector<float> expected(b.qs[r].size());
    const std::vector<float>* sq = c.sink_query ? &b.sqs[r] : nullptr;
    const size_t at = static_cast<size_t>(b.query_start[r]) * heads * d;
    DenseAttention(b.qs[r], b.ks[r], b.vs[r], req.num_queries, req.context_len, heads,
                   c.num_kv_heads, d, scale, expected.data(), c.window, sq);
    for (size_t i = 0; i < expected.size(); ++i) {
      ASSERT_NEAR(output[at + i], expected[i], kTolerance)
          << "request " << r << " element " << i << " d=" << d << " group=" << c.group
          << " bs=" << c.block_size;
    }
    if (kScaled<T> && c.query_gain == 1.0f) {
      DenseAttention(b.qs[r], b.original_ks[r], b.original_vs[r], req.num_queries, req.context_len,
                     heads, c.num_kv_heads, d, scale, expected.data(), c.window, sq);
      ExpectNearUnquantized<T>(absl::MakeConstSpan(output).subspan(at, expected.size()), expected,
                               static_cast<int>(r));
    }
  }
}

// Runs one case with a cache of element type T (float, Bf16 or an 8-bit type). For Bf16 the random
// K/V are rounded to bf16 first, so the dense reference sees exactly what the cache holds.
// `static_scales` (FP8 only): one scale per KV head for the whole cache, as a checkpoint's
// k_scale/v_scale give, wide enough that N(0,1) values do not saturate.
template <typename T>
void RunCase(const Case& c, uint32_t seed, bool static_scales = false, Path path = Path::kDefault) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  TestBatch<T> b;
  AllocateCache(c, static_scales, rng, b);
  for (int r = 0; r < static_cast<int>(c.requests.size()); ++r) AddRequest(c, r, rng, dist, b);
  const int heads = c.num_kv_heads * c.group;
  std::vector<float> query, sink_query;
  for (const auto& q : b.qs) query.insert(query.end(), q.begin(), q.end());
  for (const auto& q : b.sqs) sink_query.insert(sink_query.end(), q.begin(), q.end());
  std::vector<float> output(static_cast<size_t>(b.query_start.back()) * heads * c.head_dim,
                            std::numeric_limits<float>::quiet_NaN());
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  ThreadPool pool(2);
  const bool per_query = path == Path::kPerQuery || path == Path::kAvx2PerQuery;
  const bool avx2 = path == Path::kAvx2 || path == Path::kAvx2PerQuery;
  PagedAttention(PagedAttentionArgs<T>{.query = query.data(),
                                       .output = output.data(),
                                       .num_heads = heads,
                                       .cache = b.cache,
                                       .query_start = b.query_start,
                                       .context_lens = b.context_lens,
                                       .block_tables = b.tables,
                                       .max_blocks_per_request = b.max_blocks,
                                       .scale = scale,
                                       .window = c.window,
                                       .sink_query = c.sink_query ? sink_query.data() : nullptr,
                                       .allow_amx = path == Path::kDefault,
                                       .allow_query_blocks = !per_query,
                                       .allow_avx512 = !avx2,
                                       .allow_whole_blocks = path != Path::kPerHead},
                 pool);
  ExpectMatchesDense(c, b, output, scale);
}

// Every cache element type runs every case: f32, bf16 (on bf16-rounded K/V), and the 8-bit ones,
// int8, E4M3, E5M2 (against their dequantized K/V tightly, and the unquantized ones loosely).
// bf16 also runs its prefill chunks on the per-query path, and where the CPU has AMX on the
// AVX-512 query blocks as well as on the tiles.
void RunBothTypes(const Case& c, uint32_t seed) {
  RunCase<float>(c, seed);
  RunCase<Bf16>(c, seed);
  RunCase<Bf16>(c, seed, /*static_scales=*/false, Path::kPerQuery);
  if (amx::Available()) RunCase<Bf16>(c, seed, /*static_scales=*/false, Path::kNoAmx);
  RunCase<int8_t>(c, seed);
  // The per-(token, KV head) decode, where the default takes whole blocks (AVX2, a batch).
  RunCase<Bf16>(c, seed, /*static_scales=*/false, Path::kPerHead);
  RunCase<Fp8E4M3>(c, seed, /*static_scales=*/true, Path::kPerHead);
  RunCase<Fp8E4M3>(c, seed);
  RunCase<Fp8E5M2>(c, seed);
  RunCase<Fp8E4M3>(c, seed, /*static_scales=*/true);
  RunCase<Fp8E5M2>(c, seed, /*static_scales=*/true);
  if (avx512::Supported() && avx2::Supported()) {  // the AVX2 kernels, taken elsewhere by default
    RunCase<float>(c, seed, /*static_scales=*/false, Path::kAvx2);
    RunCase<Bf16>(c, seed, /*static_scales=*/false, Path::kAvx2);
    RunCase<Bf16>(c, seed, /*static_scales=*/false, Path::kAvx2PerQuery);
    RunCase<int8_t>(c, seed, /*static_scales=*/false, Path::kAvx2);
    RunCase<Fp8E4M3>(c, seed, /*static_scales=*/false, Path::kAvx2);
    RunCase<Fp8E5M2>(c, seed, /*static_scales=*/true, Path::kAvx2);
  }
}

TEST(PagedAttentionTest, DecodeMatchesDenseAcrossContextLengthsAndGqa) {
  for (int d : {32, 64, 80, 128}) {       // 32 has no AVX-512 kernel: the generic loop
    for (int group : {1, 2, 4, 8, 12}) {  // 12: past the batched score pass
      const int bs = 16;
      RunBothTypes({.head_dim = d,
                    .num_kv_heads = 2,
                    .group = group,
                    .block_size = bs,
                    .requests = {{1, 1}, {bs - 1, 1}, {bs, 1}, {bs + 1, 1}, {300, 1}}},
                   static_cast<uint32_t>(d * 10 + group));
    }
  }
}

// Long contexts with flat and with peaked softmax weights: the int8 kernels' int16 roundings
// (each query, and the weights per run of 64 positions) stay inside the tight tolerance, across
// many runs and with one weight far above the rest; a window start in mid-block and an odd
// count of positions pair rows across blocks.
TEST(PagedAttentionTest, LongDecodesMatchDenseWithFlatAndPeakedWeights) {
  for (const float gain : {1.0f, 4.0f}) {
    for (int d : {64, 128}) {
      Case c{.head_dim = d,
             .num_kv_heads = 1,
             .group = 4,
             .block_size = 16,
             .requests = {{4099, 1}, {1001, 2}, {77, 1}},
             .query_gain = gain};
      RunBothTypes(c, static_cast<uint32_t>(d + gain));
      c.window = {.sliding_window = 333};
      RunBothTypes(c, static_cast<uint32_t>(d + gain + 1));
    }
  }
}

// A decode batch of similar lengths, which the AVX2 kernels for float, bf16 and FP8 take a token
// per task, every KV head of a block in one run (RunBothTypes also runs it a task per KV head):
// block sizes that leave runs of 1 to 32 rows, GQA past the batched score pass, a window starting
// mid-block, and sinks with their own queries.
TEST(PagedAttentionTest, WholeBlockDecodesMatchDense) {
  const std::vector<TestRequest> batch = {{301, 1}, {290, 1}, {333, 1}, {317, 1},
                                          {299, 1}, {320, 1}, {311, 1}, {305, 1}};
  for (int bs : {1, 16, 32}) {
    for (int group : {1, 4, 12}) {
      RunBothTypes(
          {.head_dim = 64, .num_kv_heads = 2, .group = group, .block_size = bs, .requests = batch},
          static_cast<uint32_t>(bs * 100 + group));
    }
  }
  RunBothTypes({.head_dim = 128,
                .num_kv_heads = 3,
                .group = 2,
                .block_size = 16,
                .requests = batch,
                .window = {.sliding_window = 101, .sink_tokens = 4},
                .sink_query = true},
               7);
  RunBothTypes({.head_dim = 80,
                .num_kv_heads = 1,
                .group = 2,
                .block_size = 16,
                .requests = batch,
                .window = {.sliding_window = 57}},
               8);
}

TEST(PagedAttentionTest, MixedPrefillChunksAndDecodesMatchDense) {
  for (int bs : {1, 8, 16, 32}) {
    RunBothTypes({.head_dim = 64,
                  .num_kv_heads = 2,
                  .group = 4,
                  .block_size = bs,
                  .requests = {{37, 37}, {50, 13}, {9, 1}, {bs + 1, 2}, {128, 64}}},
                 static_cast<uint32_t>(bs));
  }
}

TEST(PagedAttentionTest, SharedPrefixBlocksMatchDense) {
  RunBothTypes({.head_dim = 64,
                .num_kv_heads = 1,
                .group = 2,
                .block_size = 16,
                .requests = {{40, 1}, {33, 17}},
                .share_first_block = true},
               7);
}

// Sliding windows: smaller than a block, not a multiple of it, equal to it, larger than every
// context; prefill chunks whose first query's window starts blocks before their last's, and
// decodes. Blocks no query attends have null table entries and NaN contents.
TEST(PagedAttentionTest, SlidingWindowMatchesDenseWithTheWindowMask) {
  for (int window : {1, 5, 16, 37, 64, 1000}) {
    for (int bs : {4, 16}) {
      for (int d : {32, 64}) {
        RunBothTypes({.head_dim = d,
                      .num_kv_heads = 2,
                      .group = 2,
                      .block_size = bs,
                      .requests = {{1, 1}, {window, 1}, {window + 1, 1}, {130, 1}, {97, 40}},
                      .window = {.sliding_window = window}},
                     static_cast<uint32_t>(window * 100 + bs + d));
      }
    }
  }
}

// StreamingLLM: sinks plus a window, the sink keys scored against their own queries; sinks
// that end inside a block, and more sinks than the window.
TEST(PagedAttentionTest, AttentionSinksMatchDenseWithSinkQueries) {
  for (int sinks : {1, 4, 20}) {
    for (int window : {8, 33}) {
      for (int d : {32, 64}) {
        RunBothTypes({.head_dim = d,
                      .num_kv_heads = 1,
                      .group = 4,
                      .block_size = 8,
                      .requests = {{3, 1}, {window + sinks, 1}, {200, 1}, {150, 60}},
                      .window = {.sliding_window = window, .sink_tokens = sinks},
                      .sink_query = true},
                     static_cast<uint32_t>(sinks * 1000 + window + d));
      }
    }
  }
}

// Long prefill chunks, the query blocks' ground: many 16-query blocks, keys across several
// 128-key chunks of the online softmax, a last block of fewer than 16 queries, GQA groups, every
// head dim the blocks take (multiples of 16; of 32 on AMX), block sizes 16 to 64, with and
// without a sliding window; decodes beside them. On AMX, on the tiles and on AVX-512, for bf16
// and for an 8-bit cache (int8 and E4M3 with per-token scales, E5M2 with static ones, in turn).
struct LongPrefillShape {
  int d, group, bs;
};
constexpr LongPrefillShape kLongPrefillShapes[] = {
    {64, 1, 16}, {64, 4, 32}, {96, 2, 16}, {128, 8, 64}, {256, 1, 16},
    {32, 3, 48}, {80, 2, 8},  {40, 2, 16}};  // 40: 5 AVX2 vectors (an odd count), no AVX-512 kernel
class PagedAttentionLongPrefillTest : public ::testing::TestWithParam<int> {};

TEST_P(PagedAttentionLongPrefillTest, ChunksMatchDense) {
  const int shape = GetParam();
  const LongPrefillShape& s = kLongPrefillShapes[shape];
  for (int window : {0, 100}) {
    const Case c{.head_dim = s.d,
                 .num_kv_heads = 2,
                 .group = s.group,
                 .block_size = s.bs,
                 .requests = {{300, 300}, {700, 189}, {5, 4}, {257, 1}, {130, 17}},
                 .window = {.sliding_window = window}};
    const uint32_t seed = static_cast<uint32_t>(s.d * 1000 + s.group * 10 + window);
    RunCase<float>(c, seed);
    for (const Path path : {Path::kDefault, Path::kNoAmx, Path::kAvx2}) {
      if (path == Path::kNoAmx && !amx::Available()) continue;  // the default is AVX-512
      // The AVX2 blocks where the default is AVX-512 (elsewhere they are the default).
      if (path == Path::kAvx2 && !(avx512::Supported() && avx2::Supported())) continue;
      RunCase<Bf16>(c, seed, /*static_scales=*/false, path);
      // One 8-bit type per shape, in turn (each costs as much as the bf16 run).
      switch (shape % 3) {
        case 0:
          RunCase<int8_t>(c, seed, /*static_scales=*/false, path);
          break;
        case 1:
          RunCase<Fp8E4M3>(c, seed, /*static_scales=*/false, path);
          break;
        default:
          RunCase<Fp8E5M2>(c, seed, /*static_scales=*/true, path);
          break;
      }
    }
  }
}
// One test per shape, so that ctest runs them in parallel.
INSTANTIATE_TEST_SUITE_P(Shapes, PagedAttentionLongPrefillTest,
                         ::testing::Range(0, static_cast<int>(std::size(kLongPrefillShapes))));

// A call's arguments as BackendFor reads them: the cache's shape, the window, and whether the
// AVX-512 kernels may run.
template <typename T = Bf16>
PagedAttentionArgs<T> ShapeArgs(int d, int bs, common::AttentionWindow w = {}, bool avx512 = true) {
  PagedAttentionArgs<T> a;
  a.cache.head_dim = d;
  a.cache.block_size = bs;
  a.cache.num_kv_heads = 1;
  a.window = w;
  a.allow_avx512 = avx512;
  return a;
}

// Which backend the query blocks take: AMX for bf16 head dims that are multiples of 32 up to 256
// with block sizes that are multiples of 16, AVX-512 for head dims that are multiples of 16, AVX2
// for the other multiples of 8, for bf16 and 8-bit caches alike; none for f32 (the exact,
// batch-invariant mode), attention sinks, or when turned off.
TEST(PagedAttentionTest, QueryBlocksTakeTheShapesTheySupport) {
  if (!avx512::Supported()) GTEST_SKIP() << "no AVX-512 on this CPU";
  using blocks::Backend;
  const Backend amx = amx::Available() ? Backend::kAmx : Backend::kAvx512;
  EXPECT_EQ(blocks::BackendFor(ShapeArgs(64, 16)), amx);
  EXPECT_EQ(blocks::BackendFor(ShapeArgs(256, 32, {.sliding_window = 8})), amx);
  EXPECT_EQ(blocks::BackendFor(ShapeArgs(80, 16)), Backend::kAvx512);
  EXPECT_EQ(blocks::BackendFor(ShapeArgs(64, 8)), Backend::kAvx512);
  EXPECT_EQ(blocks::BackendFor(ShapeArgs(512, 16)), Backend::kNone);
  // Not a multiple of 16: the AVX2 blocks (every AVX-512 CPU has AVX2).
  EXPECT_EQ(blocks::BackendFor(ShapeArgs(40, 16)), Backend::kAvx2);
  EXPECT_EQ(blocks::BackendFor(ShapeArgs(36, 16)), Backend::kNone);
  EXPECT_EQ(blocks::BackendFor(ShapeArgs(64, 16, {.sliding_window = 8, .sink_tokens = 4})),
            Backend::kNone);
  PagedAttentionArgs<Bf16> no_amx = ShapeArgs(64, 16);
  no_amx.allow_amx = false;
  EXPECT_EQ(blocks::BackendFor(no_amx), Backend::kAvx512);
  no_amx.allow_query_blocks = false;
  EXPECT_EQ(blocks::BackendFor(no_amx), Backend::kNone);
  EXPECT_EQ(blocks::BackendFor(ShapeArgs<float>(64, 16)), Backend::kNone);
  EXPECT_EQ(blocks::BackendFor(ShapeArgs<int8_t>(64, 16)), amx);
  EXPECT_EQ(blocks::BackendFor(ShapeArgs<int8_t>(80, 16)), Backend::kAvx512);
  EXPECT_EQ(blocks::BackendFor(ShapeArgs<Fp8E5M2>(64, 8)), Backend::kAvx512);
}

// Without AVX-512 (or with it turned off) the AVX2 blocks take head dims that are multiples of 8
// up to 256, for bf16 and 8-bit caches; none for f32, attention sinks, or when turned off. They
// start at 4 queries: below, the per-query kernel is cheaper.
TEST(PagedAttentionTest, QueryBlocksTakeAvx2WithoutAvx512) {
  if (!avx2::Supported()) GTEST_SKIP() << "no AVX2 on this CPU";
  using blocks::Backend;
  constexpr bool kNoAvx512 = false;
  EXPECT_EQ(blocks::BackendFor(ShapeArgs(64, 16, {}, kNoAvx512)), Backend::kAvx2);
  EXPECT_EQ(blocks::BackendFor(ShapeArgs(256, 1, {.sliding_window = 8}, kNoAvx512)),
            Backend::kAvx2);
  EXPECT_EQ(blocks::BackendFor(ShapeArgs(40, 16, {}, kNoAvx512)), Backend::kAvx2);
  EXPECT_EQ(blocks::BackendFor(ShapeArgs(36, 16, {}, kNoAvx512)), Backend::kNone);
  EXPECT_EQ(blocks::BackendFor(ShapeArgs(264, 16, {}, kNoAvx512)), Backend::kNone);
  EXPECT_EQ(
      blocks::BackendFor(ShapeArgs(64, 16, {.sliding_window = 8, .sink_tokens = 4}, kNoAvx512)),
      Backend::kNone);
  PagedAttentionArgs<Bf16> off = ShapeArgs(64, 16, {}, kNoAvx512);
  off.allow_query_blocks = false;
  EXPECT_EQ(blocks::BackendFor(off), Backend::kNone);
  EXPECT_EQ(blocks::BackendFor(ShapeArgs<float>(64, 16, {}, kNoAvx512)), Backend::kNone);
  EXPECT_EQ(blocks::BackendFor(ShapeArgs<int8_t>(64, 16, {}, kNoAvx512)), Backend::kAvx2);
  EXPECT_EQ(blocks::BackendFor(ShapeArgs<Fp8E4M3>(128, 8, {}, kNoAvx512)), Backend::kAvx2);
  EXPECT_EQ(blocks::MinQueries(Backend::kAvx2), 4);
}

}  // namespace
}  // namespace pagoda::kernels::cpu
