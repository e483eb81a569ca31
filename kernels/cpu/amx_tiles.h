#pragma once

// AMX tile helpers shared by the AMX kernels (matmul_amx.cc, attention_blocks.cc). Internal to
// kernels/cpu. Each function carries the AMX target attribute, so callers must be compiled for
// it and run only where amx::Available() (matmul_amx.h) is true.
#if defined(__x86_64__)

#include <immintrin.h>

#include <cstdint>

#define PAGODA_AMX_TARGET \
  __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

namespace pagoda::kernels::cpu::amx {

inline constexpr int kTile = 16;   // rows of a tile; f32 sums per row
inline constexpr int kTileK = 32;  // bf16 values in a tile row (64 bytes)

// The tile layout register image (Intel SDM, LDTILECFG): palette 1, then bytes per row and rows
// for each of the 8 tile registers.
struct alignas(64) TileConfig {
  uint8_t palette_id = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Every tile register 16 rows of 64 bytes (16 x 32 bf16, or 16 x 16 f32 sums), on this thread.
PAGODA_AMX_TARGET inline void ConfigureTiles() {
  TileConfig config;
  for (int t = 0; t < 8; ++t) {
    config.rows[t] = kTile;
    config.colsb[t] = 64;
  }
  // ldtilecfg's asm names only the first bytes of the config as its input: make every store
  // to it happen first.
  __asm__ volatile("" : : "r"(&config) : "memory");
  _tile_loadconfig(&config);
}

}  // namespace pagoda::kernels::cpu::amx

#endif  // __x86_64__
