// Convolution layers: im2col-in-packing + packed GEMM for the general case, a direct kernel for
// depthwise, grouped convs as one GEMM per group. Padding is explicit per side because FTP tiles
// are zero-padded only where they touch the real map border.
#pragma once
#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "ftp_core/activation.hpp"
#include "ftp_core/gemm/gemm.hpp"

namespace ftp {

// Folded conv weights (O, I/groups, kh, kw) plus their GEMM-packed form, made once per ISA the
// first time that ISA runs the layer and kept for the layer's lifetime.
class ConvWeights {
 public:
  ConvWeights(const float* w, int out_channels, int in_per_group, int kh, int kw, int groups);
  // Packed A panels for kernel k: groups blocks of packed_a_size(O/groups, K, k.mr) floats.
  const float* packed(const GemmKernel& k);
  // Winograd F(2x2,3x3) transformed weights: 16 packed (O x C) matrices (winograd.cpp).
  const float* winograd_packed(const GemmKernel& k);
  size_t packed_group_stride(const GemmKernel& k) const;
  bool is_depthwise_for(int in_channels) const {
    return groups == in_channels && out_channels == in_channels && in_per_group == 1 && groups > 1;
  }

  const int out_channels, in_per_group, kh, kw, groups;
  std::vector<float> raw;  // (O, I/groups, kh, kw) copy

 private:
  std::mutex mutex_;
  std::array<std::unique_ptr<float, void (*)(void*)>, 4> packed_{
      {{nullptr, nullptr}, {nullptr, nullptr}, {nullptr, nullptr}, {nullptr, nullptr}}};
  std::array<std::unique_ptr<float, void (*)(void*)>, 4> wino_{
      {{nullptr, nullptr}, {nullptr, nullptr}, {nullptr, nullptr}, {nullptr, nullptr}}};
};

struct Pad4 {
  int top, left, bottom, right;
};

// Output size of a window layer: (H + top + bottom - kh) / sh + 1 (same for W).
inline int window_out(int size, int before, int after, int k, int s) {
  return (size + before + after - k) / s + 1;
}

// A part of a layer's output map: rows [top, bottom), columns [left, right).
struct OutRect {
  int top, left, bottom, right;
};

// out: (O, OH, OW), or with `region` just that part of it, (O, bottom - top, right - left).
// An FTP tile asks for a region when its Winograd blocks must stay on the whole map's grid:
// the conv then skips what only the rows and columns outside need. Caller checks shapes
// (C == in_per_group * groups, OH, OW >= 1, region inside the output).
void conv2d(const float* in, int C, int H, int W, ConvWeights& w, const float* bias, int sh, int sw,
            Pad4 pad, Act act, float* out, const OutRect* region = nullptr);

// Winograd F(2x2,3x3) path for 3x3 stride-1 ungrouped convs (winograd.cpp); on by default,
// switchable (tests run both paths).
void set_winograd_enabled(bool on);
bool winograd_enabled();
bool winograd_applies(const ConvWeights& w, int C, int sh, int sw);
void conv3x3_winograd(const float* in, int C, int H, int W, ConvWeights& w, const float* bias,
                      Pad4 pad, Act act, float* out, const OutRect* region = nullptr);

// Direct depthwise conv (groups == C == O): out[c] = act(bias[c] + w[c] (*) in[c]).
void depthwise_conv2d(const float* in, int C, int H, int W, const float* w, int kh, int kw,
                      const float* bias, int sh, int sw, Pad4 pad, Act act, float* out);

}  // namespace ftp
