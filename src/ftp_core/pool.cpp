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
  if (kh == 2 && kw == 2 && sh == 2 && sw == 2 && pad.top == 0 && pad.left == 0 && 2 * OH <= H &&
      2 * OW <= W) {
    // The YOLO downsampling pool: every window inside the map, a max of four.
    global_pool()->parallel_for_chunks((size_t)C * OH, (size_t)OW * 4, [&](size_t r0, size_t r1) {
      for (size_t r = r0; r < r1; ++r) {
        const size_t c = r / OH, oy = r % OH;
        const float* a = in + (c * H + 2 * oy) * W;
        const float* b = a + W;
        float* y = out + (c * OH + oy) * OW;
        for (int ox = 0; ox < OW; ++ox) {
          const float m0 = a[2 * ox] < a[2 * ox + 1] ? a[2 * ox + 1] : a[2 * ox];
          const float m1 = b[2 * ox] < b[2 * ox + 1] ? b[2 * ox + 1] : b[2 * ox];
          y[ox] = m0 < m1 ? m1 : m0;
        }
      }
    });
    return;
  }
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
        for (int ix = lo; ix < hi; ++ix) m = m < xr[ix] ? xr[ix] : m;
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
        for (int ox = 0; ox < OW; ++ox) yr[ox] = yr[ox] < rr[ox] ? rr[ox] : yr[ox];
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
