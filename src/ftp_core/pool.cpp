// Pooling: max pooling is separable (max over a rectangle of valid cells = max over valid
// columns of max over valid rows), so a 13x13 SPP pool costs 26 comparisons per pixel, not 169.
#include <algorithm>
#include <cfloat>
#include <vector>

#include "ftp_core/layers.hpp"
#include "ftp_core/threadpool.hpp"

namespace ftp {

void maxpool2d(const float* in, int C, int H, int W, int kh, int kw, int sh, int sw, Pad4 pad,
               float* out) {
  const int OH = window_out(H, pad.top, pad.bottom, kh, sh);
  const int OW = window_out(W, pad.left, pad.right, kw, sw);
  auto channel = [&](size_t c) {
    thread_local std::vector<float> rowmax;
    rowmax.resize((size_t)H * OW);
    const float* x = in + c * H * W;
    // Horizontal pass over every input row.
    for (int iy = 0; iy < H; ++iy) {
      const float* xr = x + (size_t)iy * W;
      float* rr = rowmax.data() + (size_t)iy * OW;
      for (int ox = 0; ox < OW; ++ox) {
        const int ix0 = ox * sw - pad.left;
        const int lo = std::max(0, ix0), hi = std::min(W, ix0 + kw);
        float m = -FLT_MAX;
        for (int ix = lo; ix < hi; ++ix) m = std::max(m, xr[ix]);
        rr[ox] = m;
      }
    }
    // Vertical pass.
    float* y = out + c * OH * OW;
    for (int oy = 0; oy < OH; ++oy) {
      float* yr = y + (size_t)oy * OW;
      const int iy0 = oy * sh - pad.top;
      const int lo = std::max(0, iy0), hi = std::min(H, iy0 + kh);
      for (int ox = 0; ox < OW; ++ox) yr[ox] = -FLT_MAX;
      for (int iy = lo; iy < hi; ++iy) {
        const float* rr = rowmax.data() + (size_t)iy * OW;
        for (int ox = 0; ox < OW; ++ox) yr[ox] = std::max(yr[ox], rr[ox]);
      }
    }
  };
  global_pool()->parallel_for_chunks(C, (size_t)H * OW + (size_t)OH * OW * kh, [&](size_t c0, size_t c1) {
    for (size_t c = c0; c < c1; ++c) channel(c);
  });
}

void global_avgpool(const float* in, int C, int H, int W, float* out) {
  const size_t hw = (size_t)H * W;
  for (int c = 0; c < C; ++c) {
    double s = 0;
    const float* x = in + c * hw;
    for (size_t i = 0; i < hw; ++i) s += x[i];
    out[c] = static_cast<float>(s / static_cast<double>(hw));
  }
}

}  // namespace ftp
