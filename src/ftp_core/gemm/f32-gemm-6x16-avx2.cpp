// AVX2 + FMA 6x16 micro-kernel (12 ymm accumulators, 2 B loads + 6 broadcasts per k). A tile
// at most 8 columns wide (the ragged last panel of a thin FTP tile's GEMM, e.g. 19 Winograd
// tiles = 16 + 3) runs the 6x8 half, which does half the multiply-adds. Every output lane sees
// the same fmadd sequence in both, so the result does not depend on which one ran.
#include <immintrin.h>

#include "ftp_core/gemm/edge_tile.hpp"
#include "ftp_core/gemm/gemm.hpp"

namespace ftp {

namespace {
inline __m256 epilogue(__m256 v, int flags) {
  if (flags & kActRelu) v = _mm256_max_ps(v, _mm256_setzero_ps());
  if (flags & kActLeaky) v = _mm256_max_ps(v, _mm256_mul_ps(v, _mm256_set1_ps(0.1f)));
  return v;
}

// NV column vectors of 8 (1 or 2) on C tile `cc` (row stride ld, all NV*8 columns writable).
template <int NV>
inline void tile_6xNV(size_t kc, const float* a, const float* b, size_t ldb, float* cc, size_t ld,
                      const float* bias, int flags) {
  constexpr int MR = 6;
  __m256 acc[MR][NV];
  if (flags & kLoadC) {
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_loadu_ps(cc + i * ld + 8 * v);
  } else {
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = bias ? _mm256_set1_ps(bias[i]) : _mm256_setzero_ps();
  }
#pragma GCC unroll 4
  for (size_t k = 0; k < kc; ++k) {
    __m256 bv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) bv[v] = _mm256_loadu_ps(b + 8 * v);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m256 av = _mm256_broadcast_ss(a + i);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(av, bv[v], acc[i][v]);
    }
    a += MR;
    b += ldb;
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(cc + i * ld + 8 * v, epilogue(acc[i][v], flags));
}
}  // namespace

void f32_gemm_6x16_avx2(size_t kc, const float* a, const float* b, size_t ldb, float* c, size_t ldc,
                        size_t m, size_t n, const float* bias, int flags) {
  constexpr int MR = 6, NR = 16;
  on_tile<MR, NR>(m == MR && n == NR, c, ldc, m, n, flags, [&](float* cc, size_t ld) {
    if (n <= 8)
      tile_6xNV<1>(kc, a, b, ldb, cc, ld, bias, flags);
    else
      tile_6xNV<2>(kc, a, b, ldb, cc, ld, bias, flags);
  });
}

}  // namespace ftp
