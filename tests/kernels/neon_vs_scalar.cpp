// Built by tests/kernels/test_kernel_neon_qemu.py for aarch64 / armv7 and run under qemu.
// NEON vs scalar micro-kernel check under qemu (the ARM engineer's CI runs the full tests).
#include "ftp_core/conv.hpp"
#include "ftp_core/layers.hpp"
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>
int main() {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  double worst = 0, naive = 0;
  for (int trial = 0; trial < 40; ++trial) {
    int C = 1 + rng() % 20, O = 1 + rng() % 40, H = 1 + rng() % 23, W = 1 + rng() % 23, k = 1 + rng() % 5, s = 1 + rng() % 2;
    ftp::Pad4 p{int(rng() % 3), int(rng() % 3), int(rng() % 3), int(rng() % 3)};
    if (H + p.top + p.bottom < k || W + p.left + p.right < k) continue;
    std::vector<float> x(C * H * W), w(O * C * k * k), b(O);
    for (auto& v : x) v = nd(rng);
    for (auto& v : w) v = nd(rng);
    for (auto& v : b) v = nd(rng);
    int OH = ftp::window_out(H, p.top, p.bottom, k, s), OW = ftp::window_out(W, p.left, p.right, k, s);
    std::vector<float> y0(O * OH * OW), y1(O * OH * OW);
    for (int pass = 0; pass < 2; ++pass) {
      ftp::set_isa(pass ? "neon" : "scalar");
      ftp::ConvWeights cw(w.data(), O, C, k, k, 1);
      ftp::conv2d(x.data(), C, H, W, cw, b.data(), s, s, p, ftp::Act::leaky, pass ? y1.data() : y0.data());
    }
    for (size_t i = 0; i < y0.size(); ++i) worst = std::max(worst, (double)std::fabs(y0[i] - y1[i]));
    // naive direct conv in double
    for (int o = 0; o < O; ++o) for (int oy = 0; oy < OH; ++oy) for (int ox = 0; ox < OW; ++ox) {
      double acc = b[o];
      for (int c = 0; c < C; ++c) for (int ky = 0; ky < k; ++ky) for (int kx = 0; kx < k; ++kx) {
        int iy = oy * s - p.top + ky, ix = ox * s - p.left + kx;
        if (iy >= 0 && iy < H && ix >= 0 && ix < W) acc += (double)w[((o * C + c) * k + ky) * k + kx] * x[(c * H + iy) * W + ix];
      }
      if (acc < 0) acc *= 0.1;
      naive = std::max(naive, std::fabs(acc - y1[(o * OH + oy) * OW + ox]));
    }
  }
  std::printf("%s max |neon - scalar| = %g, max |neon - naive double| = %g\n", ftp::active_kernel().name, worst, naive);
  return worst < 1e-3 && naive < 1e-3 ? 0 : 1;
}
