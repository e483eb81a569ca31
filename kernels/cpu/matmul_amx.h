#pragma once

#include <cstdint>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/thread_pool.h"

// The bf16 matmul on Intel AMX tiles (Sapphire Rapids and later): TDPBF16PS multiplies a 16x32
// bf16 tile by a 32x16 one into 16x16 f32 sums, 16 times the work of an AVX-512 vdpbf16ps.
// Internal to kernels/cpu/matmul.cc, which dispatches here.
namespace pagoda::kernels::cpu::amx {

// Whether this CPU has AMX-BF16 and the kernel lets this process use the tile registers (asked
// once, with arch_prctl(ARCH_REQ_XCOMP_PERM)). Thread-safe.
bool Available();

// Whether MatMul below takes this product: bf16 weights with n a multiple of 16 and k of 32.
bool Supports(const MatMulArgs& a);

// y = x * W^T (+ bias), x rounded to bf16, products summed in f32: the accuracy of the AVX-512
// vdpbf16ps path. Weights in Hugging Face's layout are read in place as the tiles' left
// operand: the product is computed transposed, y^T = W * x^T (x packed into the right
// operand's pair-interleaved tiles), and each 16x16 block of sums is transposed on its way
// out. Weights packed at load (WeightLayout::kTiles) are the right operand: y = x * W^T as it
// stands, x only rounded to bf16, the sums stored as rows of y, and against a single 16-row
// block of x four weight blocks at a time (four accumulator chains). Both give the same sums.
// Requires Available() and Supports(a).
void MatMul(const MatMulArgs& a, ThreadPool& pool);

// y = silu(x * W_gate^T) * (x * W_up^T) (kernels/cpu/matmul.h, GatedMatMul): `gate` is the gate's
// product (no bias, not accumulating), `w_up` the up's weights, of its shape. Each 16-column
// block's gate and up tiles share the x tiles; the activation is applied to the sums in the
// tiles' epilogue. Requires Available() and Supports(gate).
void GatedMatMul(const MatMulArgs& gate, const void* w_up, ThreadPool& pool);

// The peak loop of the roofline (kernels/cpu/roofline.h): `iterations` rounds of 4 independent
// TDPBF16PS on register tiles of ones, 16 x 16 x 32 x 2 = 16,384 FLOP each, on the calling thread.
// Returns an element of the sums: 32 * iterations. Requires Available().
inline constexpr int kPeakTiles = 4;
inline constexpr double kFlopPerTileProduct = 16.0 * 16 * 32 * 2;
float PeakLoop(int64_t iterations);

}  // namespace pagoda::kernels::cpu::amx
