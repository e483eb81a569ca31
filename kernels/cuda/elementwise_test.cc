// The GPU's per-token kernels (embedding, RMSNorm, SiLU-and-mul, residual add, RoPE,
// reshape-and-cache, greedy argmax) against the CPU kernels on random inputs rounded to T, for bf16
// and fp16, on shapes that take the 16-byte vector path and shapes that take the scalar path. Skips
// without a CUDA device.
//
// Tolerances (|gpu - cpu| <= atol + rtol * |cpu|): copies and the residual add must match
// exactly (one fp32 add, one rounding, as on the host); RMSNorm, SiLU-and-mul and RoPE round
// once to T after fp32 math, so they get a couple of T's half-ulps: (1e-3, 8e-3) for bf16 and
// (1e-4, 1.5e-3) for fp16.

#include "kernels/cuda/elementwise.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "gtest/gtest.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cpu/rope.h"
#include "kernels/cuda/cuda_buffer.h"
#include "kernels/cuda/testing/device_array.h"
#include "kernels/cuda/half_types.h"
#include "kernels/cuda/reshape_and_cache.h"
#include "kernels/cuda/rope.h"
#include "kernels/paged_kv_cache.h"
#include "sampling/sampler.h"

namespace pagoda::kernels::cuda {

using testing::DeviceArray;
namespace {

template <typename T>
struct Tolerance;
template <>
struct Tolerance<__nv_bfloat16> {
  static constexpr float kAbs = 1e-3f;
  static constexpr float kRel = 8e-3f;
};
template <>
struct Tolerance<__half> {
  static constexpr float kAbs = 1e-4f;
  static constexpr float kRel = 1.5e-3f;
};

template <typename T>
DeviceArray<T> Upload(const std::vector<T>& host) {
  auto array = DeviceArray<T>::FromHost(host);
  EXPECT_TRUE(array.ok()) << array.status();
  return array.ok() ? std::move(*array) : DeviceArray<T>();
}

template <typename T>
std::vector<float> DownloadFloats(const DeviceArray<T>& array) {
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  auto host = array.ToHost();
  EXPECT_TRUE(host.ok()) << host.status();
  std::vector<float> out;
  if (host.ok()) {
    for (const T x : *host) out.push_back(ToFloatHost(x));
  }
  return out;
}

// Elements of got vs want: within (atol, rtol), or bit-exact when `exact`.
void ExpectNear(const std::vector<float>& got, const std::vector<float>& want, float atol,
                float rtol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const float error = std::fabs(got[i] - want[i]);
    if (!(error <= atol + rtol * std::fabs(want[i]))) {
      if (++bad <= 5) {
        ADD_FAILURE() << what << ": element " << i << " got " << got[i] << " want " << want[i];
      }
    }
  }
  EXPECT_EQ(bad, 0) << what;
}

void ExpectExact(const std::vector<float>& got, const std::vector<float>& want,
                 const std::string& what) {
  ExpectNear(got, want, 0.0f, 0.0f, what);
}

class ElementwiseGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (VisibleDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

template <typename T>
void CheckEmbedding(int64_t dim) {
  const int64_t vocab = 1000;
  const std::vector<float> table = RandomRounded<T>(vocab * dim, 1);
  // Out-of-range ids (a caller bug) must give zero rows, not reads out of bounds.
  const std::vector<int32_t> ids = {0, 999, 17, 17, -1, 1000, 512};
  DeviceArray<int32_t> d_ids = Upload(ids);
  DeviceArray<T> d_table = Upload(ToDeviceType<T>(table));
  DeviceArray<T> d_out = Upload(std::vector<T>(ids.size() * dim));
  ASSERT_TRUE(Embedding(EmbeddingParams<T>{.token_ids = d_ids.data(),
                                           .table = d_table.data(),
                                           .vocab_size = vocab,
                                           .dim = dim,
                                           .num_tokens = static_cast<int32_t>(ids.size()),
                                           .out = d_out.data()},
                        nullptr)
                  .ok());
  std::vector<float> want(ids.size() * dim, 0.0f);
  for (size_t t = 0; t < ids.size(); ++t) {
    if (ids[t] < 0 || ids[t] >= vocab) continue;
    for (int64_t i = 0; i < dim; ++i) want[t * dim + i] = table[ids[t] * dim + i];
  }
  ExpectExact(DownloadFloats(d_out), want, "embedding dim " + std::to_string(dim));
}

TEST_F(ElementwiseGpuTest, EmbeddingCopiesRowsAndZeroesBadIds) {
  for (const int64_t dim : {4096, 100}) {  // vector path, scalar path
    CheckEmbedding<__nv_bfloat16>(dim);
    CheckEmbedding<__half>(dim);
  }
}

template <typename T>
void CheckRmsNorm(int32_t rows, int32_t dim, bool in_place) {
  std::vector<float> x = RandomRounded<T>(static_cast<size_t>(rows) * dim, 2, 3.0f);
  std::vector<float> weight = RandomRounded<T>(dim, 3, 0.3f);
  for (float& w : weight) w = RoundToHost<T>(1.0f + w);
  std::vector<float> want(x.size());
  cpu::RmsNorm(x.data(), weight.data(), rows, dim, 1e-5f, want.data());
  DeviceArray<T> d_x = Upload(ToDeviceType<T>(x));
  DeviceArray<T> d_weight = Upload(ToDeviceType<T>(weight));
  DeviceArray<T> d_out = Upload(std::vector<T>(x.size()));
  T* out = in_place ? d_x.data() : d_out.data();
  ASSERT_TRUE(RmsNorm(RmsNormParams<T>{.x = d_x.data(),
                                       .weight = d_weight.data(),
                                       .out = out,
                                       .rows = rows,
                                       .dim = dim,
                                       .eps = 1e-5f},
                      nullptr)
                  .ok());
  ExpectNear(DownloadFloats(in_place ? d_x : d_out), want, Tolerance<T>::kAbs, Tolerance<T>::kRel,
             "rmsnorm dim " + std::to_string(dim));
}

TEST_F(ElementwiseGpuTest, RmsNormMatchesCpu) {
  for (const int32_t dim : {4096, 8192, 100, 8}) {
    CheckRmsNorm<__nv_bfloat16>(7, dim, /*in_place=*/false);
    CheckRmsNorm<__half>(7, dim, /*in_place=*/false);
  }
  CheckRmsNorm<__nv_bfloat16>(3, 4096, /*in_place=*/true);
}

template <typename T>
void CheckSiluAndMul(int32_t rows, int32_t dim) {
  // A fused [rows, 2 * dim] gate_up activation, as the MLP's merged projection writes it.
  const std::vector<float> gate_up = RandomRounded<T>(static_cast<size_t>(rows) * 2 * dim, 4, 2.0f);
  std::vector<float> gate(static_cast<size_t>(rows) * dim);
  std::vector<float> up(gate.size());
  for (int32_t r = 0; r < rows; ++r) {
    for (int32_t i = 0; i < dim; ++i) {
      gate[static_cast<size_t>(r) * dim + i] = gate_up[static_cast<size_t>(r) * 2 * dim + i];
      up[static_cast<size_t>(r) * dim + i] = gate_up[static_cast<size_t>(r) * 2 * dim + dim + i];
    }
  }
  std::vector<float> want(gate.size());
  cpu::SiluAndMul(gate.data(), up.data(), static_cast<int64_t>(want.size()), want.data());
  DeviceArray<T> d_gate_up = Upload(ToDeviceType<T>(gate_up));
  DeviceArray<T> d_out = Upload(std::vector<T>(want.size()));
  ASSERT_TRUE(SiluAndMul(SiluAndMulParams<T>{.gate = d_gate_up.data(),
                                             .gate_row_stride = 2 * dim,
                                             .up = d_gate_up.data() + dim,
                                             .up_row_stride = 2 * dim,
                                             .out = d_out.data(),
                                             .out_row_stride = dim,
                                             .rows = rows,
                                             .dim = dim},
                         nullptr)
                  .ok());
  ExpectNear(DownloadFloats(d_out), want, Tolerance<T>::kAbs, Tolerance<T>::kRel,
             "silu_and_mul dim " + std::to_string(dim));
}

TEST_F(ElementwiseGpuTest, SiluAndMulOnAFusedGateUpActivation) {
  for (const int32_t dim : {14336, 36}) {
    CheckSiluAndMul<__nv_bfloat16>(5, dim);
    CheckSiluAndMul<__half>(5, dim);
  }
}

// Argmax against the CPU sampler's greedy choice on the rounded logits: a 128k padded
// vocabulary (vector path) and an odd one (scalar path), ties across warps, NaN, and a padding
// column larger than every real logit.
template <typename T>
void CheckArgmax(int64_t vocab, int64_t stride) {
  const int32_t rows = 5;
  std::vector<float> logits = RandomRounded<T>(rows * stride, 9);
  for (int32_t r = 0; r < rows; ++r) {
    for (int64_t i = vocab; i < stride; ++i) logits[r * stride + i] = 1000.0f;
  }
  logits[0 * stride + 3] = 60.0f;  // a tie: the lower id wins
  logits[0 * stride + vocab - 1] = 60.0f;
  logits[1 * stride + 0] = std::numeric_limits<float>::quiet_NaN();
  logits[2 * stride + vocab / 2] = 70.0f;
  const std::vector<T> rounded_t = ToDeviceType<T>(logits);
  DeviceArray<T> d_logits = Upload(rounded_t);
  DeviceArray<int32_t> d_tokens = Upload(std::vector<int32_t>(rows, -7));
  ASSERT_TRUE(Argmax(ArgmaxParams<T>{.logits = d_logits.data(),
                                     .row_stride = stride,
                                     .vocab_size = vocab,
                                     .rows = rows,
                                     .tokens = d_tokens.data()},
                     nullptr)
                  .ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  auto tokens = d_tokens.ToHost();
  ASSERT_TRUE(tokens.ok());
  const sampling::SamplingParams greedy{.temperature = 0.0f};
  for (int32_t r = 0; r < rows; ++r) {
    std::vector<float> row;
    for (int64_t i = 0; i < vocab; ++i) row.push_back(ToFloatHost(rounded_t[r * stride + i]));
    sampling::SamplerState state(std::nullopt, {});
    EXPECT_EQ((*tokens)[r], sampling::Sample(absl::MakeSpan(row), greedy, state).value_or(-1))
        << "row " << r << ", vocab " << vocab;
  }
  EXPECT_EQ((*tokens)[0], 3);
  EXPECT_EQ((*tokens)[2], vocab / 2);
}

TEST_F(ElementwiseGpuTest, ArgmaxIsTheCpuSamplersGreedyChoice) {
  CheckArgmax<__nv_bfloat16>(128256, 128256);
  CheckArgmax<__half>(128256, 128256);
  CheckArgmax<__nv_bfloat16>(32001, 32008);
  CheckArgmax<__nv_bfloat16>(1001, 1001);
}

template <typename T>
void CheckAddInPlace(int64_t n) {
  const std::vector<float> y = RandomRounded<T>(n, 5);
  const std::vector<float> x = RandomRounded<T>(n, 6);
  std::vector<float> want(n);
  for (int64_t i = 0; i < n; ++i) want[i] = RoundToHost<T>(y[i] + x[i]);
  DeviceArray<T> d_y = Upload(ToDeviceType<T>(y));
  DeviceArray<T> d_x = Upload(ToDeviceType<T>(x));
  ASSERT_TRUE(
      AddInPlace(AddInPlaceParams<T>{.y = d_y.data(), .x = d_x.data(), .n = n}, nullptr).ok());
  ExpectExact(DownloadFloats(d_y), want, "add_in_place n " + std::to_string(n));
}

TEST_F(ElementwiseGpuTest, AddInPlaceRoundsOnce) {
  for (const int64_t n : {int64_t{4096} * 33, int64_t{1001}}) {
    CheckAddInPlace<__nv_bfloat16>(n);
    CheckAddInPlace<__half>(n);
  }
}

template <typename T>
void CheckRope(int head_dim, int num_heads, int num_kv_heads) {
  const std::vector<int32_t> positions = {0, 1, 7, 8191, 8192, 32767, 100000, 3};
  const int64_t num_tokens = static_cast<int64_t>(positions.size());
  const int64_t q_row = static_cast<int64_t>(num_heads) * head_dim;
  const int64_t kv_row = static_cast<int64_t>(num_kv_heads) * head_dim;
  const int64_t qkv_row = q_row + 2 * kv_row;  // a fused QKV activation: q | k | v
  const std::vector<float> qkv = RandomRounded<T>(num_tokens * qkv_row, 7);
  const std::vector<float> inv_freq =
      cpu::RopeInverseFrequencies(head_dim, 500000.0f, cpu::Llama3RopeScaling{});
  cpu::RopeAngles angles;
  cpu::ComputeRopeAngles(positions, inv_freq, &angles);
  std::vector<float> q(num_tokens * q_row);
  std::vector<float> k(num_tokens * kv_row);
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int64_t i = 0; i < q_row; ++i) q[t * q_row + i] = qkv[t * qkv_row + i];
    for (int64_t i = 0; i < kv_row; ++i) k[t * kv_row + i] = qkv[t * qkv_row + q_row + i];
  }
  cpu::ApplyRope(q.data(), num_tokens, num_heads, head_dim, angles.cos.data(), angles.sin.data());
  cpu::ApplyRope(k.data(), num_tokens, num_kv_heads, head_dim, angles.cos.data(),
                 angles.sin.data());
  std::vector<float> want = qkv;  // v is untouched
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int64_t i = 0; i < q_row; ++i) want[t * qkv_row + i] = q[t * q_row + i];
    for (int64_t i = 0; i < kv_row; ++i) want[t * qkv_row + q_row + i] = k[t * kv_row + i];
  }
  DeviceArray<T> d_qkv = Upload(ToDeviceType<T>(qkv));
  DeviceArray<int32_t> d_positions = Upload(positions);
  DeviceArray<float> d_inv_freq = Upload(inv_freq);
  ASSERT_TRUE(ApplyRope(RopeParams<T>{.query = d_qkv.data(),
                                      .query_token_stride = qkv_row,
                                      .key = d_qkv.data() + q_row,
                                      .key_token_stride = qkv_row,
                                      .positions = d_positions.data(),
                                      .inv_freq = d_inv_freq.data(),
                                      .num_tokens = static_cast<int32_t>(num_tokens),
                                      .num_heads = num_heads,
                                      .num_kv_heads = num_kv_heads,
                                      .head_dim = head_dim},
                        nullptr)
                  .ok());
  // Rotated values are O(1) sums of two products; the angles' cos/sin may differ from the
  // host's by an ulp or two of fp32 at large positions.
  ExpectNear(DownloadFloats(d_qkv), want, 4 * Tolerance<T>::kAbs, Tolerance<T>::kRel,
             "rope head_dim " + std::to_string(head_dim));
}

TEST_F(ElementwiseGpuTest, RopeMatchesCpuOnAFusedQkvActivation) {
  for (const int head_dim : {64, 80, 128, 256}) {
    CheckRope<__nv_bfloat16>(head_dim, 8, 2);
    CheckRope<__half>(head_dim, 8, 2);
  }
}

template <typename T>
void CheckReshapeAndCache(int head_dim, int block_size) {
  const int num_kv_heads = 3;
  const int num_heads = 6;
  const int num_blocks = 9;
  const int64_t kv_row = static_cast<int64_t>(num_kv_heads) * head_dim;
  const int64_t qkv_row = static_cast<int64_t>(num_heads) * head_dim + 2 * kv_row;
  // Slots in scattered blocks and offsets; -1 is a padding token and must be skipped.
  std::vector<int64_t> slots = {
      5,  int64_t{block_size} * 3,     int64_t{block_size} * 3 + block_size - 1,
      -1, int64_t{block_size} * 8 + 1, int64_t{block_size} * 2 + block_size / 2};
  const int64_t num_tokens = static_cast<int64_t>(slots.size());
  const std::vector<float> qkv = RandomRounded<T>(num_tokens * qkv_row, 8);
  std::vector<float> key(num_tokens * kv_row);
  std::vector<float> value(key.size());
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int64_t i = 0; i < kv_row; ++i) {
      key[t * kv_row + i] = qkv[t * qkv_row + num_heads * head_dim + i];
      value[t * kv_row + i] = qkv[t * qkv_row + num_heads * head_dim + kv_row + i];
    }
  }
  const size_t cache_elements = static_cast<size_t>(num_blocks) * kv_row * block_size;
  const float sentinel = -12345.0f;  // every slot not written keeps it
  std::vector<float> want_key(cache_elements, sentinel);
  std::vector<float> want_value(cache_elements, sentinel);
  std::vector<int64_t> real_slots;
  std::vector<float> real_key, real_value;
  for (int64_t t = 0; t < num_tokens; ++t) {
    if (slots[t] < 0) continue;
    real_slots.push_back(slots[t]);
    real_key.insert(real_key.end(), key.begin() + t * kv_row, key.begin() + (t + 1) * kv_row);
    real_value.insert(real_value.end(), value.begin() + t * kv_row,
                      value.begin() + (t + 1) * kv_row);
  }
  cpu::ReshapeAndCache<float>(
      real_key.data(), real_value.data(), real_slots,
      PagedKvCacheView<float>{want_key.data(), want_value.data(), num_blocks, num_kv_heads,
                              block_size, head_dim});
  DeviceArray<T> d_qkv = Upload(ToDeviceType<T>(qkv));
  DeviceArray<int64_t> d_slots = Upload(slots);
  DeviceArray<T> d_key = Upload(ToDeviceType<T>(std::vector<float>(cache_elements, sentinel)));
  DeviceArray<T> d_value = Upload(ToDeviceType<T>(std::vector<float>(cache_elements, sentinel)));
  const T* k_src = d_qkv.data() + num_heads * head_dim;
  ASSERT_TRUE(ReshapeAndCache(
                  ReshapeAndCacheParams<T>{
                      .key = k_src,
                      .key_token_stride = qkv_row,
                      .value = k_src + kv_row,
                      .value_token_stride = qkv_row,
                      .slot_mapping = d_slots.data(),
                      .num_tokens = static_cast<int32_t>(num_tokens),
                      .cache = PagedKvCacheView<T>{d_key.data(), d_value.data(), num_blocks,
                                                   num_kv_heads, block_size, head_dim}},
                  nullptr)
                  .ok());
  const std::string what =
      "reshape_and_cache d=" + std::to_string(head_dim) + " bs=" + std::to_string(block_size);
  for (float& x : want_key) x = RoundToHost<T>(x);
  for (float& x : want_value) x = RoundToHost<T>(x);
  ExpectExact(DownloadFloats(d_key), want_key, what + " key");
  ExpectExact(DownloadFloats(d_value), want_value, what + " value");
}

TEST_F(ElementwiseGpuTest, ReshapeAndCacheWritesSlotsAndSkipsPadding) {
  for (const int head_dim : {64, 80, 96, 128, 256}) {
    for (const int block_size : {8, 16, 32}) {
      CheckReshapeAndCache<__nv_bfloat16>(head_dim, block_size);
      CheckReshapeAndCache<__half>(head_dim, block_size);
    }
  }
}

TEST(ElementwiseArgumentsTest, RejectsBadShapesWithoutTouchingTheDevice) {
  EXPECT_EQ(RmsNorm(RmsNormParams<__nv_bfloat16>{.rows = -1, .dim = 8}, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      ApplyRope(RopeParams<__half>{.num_tokens = 1, .num_heads = 1, .head_dim = 7}, nullptr).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReshapeAndCache(
                ReshapeAndCacheParams<__nv_bfloat16>{
                    .key_token_stride = 12,
                    .value_token_stride = 12,
                    .num_tokens = 1,
                    .cache = PagedKvCacheView<__nv_bfloat16>{nullptr, nullptr, 1, 1, 16, 12}},
                nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pagoda::kernels::cuda
