// AVX2 + FMA depthwise convolution of one channel. The channel is first copied into a
// zero-padded plane (thread-local), so every output column, border ones included, is computed
// 8 at a time without bounds checks: stride 1 uses unaligned loads, stride 2 two loads and an
// even-lane shuffle, other strides a scalar loop over the same padded plane.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "ftp_core/conv.hpp"

namespace ftp {

namespace {
// R output rows x 8 columns: R independent FMA chains (one chain would wait on the FMA latency
// after every multiply-add).
template <int R>
inline void dw_rows(const float* p0, size_t PW, int sh, int sw, const float* w, int kh, int kw,
                    float bias, int ox, bool fusable, __m256 slope, float* const* outs) {
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_set1_ps(bias);
  for (int ky = 0; ky < kh; ++ky) {
    for (int kx = 0; kx < kw; ++kx) {
      const __m256 wv = _mm256_set1_ps(w[ky * kw + kx]);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const float* pr = p0 + (size_t)(r * sh + ky) * PW + ox * sw + kx;
        __m256 v;
        if (sw == 1) {
          v = _mm256_loadu_ps(pr);
        } else {
          const __m256 a = _mm256_loadu_ps(pr), b = _mm256_loadu_ps(pr + 8);
          v = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
        }
        acc[r] = _mm256_fmadd_ps(wv, v, acc[r]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    __m256 v = acc[r];
    if (fusable) v = _mm256_max_ps(v, _mm256_mul_ps(v, slope));
    _mm256_storeu_ps(outs[r] + ox, v);
  }
}
}  // namespace

void f32_dwconv_channel_avx2(const float* x, int H, int W, const float* w, int kh, int kw, float bias,
                             int sh, int sw, Pad4 pad, Act act, float* y, int OH, int OW) {
  const int OWV = (OW + 7) / 8 * 8;  // output columns computed, rounded up to whole vectors
  // Padded plane: rows -top .. needed; columns -left .. enough for the last vector + 8 slack.
  const int PH = (OH - 1) * sh + kh;
  const int PW = std::max((OWV - 1) * sw + kw + 8, pad.left + W) + 8;
  thread_local std::vector<float> plane, row;
  plane.assign((size_t)PH * PW, 0.f);
  row.resize(OWV);
  for (int py = 0; py < PH; ++py) {
    const int iy = py - pad.top;
    if (iy < 0 || iy >= H) continue;
    // Columns beyond the map (bottom/right padding and slack) stay zero.
    std::memcpy(plane.data() + (size_t)py * PW + pad.left, x + (size_t)iy * W, W * sizeof(float));
  }
  const bool fusable = act == Act::leaky || act == Act::relu;
  const __m256 slope = _mm256_set1_ps(act == Act::leaky ? 0.1f : 0.f);
  std::vector<float>& rows4 = row;
  rows4.resize((size_t)4 * OWV);
  for (int oy = 0; oy < OH;) {
    const float* p0 = plane.data() + (size_t)oy * sh * PW;
    const int R = (sw == 1 || sw == 2) ? std::min(4, OH - oy) : 1;
    float* outs[4];
    for (int r = 0; r < R; ++r) outs[r] = (OWV == OW) ? y + (size_t)(oy + r) * OW : rows4.data() + (size_t)r * OWV;
    if (sw == 1 || sw == 2) {
      for (int ox = 0; ox < OWV; ox += 8) {
        if (R == 4)
          dw_rows<4>(p0, PW, sh, sw, w, kh, kw, bias, ox, fusable, slope, outs);
        else if (R == 3)
          dw_rows<3>(p0, PW, sh, sw, w, kh, kw, bias, ox, fusable, slope, outs);
        else if (R == 2)
          dw_rows<2>(p0, PW, sh, sw, w, kh, kw, bias, ox, fusable, slope, outs);
        else
          dw_rows<1>(p0, PW, sh, sw, w, kh, kw, bias, ox, fusable, slope, outs);
      }
    } else {
      for (int ox = 0; ox < OW; ++ox) {
        float s = bias;
        for (int ky = 0; ky < kh; ++ky) {
          const float* pr = p0 + (size_t)ky * PW + ox * sw;
          for (int kx = 0; kx < kw; ++kx) s += w[ky * kw + kx] * pr[kx];
        }
        outs[0][ox] = fusable ? act_scalar(act, s) : s;
      }
    }
    for (int r = 0; r < R; ++r) {
      float* yr = y + (size_t)(oy + r) * OW;
      if (outs[r] != yr) std::memcpy(yr, outs[r], OW * sizeof(float));
      if (!fusable) act_inplace(act, yr, OW);
    }
    oy += R;
  }
}

}  // namespace ftp
