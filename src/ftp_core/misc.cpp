// Data-movement and small layers: upsample, reorg, shortcut, connected (GEMV), softmax.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "ftp_core/layers.hpp"
#include "ftp_core/threadpool.hpp"

namespace ftp {

void upsample(const float* in, int C, int H, int W, int f, float scale, float* out) {
  const int OW = W * f;
  for (int c = 0; c < C; ++c)
    for (int y = 0; y < H; ++y) {
      const float* xr = in + ((size_t)c * H + y) * W;
      float* row = out + ((size_t)c * H * f + (size_t)y * f) * OW;
      for (int x = 0; x < W; ++x) {
        const float v = scale * xr[x];
        for (int k = 0; k < f; ++k) row[x * f + k] = v;
      }
      for (int k = 1; k < f; ++k) std::memcpy(row + (size_t)k * OW, row, OW * sizeof(float));
    }
}

void reorg(const float* x, int c, int h, int w, int stride, bool reverse, float* out) {
  // Literal transcription of Darknet's reorg_cpu(x, w, h, c, batch=1, stride, forward, out),
  // called by forward_reorg_layer with the layer's *input* w, h, c and forward = reverse.
  const bool forward = reverse;
  const int out_c = c / (stride * stride);
  for (int k = 0; k < c; ++k)
    for (int j = 0; j < h; ++j)
      for (int i = 0; i < w; ++i) {
        const size_t in_index = i + (size_t)w * (j + (size_t)h * k);
        const int c2 = k % out_c;
        const int offset = k / out_c;
        const int w2 = i * stride + offset % stride;
        const int h2 = j * stride + offset / stride;
        const size_t out_index = w2 + (size_t)w * stride * (h2 + (size_t)h * stride * c2);
        if (forward)
          out[out_index] = x[in_index];
        else
          out[in_index] = x[out_index];
      }
}

void shortcut(const float* prev, int C2, int H2, int W2, const float* add, int C1, int H1, int W1,
              float alpha, float beta, Act act, float* out) {
  const size_t n = (size_t)C2 * H2 * W2;
  if (C1 == C2 && H1 == H2 && W1 == W2) {
    if (alpha == 1.f && beta == 1.f)
      for (size_t i = 0; i < n; ++i) out[i] = prev[i] + add[i];
    else
      for (size_t i = 0; i < n; ++i) out[i] = alpha * prev[i] + beta * add[i];
  } else {
    // Darknet's shortcut_cpu(w1=add, w2=out): strided sampling over the common extent.
    std::memcpy(out, prev, n * sizeof(float));
    int stride = W1 / W2, sample = W2 / W1;
    if (stride < 1) stride = 1;
    if (sample < 1) sample = 1;
    const int minw = std::min(W1, W2), minh = std::min(H1, H2), minc = std::min(C1, C2);
    for (int k = 0; k < minc; ++k)
      for (int j = 0; j < minh; ++j)
        for (int i = 0; i < minw; ++i) {
          const size_t oi = i * sample + (size_t)W2 * (j * sample + (size_t)H2 * k);
          const size_t ai = i * stride + (size_t)W1 * (j * stride + (size_t)H1 * k);
          out[oi] = alpha * out[oi] + beta * add[ai];
        }
  }
  act_inplace(act, out, n);
}

void connected(const float* x, size_t I, const float* w, size_t O, const float* bias, Act act,
               float* y) {
  global_pool()->parallel_for_chunks(O, I, [&](size_t o0, size_t o1) {
    for (size_t o = o0; o < o1; ++o) {
      const float* wr = w + o * I;
      // Eight independent partial sums: vectorisable without -ffast-math.
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      size_t i = 0;
      for (; i + 8 <= I; i += 8)
        for (int l = 0; l < 8; ++l) acc[l] += wr[i + l] * x[i + l];
      float s = 0;
      for (; i < I; ++i) s += wr[i] * x[i];
      s += ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
      y[o] = act_scalar(act, s + (bias ? bias[o] : 0.f));
    }
  });
}

void softmax(const float* in, size_t n, int groups, float temperature, float* out) {
  const size_t len = n / groups;
  for (int g = 0; g < groups; ++g) {
    const float* x = in + g * len;
    float* y = out + g * len;
    float mx = -INFINITY;
    for (size_t i = 0; i < len; ++i) mx = std::max(mx, x[i]);
    float sum = 0;
    for (size_t i = 0; i < len; ++i) {
      y[i] = std::exp(x[i] / temperature - mx / temperature);
      sum += y[i];
    }
    for (size_t i = 0; i < len; ++i) y[i] /= sum;
  }
}

}  // namespace ftp
