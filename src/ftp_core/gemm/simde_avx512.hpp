// Verification shim, used only when DEEPTHINGS_SIMDE_AVX512 is defined (never in the wheel):
// SIMDe's portable AVX-512 under the native intrinsic names, so the AVX-512 micro-kernel's own
// source can be compiled and checked on CPUs without AVX-512 (tests/kernels). SIMDe 0.7.4 lacks
// the masked moves the kernel uses (512-bit, and AVX-512VL's 256-bit ones for the 8-column
// tail); they are written here lane by lane.
#pragma once

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

namespace ftp_simde {

inline simde__m512 maskz_loadu_ps(simde__mmask16 k, const void* p) {
  alignas(64) float v[16];
  for (int i = 0; i < 16; ++i) v[i] = ((k >> i) & 1) ? static_cast<const float*>(p)[i] : 0.f;
  return simde_mm512_load_ps(v);
}

inline void mask_storeu_ps(void* p, simde__mmask16 k, simde__m512 a) {
  alignas(64) float v[16];
  simde_mm512_store_ps(v, a);
  for (int i = 0; i < 16; ++i)
    if ((k >> i) & 1) static_cast<float*>(p)[i] = v[i];
}

inline simde__m256 maskz_loadu_ps8(simde__mmask8 k, const void* p) {
  alignas(32) float v[8];
  for (int i = 0; i < 8; ++i) v[i] = ((k >> i) & 1) ? static_cast<const float*>(p)[i] : 0.f;
  return simde_mm256_load_ps(v);
}

inline void mask_storeu_ps8(void* p, simde__mmask8 k, simde__m256 a) {
  alignas(32) float v[8];
  simde_mm256_store_ps(v, a);
  for (int i = 0; i < 8; ++i)
    if ((k >> i) & 1) static_cast<float*>(p)[i] = v[i];
}

}  // namespace ftp_simde

#undef _mm512_maskz_loadu_ps
#undef _mm512_mask_storeu_ps
#define _mm512_maskz_loadu_ps ftp_simde::maskz_loadu_ps
#define _mm512_mask_storeu_ps ftp_simde::mask_storeu_ps
#undef _mm256_maskz_loadu_ps
#undef _mm256_mask_storeu_ps
#define _mm256_maskz_loadu_ps ftp_simde::maskz_loadu_ps8
#define _mm256_mask_storeu_ps ftp_simde::mask_storeu_ps8
