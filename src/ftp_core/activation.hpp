// Darknet activation functions: one enum, one scalar definition of each (the source of truth
// that the vectorised GEMM epilogues must agree with).
#pragma once
#include <cmath>
#include <cstddef>
#include <string>

namespace ftp {

enum class Act : int {
  linear = 0,
  leaky,
  relu,
  logistic,
  loggy,
  tanh,
  elu,
  selu,
  relie,
  ramp,
  hardtan,
  lhtan,
  plse,
  stair,
  mish,
  swish,
  hard_mish,
  relu6,
  softplus,
  gelu,
};

// Throws std::invalid_argument naming the activation when it is unknown.
Act parse_act(const std::string& name);
const char* act_name(Act a);

inline float softplus_dn(float x) {
  // Darknet/AlexeyAB softplus with threshold 20 (used by mish).
  const float t = 20.f;
  if (x > t) return x;
  if (x < -t) return std::exp(x);
  return std::log1p(std::exp(x));
}

inline float act_scalar(Act a, float x) {
  switch (a) {
    case Act::linear: return x;
    case Act::leaky: return x > 0 ? x : 0.1f * x;
    case Act::relu: return x > 0 ? x : 0.f;
    case Act::logistic: return 1.f / (1.f + std::exp(-x));
    case Act::loggy: return 2.f / (1.f + std::exp(-x)) - 1.f;
    case Act::tanh: return std::tanh(x);
    case Act::elu: return x >= 0 ? x : std::exp(x) - 1.f;
    case Act::selu: return x >= 0 ? 1.0507f * x : 1.0507f * 1.6732f * (std::exp(x) - 1.f);
    case Act::relie: return x > 0 ? x : 0.01f * x;
    case Act::ramp: return (x > 0 ? x : 0.f) + 0.1f * x;
    case Act::hardtan: return x < -1.f ? -1.f : (x > 1.f ? 1.f : x);
    case Act::lhtan:
      if (x < 0) return 0.001f * x;
      if (x > 1) return 0.001f * (x - 1.f) + 1.f;
      return x;
    case Act::plse:
      if (x < -4) return 0.01f * (x + 4.f);
      if (x > 4) return 0.01f * (x - 4.f) + 1.f;
      return 0.125f * x + 0.5f;
    case Act::stair: {
      int n = static_cast<int>(std::floor(x));
      if (n % 2 == 0) return std::floor(x / 2.f);
      return (x - static_cast<float>(n)) + std::floor(x / 2.f);
    }
    case Act::mish: return x * std::tanh(softplus_dn(x));
    case Act::swish: return x / (1.f + std::exp(-x));
    case Act::relu6: return x < 0 ? 0.f : (x > 6.f ? 6.f : x);
    case Act::softplus: return softplus_dn(x);
    case Act::gelu: return 0.5f * x * (1.f + std::tanh(0.797885f * x + 0.035677f * x * x * x));
    case Act::hard_mish:
      if (x > 0) return x;
      if (x > -2) return x * x / 2.f + x;
      return 0.f;
  }
  return x;
}

// In place over n contiguous floats (vectorised for the cheap ones).
void act_inplace(Act a, float* x, size_t n);

// The activations every GEMM micro-kernel applies in registers; the rest run as a pass over
// each finished output tile while it is still in cache.
inline bool act_fused_in_kernel(Act a) { return a == Act::linear || a == Act::leaky || a == Act::relu; }

}  // namespace ftp
