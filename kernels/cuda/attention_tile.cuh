#pragma once

// One warp's share of a FlashAttention-2 style step (internal to kernels/cuda): 16 query rows
// against a tile of 8 * kNTiles keys held in shared memory as [tokens][kRowStride] rows of T
// (kRowStride = head_dim + 8 elements, so the 8 rows an ldmatrix reads fall in distinct banks).
// Used by the decode kernel (rows = the query heads of one KV head) and the prefill kernel
// (rows = packed (query token, head) pairs). Scores live in MMA C fragments (see
// mma_primitives.cuh): s[j] holds tokens 8j..8j+7; lane (gid, tid) owns rows gid and gid + 8 and
// tokens 8j + 2tid, 8j + 2tid + 1. The output accumulator o[dt] holds head dims 8dt..8dt+7 in
// the same fragment layout.

#include <cstdint>

#include "kernels/cuda/mma_primitives.cuh"

namespace pagoda::kernels::cuda::internal {

inline constexpr float kLog2e = 1.4426950408889634f;

// Two consecutive elements of a row in global memory as one 32-bit MMA operand register.
template <typename T>
__device__ __forceinline__ uint32_t LoadPair(const T* p) {
  return __ldg(reinterpret_cast<const unsigned int*>(p));
}

// s = Q K^T for the 16 rows of q (A fragments, one per 16 head dims) and the tile's keys
// k_s[token][dim]. kNTiles must be even (16 tokens per ldmatrix.x4).
template <typename T, int kNTiles, int kHeadDim, int kRowStride>
__device__ __forceinline__ void ComputeScores(const uint32_t (&q)[kHeadDim / 16][4], const T* k_s,
                                              int lane, float (&s)[kNTiles][4]) {
  static_assert(kNTiles % 2 == 0 && kHeadDim % 16 == 0);
#pragma unroll
  for (int j = 0; j < kNTiles; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) s[j][e] = 0.0f;
  }
  // Matrix i of the x4 load: tokens 8*(i/2).. of the 16-token pair, dims 8*(i%2).. of the k-step,
  // i.e. registers {b0, b1} of n-tile 2*pair and {b0, b1} of n-tile 2*pair + 1.
  const int row_in_pair = (lane / 16) * 8 + lane % 8;
  const int col_in_step = ((lane / 8) % 2) * 8;
#pragma unroll
  for (int pair = 0; pair < kNTiles / 2; ++pair) {
#pragma unroll
    for (int ks = 0; ks < kHeadDim / 16; ++ks) {
      uint32_t b[4];
      LdMatrixX4(b, k_s + (pair * 16 + row_in_pair) * kRowStride + ks * 16 + col_in_step);
      Mma16816<T>(s[2 * pair], q[ks], b[0], b[1]);
      Mma16816<T>(s[2 * pair + 1], q[ks], b[2], b[3]);
    }
  }
}

// The online-softmax step (scores already scaled to log2 units and masked with -inf): updates
// the running row maxima m and partial row sums l of this lane (l is summed over the 4 lanes of
// a row only at the end), rescales o, and turns s into the unnormalized probabilities
// exp2(s - m). A row that has seen no visible key yet keeps m = -inf and probabilities 0.
template <int kNTiles, int kDTiles>
__device__ __forceinline__ void OnlineSoftmax(float (&s)[kNTiles][4], float (&m)[2], float (&l)[2],
                                              float (&o)[kDTiles][4]) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float tile_max = -INFINITY;
#pragma unroll
    for (int j = 0; j < kNTiles; ++j)
      tile_max = fmaxf(tile_max, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullMask, tile_max, 1));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullMask, tile_max, 2));
    const float m_new = fmaxf(m[r], tile_max);
    // exp2(-inf - -inf) would be NaN: a row with nothing visible subtracts 0 instead.
    const float base = m_new == -INFINITY ? 0.0f : m_new;
    const float correction = exp2f(m[r] - base);
    m[r] = m_new;
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < kNTiles; ++j) {
      s[j][2 * r] = exp2f(s[j][2 * r] - base);
      s[j][2 * r + 1] = exp2f(s[j][2 * r + 1] - base);
      sum += s[j][2 * r] + s[j][2 * r + 1];
    }
    l[r] = l[r] * correction + sum;
#pragma unroll
    for (int dt = 0; dt < kDTiles; ++dt) {
      o[dt][2 * r] *= correction;
      o[dt][2 * r + 1] *= correction;
    }
  }
}

// o += P V for the probabilities p (C fragments of the score tile, rounded to T as the A operand:
// the C layout of n-tiles 2t and 2t+1 is the A layout of k-step t) and the tile's values
// v_s[token][dim].
template <typename T, int kNTiles, int kHeadDim, int kRowStride>
__device__ __forceinline__ void AccumulateValues(const float (&p)[kNTiles][4], const T* v_s,
                                                 int lane, float (&o)[kHeadDim / 8][4]) {
  // Matrix i of the transposed x4 load: tokens 8*(i%2).. of the k-step, dims 8*(i/2).. of the
  // 16-dim pair, i.e. registers {b0, b1} of d-tile 2*pair and of d-tile 2*pair + 1.
  const int row_in_step = ((lane / 8) % 2) * 8 + lane % 8;
  const int col_in_pair = (lane / 16) * 8;
#pragma unroll
  for (int ks = 0; ks < kNTiles / 2; ++ks) {
    const uint32_t a[4] = {PackPair<T>(p[2 * ks][0], p[2 * ks][1]),
                           PackPair<T>(p[2 * ks][2], p[2 * ks][3]),
                           PackPair<T>(p[2 * ks + 1][0], p[2 * ks + 1][1]),
                           PackPair<T>(p[2 * ks + 1][2], p[2 * ks + 1][3])};
#pragma unroll
    for (int pair = 0; pair < kHeadDim / 16; ++pair) {
      uint32_t b[4];
      LdMatrixX4Trans(b, v_s + (ks * 16 + row_in_step) * kRowStride + pair * 16 + col_in_pair);
      Mma16816<T>(o[2 * pair], a, b[0], b[1]);
      Mma16816<T>(o[2 * pair + 1], a, b[2], b[3]);
    }
  }
}

// Sums a lane's partial row sums over the 4 lanes that share its rows.
__device__ __forceinline__ void ReduceRowSums(float (&l)[2]) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(kFullMask, l[r], 1);
    l[r] += __shfl_xor_sync(kFullMask, l[r], 2);
  }
}

}  // namespace pagoda::kernels::cuda::internal
