// C entry points for test_kernel_avx512_simde.py: the AVX-512 micro-kernel (built through
// SIMDe on CPUs without AVX-512) and the native AVX2 one, on the same packed operands.
#include <cstddef>

#include "ftp_core/gemm/gemm.hpp"

namespace ftp {  // as declared in src/ftp_core/gemm/dispatch.cpp
void f32_gemm_8x32_avx512(size_t, const float*, const float*, size_t, float*, size_t, size_t, size_t,
                          const float*, int);
void f32_gemm_6x16_avx2(size_t, const float*, const float*, size_t, float*, size_t, size_t, size_t,
                        const float*, int);
}  // namespace ftp

extern "C" {
void dt_gemm_8x32_avx512(size_t kc, const float* a, const float* b, size_t ldb, float* c, size_t ldc,
                         size_t m, size_t n, const float* bias, int flags) {
  ftp::f32_gemm_8x32_avx512(kc, a, b, ldb, c, ldc, m, n, bias, flags);
}
void dt_gemm_6x16_avx2(size_t kc, const float* a, const float* b, size_t ldb, float* c, size_t ldc,
                       size_t m, size_t n, const float* bias, int flags) {
  ftp::f32_gemm_6x16_avx2(kc, a, b, ldb, c, ldc, m, n, bias, flags);
}
}
