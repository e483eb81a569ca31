#pragma once

// AMX tile helpers shared by the AMX kernels (matmul_amx.cc, attention_amx.cc). Internal to
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

// In place: r[i] lane j becomes r[j] lane i (a 16 x 16 transpose of 32-bit values).
PAGODA_AMX_TARGET inline void Transpose16x16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // r[4i + j], 128-bit lane L: rows 4i .. 4i+3 of column 4L + j.
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 2]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 1]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
  }
  __m512 out[16];
  for (int j = 0; j < 4; ++j) {
    const __m512 ab_lo = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x44);
    const __m512 ab_hi = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xEE);
    const __m512 cd_lo = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x44);
    const __m512 cd_hi = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xEE);
    out[j] = _mm512_shuffle_f32x4(ab_lo, cd_lo, 0x88);
    out[4 + j] = _mm512_shuffle_f32x4(ab_lo, cd_lo, 0xDD);
    out[8 + j] = _mm512_shuffle_f32x4(ab_hi, cd_hi, 0x88);
    out[12 + j] = _mm512_shuffle_f32x4(ab_hi, cd_hi, 0xDD);
  }
  for (int i = 0; i < 16; ++i) r[i] = out[i];
}

}  // namespace pagoda::kernels::cpu::amx

#endif  // __x86_64__
