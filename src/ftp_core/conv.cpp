#include "ftp_core/conv.hpp"

#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

namespace ftp {

ConvWeights::ConvWeights(const float* w, int out_channels_, int in_per_group_, int kh_, int kw_,
                         int groups_)
    : out_channels(out_channels_), in_per_group(in_per_group_), kh(kh_), kw(kw_), groups(groups_),
      raw(w, w + (size_t)out_channels_ * in_per_group_ * kh_ * kw_) {}

size_t ConvWeights::packed_group_stride(const GemmKernel& k) const {
  const size_t og = out_channels / groups, K = (size_t)in_per_group * kh * kw;
  return packed_a_size(og, K, k.mr);
}

const float* ConvWeights::packed(const GemmKernel& k) {
  std::lock_guard<std::mutex> lk(mutex_);
  auto& slot = packed_[static_cast<int>(k.isa)];
  if (!slot) {
    const size_t og = out_channels / groups, K = (size_t)in_per_group * kh * kw;
    const size_t stride = packed_group_stride(k);
    const size_t bytes = (stride * groups * sizeof(float) + 63) / 64 * 64 + 64;
    float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (!p) throw std::bad_alloc();
    for (int g = 0; g < groups; ++g) pack_a(raw.data() + g * og * K, og, K, K, k.mr, p + g * stride);
    slot = std::unique_ptr<float, void (*)(void*)>(p, std::free);
  }
  return slot.get();
}

void conv2d(const float* in, int C, int H, int W, ConvWeights& w, const float* bias, int sh, int sw,
            Pad4 pad, Act act, float* out, const OutRect* region) {
  const int OH = window_out(H, pad.top, pad.bottom, w.kh, sh);
  const int OW = window_out(W, pad.left, pad.right, w.kw, sw);
  if (winograd_applies(w, C, sh, sw)) {
    conv3x3_winograd(in, C, H, W, w, bias, pad, act, out, region);
    return;
  }
  if (region && !(region->top == 0 && region->left == 0 && region->bottom == OH && region->right == OW)) {
    // Only Winograd convs gain from a region; the others make the whole output and copy it.
    std::vector<float> full((size_t)w.out_channels * OH * OW);
    conv2d(in, C, H, W, w, bias, sh, sw, pad, act, full.data(), nullptr);
    const int RH = region->bottom - region->top, RW = region->right - region->left;
    for (int o = 0; o < w.out_channels; ++o)
      for (int y = 0; y < RH; ++y)
        std::memcpy(out + ((size_t)o * RH + y) * RW,
                    full.data() + ((size_t)o * OH + region->top + y) * OW + region->left, RW * sizeof(float));
    return;
  }
  if (w.is_depthwise_for(C)) {
    depthwise_conv2d(in, C, H, W, w.raw.data(), w.kh, w.kw, bias, sh, sw, pad, act, out);
    return;
  }
  const GemmKernel& k = active_kernel();
  const float* ap = w.packed(k);
  const size_t a_stride = w.packed_group_stride(k);
  const int cg = C / w.groups, og = w.out_channels / w.groups;
  const size_t K = (size_t)cg * w.kh * w.kw, N = (size_t)OH * OW;
  // A 1x1, stride-1, unpadded conv reads its input as the B matrix directly: no im2col at all.
  const bool pointwise = w.kh == 1 && w.kw == 1 && sh == 1 && sw == 1 && pad.top == 0 &&
                         pad.left == 0 && pad.bottom == 0 && pad.right == 0;
  for (int g = 0; g < w.groups; ++g) {
    const float* x = in + (size_t)g * cg * H * W;
    ConvGeom geom{cg, H, W, w.kh, w.kw, sh, sw, pad.top, pad.left, OH, OW};
    BSource b{x, (size_t)H * W, pointwise ? nullptr : &geom};
    gemm_packed(k, og, N, K, ap + g * a_stride, b, bias ? bias + g * og : nullptr, act,
                out + (size_t)g * og * N, N);
  }
}

}  // namespace ftp
