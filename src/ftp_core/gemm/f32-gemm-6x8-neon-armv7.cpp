// ARMv7 NEON 6x8 micro-kernel: 12 q-register accumulators; the 6 A values of one k come in
// three d registers and feed vmlaq_lane_f32 lane by lane (ARMv7 NEON has no fused FMA by lane).
// A tile at most 4 columns wide (the ragged last panel of a thin FTP tile's GEMM) runs the 6x4
// half: half the multiply-adds, and every output lane sees the same sequence as in the full one.
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

namespace {
// NV column vectors of 4 (1 or 2) on C tile `cc` (row stride ld, all NV*4 columns writable).
template <int NV>
inline void tile_6xNV(size_t kc, const float* a, const float* b, size_t ldb, float* cc, size_t ld,
                      const float* bias, int flags) {
  constexpr int MR = 6;
  float32x4_t acc[MR][NV];
  if (flags & kLoadC) {
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = vld1q_f32(cc + i * ld + 4 * v);
  } else {
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = vdupq_n_f32(bias ? bias[i] : 0.f);
  }
  for (size_t k = 0; k < kc; ++k) {
    const float32x2_t a01 = vld1_f32(a);
    const float32x2_t a23 = vld1_f32(a + 2);
    const float32x2_t a45 = vld1_f32(a + 4);
    float32x4_t bv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) bv[v] = vld1q_f32(b + 4 * v);
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      acc[0][v] = vmlaq_lane_f32(acc[0][v], bv[v], a01, 0);
      acc[1][v] = vmlaq_lane_f32(acc[1][v], bv[v], a01, 1);
      acc[2][v] = vmlaq_lane_f32(acc[2][v], bv[v], a23, 0);
      acc[3][v] = vmlaq_lane_f32(acc[3][v], bv[v], a23, 1);
      acc[4][v] = vmlaq_lane_f32(acc[4][v], bv[v], a45, 0);
      acc[5][v] = vmlaq_lane_f32(acc[5][v], bv[v], a45, 1);
    }
    a += MR;
    b += ldb;
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) vst1q_f32(cc + i * ld + 4 * v, epilogue(acc[i][v], flags));
}
}  // namespace

void f32_gemm_6x8_neon_armv7(size_t kc, const float* a, const float* b, size_t ldb, float* c, size_t ldc,
                             size_t m, size_t n, const float* bias, int flags) {
  constexpr int MR = 6, NR = 8;
  on_tile<MR, NR>(m == MR && n == NR, c, ldc, m, n, flags, [&](float* cc, size_t ld) {
    if (n <= 4)
      tile_6xNV<1>(kc, a, b, ldb, cc, ld, bias, flags);
    else
      tile_6xNV<2>(kc, a, b, ldb, cc, ld, bias, flags);
  });
}

}  // namespace ftp
