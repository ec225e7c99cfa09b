// Runtime ISA selection. x86-64: the binary is built for the plain baseline and picks AVX-512 or
// AVX2+FMA kernels by CPUID (__builtin_cpu_supports); ARM: NEON is chosen at compile time.
// $DEEPTHINGS_ISA (scalar|avx2|avx512|neon) or set_isa() force a path, e.g. for tests.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "ftp_core/gemm/gemm.hpp"

namespace ftp {

void f32_gemm_4x4_scalar(size_t, const float*, const float*, size_t, float*, size_t, size_t, size_t,
                         const float*, int);
#if defined(DT_ARCH_X86)
void f32_gemm_6x16_avx2(size_t, const float*, const float*, size_t, float*, size_t, size_t, size_t,
                        const float*, int);
void f32_gemm_8x32_avx512(size_t, const float*, const float*, size_t, float*, size_t, size_t, size_t,
                          const float*, int);
#elif defined(DT_ARCH_AARCH64)
void f32_gemm_8x8_neon_aarch64(size_t, const float*, const float*, size_t, float*, size_t, size_t, size_t,
                               const float*, int);
#elif defined(DT_ARCH_ARMV7)
void f32_gemm_6x8_neon_armv7(size_t, const float*, const float*, size_t, float*, size_t, size_t, size_t,
                             const float*, int);
#endif

namespace {

const GemmKernel kScalar{"f32-gemm-4x4-scalar", Isa::scalar, 4, 4, f32_gemm_4x4_scalar};
#if defined(DT_ARCH_X86)
const GemmKernel kAvx2{"f32-gemm-6x16-avx2", Isa::avx2, 6, 16, f32_gemm_6x16_avx2};
const GemmKernel kAvx512{"f32-gemm-8x32-avx512", Isa::avx512, 8, 32, f32_gemm_8x32_avx512};
#elif defined(DT_ARCH_AARCH64)
const GemmKernel kNeon{"f32-gemm-8x8-neon-aarch64", Isa::neon, 8, 8, f32_gemm_8x8_neon_aarch64};
#elif defined(DT_ARCH_ARMV7)
const GemmKernel kNeon{"f32-gemm-6x8-neon-armv7", Isa::neon, 6, 8, f32_gemm_6x8_neon_armv7};
#endif

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::scalar: return true;
#if defined(DT_ARCH_X86)
    case Isa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
             __builtin_cpu_supports("fma");
#elif defined(DT_ARCH_AARCH64) || defined(DT_ARCH_ARMV7)
    case Isa::neon: return true;
#endif
    default: return false;
  }
}

Isa parse_isa(const std::string& name) {
  if (name == "scalar") return Isa::scalar;
  if (name == "avx2") return Isa::avx2;
  if (name == "avx512") return Isa::avx512;
  if (name == "neon") return Isa::neon;
  throw std::invalid_argument("unknown ISA '" + name + "' (expected scalar, avx2, avx512 or neon)");
}

Isa best_isa() {
  for (Isa isa : {Isa::avx512, Isa::avx2, Isa::neon})
    if (isa_supported(isa)) return isa;
  return Isa::scalar;
}

Isa initial_isa() {
  const char* env = std::getenv("DEEPTHINGS_ISA");
  if (env && *env) {
    try {
      Isa isa = parse_isa(env);
      if (isa_supported(isa)) return isa;
      std::fprintf(stderr, "deepthings: DEEPTHINGS_ISA=%s is not available here, using %s\n", env,
                   isa_name(best_isa()));
    } catch (const std::invalid_argument& e) {
      std::fprintf(stderr, "deepthings: DEEPTHINGS_ISA: %s, using %s\n", e.what(),
                   isa_name(best_isa()));
    }
  }
  return best_isa();
}

std::atomic<int>& active() {
  static std::atomic<int> isa{static_cast<int>(initial_isa())};
  return isa;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::neon: return "neon";
  }
  return "?";
}

std::vector<std::string> available_isas() {
  std::vector<std::string> out;
  for (Isa isa : {Isa::scalar, Isa::neon, Isa::avx2, Isa::avx512})
    if (isa_supported(isa)) out.emplace_back(isa_name(isa));
  return out;
}

Isa active_isa() { return static_cast<Isa>(active().load(std::memory_order_relaxed)); }

void set_isa(const std::string& name) {
  Isa isa = parse_isa(name);
  if (!isa_supported(isa)) {
    std::string avail;
    for (const auto& s : available_isas()) avail += (avail.empty() ? "" : ", ") + s;
    throw std::invalid_argument("ISA '" + name + "' is not available on this build/CPU (available: " +
                                avail + ")");
  }
  active().store(static_cast<int>(isa));
}

const GemmKernel& kernel_for(Isa isa) {
  switch (isa) {
#if defined(DT_ARCH_X86)
    case Isa::avx2: return kAvx2;
    case Isa::avx512: return kAvx512;
#elif defined(DT_ARCH_AARCH64) || defined(DT_ARCH_ARMV7)
    case Isa::neon: return kNeon;
#endif
    default: return kScalar;
  }
}

}  // namespace ftp
