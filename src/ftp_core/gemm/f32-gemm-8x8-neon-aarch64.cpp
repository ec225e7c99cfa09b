// AArch64 NEON 8x8 micro-kernel: 16 q-register accumulators, A column loaded as two q
// registers and used lane by lane with vfmaq_laneq_f32 (no separate broadcasts).
#include <arm_neon.h>

#include "ftp_core/gemm/gemm.hpp"

namespace ftp {

namespace {
inline float32x4_t epilogue(float32x4_t v, int flags) {
  if (flags & kActRelu) v = vmaxq_f32(v, vdupq_n_f32(0.f));
  if (flags & kActLeaky) v = vmaxq_f32(v, vmulq_n_f32(v, 0.1f));
  return v;
}
}  // namespace

void f32_gemm_8x8_neon_aarch64(size_t kc, const float* a, const float* b, size_t ldb, float* c, size_t ldc,
                               size_t m, size_t n, const float* bias, int flags) {
  constexpr int MR = 8, NR = 8;
  const bool full = (m == MR && n == NR);
  alignas(16) float tmp[MR * NR];
  float* cc = c;
  size_t ld = ldc;
  if (!full) {
    cc = tmp;
    ld = NR;
    if (flags & kLoadC)
      for (size_t i = 0; i < MR; ++i)
        for (size_t j = 0; j < NR; ++j) tmp[i * NR + j] = (i < m && j < n) ? c[i * ldc + j] : 0.f;
  }
  float32x4_t acc0[MR], acc1[MR];
  if (flags & kLoadC) {
    for (int i = 0; i < MR; ++i) {
      acc0[i] = vld1q_f32(cc + i * ld);
      acc1[i] = vld1q_f32(cc + i * ld + 4);
    }
  } else {
    for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = vdupq_n_f32(bias ? bias[i] : 0.f);
  }
  for (size_t k = 0; k < kc; ++k) {
    const float32x4_t a0 = vld1q_f32(a);
    const float32x4_t a1 = vld1q_f32(a + 4);
    const float32x4_t b0 = vld1q_f32(b);
    const float32x4_t b1 = vld1q_f32(b + 4);
    acc0[0] = vfmaq_laneq_f32(acc0[0], b0, a0, 0); acc1[0] = vfmaq_laneq_f32(acc1[0], b1, a0, 0);
    acc0[1] = vfmaq_laneq_f32(acc0[1], b0, a0, 1); acc1[1] = vfmaq_laneq_f32(acc1[1], b1, a0, 1);
    acc0[2] = vfmaq_laneq_f32(acc0[2], b0, a0, 2); acc1[2] = vfmaq_laneq_f32(acc1[2], b1, a0, 2);
    acc0[3] = vfmaq_laneq_f32(acc0[3], b0, a0, 3); acc1[3] = vfmaq_laneq_f32(acc1[3], b1, a0, 3);
    acc0[4] = vfmaq_laneq_f32(acc0[4], b0, a1, 0); acc1[4] = vfmaq_laneq_f32(acc1[4], b1, a1, 0);
    acc0[5] = vfmaq_laneq_f32(acc0[5], b0, a1, 1); acc1[5] = vfmaq_laneq_f32(acc1[5], b1, a1, 1);
    acc0[6] = vfmaq_laneq_f32(acc0[6], b0, a1, 2); acc1[6] = vfmaq_laneq_f32(acc1[6], b1, a1, 2);
    acc0[7] = vfmaq_laneq_f32(acc0[7], b0, a1, 3); acc1[7] = vfmaq_laneq_f32(acc1[7], b1, a1, 3);
    a += MR;
    b += ldb;
  }
  for (int i = 0; i < MR; ++i) {
    vst1q_f32(cc + i * ld, epilogue(acc0[i], flags));
    vst1q_f32(cc + i * ld + 4, epilogue(acc1[i], flags));
  }
  if (!full)
    for (size_t i = 0; i < m; ++i)
      for (size_t j = 0; j < n; ++j) c[i * ldc + j] = tmp[i * NR + j];
}

}  // namespace ftp
