// AVX2 + FMA depthwise convolution of one channel: 8 output columns per register, kh*kw FMAs
// each, stride 1 (unaligned loads) or stride 2 (two loads + even-lane shuffle). Border
// columns, other strides and the remainder go through the scalar formula.
#include <immintrin.h>

#include <algorithm>

#include "ftp_core/conv.hpp"

namespace ftp {

void f32_dwconv_channel_avx2(const float* x, int H, int W, const float* w, int kh, int kw, float bias,
                             int sh, int sw, Pad4 pad, Act act, float* y, int OH, int OW) {
  // Output columns whose whole window row lies inside the map.
  int lo = (pad.left + sw - 1) / sw;
  int hi = (W - kw + pad.left) >= 0 ? (W - kw + pad.left) / sw + 1 : 0;
  lo = std::min(lo, OW);
  hi = std::max(lo, std::min(hi, OW));
  const bool fused = act == Act::leaky || act == Act::relu || act == Act::linear;
  const __m256 slope = _mm256_set1_ps(act == Act::leaky ? 0.1f : 0.f);
  const bool vec = sw == 1 || sw == 2;
  for (int oy = 0; oy < OH; ++oy) {
    float* yr = y + (size_t)oy * OW;
    const int iy0 = oy * sh - pad.top;
    const int ky0 = std::max(0, -iy0), ky1 = std::min(kh, H - iy0);
    auto scalar_col = [&](int ox) {
      float s = bias;
      const int ix0 = ox * sw - pad.left;
      for (int ky = ky0; ky < ky1; ++ky) {
        const float* xr = x + (size_t)(iy0 + ky) * W;
        for (int kx = 0; kx < kw; ++kx) {
          const int ix = ix0 + kx;
          if (ix >= 0 && ix < W) s += w[ky * kw + kx] * xr[ix];
        }
      }
      yr[ox] = fused ? act_scalar(act, s) : s;
    };
    int ox = 0;
    for (; ox < lo; ++ox) scalar_col(ox);
    if (vec) {
      // Stride 2 reads 16 floats per row: keep the last one inside the row.
      const int vhi = sw == 1 ? hi : std::max(lo, std::min(hi, (W - kw + pad.left - 1) / 2 + 1));
      auto vec8 = [&](int ox) {
        __m256 acc = _mm256_set1_ps(bias);
        const int ix0 = ox * sw - pad.left;
        for (int ky = ky0; ky < ky1; ++ky) {
          const float* xr = x + (size_t)(iy0 + ky) * W + ix0;
          const float* wr = w + ky * kw;
          for (int kx = 0; kx < kw; ++kx) {
            __m256 v;
            if (sw == 1) {
              v = _mm256_loadu_ps(xr + kx);
            } else {
              const __m256 a = _mm256_loadu_ps(xr + kx), b = _mm256_loadu_ps(xr + kx + 8);
              v = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(wr[kx]), v, acc);
          }
        }
        if (act == Act::leaky || act == Act::relu) acc = _mm256_max_ps(acc, _mm256_mul_ps(acc, slope));
        _mm256_storeu_ps(yr + ox, acc);
      };
      for (; ox + 8 <= vhi; ox += 8) vec8(ox);
      // The remainder as one more vector overlapping the last: it recomputes a few columns
      // from the input (same values), instead of up to 7 scalar columns.
      if (ox < vhi && vhi - lo >= 8) {
        vec8(vhi - 8);
        ox = vhi;
      }
    }
    for (; ox < OW; ++ox) scalar_col(ox);
    if (!fused) act_inplace(act, yr, OW);
  }
}

}  // namespace ftp
