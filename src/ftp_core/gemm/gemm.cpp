// Blocked GEMM driver (BLIS loop order): N blocks of NC columns are the parallel tasks; inside a
// task, K blocks of KC rows are packed once (im2col happens here) and swept by MR x NR tiles
// over MC-row slabs of the pre-packed A, so B's micro-panel stays in L1 and A's slab in L2.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "ftp_core/gemm/gemm.hpp"
#include "ftp_core/threadpool.hpp"

namespace ftp {

namespace {
struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};
struct Scratch {
  std::unique_ptr<float, FreeDeleter> buf;
  size_t floats = 0;
};
}  // namespace

float* thread_scratch(size_t floats, int slot) {
  thread_local Scratch scratch[4];
  Scratch& s = scratch[slot];
  if (s.floats < floats) {
    size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::bad_alloc();
    s.buf.reset(static_cast<float*>(p));
    s.floats = floats;
  }
  return s.buf.get();
}

void gemm_packed(const GemmKernel& k, size_t M, size_t N, size_t K, const float* a_packed,
                 const BSource& b, const float* bias, Act act, float* c, size_t ldc,
                 bool parallel) {
  if (M == 0 || N == 0) return;
  const size_t mr = k.mr, nr = k.nr;
  // Small products run inline: waking a worker costs more than ~128k multiply-adds.
  if ((double)M * N * K < (double)(1 << 17)) parallel = false;
  std::shared_ptr<ThreadPool> pool = parallel ? global_pool() : nullptr;
  const size_t T = pool ? pool->num_threads() : 1;
  if (K == 0) {
    for (size_t i = 0; i < M; ++i) {
      for (size_t j = 0; j < N; ++j) c[i * ldc + j] = bias ? bias[i] : 0.f;
      act_inplace(act, c + i * ldc, N);
    }
    return;
  }

  // Column blocks: at most NC wide, as many as a multiple of the thread count (3 blocks on
  // 2 threads would cap the speed-up at 1.5x), and of equal width.
  size_t n_blocks = (N + kGemmNC - 1) / kGemmNC;
  n_blocks = (n_blocks + T - 1) / T * T;
  size_t nc = (N + n_blocks - 1) / n_blocks;
  nc = std::min(kGemmNC, (nc + nr - 1) / nr * nr);
  n_blocks = (N + nc - 1) / nc;
  // When N is too narrow to feed every thread, also split the rows (each task then packs the
  // same B block: cheap next to the GEMM on such deep, small layers).
  const size_t m_panels = (M + mr - 1) / mr;
  size_t m_splits = 1;
  if (n_blocks < T) m_splits = std::min(m_panels, (T + n_blocks - 1) / n_blocks);
  const size_t panels_per_split = (m_panels + m_splits - 1) / m_splits;
  const size_t mc_panels = std::max<size_t>(1, kGemmMC / mr);

  // Reading a dense B in place saves the packing copy, but its KC rows must not pile up in a
  // few L1 sets: rows a multiple of 4 KiB apart all map to one set. Allow it only when the row
  // stride in cache lines shares at most a factor 4 with the 64 L1 sets (or is not line-sized);
  // measured: 1024-float rows read in place ran 2.3x slower than packed ones.
  bool b_direct = false;
  if (!b.geom) {
    size_t lines = b.ldb % 16 ? 1 : b.ldb / 16, g = 64;
    for (size_t x = lines; x;) {  // gcd(lines, 64)
      size_t r = g % x;
      g = x;
      x = r;
    }
    b_direct = b.ldb % 16 != 0 || g <= 4;
  }
  const bool fused = act_fused_in_kernel(act);
  const int act_flags = act == Act::relu ? kActRelu : (act == Act::leaky ? kActLeaky : 0);

  auto task = [&](size_t t, int) {
    const size_t nb = t / m_splits, ms = t % m_splits;
    const size_t n0 = nb * nc, ncur = std::min(nc, N - n0);
    const size_t p_begin = ms * panels_per_split;
    const size_t p_end = std::min(m_panels, p_begin + panels_per_split);
    if (p_begin >= p_end) return;
    const size_t n_panels = (ncur + nr - 1) / nr;
    float* bpack = thread_scratch(std::min(kGemmKC, K) * n_panels * nr, 0);
    alignas(64) float bias_pad[64];
    for (size_t k0 = 0; k0 < K; k0 += kGemmKC) {
      const size_t kc = std::min(kGemmKC, K - k0);
      // im2col sources are packed (that is the im2col); a dense B is read in place by full
      // panels (when its stride allows) and only its ragged last panel is packed (zero padded).
      if (b.geom)
        pack_b_im2col(b.data, *b.geom, k0, kc, n0, ncur, (int)nr, bpack);
      else if (!b_direct)
        pack_b(b.data, b.ldb, k0, kc, n0, ncur, (int)nr, bpack);
      const bool last = k0 + kc == K;
      const int flags = (k0 > 0 ? kLoadC : 0) | (last && fused ? act_flags : 0);
      for (size_t pm0 = p_begin; pm0 < p_end; pm0 += mc_panels) {
        const size_t pm1 = std::min(p_end, pm0 + mc_panels);
        for (size_t jp = 0; jp < n_panels; ++jp) {
          const size_t col = n0 + jp * nr;
          const size_t n_eff = std::min(nr, N - col);
          const float* bp;
          size_t ldb;
          if (b.geom || !b_direct) {
            bp = bpack + jp * kc * nr;
            ldb = nr;
          } else if (n_eff == nr) {
            bp = b.data + k0 * b.ldb + col;
            ldb = b.ldb;
          } else {
            if (pm0 == p_begin) pack_b(b.data, b.ldb, k0, kc, col, n_eff, (int)nr, bpack + jp * kc * nr);
            bp = bpack + jp * kc * nr;
            ldb = nr;
          }
          for (size_t ip = pm0; ip < pm1; ++ip) {
            const size_t row = ip * mr;
            const size_t m_eff = std::min(mr, M - row);
            const float* bias_p = nullptr;
            if (bias && k0 == 0) {
              if (m_eff == mr) {
                bias_p = bias + row;
              } else {
                for (size_t i = 0; i < mr; ++i) bias_pad[i] = i < m_eff ? bias[row + i] : 0.f;
                bias_p = bias_pad;
              }
            }
            float* cp = c + row * ldc + col;
            k.ukernel(kc, a_packed + ip * mr * K + k0 * mr, bp, ldb, cp, ldc, m_eff, n_eff, bias_p, flags);
            if (last && !fused)
              for (size_t i = 0; i < m_eff; ++i) act_inplace(act, cp + i * ldc, n_eff);
          }
        }
      }
    }
  };
  const size_t num_tasks = n_blocks * m_splits;
  if (pool)
    pool->parallel_for(num_tasks, task);
  else
    for (size_t t = 0; t < num_tasks; ++t) task(t, 0);
}

void gemm(const GemmKernel& k, size_t M, size_t N, size_t K, const float* a, size_t lda,
          const float* b, size_t ldb, const float* bias, Act act, float* c, size_t ldc) {
  std::unique_ptr<float, FreeDeleter> ap(
      static_cast<float*>(std::aligned_alloc(64, (packed_a_size(M, K, k.mr) * sizeof(float) + 63) / 64 * 64 + 64)));
  if (!ap) throw std::bad_alloc();
  pack_a(a, M, K, lda, k.mr, ap.get());
  BSource bs{b, ldb, nullptr};
  gemm_packed(k, M, N, K, ap.get(), bs, bias, act, c, ldc, true);
}

}  // namespace ftp
