// AVX2 + FMA 6x16 micro-kernel (12 ymm accumulators, 2 B loads + 6 broadcasts per k).
#include <immintrin.h>

#include "ftp_core/gemm/gemm.hpp"

namespace ftp {

namespace {
inline __m256 epilogue(__m256 v, int flags) {
  if (flags & kActRelu) v = _mm256_max_ps(v, _mm256_setzero_ps());
  if (flags & kActLeaky) v = _mm256_max_ps(v, _mm256_mul_ps(v, _mm256_set1_ps(0.1f)));
  return v;
}
}  // namespace

void f32_gemm_6x16_avx2(size_t kc, const float* a, const float* b, size_t ldb, float* c, size_t ldc,
                        size_t m, size_t n, const float* bias, int flags) {
  constexpr int MR = 6, NR = 16;
  const bool full = (m == MR && n == NR);
  alignas(32) float tmp[MR * NR];
  float* cc = c;
  size_t ld = ldc;
  if (!full) {
    // Edge tile: work on a full-size scratch tile, copy the valid part in and out.
    cc = tmp;
    ld = NR;
    if (flags & kLoadC)
      for (size_t i = 0; i < MR; ++i)
        for (size_t j = 0; j < NR; ++j) tmp[i * NR + j] = (i < m && j < n) ? c[i * ldc + j] : 0.f;
  }
  __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
  if (flags & kLoadC) {
    c00 = _mm256_loadu_ps(cc + 0 * ld); c01 = _mm256_loadu_ps(cc + 0 * ld + 8);
    c10 = _mm256_loadu_ps(cc + 1 * ld); c11 = _mm256_loadu_ps(cc + 1 * ld + 8);
    c20 = _mm256_loadu_ps(cc + 2 * ld); c21 = _mm256_loadu_ps(cc + 2 * ld + 8);
    c30 = _mm256_loadu_ps(cc + 3 * ld); c31 = _mm256_loadu_ps(cc + 3 * ld + 8);
    c40 = _mm256_loadu_ps(cc + 4 * ld); c41 = _mm256_loadu_ps(cc + 4 * ld + 8);
    c50 = _mm256_loadu_ps(cc + 5 * ld); c51 = _mm256_loadu_ps(cc + 5 * ld + 8);
  } else if (bias) {
    c00 = c01 = _mm256_set1_ps(bias[0]);
    c10 = c11 = _mm256_set1_ps(bias[1]);
    c20 = c21 = _mm256_set1_ps(bias[2]);
    c30 = c31 = _mm256_set1_ps(bias[3]);
    c40 = c41 = _mm256_set1_ps(bias[4]);
    c50 = c51 = _mm256_set1_ps(bias[5]);
  } else {
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
  }
#pragma GCC unroll 4
  for (size_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b);
    const __m256 b1 = _mm256_loadu_ps(b + 8);
    __m256 av;
    av = _mm256_broadcast_ss(a + 0); c00 = _mm256_fmadd_ps(av, b0, c00); c01 = _mm256_fmadd_ps(av, b1, c01);
    av = _mm256_broadcast_ss(a + 1); c10 = _mm256_fmadd_ps(av, b0, c10); c11 = _mm256_fmadd_ps(av, b1, c11);
    av = _mm256_broadcast_ss(a + 2); c20 = _mm256_fmadd_ps(av, b0, c20); c21 = _mm256_fmadd_ps(av, b1, c21);
    av = _mm256_broadcast_ss(a + 3); c30 = _mm256_fmadd_ps(av, b0, c30); c31 = _mm256_fmadd_ps(av, b1, c31);
    av = _mm256_broadcast_ss(a + 4); c40 = _mm256_fmadd_ps(av, b0, c40); c41 = _mm256_fmadd_ps(av, b1, c41);
    av = _mm256_broadcast_ss(a + 5); c50 = _mm256_fmadd_ps(av, b0, c50); c51 = _mm256_fmadd_ps(av, b1, c51);
    a += MR;
    b += ldb;
  }
  _mm256_storeu_ps(cc + 0 * ld, epilogue(c00, flags)); _mm256_storeu_ps(cc + 0 * ld + 8, epilogue(c01, flags));
  _mm256_storeu_ps(cc + 1 * ld, epilogue(c10, flags)); _mm256_storeu_ps(cc + 1 * ld + 8, epilogue(c11, flags));
  _mm256_storeu_ps(cc + 2 * ld, epilogue(c20, flags)); _mm256_storeu_ps(cc + 2 * ld + 8, epilogue(c21, flags));
  _mm256_storeu_ps(cc + 3 * ld, epilogue(c30, flags)); _mm256_storeu_ps(cc + 3 * ld + 8, epilogue(c31, flags));
  _mm256_storeu_ps(cc + 4 * ld, epilogue(c40, flags)); _mm256_storeu_ps(cc + 4 * ld + 8, epilogue(c41, flags));
  _mm256_storeu_ps(cc + 5 * ld, epilogue(c50, flags)); _mm256_storeu_ps(cc + 5 * ld + 8, epilogue(c51, flags));
  if (!full)
    for (size_t i = 0; i < m; ++i)
      for (size_t j = 0; j < n; ++j) c[i * ldc + j] = tmp[i * NR + j];
}

}  // namespace ftp
