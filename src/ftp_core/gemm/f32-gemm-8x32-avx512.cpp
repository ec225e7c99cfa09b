// AVX-512F 8x32 micro-kernel (16 zmm accumulators, 2 B loads + 8 embedded broadcasts per k).
// 8 rows divide every power-of-two filter count, so no rows of the M edge are wasted. A tile at
// most 16 columns wide (the ragged last panel of a thin FTP tile's GEMM) runs the 8x16 half:
// half the multiply-adds, and every output lane sees the same fmadd sequence as in the full one.
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

// NV column vectors of 16 (1 or 2) on C tile `cc` (row stride ld), columns masked by mk[v].
template <int NV>
inline void tile_8xNV(size_t kc, const float* a, const float* b, size_t ldb, float* cc, size_t ld,
                      const __mmask16 (&mk)[2], const float* bias, int flags) {
  constexpr int MR = 8;
  __m512 acc[MR][NV];
  if (flags & kLoadC) {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_maskz_loadu_ps(mk[v], cc + i * ld + 16 * v);
  } else {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = bias ? _mm512_set1_ps(bias[i]) : _mm512_setzero_ps();
  }
  for (size_t k = 0; k < kc; ++k) {
    __m512 bv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(a[i]);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
    }
    a += MR;
    b += ldb;
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(cc + i * ld + 16 * v, mk[v], epilogue(acc[i][v], flags));
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
    if (n <= 16)
      tile_8xNV<1>(kc, a, b, ldb, cc, ld, mk, bias, flags);
    else
      tile_8xNV<2>(kc, a, b, ldb, cc, ld, mk, bias, flags);
  });
}

}  // namespace ftp
