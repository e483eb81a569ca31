#pragma once

// The CPU model's bf16 matrices repacked into the order the AMX tiles read
// (kernels::cpu::WeightLayout::kTiles: a contiguous KiB per 16 x 32 tile instead of 16 rows
// hidden_size * 2 bytes apart), once at load. kernels/cpu/matmul_benchmark's
// BM_MatMulShapesTiled measures what it buys (docs/benchmarks.md).

#include "absl/status/status.h"
#include "kernels/cpu/thread_pool.h"
#include "model/model_weights.h"

namespace pagoda::model {

// Repacks every bf16 matrix of `parts` whose shape the layout takes
// (kernels::cpu::TilesLayoutFits) and marks it WeightTensor::tiled: every layer's projections
// and the lm_head (when tied, the embedding itself: kernels::cpu::Embedding gathers its rows
// from the tiles, and no second copy is made). A matrix in an owned buffer is replaced by
// its packed copy, the old buffer freed before the next matrix is packed (the peak is one
// matrix more); one mapped from the checkpoint gets a buffer of its own, and its mapped pages
// leave the resident set (madvise), so that the process does not hold the matrices twice. F32
// weights are left as they are. ResourceExhausted when a buffer cannot be had (then `parts` may be
// partly packed, every tensor still consistent).
absl::Status TileMatrices(ModelWeightsParts& parts, kernels::cpu::ThreadPool& pool);

// How many of those matrices are packed (0 when the model kept the checkpoint's layout).
int NumTiledMatrices(const ModelWeights& weights);

}  // namespace pagoda::model
