// AVX-512F 8x32 micro-kernel (16 zmm accumulators, 2 B loads + 8 embedded broadcasts per k).
// 8 rows divide every power-of-two filter count, so no rows of the M edge are wasted. A ragged
// panel (the last one of a thin FTP tile's GEMM: 19 Winograd tiles of a 2-row strip, 38 of a
// 4-row one) runs only the vectors it needs: 8 columns in a ymm, 16 in a zmm, 24 in a zmm and
// a ymm. Every output lane sees the same fmadd sequence in each variant, so the result does
// not depend on which one ran.
#if defined(DEEPTHINGS_SIMDE_AVX512)
// Verification build only (tests/kernels/test_kernel_avx512_simde.py): this same source through
// SIMDe's portable AVX-512, so a CPU without AVX-512 can still check the kernel's logic.
#include "ftp_core/gemm/simde_avx512.hpp"
#else
#include <immintrin.h>
#endif

#include "ftp_core/gemm/edge_tile.hpp"
#include "ftp_core/gemm/gemm.hpp"

namespace ftp {

namespace {
inline __m512 epilogue(__m512 v, int flags) {
  if (flags & kActRelu) v = _mm512_max_ps(v, _mm512_setzero_ps());
  if (flags & kActLeaky) v = _mm512_max_ps(v, _mm512_mul_ps(v, _mm512_set1_ps(0.1f)));
  return v;
}

inline __m256 epilogue8(__m256 v, int flags) {
  if (flags & kActRelu) v = _mm256_max_ps(v, _mm256_setzero_ps());
  if (flags & kActLeaky) v = _mm256_max_ps(v, _mm256_mul_ps(v, _mm256_set1_ps(0.1f)));
  return v;
}

// NZ column vectors of 16 and NY (0 or 1) of 8 after them, on C tile `cc` (row stride ld).
// Columns are masked: zmm v by mz[v], the ymm by my. Zen 4 runs a 512-bit FMA as two 256-bit
// halves, so a ragged panel of 17..24 columns costs 24 lanes instead of 32 with the ymm.
template <int NZ, int NY>
inline void tile_8xN(size_t kc, const float* a, const float* b, size_t ldb, float* cc, size_t ld,
                     const __mmask16 (&mz)[2], __mmask8 my, const float* bias, int flags) {
  constexpr int MR = 8;
  constexpr int NZa = NZ > 0 ? NZ : 1;  // array sizes must not be 0
  constexpr int NYa = NY > 0 ? NY : 1;
  __m512 acc[MR][NZa];
  __m256 acy[MR][NYa];
  if (flags & kLoadC) {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 2
      for (int v = 0; v < NZ; ++v) acc[i][v] = _mm512_maskz_loadu_ps(mz[v], cc + i * ld + 16 * v);
      if (NY) acy[i][0] = _mm256_maskz_loadu_ps(my, cc + i * ld + 16 * NZ);
    }
  } else {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 2
      for (int v = 0; v < NZ; ++v) acc[i][v] = bias ? _mm512_set1_ps(bias[i]) : _mm512_setzero_ps();
      if (NY) acy[i][0] = bias ? _mm256_set1_ps(bias[i]) : _mm256_setzero_ps();
    }
  }
  for (size_t k = 0; k < kc; ++k) {
    __m512 bv[NZa];
    __m256 by[NYa];
#pragma GCC unroll 2
    for (int v = 0; v < NZ; ++v) bv[v] = _mm512_loadu_ps(b + 16 * v);
    if (NY) by[0] = _mm256_loadu_ps(b + 16 * NZ);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 2
      for (int v = 0; v < NZ; ++v) acc[i][v] = _mm512_fmadd_ps(_mm512_set1_ps(a[i]), bv[v], acc[i][v]);
      if (NY) acy[i][0] = _mm256_fmadd_ps(_mm256_set1_ps(a[i]), by[0], acy[i][0]);
    }
    a += MR;
    b += ldb;
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 2
    for (int v = 0; v < NZ; ++v) _mm512_mask_storeu_ps(cc + i * ld + 16 * v, mz[v], epilogue(acc[i][v], flags));
    if (NY) _mm256_mask_storeu_ps(cc + i * ld + 16 * NZ, my, epilogue8(acy[i][0], flags));
  }
}
}  // namespace

void f32_gemm_8x32_avx512(size_t kc, const float* a, const float* b, size_t ldb, float* c, size_t ldc,
                          size_t m, size_t n, const float* bias, int flags) {
  constexpr int MR = 8, NR = 32;
  // Column edges use masks; only a short M edge needs the scratch tile.
  const __mmask16 mk[2] = {
      n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u),
      n >= 32 ? (__mmask16)0xFFFF : (n <= 16 ? (__mmask16)0 : (__mmask16)((1u << (n - 16)) - 1u))};
  on_tile<MR, NR>(m == MR, c, ldc, m, n, flags, [&](float* cc, size_t ld) {
    if (n <= 8)
      tile_8xN<0, 1>(kc, a, b, ldb, cc, ld, mk, (__mmask8)((1u << n) - 1u), bias, flags);
    else if (n <= 16)
      tile_8xN<1, 0>(kc, a, b, ldb, cc, ld, mk, 0, bias, flags);
    else if (n <= 24)
      tile_8xN<1, 1>(kc, a, b, ldb, cc, ld, mk, (__mmask8)((1u << (n - 16)) - 1u), bias, flags);
    else
      tile_8xN<2, 0>(kc, a, b, ldb, cc, ld, mk, 0, bias, flags);
  });
}

}  // namespace ftp
