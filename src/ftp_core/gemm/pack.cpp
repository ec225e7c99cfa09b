// Packing of GEMM operands into the panel layouts the micro-kernels stream through.
#include <algorithm>
#include <cstring>

#include "ftp_core/gemm/gemm.hpp"

namespace ftp {

size_t packed_a_size(size_t M, size_t K, int mr) { return (M + mr - 1) / mr * mr * K; }

void pack_a(const float* a, size_t M, size_t K, size_t lda, int mr, float* out) {
  for (size_t i0 = 0; i0 < M; i0 += mr) {
    const size_t m = std::min<size_t>(mr, M - i0);
    for (size_t k = 0; k < K; ++k) {
      for (size_t i = 0; i < m; ++i) out[i] = a[(i0 + i) * lda + k];
      for (size_t i = m; i < (size_t)mr; ++i) out[i] = 0.f;
      out += mr;
    }
  }
}

void pack_b(const float* b, size_t ldb, size_t k0, size_t kc, size_t n0, size_t nc, int nr,
            float* out) {
  for (size_t j0 = 0; j0 < nc; j0 += nr) {
    const size_t n = std::min<size_t>(nr, nc - j0);
    const float* src = b + k0 * ldb + n0 + j0;
    if (n == (size_t)nr) {
      for (size_t k = 0; k < kc; ++k, src += ldb, out += nr) std::memcpy(out, src, nr * sizeof(float));
    } else {
      for (size_t k = 0; k < kc; ++k, src += ldb, out += nr) {
        std::memcpy(out, src, n * sizeof(float));
        std::memset(out + n, 0, (nr - n) * sizeof(float));
      }
    }
  }
}

namespace {
// A run of consecutive panel columns that lie in one output row.
struct Segment {
  int j0, len, oy, ox0;
};
}  // namespace

void pack_b_im2col(const float* in, const ConvGeom& g, size_t k0, size_t kc, size_t n0, size_t nc,
                   int nr, float* out) {
  const int kk = g.kh * g.kw;
  Segment segs[64];  // nr <= 64 columns can span at most nr segments
  for (size_t j0 = 0; j0 < nc; j0 += nr) {
    const int n = (int)std::min<size_t>(nr, nc - j0);
    int nseg = 0;
    for (int j = 0; j < n;) {
      const size_t col = n0 + j0 + j;
      const int oy = (int)(col / g.OW), ox = (int)(col % g.OW);
      const int len = std::min(n - j, g.OW - ox);
      segs[nseg++] = {j, len, oy, ox};
      j += len;
    }
    int c = (int)(k0 / kk), r = (int)(k0 % kk);
    int ky = r / g.kw, kx = r % g.kw;
    for (size_t k = 0; k < kc; ++k, out += nr) {
      const float* plane = in + (size_t)c * g.H * g.W;
      for (int s = 0; s < nseg; ++s) {
        const Segment& sg = segs[s];
        float* dst = out + sg.j0;
        const int iy = sg.oy * g.sh - g.top + ky;
        if (iy < 0 || iy >= g.H) {
          std::memset(dst, 0, sg.len * sizeof(float));
          continue;
        }
        const float* row = plane + (size_t)iy * g.W;
        const int ix0 = sg.ox0 * g.sw - g.left + kx;
        if (g.sw == 1) {
          const int lo = std::min(sg.len, std::max(0, -ix0));
          const int hi = std::max(lo, std::min(sg.len, g.W - ix0));
          if (lo > 0) std::memset(dst, 0, lo * sizeof(float));
          if (hi > lo) std::memcpy(dst + lo, row + ix0 + lo, (hi - lo) * sizeof(float));
          if (hi < sg.len) std::memset(dst + hi, 0, (sg.len - hi) * sizeof(float));
        } else {
          for (int t = 0; t < sg.len; ++t) {
            const int ix = ix0 + t * g.sw;
            dst[t] = (ix >= 0 && ix < g.W) ? row[ix] : 0.f;
          }
        }
      }
      if (n < nr) std::memset(out + n, 0, (nr - n) * sizeof(float));
      if (++kx == g.kw) {
        kx = 0;
        if (++ky == g.kh) {
          ky = 0;
          ++c;
        }
      }
    }
  }
}

}  // namespace ftp
