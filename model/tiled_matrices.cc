#include "model/tiled_matrices.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "common/status_macros.h"
#include "kernels/cpu/matmul.h"

namespace pagoda::model {
namespace {

// A matrix mapped from the checkpoint is not read again once packed: its pages leave this
// process's resident set (the pages wholly inside it; a shared edge page may hold a tensor still
// in use). The mapping is read-only and private, so a later read would fault the file back in.
void DropMappedPages(const void* data, int64_t size_bytes) {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(data);
  const uintptr_t first = (begin + page - 1) / page * page;
  const uintptr_t last = (begin + static_cast<uintptr_t>(size_bytes)) / page * page;
  // Advice only: the packed copy is right whether or not the kernel takes it.
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

absl::Status TileOne(WeightTensor& tensor, std::vector<WeightBuffer>& buffers,
                     const SafetensorsCheckpoint* checkpoint, kernels::cpu::ThreadPool& pool) {
  if (tensor.tiled || tensor.dtype != DType::kBF16 || tensor.shape.size() != 2 ||
      !kernels::cpu::TilesLayoutFits(tensor.shape[0], tensor.shape[1])) {
    return absl::OkStatus();
  }
  PAGODA_ASSIGN_OR_RETURN(WeightBuffer packed, WeightBuffer::Allocate(tensor.size_bytes()));
  kernels::cpu::PackWeightsToTiles(static_cast<const uint16_t*>(tensor.data), tensor.shape[0],
                                   tensor.shape[1], static_cast<uint16_t*>(packed.data()), pool);
  const auto owner = std::find_if(buffers.begin(), buffers.end(), [&](const WeightBuffer& b) {
    return b.data() == tensor.data && b.size_bytes() == tensor.size_bytes();
  });
  // Only a file's mapped pages are dropped: anonymous memory would read back as zeros.
  if (owner == buffers.end() && checkpoint != nullptr &&
      checkpoint->Maps(tensor.data, tensor.size_bytes())) {
    DropMappedPages(tensor.data, tensor.size_bytes());
  }
  tensor.data = packed.data();
  tensor.tiled = true;
  if (owner != buffers.end()) {
    *owner = std::move(packed);  // the rows copy is freed here
  } else {
    buffers.push_back(std::move(packed));
  }
  return absl::OkStatus();
}

// The matrices the CPU products read: every layer's projections and the lm_head (when tied, the
// embedding, so the token lookup reads the tiles too). Const or not, as the arguments are.
template <typename Layers, typename Tensor, typename Fn>
void ForEachProductMatrix(Layers& layers, Tensor& lm_head, const Fn& fn) {
  for (auto& layer : layers) {
    for (auto* m : {&layer.q_proj, &layer.k_proj, &layer.v_proj, &layer.o_proj, &layer.gate_proj,
                    &layer.up_proj, &layer.down_proj}) {
      fn(*m);
    }
  }
  fn(lm_head);
}

}  // namespace

absl::Status TileMatrices(ModelWeightsParts& parts, kernels::cpu::ThreadPool& pool) {
  WeightTensor& lm_head = parts.lm_head.has_value() ? *parts.lm_head : parts.embed_tokens;
  absl::Status status;
  ForEachProductMatrix(parts.layers, lm_head, [&](WeightTensor& m) {
    if (status.ok()) status = TileOne(m, parts.buffers, parts.checkpoint.get(), pool);
  });
  return status;
}

int NumTiledMatrices(const ModelWeights& weights) {
  int n = 0;
  ForEachProductMatrix(weights.layers(), weights.lm_head(),
                       [&](const WeightTensor& m) { n += m.tiled ? 1 : 0; });
  return n;
}

}  // namespace pagoda::model
