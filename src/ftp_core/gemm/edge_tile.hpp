// The micro-kernels' edge tiles: a block smaller than the register tile runs on a full-size
// scratch tile, whose valid part is copied in (when accumulating onto C) and back out, so the
// register code itself never checks bounds. Internal linkage: each kernel's translation unit,
// built with its own ISA flags, gets its own copy.
#pragma once
#include <cstddef>

#include "ftp_core/gemm/gemm.hpp"

namespace ftp {
namespace {

// Calls run(cc, ld) on C itself when `direct`, else on an MR x NR scratch tile standing in for
// the m x n block of C.
template <int MR, int NR, class Run>
inline void on_tile(bool direct, float* c, size_t ldc, size_t m, size_t n, int flags, Run&& run) {
  if (direct) {
    run(c, ldc);
    return;
  }
  alignas(64) float tmp[MR * NR];
  if (flags & kLoadC)
    for (size_t i = 0; i < (size_t)MR; ++i)
      for (size_t j = 0; j < (size_t)NR; ++j) tmp[i * NR + j] = (i < m && j < n) ? c[i * ldc + j] : 0.f;
  run(tmp, (size_t)NR);
  for (size_t i = 0; i < m; ++i)
    for (size_t j = 0; j < n; ++j) c[i * ldc + j] = tmp[i * NR + j];
}

}  // namespace
}  // namespace ftp
