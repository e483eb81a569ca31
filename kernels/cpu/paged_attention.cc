#include "kernels/cpu/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "common/check.h"
#include "kernels/cpu/attention_blocks.h"
#include "kernels/cpu/avx2_math.h"
#include "kernels/cpu/avx512_math.h"
#include "kernels/cpu/decode_internal.h"
#include "kernels/cpu/kv_scales.h"

namespace pagoda::kernels::cpu {

namespace {

// One token's head quantized with its own scale = absmax / ScaledMax<T>() (127 for int8, 448
// for E4M3, 57344 for E5M2) rounded to bf16 (what is stored, so quantizing and dequantizing
// agree), or, when `scale_bits` is null, with the head's static `static_scale`; int8 values round
// to nearest and clamp to [-127, 127], FP8 ones round to nearest even and saturate.
template <typename T>
void QuantizeHead(const float* x, int64_t d, T* out, uint16_t* scale_bits, float static_scale) {
  float scale = static_scale;
  if (scale_bits != nullptr) {
    float amax = 0.0f;
    for (int64_t i = 0; i < d; ++i) amax = std::max(amax, std::fabs(x[i]));
    *scale_bits = FloatToBf16(amax / ScaledMax<T>());
    scale = Bf16ToFloat(*scale_bits);
  }
  const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
  for (int64_t i = 0; i < d; ++i) {
    if constexpr (std::is_same_v<T, int8_t>) {
      const float q = std::nearbyint(x[i] * inv);
      out[i] = static_cast<int8_t>(std::clamp(q, -127.0f, 127.0f));
    } else {
      FromFloat(x[i] * inv, &out[i]);
    }
  }
}

// Whether the view carries the scales its type needs: per-token ones, or (FP8 only) static ones.
template <typename T>
bool HasScales(const PagedKvCacheView<T>& c) {
  if constexpr (!kScaled<T>) {
    return true;
  } else if (c.key_scale != nullptr && c.value_scale != nullptr) {
    return true;
  } else {
    return !std::is_same_v<T, int8_t> && c.head_key_scale != nullptr &&
           c.head_value_scale != nullptr;
  }
}

}  // namespace

template <typename T>
void ReshapeAndCache(const float* key, const float* value, absl::Span<const int64_t> slots,
                     const PagedKvCacheView<T>& cache) {
  const int64_t d = cache.head_dim;
  PAGODA_CHECK(HasScales(cache));
  for (size_t t = 0; t < slots.size(); ++t) {
    const int64_t block = slots[t] / cache.block_size;
    const int64_t offset = slots[t] % cache.block_size;
    PAGODA_CHECK(block >= 0 && block < cache.num_blocks) << "slot " << slots[t];
    for (int64_t h = 0; h < cache.num_kv_heads; ++h) {
      const int64_t src = (static_cast<int64_t>(t) * cache.num_kv_heads + h) * d;
      const int64_t dst = cache.Offset(block, h, offset);
      if constexpr (kScaled<T>) {
        const int64_t s = cache.ScaleIndex(block, h, offset);
        const bool per_token = cache.key_scale != nullptr;
        QuantizeHead(key + src, d, cache.key + dst, per_token ? cache.key_scale + s : nullptr,
                     per_token ? 0.0f : cache.head_key_scale[h]);
        QuantizeHead(value + src, d, cache.value + dst, per_token ? cache.value_scale + s : nullptr,
                     per_token ? 0.0f : cache.head_value_scale[h]);
      } else {
        for (int64_t i = 0; i < d; ++i) {
          FromFloat(key[src + i], cache.key + dst + i);
          FromFloat(value[src + i], cache.value + dst + i);
        }
      }
    }
  }
}

namespace {

using decode::Attended;
using decode::AttendedRanges;
using decode::AttendFn;
using decode::kMaxBatchedGroup;
using decode::kPrefetchBlocks;
using decode::PrefetchTile;
using decode::QueryRow;

// y += a * x. restrict-qualified parameters tell the compiler y and x do not overlap, so the
// loop vectorizes (in each ISA clone of the caller it is inlined into).
template <typename T>
inline void Axpy(float* __restrict y, const T* __restrict x, float a, int n) {
  for (int i = 0; i < n; ++i) y[i] += a * ToFloat(x[i]);
}

// Attention of the `group` query heads sharing KV head `kv_head`, for one query token whose
// position is `last` (it sees the attended part of [0, last]). Always inlined into the per-ISA
// clones below.
template <typename T>
__attribute__((always_inline)) inline void AttendOneToken(const PagedAttentionArgs<T>& a,
                                                          int64_t token, int64_t request,
                                                          int kv_head, int32_t last,
                                                          std::vector<float>& scores) {
  const PagedKvCacheView<T>& c = a.cache;
  const int group = a.num_heads / c.num_kv_heads;
  const int d = c.head_dim;
  const int32_t* table = a.block_tables.data() + request * a.max_blocks_per_request;
  const AttendedRanges ranges = Attended(a.window, last);
  const int32_t len = ranges.count;
  scores.resize(static_cast<size_t>(group) * len);
  // Scores for every head of the group, one pass over the K tiles.
  for (int32_t part = 0, at = 0; part < 2; ++part) {
    for (int32_t pos = ranges.begin[part]; pos < ranges.end[part]; ++pos, ++at) {
      const bool sink = part == 0;
      const int32_t block = table[pos / c.block_size];
      const T* k = c.key + c.Offset(block, kv_head, pos % c.block_size);
      // Dequantization fused: an int8 row's scale multiplies its dot products.
      const float k_scale =
          a.scale * ElementScale(c, /*value=*/false, block, kv_head, pos % c.block_size);
      for (int g = 0; g < group; ++g) {
        const float* q = QueryRow(a, token, kv_head * group + g, sink);
        // 16 independent partial sums: a reduction the compiler may vectorize without
        // reassociating floating point.
        float partial[16] = {};
        int i = 0;
        for (; i + 16 <= d; i += 16) {
          for (int l = 0; l < 16; ++l) partial[l] += q[i + l] * ToFloat(k[i + l]);
        }
        float dot = 0.0f;
        for (; i < d; ++i) dot += q[i] * ToFloat(k[i]);
        for (const float p : partial) dot += p;
        scores[static_cast<size_t>(g) * len + at] = dot * k_scale;
      }
    }
  }
  for (int g = 0; g < group; ++g) {
    float* s = scores.data() + static_cast<size_t>(g) * len;
    const float max_score = *std::max_element(s, s + len);
    float sum = 0.0f;
    for (int32_t i = 0; i < len; ++i) sum += (s[i] = std::exp(s[i] - max_score));
    const float inv_sum = 1.0f / sum;
    for (int32_t i = 0; i < len; ++i) s[i] *= inv_sum;
  }
  for (int g = 0; g < group; ++g) {
    float* out = a.output + (token * a.num_heads + kv_head * group + g) * d;
    std::fill(out, out + d, 0.0f);
  }
  for (int32_t part = 0, at = 0; part < 2; ++part) {
    for (int32_t pos = ranges.begin[part]; pos < ranges.end[part]; ++pos, ++at) {
      const int32_t block = table[pos / c.block_size];
      const T* v = c.value + c.Offset(block, kv_head, pos % c.block_size);
      const float v_scale = ElementScale(c, /*value=*/true, block, kv_head, pos % c.block_size);
      for (int g = 0; g < group; ++g) {
        const float p = scores[static_cast<size_t>(g) * len + at] * v_scale;
        Axpy(a.output + (token * a.num_heads + kv_head * group + g) * d, v, p, d);
      }
    }
  }
}

// Cloned per ISA (gcc picks the widest the CPU has when the program loads), so the dot products
// and the V accumulation vectorize without a global -march.
__attribute__((target_clones("avx512f", "avx2", "default"))) void Attend(
    const PagedAttentionArgs<float>& a, int64_t token, int64_t request, int kv_head, int32_t last,
    std::vector<float>& scores) {
  AttendOneToken(a, token, request, kv_head, last, scores);
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void Attend(
    const PagedAttentionArgs<Bf16>& a, int64_t token, int64_t request, int kv_head, int32_t last,
    std::vector<float>& scores) {
  AttendOneToken(a, token, request, kv_head, last, scores);
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void Attend(
    const PagedAttentionArgs<int8_t>& a, int64_t token, int64_t request, int kv_head, int32_t last,
    std::vector<float>& scores) {
  AttendOneToken(a, token, request, kv_head, last, scores);
}

// FP8 decodes through a 256-entry table here (the AVX-512 path converts in registers).
void Attend(const PagedAttentionArgs<Fp8E4M3>& a, int64_t token, int64_t request, int kv_head,
            int32_t last, std::vector<float>& scores) {
  AttendOneToken(a, token, request, kv_head, last, scores);
}

void Attend(const PagedAttentionArgs<Fp8E5M2>& a, int64_t token, int64_t request, int kv_head,
            int32_t last, std::vector<float>& scores) {
  AttendOneToken(a, token, request, kv_head, last, scores);
}

#if defined(__x86_64__)
// The AVX-512 path, for head dims that are a multiple of 16 (64, 80, 96, 128, 256): K and V rows
// are loaded once per position as kChunks vectors of 16 floats; the softmax uses a vectorized
// exp. About 4x the throughput of the auto-vectorized loop above on Zen 4.
using avx512::Exp;
using avx512::Sum16;

// In place: s[0, len) = softmax(s).
PAGODA_AVX512_TARGET inline void SoftmaxAvx512(float* s, int32_t len) {
  __m512 max_v = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  int32_t i = 0;
  for (; i + 16 <= len; i += 16) max_v = _mm512_max_ps(max_v, _mm512_loadu_ps(s + i));
  const __mmask16 tail = static_cast<__mmask16>((1u << (len - i)) - 1);
  if (tail != 0) max_v = _mm512_mask_max_ps(max_v, tail, max_v, _mm512_maskz_loadu_ps(tail, s + i));
  const __m512 max_b = _mm512_set1_ps(_mm512_reduce_max_ps(max_v));
  __m512 sum_v = _mm512_setzero_ps();
  for (i = 0; i + 16 <= len; i += 16) {
    const __m512 e = Exp(_mm512_sub_ps(_mm512_loadu_ps(s + i), max_b));
    _mm512_storeu_ps(s + i, e);
    sum_v = _mm512_add_ps(sum_v, e);
  }
  if (tail != 0) {
    const __m512 e = Exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, s + i), max_b));
    _mm512_mask_storeu_ps(s + i, tail, e);
    sum_v = _mm512_mask_add_ps(sum_v, tail, sum_v, e);
  }
  const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum_v));
  for (i = 0; i + 16 <= len; i += 16)
    _mm512_storeu_ps(s + i, _mm512_mul_ps(_mm512_loadu_ps(s + i), inv));
  if (tail != 0)
    _mm512_mask_storeu_ps(s + i, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, s + i), inv));
}

// Loads position `pos`'s K row of `kv_head` (decoded, kChunks vectors) and returns the factor its
// dot products take: the attention scale times the row's scale (times E4M3's load factor), so
// the dequantization is fused.
template <typename T, int kChunks>
PAGODA_AVX512_TARGET inline float LoadKeyRow(const PagedAttentionArgs<T>& a, const int32_t* table,
                                             int kv_head, int32_t pos, __m512* kv) {
  const PagedKvCacheView<T>& c = a.cache;
  const int32_t block = table[pos / c.block_size];
  const T* k = c.key + c.Offset(block, kv_head, pos % c.block_size);
  for (int i = 0; i < kChunks; ++i) kv[i] = avx512::LoadScaled16(k + 16 * i);
  return a.scale * avx512::LoadScale<T>() *
         ElementScale(c, /*value=*/false, block, kv_head, pos % c.block_size);
}

// The 16 partial sums of q . k over the kChunks vectors of a row.
template <int kChunks>
PAGODA_AVX512_TARGET inline __m512 PartialDot(const float* q, const __m512* kv) {
  __m512 acc = _mm512_mul_ps(_mm512_loadu_ps(q), kv[0]);
  for (int i = 1; i < kChunks; ++i) acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + 16 * i), kv[i], acc);
  return acc;
}

// The scores of every head of the group against every attended position, scaled: one
// horizontal reduction per (head, position).
template <typename T, int kChunks>
PAGODA_AVX512_TARGET void ScoresOneByOne(const PagedAttentionArgs<T>& a, int64_t token, int kv_head,
                                         const int32_t* table, const AttendedRanges& ranges,
                                         std::vector<float>& scores) {
  const PagedKvCacheView<T>& c = a.cache;
  const int group = a.num_heads / c.num_kv_heads;
  const size_t len = static_cast<size_t>(ranges.count);
  for (int32_t part = 0, at = 0; part < 2; ++part) {
    const float* q = QueryRow(a, token, kv_head * group, part == 0);
    for (int32_t pos = ranges.begin[part]; pos < ranges.end[part]; ++pos, ++at) {
      __m512 kv[kChunks];
      const float k_scale = LoadKeyRow<T, kChunks>(a, table, kv_head, pos, kv);
      for (int g = 0; g < group; ++g) {
        const __m512 acc = PartialDot<kChunks>(q + g * 16 * kChunks, kv);
        scores[g * len + at] = _mm512_reduce_add_ps(acc) * k_scale;
      }
    }
  }
}

// The same, 16 positions at a time: each K row is loaded (and decoded) once, its partial dot
// products with the group's queries kept as vectors, and the 16 positions of each head summed
// together by Sum16 and scaled by a vector of their row scales.
template <typename T, int kChunks>
PAGODA_AVX512_TARGET void ScoresBatched(const PagedAttentionArgs<T>& a, int64_t token, int kv_head,
                                        const int32_t* table, const AttendedRanges& ranges,
                                        std::vector<float>& scores) {
  const PagedKvCacheView<T>& c = a.cache;
  const int group = a.num_heads / c.num_kv_heads;
  const size_t len = static_cast<size_t>(ranges.count);
  __m512 partial[kMaxBatchedGroup][16];
  alignas(64) float row_scale[16];
  const int32_t ahead = kPrefetchBlocks * c.block_size;
  for (int32_t part = 0, part_at = 0; part < 2; ++part) {
    const float* q = QueryRow(a, token, kv_head * group, part == 0);
    int32_t prefetched = -1;
    for (int32_t first = ranges.begin[part]; first < ranges.end[part]; first += 16) {
      for (int32_t p = first; p < first + 16; p += c.block_size) {
        PrefetchTile(c, /*value=*/false, table, kv_head, p + ahead, ranges.end[part], &prefetched);
      }
      const int32_t at = part_at + (first - ranges.begin[part]);  // index among the attended
      const int n = std::min<int32_t>(16, ranges.end[part] - first);
      for (int j = 0; j < 16; ++j) {
        if (j >= n) {
          for (int g = 0; g < group; ++g) partial[g][j] = _mm512_setzero_ps();
          row_scale[j] = 0.0f;
          continue;
        }
        __m512 kv[kChunks];
        row_scale[j] = LoadKeyRow<T, kChunks>(a, table, kv_head, first + j, kv);
        for (int g = 0; g < group; ++g)
          partial[g][j] = PartialDot<kChunks>(q + g * 16 * kChunks, kv);
      }
      const __mmask16 mask = static_cast<__mmask16>((1u << n) - 1);
      const __m512 scale = _mm512_load_ps(row_scale);
      for (int g = 0; g < group; ++g) {
        _mm512_mask_storeu_ps(scores.data() + g * len + at, mask,
                              _mm512_mul_ps(Sum16(partial[g]), scale));
      }
    }
    part_at += ranges.end[part] - ranges.begin[part];
  }
}

template <typename T, int kChunks>
PAGODA_AVX512_TARGET void AttendAvx512(const PagedAttentionArgs<T>& a, int64_t token,
                                       int64_t request, int kv_head, int32_t last,
                                       std::vector<float>& scores) {
  const PagedKvCacheView<T>& c = a.cache;
  const auto [group, table, ranges] = decode::SetUpTask(a, request, last, scores);
  const int32_t len = ranges.count;
  if (group > kMaxBatchedGroup) {
    ScoresOneByOne<T, kChunks>(a, token, kv_head, table, ranges, scores);
  } else {
    ScoresBatched<T, kChunks>(a, token, kv_head, table, ranges, scores);
  }
  for (int g = 0; g < group; ++g) SoftmaxAvx512(scores.data() + static_cast<size_t>(g) * len, len);
  for (int g = 0; g < group; ++g) {
    const float* p = scores.data() + static_cast<size_t>(g) * len;
    __m512 acc[kChunks];
    for (int i = 0; i < kChunks; ++i) acc[i] = _mm512_setzero_ps();
    for (int32_t part = 0, at = 0; part < 2; ++part) {
      int32_t prefetched = -1;
      for (int32_t pos = ranges.begin[part]; pos < ranges.end[part]; ++pos, ++at) {
        if (g == 0) {
          PrefetchTile(c, /*value=*/true, table, kv_head, pos + kPrefetchBlocks * c.block_size,
                       ranges.end[part], &prefetched);
        }
        const int32_t block = table[pos / c.block_size];
        const T* v = c.value + c.Offset(block, kv_head, pos % c.block_size);
        const __m512 w =
            _mm512_set1_ps(p[at] * avx512::LoadScale<T>() *
                           ElementScale(c, /*value=*/true, block, kv_head, pos % c.block_size));
        for (int i = 0; i < kChunks; ++i) {
          acc[i] = _mm512_fmadd_ps(w, avx512::LoadScaled16(v + 16 * i), acc[i]);
        }
      }
    }
    float* out = a.output + (token * a.num_heads + kv_head * group + g) * (16 * kChunks);
    for (int i = 0; i < kChunks; ++i) _mm512_storeu_ps(out + 16 * i, acc[i]);
  }
}

// The AVX-512 kernel for head dim kDim.
template <typename T, int kDim>
AttendFn<T> VectorKernel() {
  return &AttendAvx512<T, kDim / 16>;
}

// The vector kernel for this head dim on this CPU (AVX-512 unless !allow_avx512, else AVX2), or
// null when neither the CPU nor the head dim allows one.
template <typename T>
AttendFn<T> SelectVectorKernel(int head_dim, bool allow_avx512) {
  const bool avx512 = allow_avx512 && avx512::Supported();
  if (!avx512) return avx2::Supported() ? decode::Avx2Kernel<T>(head_dim) : nullptr;
  return decode::ForHeadDim<T>(head_dim, []<int kDim>() { return VectorKernel<T, kDim>(); });
}
#endif  // __x86_64__

// The tokens the per-query kernels take (those of requests the query blocks leave out), and
// whether a task per token would keep `threads` threads evenly busy: at least two tokens per
// thread, and none attending more than a thread's share of the positions.
struct PerQueryTokens {
  std::vector<int32_t> tokens;
  bool balanced = false;
};

template <typename T>
PerQueryTokens TokensLeftOut(const PagedAttentionArgs<T>& a, const blocks::Plan& plan,
                             int threads) {
  PerQueryTokens out;
  int64_t attended = 0, most = 0;
  for (size_t r = 0; r + 1 < a.query_start.size(); ++r) {
    const int32_t n = a.query_start[r + 1] - a.query_start[r];
    if (plan.Takes(n)) continue;
    for (int32_t t = a.query_start[r]; t < a.query_start[r + 1]; ++t) {
      out.tokens.push_back(t);
      const int64_t count = a.window.NumAttended(a.context_lens[r] - n + (t - a.query_start[r]));
      attended += count;
      most = std::max(most, count);
    }
  }
  out.balanced =
      static_cast<int64_t>(out.tokens.size()) >= 2 * threads && most * threads <= attended;
  return out;
}

}  // namespace

template <typename T>
void PagedAttention(const PagedAttentionArgs<T>& a, ThreadPool& pool) {
  const PagedKvCacheView<T>& c = a.cache;
  PAGODA_CHECK(c.num_kv_heads > 0 && a.num_heads % c.num_kv_heads == 0);
  PAGODA_CHECK(HasScales(c));
  PAGODA_CHECK(a.window.sink_tokens >= 0 && a.window.sliding_window >= 0 &&
               (a.window.sink_tokens == 0 || a.window.sliding_window > 0));
  const int64_t num_requests = static_cast<int64_t>(a.context_lens.size());
  PAGODA_CHECK_EQ(static_cast<int64_t>(a.query_start.size()), num_requests + 1);
  const int64_t num_tokens = a.query_start[num_requests];
  // token -> request, so the parallel loop can run over flat (token, kv head) tasks.
  std::vector<int32_t> request_of(num_tokens);
  for (int64_t r = 0; r < num_requests; ++r) {
    const int32_t n = a.query_start[r + 1] - a.query_start[r];
    PAGODA_CHECK(n >= 0 && n <= a.context_lens[r]) << "request " << r;
    PAGODA_CHECK_LE((a.context_lens[r] + c.block_size - 1) / c.block_size,
                    a.max_blocks_per_request);
    for (int32_t t = a.query_start[r]; t < a.query_start[r + 1]; ++t) {
      request_of[t] = static_cast<int32_t>(r);
    }
  }
  void (*attend)(const PagedAttentionArgs<T>&, int64_t, int64_t, int, int32_t,
                 std::vector<float>&) = &Attend;
  decode::AttendAllFn<T> whole_blocks = nullptr;  // one task per token, every KV head
#if defined(__x86_64__)
  if (const auto vector = SelectVectorKernel<T>(c.head_dim, a.allow_avx512); vector != nullptr) {
    attend = vector;
  }
  if (a.allow_whole_blocks && !(a.allow_avx512 && avx512::Supported()) && avx2::Supported()) {
    whole_blocks = decode::Avx2WholeBlockKernel<T>(c.head_dim);
  }
#endif
  blocks::Plan plan;  // the prefill chunks on query blocks (not for f32 caches)
  if constexpr (!std::is_same_v<T, float>) plan = blocks::MakePlan(a, pool);
  const PerQueryTokens tokens = TokensLeftOut(a, plan, pool.num_threads());
  if (!tokens.balanced) whole_blocks = nullptr;
  const int64_t num_blocks = static_cast<int64_t>(plan.blocks.size());
  const int per_token = whole_blocks != nullptr ? 1 : c.num_kv_heads;
  const int64_t num_tasks = num_blocks + static_cast<int64_t>(tokens.tokens.size()) * per_token;
  pool.ParallelFor(num_tasks, 1, [&](int64_t begin, int64_t end) {
    if constexpr (!std::is_same_v<T, float>) {
      if (begin < num_blocks) blocks::AttendQueryBlocks(a, plan, begin, std::min(end, num_blocks));
    }
    std::vector<float> scores;
    for (int64_t task = std::max(begin, num_blocks); task < end; ++task) {
      const int64_t token = tokens.tokens[(task - num_blocks) / per_token];
      const int kv_head = static_cast<int>((task - num_blocks) % per_token);
      const int64_t r = request_of[token];
      const int32_t n = a.query_start[r + 1] - a.query_start[r];
      const int32_t last = a.context_lens[r] - n + static_cast<int32_t>(token - a.query_start[r]);
      if (whole_blocks != nullptr) {
        whole_blocks(a, token, r, last);
      } else {
        attend(a, token, r, kv_head, last, scores);
      }
    }
  });
}

template void ReshapeAndCache<float>(const float*, const float*, absl::Span<const int64_t>,
                                     const PagedKvCacheView<float>&);
template void ReshapeAndCache<Bf16>(const float*, const float*, absl::Span<const int64_t>,
                                    const PagedKvCacheView<Bf16>&);
template void PagedAttention<float>(const PagedAttentionArgs<float>&, ThreadPool&);
template void PagedAttention<Bf16>(const PagedAttentionArgs<Bf16>&, ThreadPool&);
template void ReshapeAndCache<int8_t>(const float*, const float*, absl::Span<const int64_t>,
                                      const PagedKvCacheView<int8_t>&);
template void PagedAttention<int8_t>(const PagedAttentionArgs<int8_t>&, ThreadPool&);
template void ReshapeAndCache<Fp8E4M3>(const float*, const float*, absl::Span<const int64_t>,
                                       const PagedKvCacheView<Fp8E4M3>&);
template void PagedAttention<Fp8E4M3>(const PagedAttentionArgs<Fp8E4M3>&, ThreadPool&);
template void ReshapeAndCache<Fp8E5M2>(const float*, const float*, absl::Span<const int64_t>,
                                       const PagedKvCacheView<Fp8E5M2>&);
template void PagedAttention<Fp8E5M2>(const PagedAttentionArgs<Fp8E5M2>&, ThreadPool&);

}  // namespace pagoda::kernels::cpu
