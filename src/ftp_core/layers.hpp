// The non-convolution layers of Darknet networks, on CHW float32 maps. Shapes are checked by the
// caller (cext/bind_engine.cpp); these functions trust them.
#pragma once
#include <cstddef>

#include "ftp_core/activation.hpp"
#include "ftp_core/conv.hpp"

namespace ftp {

// Max over the window's cells that lie inside the map (padding never wins); a window entirely
// in padding gives -FLT_MAX, as in Darknet. out: (C, OH, OW) with OH/OW from window_out().
void maxpool2d(const float* in, int C, int H, int W, int kh, int kw, int sh, int sw, Pad4 pad,
               float* out);

// out[c] = mean of in[c] over H x W.
void global_avgpool(const float* in, int C, int H, int W, float* out);

// Nearest-neighbour upsample by `factor`, times `scale` (Darknet's upsample). out: (C, H*f, W*f).
void upsample(const float* in, int C, int H, int W, int factor, float scale, float* out);

// Darknet's reorg_cpu(x, W, H, C, 1, stride, forward = reverse, out) element order, which is
// not a plain space-to-depth. Forward (reverse=false): out (C*s*s, H/s, W/s).
void reorg(const float* in, int C, int H, int W, int stride, bool reverse, float* out);

// Darknet shortcut: out = act(alpha * prev + beta * add), where `add` (C1, H1, W1) may differ
// in size from `prev` (C2, H2, W2) (sampled / strided as Darknet does); out has prev's shape.
void shortcut(const float* prev, int C2, int H2, int W2, const float* add, int C1, int H1, int W1,
              float alpha, float beta, Act act, float* out);

// y (O) = act(W (O x I) x + b): a GEMV, rows split across threads.
void connected(const float* x, size_t I, const float* w, size_t O, const float* bias, Act act,
               float* y);

// Darknet softmax layer: `groups` contiguous chunks of n/groups values, each softmax(x/temp).
void softmax(const float* in, size_t n, int groups, float temperature, float* out);

}  // namespace ftp
