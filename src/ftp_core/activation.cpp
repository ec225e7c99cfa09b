#include "ftp_core/activation.hpp"

#include <stdexcept>

namespace ftp {

namespace {
struct ActName {
  const char* name;
  Act act;
};
constexpr ActName kActs[] = {
    {"linear", Act::linear},   {"leaky", Act::leaky},     {"relu", Act::relu},
    {"logistic", Act::logistic}, {"loggy", Act::loggy},   {"tanh", Act::tanh},
    {"elu", Act::elu},         {"selu", Act::selu},       {"relie", Act::relie},
    {"ramp", Act::ramp},       {"hardtan", Act::hardtan}, {"lhtan", Act::lhtan},
    {"plse", Act::plse},       {"stair", Act::stair},     {"mish", Act::mish},
    {"swish", Act::swish},     {"hard_mish", Act::hard_mish},
    {"relu6", Act::relu6},     {"softplus", Act::softplus}, {"gelu", Act::gelu},
};
}  // namespace

Act parse_act(const std::string& name) {
  for (const auto& a : kActs)
    if (name == a.name) return a.act;
  throw std::invalid_argument("unknown activation '" + name + "'");
}

const char* act_name(Act a) {
  for (const auto& e : kActs)
    if (e.act == a) return e.name;
  return "?";
}

void act_inplace(Act a, float* x, size_t n) {
  switch (a) {
    case Act::linear: return;
    // Written as max(a, b) == (a < b ? b : a) so the compiler emits maxps, not a branch that
    // mispredicts on every other activation.
    case Act::leaky:
      for (size_t i = 0; i < n; ++i) {
        const float v = x[i], s = 0.1f * v;
        x[i] = v < s ? s : v;
      }
      return;
    case Act::relu:
      for (size_t i = 0; i < n; ++i) {
        const float v = x[i];
        x[i] = v < 0.f ? 0.f : v;
      }
      return;
    default:
      for (size_t i = 0; i < n; ++i) x[i] = act_scalar(a, x[i]);
  }
}

}  // namespace ftp
