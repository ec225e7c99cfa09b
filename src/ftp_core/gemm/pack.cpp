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

// Row k of the im2col matrix is (input channel c, kernel row ky, kernel column kx); panels
// walk k in order, so the position is stepped instead of divided out every row.
struct KPos {
  int c, ky, kx;
  KPos(const ConvGeom& g, size_t k) {
    const int kk = g.kh * g.kw, r = (int)(k % kk);
    c = (int)(k / kk);
    ky = r / g.kw;
    kx = r % g.kw;
  }
  void next(const ConvGeom& g) {
    if (++kx == g.kw) {
      kx = 0;
      if (++ky == g.kh) {
        ky = 0;
        ++c;
      }
    }
  }
};
}  // namespace

namespace {

// General path: a panel may straddle output rows and the map border.
void pack_panel_im2col_generic(const float* in, const ConvGeom& g, size_t k0, size_t kc, size_t col0,
                               int n, int nr, float* out) {
  Segment segs[64];  // nr <= 64 columns can span at most nr segments
  int nseg = 0;
  for (int j = 0; j < n;) {
    const size_t col = col0 + j;
    const int oy = (int)(col / g.OW), ox = (int)(col % g.OW);
    const int len = std::min(n - j, g.OW - ox);
    segs[nseg++] = {j, len, oy, ox};
    j += len;
  }
  KPos p(g, k0);
  for (size_t k = 0; k < kc; ++k, out += nr, p.next(g)) {
    const float* plane = in + (size_t)p.c * g.H * g.W;
    for (int s = 0; s < nseg; ++s) {
      const Segment& sg = segs[s];
      float* dst = out + sg.j0;
      const int iy = sg.oy * g.sh - g.top + p.ky;
      if (iy < 0 || iy >= g.H) {
        for (int t = 0; t < sg.len; ++t) dst[t] = 0.f;
        continue;
      }
      const float* row = plane + (size_t)iy * g.W;
      const int ix0 = sg.ox0 * g.sw - g.left + p.kx;
      for (int t = 0; t < sg.len; ++t) {
        const int ix = ix0 + t * g.sw;
        dst[t] = (ix >= 0 && ix < g.W) ? row[ix] : 0.f;
      }
    }
    for (int t = n; t < nr; ++t) out[t] = 0.f;
  }
}

// Common path: all NR columns in one output row. Rows fully inside the map become fixed-size
// copies (vector moves); only border rows and border columns take the per-element path.
template <int NR>
void pack_panel_im2col_row(const float* in, const ConvGeom& g, size_t k0, size_t kc, int oy, int ox0,
                           float* out) {
  const int sw = g.sw;
  KPos p(g, k0);
  for (size_t k = 0; k < kc; ++k, out += NR, p.next(g)) {
    const int iy = oy * g.sh - g.top + p.ky;
    if (iy < 0 || iy >= g.H) {
      for (int t = 0; t < NR; ++t) out[t] = 0.f;
    } else {
      const float* row = in + ((size_t)p.c * g.H + iy) * g.W;
      const int ix0 = ox0 * sw - g.left + p.kx;
      if (ix0 >= 0 && ix0 + (NR - 1) * sw < g.W) {
        const float* src = row + ix0;
        if (sw == 1) {
          for (int t = 0; t < NR; ++t) out[t] = src[t];
        } else if (sw == 2) {
          for (int t = 0; t < NR; ++t) out[t] = src[2 * t];
        } else {
          for (int t = 0; t < NR; ++t) out[t] = src[t * sw];
        }
      } else {
        for (int t = 0; t < NR; ++t) {
          const int ix = ix0 + t * sw;
          out[t] = (ix >= 0 && ix < g.W) ? row[ix] : 0.f;
        }
      }
    }
  }
}

template <int NR>
void pack_im2col_nr(const float* in, const ConvGeom& g, size_t k0, size_t kc, size_t n0, size_t nc,
                    float* out) {
  for (size_t j0 = 0; j0 < nc; j0 += NR, out += kc * NR) {
    const int n = (int)std::min<size_t>(NR, nc - j0);
    const size_t col0 = n0 + j0;
    const int oy = (int)(col0 / g.OW), ox0 = (int)(col0 % g.OW);
    if (n == NR && ox0 + NR <= g.OW)
      pack_panel_im2col_row<NR>(in, g, k0, kc, oy, ox0, out);
    else
      pack_panel_im2col_generic(in, g, k0, kc, col0, n, NR, out);
  }
}

}  // namespace

void pack_b_im2col(const float* in, const ConvGeom& g, size_t k0, size_t kc, size_t n0, size_t nc,
                   int nr, float* out) {
  switch (nr) {
    case 4: return pack_im2col_nr<4>(in, g, k0, kc, n0, nc, out);
    case 8: return pack_im2col_nr<8>(in, g, k0, kc, n0, nc, out);
    case 16: return pack_im2col_nr<16>(in, g, k0, kc, n0, nc, out);
    case 32: return pack_im2col_nr<32>(in, g, k0, kc, n0, nc, out);
    default:
      for (size_t j0 = 0; j0 < nc; j0 += nr, out += kc * nr) {
        const int n = (int)std::min<size_t>(nr, nc - j0);
        pack_panel_im2col_generic(in, g, k0, kc, n0 + j0, n, nr, out);
      }
  }
}

}  // namespace ftp
