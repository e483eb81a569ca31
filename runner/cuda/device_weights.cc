#include "runner/cuda/device_weights.h"

#include <cstring>
#include <utility>

#include "common/check.h"
#include "common/status_macros.h"
#include "model/llama_model.h"

namespace pagoda::runner::cuda {
namespace {

namespace kc = kernels::cuda;

float ElementAsFloat(const model::WeightTensor& w, int64_t i) {
  switch (w.dtype) {
    case model::DType::kF32:
      return static_cast<const float*>(w.data)[i];
    case model::DType::kBF16:
      return model::Bf16ToF32(static_cast<const uint16_t*>(w.data)[i]);
    case model::DType::kF16:
      return model::F16ToF32(static_cast<const uint16_t*>(w.data)[i]);
    case model::DType::kInt8:  // KV-cache types only: never a weight's
    case model::DType::kFp8E4M3:
    case model::DType::kFp8E5M2:
      break;
  }
  return 0;
}

// A weight in a 16-bit element type, built on the host as rows of a zero-padded matrix.
class HostMatrix {
 public:
  HostMatrix(int64_t rows, int64_t cols, model::DType dtype)
      : cols_(cols), dtype_(dtype), bits_(static_cast<size_t>(rows * cols), uint16_t{0}) {}

  // Copies `w` ([r, c], or a vector [c] as r = 1) to rows [row, row + r), columns [0, c).
  void Put(const model::WeightTensor& w, int64_t row) {
    const int64_t rows = w.shape.size() == 2 ? w.shape[0] : 1;
    const int64_t cols = w.shape.back();
    PAGODA_CHECK(cols <= cols_ && (row + rows) * cols_ <= static_cast<int64_t>(bits_.size()));
    for (int64_t r = 0; r < rows; ++r) {
      uint16_t* dst = bits_.data() + (row + r) * cols_;
      if (w.dtype == dtype_) {
        std::memcpy(dst, static_cast<const uint16_t*>(w.data) + r * cols, cols * sizeof(uint16_t));
        continue;
      }
      for (int64_t c = 0; c < cols; ++c) {
        const float value = ElementAsFloat(w, r * cols + c);
        dst[c] = dtype_ == model::DType::kBF16 ? model::F32ToBf16(value) : model::F32ToF16(value);
      }
    }
  }

  absl::StatusOr<kc::DeviceBuffer> Upload() const {
    PAGODA_ASSIGN_OR_RETURN(kc::DeviceBuffer buffer,
                            kc::DeviceBuffer::Create(bits_.size() * sizeof(uint16_t)));
    PAGODA_RETURN_IF_ERROR(buffer.CopyFromHost(bits_.data(), bits_.size() * sizeof(uint16_t)));
    return buffer;
  }

 private:
  int64_t cols_;
  model::DType dtype_;
  std::vector<uint16_t> bits_;
};

// A bias vector [n] as a column [n, 1], so that HostMatrix puts it in rows.
model::WeightTensor AsColumn(const model::WeightTensor& t) {
  model::WeightTensor column = t;
  column.shape = {t.shape[0], 1};
  return column;
}

}  // namespace

absl::StatusOr<DeviceWeights> UploadWeights(const model::ModelWeights& w, const DeviceDims& dims,
                                            model::DType dtype) {
  PAGODA_CHECK(dtype == model::DType::kBF16 || dtype == model::DType::kF16);
  DeviceWeights out;
  const int64_t h = dims.hidden;
  const auto upload = [&out](const HostMatrix& m) -> absl::StatusOr<kc::DeviceBuffer> {
    PAGODA_ASSIGN_OR_RETURN(kc::DeviceBuffer b, m.Upload());
    out.size_bytes += static_cast<int64_t>(b.size_bytes());
    return b;
  };
  const auto single = [&](const model::WeightTensor& t, int64_t rows, int64_t cols) {
    HostMatrix m(rows, cols, dtype);
    m.Put(t, 0);
    return upload(m);
  };
  PAGODA_ASSIGN_OR_RETURN(out.embed, single(w.embed_tokens(), dims.vocab, h));
  const bool tied = &w.lm_head() == &w.embed_tokens();
  if (!tied || dims.vocab_padded != dims.vocab) {
    PAGODA_ASSIGN_OR_RETURN(out.lm_head, single(w.lm_head(), dims.vocab_padded, h));
  }
  PAGODA_ASSIGN_OR_RETURN(out.final_norm, single(w.final_norm(), 1, h));
  for (const model::LayerWeights& lw : w.layers()) {
    DeviceLayer layer;
    PAGODA_ASSIGN_OR_RETURN(layer.input_norm, single(lw.input_norm, 1, h));
    PAGODA_ASSIGN_OR_RETURN(layer.post_norm, single(lw.post_attention_norm, 1, h));
    HostMatrix qkv(dims.qkv_dim, h, dtype);
    qkv.Put(lw.q_proj, 0);
    qkv.Put(lw.k_proj, dims.q_dim);
    qkv.Put(lw.v_proj, dims.q_dim + dims.kv_dim);
    PAGODA_ASSIGN_OR_RETURN(layer.qkv, upload(qkv));
    if (lw.q_bias.has_value()) {
      HostMatrix bias(dims.qkv_dim, 1, dtype);
      bias.Put(AsColumn(*lw.q_bias), 0);
      bias.Put(AsColumn(*lw.k_bias), dims.q_dim);
      bias.Put(AsColumn(*lw.v_bias), dims.q_dim + dims.kv_dim);
      PAGODA_ASSIGN_OR_RETURN(layer.qkv_bias, upload(bias));
    }
    PAGODA_ASSIGN_OR_RETURN(layer.o_proj, single(lw.o_proj, h, dims.q_dim));
    HostMatrix gate_up(2 * dims.intermediate, h, dtype);
    gate_up.Put(lw.gate_proj, 0);
    gate_up.Put(lw.up_proj, dims.intermediate);
    PAGODA_ASSIGN_OR_RETURN(layer.gate_up, upload(gate_up));
    PAGODA_ASSIGN_OR_RETURN(layer.down, single(lw.down_proj, h, dims.intermediate));
    out.layers.push_back(std::move(layer));
  }
  const std::vector<float> inv_freq = model::RopeInverseFrequencies(w.config());
  const size_t inv_freq_bytes = inv_freq.size() * sizeof(float);
  PAGODA_ASSIGN_OR_RETURN(out.inv_freq, kc::DeviceBuffer::Create(inv_freq_bytes));
  PAGODA_RETURN_IF_ERROR(out.inv_freq.CopyFromHost(inv_freq.data(), inv_freq_bytes));
  out.size_bytes += static_cast<int64_t>(inv_freq_bytes);
  return out;
}

}  // namespace pagoda::runner::cuda
