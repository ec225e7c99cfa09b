// AVX-512F 8x32 micro-kernel (16 zmm accumulators, 2 B loads + 8 embedded broadcasts per k).
// 8 rows divide every power-of-two filter count, so no rows of the M edge are wasted.
#if defined(DEEPTHINGS_SIMDE_AVX512)
// Verification build only (tests/kernels/test_kernel_avx512_simde.py): this same source through
// SIMDe's portable AVX-512, so a CPU without AVX-512 can still check the kernel's logic.
#include "ftp_core/gemm/simde_avx512.hpp"
#else
#include <immintrin.h>
#endif

#include "ftp_core/gemm/gemm.hpp"

namespace ftp {

namespace {
inline __m512 epilogue(__m512 v, int flags) {
  if (flags & kActRelu) v = _mm512_max_ps(v, _mm512_setzero_ps());
  if (flags & kActLeaky) v = _mm512_max_ps(v, _mm512_mul_ps(v, _mm512_set1_ps(0.1f)));
  return v;
}
}  // namespace

void f32_gemm_8x32_avx512(size_t kc, const float* a, const float* b, size_t ldb, float* c, size_t ldc,
                          size_t m, size_t n, const float* bias, int flags) {
  constexpr int MR = 8, NR = 32;
  // Column edges use masks; only a short M edge needs the scratch tile.
  const __mmask16 mk0 = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
  const __mmask16 mk1 = n >= 32 ? (__mmask16)0xFFFF : (n <= 16 ? (__mmask16)0 : (__mmask16)((1u << (n - 16)) - 1u));
  alignas(64) float tmp[MR * NR];
  float* cc = c;
  size_t ld = ldc;
  if (m != MR) {
    cc = tmp;
    ld = NR;
    if (flags & kLoadC)
      for (size_t i = 0; i < MR; ++i)
        for (size_t j = 0; j < NR; ++j) tmp[i * NR + j] = (i < m && j < n) ? c[i * ldc + j] : 0.f;
  }
  __m512 acc0[MR], acc1[MR];
  if (flags & kLoadC) {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      acc0[i] = _mm512_maskz_loadu_ps(mk0, cc + i * ld);
      acc1[i] = _mm512_maskz_loadu_ps(mk1, cc + i * ld + 16);
    }
  } else {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = bias ? _mm512_set1_ps(bias[i]) : _mm512_setzero_ps();
  }
  for (size_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_loadu_ps(b);
    const __m512 b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(a[i]);
      acc0[i] = _mm512_fmadd_ps(av, b0, acc0[i]);
      acc1[i] = _mm512_fmadd_ps(av, b1, acc1[i]);
    }
    a += MR;
    b += ldb;
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    _mm512_mask_storeu_ps(cc + i * ld, mk0, epilogue(acc0[i], flags));
    _mm512_mask_storeu_ps(cc + i * ld + 16, mk1, epilogue(acc1[i], flags));
  }
  if (m != MR)
    for (size_t i = 0; i < m; ++i)
      for (size_t j = 0; j < n; ++j) c[i * ldc + j] = tmp[i * NR + j];
}

}  // namespace ftp
