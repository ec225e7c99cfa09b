// Direct depthwise convolution: im2col would copy each input pixel kh*kw times for a single
// multiply-add each, so instead every output row accumulates kh*kw shifted input rows.
#include <algorithm>
#include <vector>

#include "ftp_core/conv.hpp"
#include "ftp_core/threadpool.hpp"

namespace ftp {

#if defined(DT_ARCH_X86)
void f32_dwconv_channel_avx2(const float* x, int H, int W, const float* w, int kh, int kw, float bias,
                             int sh, int sw, Pad4 pad, Act act, float* y, int OH, int OW);
#endif

void depthwise_conv2d(const float* in, int C, int H, int W, const float* w, int kh, int kw,
                      const float* bias, int sh, int sw, Pad4 pad, Act act, float* out) {
  const int OH = window_out(H, pad.top, pad.bottom, kh, sh);
  const int OW = window_out(W, pad.left, pad.right, kw, sw);
  // Valid output columns per kx: ix = ox*sw - left + kx must lie in [0, W).
  std::vector<int> ox_lo(kw), ox_hi(kw);
  for (int kx = 0; kx < kw; ++kx) {
    const int off = kx - pad.left;
    int lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
    int hi = (W - 1 - off) >= 0 ? (W - 1 - off) / sw + 1 : 0;
    ox_lo[kx] = std::min(lo, OW);
    ox_hi[kx] = std::max(ox_lo[kx], std::min(hi, OW));
  }
  auto channel = [&](size_t c) {
    const float* x = in + c * H * W;
    const float* wc = w + c * kh * kw;
    float* y = out + c * OH * OW;
    const float b = bias ? bias[c] : 0.f;
    for (int oy = 0; oy < OH; ++oy) {
      float* yr = y + (size_t)oy * OW;
      for (int ox = 0; ox < OW; ++ox) yr[ox] = b;
      for (int ky = 0; ky < kh; ++ky) {
        const int iy = oy * sh - pad.top + ky;
        if (iy < 0 || iy >= H) continue;
        const float* xr = x + (size_t)iy * W;
        for (int kx = 0; kx < kw; ++kx) {
          const float wv = wc[ky * kw + kx];
          const int off = kx - pad.left;
          const int lo = ox_lo[kx], hi = ox_hi[kx];
          if (sw == 1) {
            const float* src = xr + off;
            for (int ox = lo; ox < hi; ++ox) yr[ox] += wv * src[ox];
          } else {
            for (int ox = lo; ox < hi; ++ox) yr[ox] += wv * xr[ox * sw + off];
          }
        }
      }
      act_inplace(act, yr, OW);
    }
  };
#if defined(DT_ARCH_X86)
  const Isa isa = active_isa();
  if (isa == Isa::avx2 || isa == Isa::avx512) {
    global_pool()->parallel_for_chunks(C, (size_t)OH * OW * kh * kw, [&](size_t c0, size_t c1) {
      for (size_t c = c0; c < c1; ++c)
        f32_dwconv_channel_avx2(in + c * H * W, H, W, w + c * kh * kw, kh, kw, bias ? bias[c] : 0.f, sh, sw,
                                pad, act, out + c * OH * OW, OH, OW);
    });
    return;
  }
#endif
  global_pool()->parallel_for_chunks(C, (size_t)OH * OW * kh * kw, [&](size_t c0, size_t c1) {
    for (size_t c = c0; c < c1; ++c) channel(c);
  });
}

}  // namespace ftp
