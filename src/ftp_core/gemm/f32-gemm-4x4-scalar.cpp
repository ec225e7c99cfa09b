// Portable 4x4 micro-kernel: the scalar twin every optimised kernel is tested against.
#include "ftp_core/gemm/gemm.hpp"

namespace ftp {

void f32_gemm_4x4_scalar(size_t kc, const float* a, const float* b, size_t ldb, float* c, size_t ldc,
                         size_t m, size_t n, const float* bias, int flags) {
  constexpr int MR = 4, NR = 4;
  float acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j)
      acc[i][j] = (flags & kLoadC) ? ((size_t)i < m && (size_t)j < n ? c[i * ldc + j] : 0.f)
                                   : (bias ? bias[i] : 0.f);
  for (size_t k = 0; k < kc; ++k) {
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] += a[i] * b[j];
    a += MR;
    b += ldb;
  }
  for (size_t i = 0; i < m; ++i)
    for (size_t j = 0; j < n; ++j) {
      float v = acc[i][j];
      if (flags & kActRelu) v = v > 0 ? v : 0.f;
      if (flags & kActLeaky) v = v > 0 ? v : 0.1f * v;
      c[i * ldc + j] = v;
    }
}

}  // namespace ftp
