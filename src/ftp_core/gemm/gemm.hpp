// Packed single-precision GEMM: C (M x N) = act(A (M x K) * B (K x N) + bias), with A packed
// once into MR-row panels (weights, kept per layer) and B packed per cache block into
// NR-column panels, straight from the input feature map for convolutions (im2col fused into
// the packing, so no full im2col matrix ever exists).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "ftp_core/activation.hpp"

namespace ftp {

enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2, neon = 3 };

// Micro-kernel flags.
enum : int {
  kLoadC = 1,     // accumulate onto C (later K blocks); else start from bias (or 0)
  kActRelu = 2,   // apply relu before storing (last K block only)
  kActLeaky = 4,  // apply leaky 0.1 before storing (last K block only)
};

// One MR x NR register tile: C[0:m, 0:n] (+)= A_panel(kc x MR) * B_panel(kc x NR).
// a: kc groups of MR floats; b: kc rows of NR floats, ldb floats apart (ldb = NR for a packed
// panel; a dense B matrix is read in place with its own row stride); columns past n of a
// packed panel are zero, those of a dense B are ignored;
// c: row-major with leading dimension ldc; bias: MR floats (may be null); m <= MR, n <= NR.
using GemmUKernel = void (*)(size_t kc, const float* a, const float* b, size_t ldb, float* c,
                             size_t ldc, size_t m, size_t n, const float* bias, int flags);

struct GemmKernel {
  const char* name;  // e.g. "f32-gemm-6x16-avx2"
  Isa isa;
  int mr, nr;
  GemmUKernel ukernel;
};

// ---- ISA dispatch (dispatch.cpp) ----
const char* isa_name(Isa isa);
std::vector<std::string> available_isas();  // compiled in and supported by this CPU, best last
Isa active_isa();
void set_isa(const std::string& name);  // throws std::invalid_argument if unavailable
const GemmKernel& kernel_for(Isa isa);
inline const GemmKernel& active_kernel() { return kernel_for(active_isa()); }

// ---- packing (pack.cpp) ----
// A (M x K, row stride lda) -> ceil(M/mr) panels, each K groups of mr floats (rows past M = 0).
size_t packed_a_size(size_t M, size_t K, int mr);
void pack_a(const float* a, size_t M, size_t K, size_t lda, int mr, float* out);

// B rows [k0, k0+kc) x columns [n0, n0+nc) of a dense K x N matrix (row stride ldb) into
// ceil(nc/nr) panels of kc groups of nr floats.
void pack_b(const float* b, size_t ldb, size_t k0, size_t kc, size_t n0, size_t nc, int nr,
            float* out);

// Geometry of one convolution's implicit im2col matrix: row k = (c, ky, kx), column n = output
// pixel (oy, ox); element = input[c][oy*sh - top + ky][ox*sw - left + kx], 0 outside the map.
struct ConvGeom {
  int C, H, W;        // input map (of this group)
  int kh, kw, sh, sw;
  int top, left;      // padding before the map (bottom/right only change OH/OW)
  int OH, OW;
};
void pack_b_im2col(const float* in, const ConvGeom& g, size_t k0, size_t kc, size_t n0, size_t nc,
                   int nr, float* out);

// ---- blocked driver (gemm.cpp) ----
// Cache blocking: KC rows of B per block, NC columns, MC rows of A. The per-thread packed-B
// block (the only im2col storage) holds at most KC x NC floats = 256 x 512 x 4 B = 512 KiB.
constexpr size_t kGemmKC = 256;
constexpr size_t kGemmNC = 512;
constexpr size_t kGemmMC = 96;

// Source of the B operand: a dense matrix or an im2col view of a feature map.
struct BSource {
  const float* data;
  size_t ldb;              // dense: row stride
  const ConvGeom* geom;    // non-null: im2col of `data`
};

// C[M x N] (ldc) = act(A * B + bias) with A pre-packed for kernel `k`. Runs on the global
// thread pool (or inline when `parallel` is false, e.g. when already inside a pool task).
void gemm_packed(const GemmKernel& k, size_t M, size_t N, size_t K, const float* a_packed,
                 const BSource& b, const float* bias, Act act, float* c, size_t ldc,
                 bool parallel = true);

// Convenience for tests: packs A itself.
void gemm(const GemmKernel& k, size_t M, size_t N, size_t K, const float* a, size_t lda,
          const float* b, size_t ldb, const float* bias, Act act, float* c, size_t ldc);

// Aligned scratch owned by the calling thread (grows, never shrinks).
float* thread_scratch(size_t floats, int slot = 0);

}  // namespace ftp
