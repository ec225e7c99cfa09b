// Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions (ncnn's convolution_3x3_winograd idea):
// 16 multiplies per 2x2 output tile instead of 36, as 16 GEMMs (O x C) x (C x tiles) on the
// same packed micro-kernels. Tiles are processed in blocks so the transformed input and the
// GEMM results of one block stay bounded: 16 x (C + O) x Tb floats per thread (<= ~1 MiB, or
// 16 x (C + O) x 16 floats for very deep layers).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "ftp_core/conv.hpp"
#include "ftp_core/threadpool.hpp"

namespace ftp {

namespace {
std::atomic<bool> g_winograd_enabled{true};

// Small per-thread row buffers of the transforms.
std::vector<float>& tl_buf(int slot, size_t n) {
  thread_local std::vector<float> bufs[3];
  if (bufs[slot].size() < n) bufs[slot].resize(n);
  return bufs[slot];
}
}  // namespace

void set_winograd_enabled(bool on) { g_winograd_enabled.store(on); }
bool winograd_enabled() { return g_winograd_enabled.load(); }

bool winograd_applies(const ConvWeights& w, int C, int sh, int sw) {
  // Pays off once C and O are not tiny. The transformed weights take 16/9 of the packed
  // im2col weights (which are then never made); capped at YOLOv2's largest layer (1280 -> 1024).
  return winograd_enabled() && w.kh == 3 && w.kw == 3 && sh == 1 && sw == 1 && w.groups == 1 &&
         C >= 8 && w.out_channels >= 16 && (size_t)w.out_channels * C <= 1280u * 1024u;
}

const float* ConvWeights::winograd_packed(const GemmKernel& k) {
  std::lock_guard<std::mutex> lk(mutex_);
  auto& slot = wino_[static_cast<int>(k.isa)];
  if (!slot) {
    const size_t O = out_channels, C = in_per_group;
    // U = G g G^T per (o, c), stored as 16 matrices U[xi] (O x C), each packed as GEMM A.
    std::vector<float> u(16 * O * C);
    for (size_t o = 0; o < O; ++o)
      for (size_t c = 0; c < C; ++c) {
        const float* g = raw.data() + (o * C + c) * 9;
        float t[4][3];  // G g
        for (int j = 0; j < 3; ++j) {
          t[0][j] = g[0 * 3 + j];
          t[1][j] = 0.5f * (g[0 * 3 + j] + g[1 * 3 + j] + g[2 * 3 + j]);
          t[2][j] = 0.5f * (g[0 * 3 + j] - g[1 * 3 + j] + g[2 * 3 + j]);
          t[3][j] = g[2 * 3 + j];
        }
        for (int i = 0; i < 4; ++i) {
          const float v[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]),
                              0.5f * (t[i][0] - t[i][1] + t[i][2]), t[i][2]};
          for (int j = 0; j < 4; ++j) u[((size_t)(i * 4 + j) * O + o) * C + c] = v[j];
        }
      }
    const size_t stride = packed_a_size(O, C, k.mr);
    const size_t bytes = (16 * stride * sizeof(float) + 63) / 64 * 64 + 64;
    float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (!p) throw std::bad_alloc();
    for (int xi = 0; xi < 16; ++xi) pack_a(u.data() + xi * O * C, O, C, C, k.mr, p + xi * stride);
    slot = std::unique_ptr<float, void (*)(void*)>(p, std::free);
  }
  return slot.get();
}

void conv3x3_winograd(const float* in, int C, int H, int W, ConvWeights& w, const float* bias,
                      Pad4 pad, Act act, float* out, const OutRect* region) {
  const int O = w.out_channels;
  const int OH = window_out(H, pad.top, pad.bottom, 3, 1);
  const int OW = window_out(W, pad.left, pad.right, 3, 1);
  // The part of the output to make: blocks stay on the full output's 2x2 grid (so a region gives
  // the same bits as the whole output), and block rows whose top or bottom row lies outside skip
  // the 4 of the 16 GEMMs only that row reads (a 1-row FTP strip: 12 instead of 16).
  const OutRect r = region ? *region : OutRect{0, 0, OH, OW};
  const int RW = r.right - r.left;
  const int th_lo = r.top / 2, th_hi = (r.bottom + 1) / 2;
  const int tw_lo = r.left / 2, tw_hi = (r.right + 1) / 2;
  const int TH = th_hi - th_lo, TW = tw_hi - tw_lo;
  const GemmKernel& k = active_kernel();
  const float* U = w.winograd_packed(k);
  const size_t u_stride = packed_a_size(O, C, k.mr);

  // Blocks are whole tile rows, so each output row is finished (and activated) by one task.
  // At least 64 tiles per block keep the GEMMs wide and stream the 16 transformed weight
  // matrices few times; ~1 MiB of V + M per block otherwise. Bound per thread:
  // 16 x (C + O) x max(64 tiles rounded up to a row, 1 MiB / 4 B) floats.
  const size_t min_rows = (64 + TW - 1) / TW;
  size_t rows = std::max(min_rows, (size_t)(256 * 1024) / (16 * (size_t)(C + O)) / TW);
  auto pool = global_pool();
  while (rows > 1 && ((size_t)TH + rows - 1) / rows < (size_t)pool->num_threads() * 2 &&
         (rows - 1) * TW >= 32)
    --rows;
  const size_t tb = rows * TW;
  const size_t n_blocks = ((size_t)TH + rows - 1) / rows;

  // One block's three phases over sub-ranges, so a block can be done by one task or shared.
  // Channel c's transform, row o's GEMM and output row o's transform do not depend on how
  // the ranges are split: the result is the same for every thread count. Block-local tile
  // rows th0..th1 are relative to th_lo, tile columns to tw_lo.
  const size_t xs = (size_t)C * tb + 16, ms = (size_t)O * tb + 16;
  // Per-xi strides padded by 16 floats: 16 streams at a 4 KiB-multiple stride would all
  // land in the same L1 sets.
  auto input_transform = [&](float* V, int th0, int th1, int c_begin, int c_end) {
    // Input transform V = B^T d B, a tile row at a time: 4 zero-padded input rows, the column
    // transform (along x) into 16 rows of TW values, then the row transform. Every inner loop
    // runs over tw with unit-stride stores, so the compiler vectorises it.
    const int PW = 2 * TW + 2;
    const int x0 = 2 * tw_lo - pad.left;  // input column of pr[0]
    std::vector<float>& prow = tl_buf(0, 4 * (size_t)PW);
    std::vector<float>& cb = tl_buf(1, 16 * (size_t)TW);
    for (int c = c_begin; c < c_end; ++c) {
      const float* x = in + (size_t)c * H * W;
      for (int th = th0; th < th1; ++th) {
        const int y0 = 2 * (th_lo + th) - pad.top;
        for (int i = 0; i < 4; ++i) {
          float* pr = prow.data() + i * PW;
          const int iy = y0 + i;
          if (iy < 0 || iy >= H) {
            std::fill(pr, pr + PW, 0.f);
          } else {
            // pr[j] = input column x0 + j, zero outside the map.
            const float* xr = x + (size_t)iy * W;
            const int lo = std::min(PW, std::max(0, -x0));
            const int hi = std::max(lo, std::min(PW, W - x0));
            std::fill(pr, pr + lo, 0.f);
            std::memcpy(pr + lo, xr + (x0 + lo), (hi - lo) * sizeof(float));
            std::fill(pr + hi, pr + PW, 0.f);
          }
          // Column transform of row i: cb[i*4 + j][tw].
          float* c0 = cb.data() + (i * 4 + 0) * TW;
          float* c1 = cb.data() + (i * 4 + 1) * TW;
          float* c2 = cb.data() + (i * 4 + 2) * TW;
          float* c3 = cb.data() + (i * 4 + 3) * TW;
          for (int tw = 0; tw < TW; ++tw) {
            const float d0 = pr[2 * tw], d1 = pr[2 * tw + 1], d2 = pr[2 * tw + 2], d3 = pr[2 * tw + 3];
            c0[tw] = d0 - d2;
            c1[tw] = d1 + d2;
            c2[tw] = d2 - d1;
            c3[tw] = d1 - d3;
          }
        }
        // Row transform: V[(r*4 + j)][c][t] from cb[(i*4 + j)].
        float* vt = V + (size_t)c * tb + (size_t)(th - th0) * TW;
        for (int j = 0; j < 4; ++j) {
          const float* r0 = cb.data() + (0 * 4 + j) * TW;
          const float* r1 = cb.data() + (1 * 4 + j) * TW;
          const float* r2 = cb.data() + (2 * 4 + j) * TW;
          const float* r3 = cb.data() + (3 * 4 + j) * TW;
          float* v0 = vt + (0 * 4 + j) * xs;
          float* v1 = vt + (1 * 4 + j) * xs;
          float* v2 = vt + (2 * 4 + j) * xs;
          float* v3 = vt + (3 * 4 + j) * xs;
          for (int tw = 0; tw < TW; ++tw) {
            v0[tw] = r0[tw] - r2[tw];
            v1[tw] = r1[tw] + r2[tw];
            v2[tw] = r2[tw] - r1[tw];
            v3[tw] = r1[tw] - r3[tw];
          }
        }
      }
    }
  };
  // Output row 2*th reads M rows xi / 4 in {0, 1, 2}, row 2*th + 1 those in {1, 2, 3}: the
  // region's first tile row may need only its bottom row and its last only its top row.
  const bool skip_first_top = r.top % 2 == 1;
  const bool skip_last_bottom = r.bottom % 2 == 1;
  // The columns (tiles) of block th0..th1 that GEMM xi must produce.
  auto gemm_columns = [&](int xi, int th0, int th1, size_t* c0, size_t* c1) {
    *c0 = 0;
    *c1 = (size_t)(th1 - th0) * TW;
    if (xi / 4 == 0 && skip_first_top && th0 == 0) *c0 = TW;
    if (xi / 4 == 3 && skip_last_bottom && th1 == TH) *c1 -= TW;
  };
  // M[xi] rows [p0*mr, p1*mr) (O x tiles) = U[xi] (those rows x C) * V[xi] (C x tiles).
  auto gemms = [&](const float* V, float* M, int th0, int th1, int xi, size_t p0, size_t p1) {
    const size_t r0 = p0 * k.mr, r1 = std::min((size_t)O, p1 * k.mr);
    size_t c0, c1;
    gemm_columns(xi, th0, th1, &c0, &c1);
    if (r0 >= r1 || c0 >= c1) return;
    BSource b{V + xi * xs + c0, tb, nullptr};
    gemm_packed(k, r1 - r0, c1 - c0, C, U + xi * u_stride + r0 * C, b, nullptr, Act::linear,
                M + xi * ms + r0 * tb + c0, tb, /*parallel=*/false);
  };
  // Output transform Y = A^T M A + bias, vectorised over tw, then the activation over the
  // finished output rows. Only rows and columns inside the region are computed and written.
  auto output_transform = [&](const float* M, int th0, int th1, int o_begin, int o_end) {
    const int oy_first = std::max(r.top, 2 * (th_lo + th0));
    const int oy_last = std::min(r.bottom, 2 * (th_lo + th1));
    std::vector<float>& ob = tl_buf(2, 8 * (size_t)TW);
    for (int o = o_begin; o < o_end; ++o) {
      const float bo = bias ? bias[o] : 0.f;
      float* y = out + (size_t)o * (r.bottom - r.top) * RW;
      for (int th = th0; th < th1; ++th) {
        const int oy = 2 * (th_lo + th);
        const bool top = oy >= r.top, bottom = oy + 1 < r.bottom;
        const float* mt = M + (size_t)o * tb + (size_t)(th - th0) * TW;
        float* t0 = ob.data();  // t[i][j] for i in {0,1}: 8 rows of TW
        for (int j = 0; j < 4; ++j) {
          const float* m0 = mt + (0 * 4 + j) * ms;
          const float* m1 = mt + (1 * 4 + j) * ms;
          const float* m2 = mt + (2 * 4 + j) * ms;
          const float* m3 = mt + (3 * 4 + j) * ms;
          float* a0 = t0 + (0 * 4 + j) * TW;
          float* a1 = t0 + (1 * 4 + j) * TW;
          if (top)
            for (int tw = 0; tw < TW; ++tw) a0[tw] = m0[tw] + m1[tw] + m2[tw];
          if (bottom)
            for (int tw = 0; tw < TW; ++tw) a1[tw] = m1[tw] - m2[tw] - m3[tw];
        }
        for (int i = 0; i < 2; ++i) {
          if (!(i == 0 ? top : bottom)) continue;
          const float* q0 = t0 + (i * 4 + 0) * TW;
          const float* q1 = t0 + (i * 4 + 1) * TW;
          const float* q2 = t0 + (i * 4 + 2) * TW;
          const float* q3 = t0 + (i * 4 + 3) * TW;
          float* yr = y + (size_t)(oy + i - r.top) * RW;
          // Output column 2*(tw_lo + tw) + j lands at yr[2*tw + j - shift]; a region starting
          // at an odd column drops the first tile's left column, one ending at an odd column
          // the last tile's right column.
          const int shift = r.left - 2 * tw_lo;  // 0 or 1
          int tw = 0;
          if (shift) {
            yr[0] = q1[0] - q2[0] - q3[0] + bo;
            tw = 1;
          }
          const int full = (RW + shift) / 2;  // tiles whose two columns are both inside
          for (; tw < full; ++tw) {
            yr[2 * tw - shift] = q0[tw] + q1[tw] + q2[tw] + bo;
            yr[2 * tw + 1 - shift] = q1[tw] - q2[tw] - q3[tw] + bo;
          }
          if (full < TW && 2 * full - shift < RW) yr[2 * full - shift] = q0[full] + q1[full] + q2[full] + bo;
        }
      }
      act_inplace(act, y + (size_t)(oy_first - r.top) * RW, (size_t)(oy_last - oy_first) * RW);
    }
  };

  const size_t T = (size_t)pool->num_threads();
  const size_t m_panels = ((size_t)O + k.mr - 1) / k.mr;
  if (T > 1 && n_blocks < 8 * T) {
    // Few blocks (deep layers, small maps): whole blocks per thread would leave threads idle
    // (e.g. 5 blocks on 2 threads), so the threads share each block, phase by phase. V and M
    // are the calling thread's scratch; it stays in the call until every phase is done.
    float* V = thread_scratch(16 * xs, 1);
    float* M = thread_scratch(16 * ms, 2);
    const size_t splits = 2;  // 16 x 2 GEMM tasks divide evenly over 2 or 4 threads
    const size_t pps = (m_panels + splits - 1) / splits;
    for (size_t blk = 0; blk < n_blocks; ++blk) {
      const int th0 = (int)(blk * rows), th1 = std::min(TH, (int)((blk + 1) * rows));
      const size_t nt = (size_t)(th1 - th0) * TW;
      pool->parallel_for_chunks((size_t)C, nt * 16, [&](size_t c0, size_t c1) {
        input_transform(V, th0, th1, (int)c0, (int)c1);
      });
      pool->parallel_for(16 * splits, [&](size_t t, int) {
        gemms(V, M, th0, th1, (int)(t / splits), (t % splits) * pps, (t % splits + 1) * pps);
      });
      pool->parallel_for_chunks((size_t)O, nt * 24, [&](size_t o0, size_t o1) {
        output_transform(M, th0, th1, (int)o0, (int)o1);
      });
    }
    return;
  }
  pool->parallel_for(n_blocks, [&](size_t blk, int) {
    const int th0 = (int)(blk * rows), th1 = std::min(TH, (int)((blk + 1) * rows));
    float* V = thread_scratch(16 * xs, 1);  // V[xi][c][t]
    float* M = thread_scratch(16 * ms, 2);  // M[xi][o][t]
    input_transform(V, th0, th1, 0, C);
    for (int xi = 0; xi < 16; ++xi) gemms(V, M, th0, th1, xi, 0, m_panels);
    output_transform(M, th0, th1, 0, O);
  });
}

}  // namespace ftp
