// AArch64 NEON 8x8 micro-kernel: 16 q-register accumulators, A column loaded as two q
// registers and used lane by lane with vfmaq_laneq_f32 (no separate broadcasts). A tile at most
// 4 columns wide (the ragged last panel of a thin FTP tile's GEMM) runs the 8x4 half: half the
// multiply-adds, and every output lane sees the same fma sequence as in the full one.
#include <arm_neon.h>

#include "ftp_core/gemm/edge_tile.hpp"
#include "ftp_core/gemm/gemm.hpp"

namespace ftp {

namespace {
inline float32x4_t epilogue(float32x4_t v, int flags) {
  if (flags & kActRelu) v = vmaxq_f32(v, vdupq_n_f32(0.f));
  if (flags & kActLeaky) v = vmaxq_f32(v, vmulq_n_f32(v, 0.1f));
  return v;
}
}  // namespace

// NV column vectors of 4 (1 or 2) on C tile `cc` (row stride ld, all NV*4 columns writable).
namespace {
template <int NV>
inline void tile_8xNV(size_t kc, const float* a, const float* b, size_t ldb, float* cc, size_t ld,
                      const float* bias, int flags) {
  constexpr int MR = 8;
  float32x4_t acc[MR][NV];
  if (flags & kLoadC) {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = vld1q_f32(cc + i * ld + 4 * v);
  } else {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = vdupq_n_f32(bias ? bias[i] : 0.f);
  }
  for (size_t k = 0; k < kc; ++k) {
    const float32x4_t a0 = vld1q_f32(a);
    const float32x4_t a1 = vld1q_f32(a + 4);
    float32x4_t bv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) bv[v] = vld1q_f32(b + 4 * v);
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      acc[0][v] = vfmaq_laneq_f32(acc[0][v], bv[v], a0, 0);
      acc[1][v] = vfmaq_laneq_f32(acc[1][v], bv[v], a0, 1);
      acc[2][v] = vfmaq_laneq_f32(acc[2][v], bv[v], a0, 2);
      acc[3][v] = vfmaq_laneq_f32(acc[3][v], bv[v], a0, 3);
      acc[4][v] = vfmaq_laneq_f32(acc[4][v], bv[v], a1, 0);
      acc[5][v] = vfmaq_laneq_f32(acc[5][v], bv[v], a1, 1);
      acc[6][v] = vfmaq_laneq_f32(acc[6][v], bv[v], a1, 2);
      acc[7][v] = vfmaq_laneq_f32(acc[7][v], bv[v], a1, 3);
    }
    a += MR;
    b += ldb;
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) vst1q_f32(cc + i * ld + 4 * v, epilogue(acc[i][v], flags));
}
}  // namespace

void f32_gemm_8x8_neon_aarch64(size_t kc, const float* a, const float* b, size_t ldb, float* c, size_t ldc,
                               size_t m, size_t n, const float* bias, int flags) {
  constexpr int MR = 8, NR = 8;
  on_tile<MR, NR>(m == MR && n == NR, c, ldc, m, n, flags, [&](float* cc, size_t ld) {
    if (n <= 4)
      tile_8xNV<1>(kc, a, b, ldb, cc, ld, bias, flags);
    else
      tile_8xNV<2>(kc, a, b, ldb, cc, ld, bias, flags);
  });
}

}  // namespace ftp
