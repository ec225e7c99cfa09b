#include "ftp_core/build_info.hpp"

namespace ftp {

std::string build_info() {
  std::string arch =
#if defined(DT_ARCH_X86)
      "x86_64";
#elif defined(DT_ARCH_AARCH64)
      "aarch64";
#elif defined(DT_ARCH_ARMV7)
      "armv7";
#else
      "generic";
#endif
#if defined(__clang__)
  return arch + " clang " + __clang_version__;
#elif defined(__GNUC__)
  return arch + " gcc " + __VERSION__;
#else
  return arch;
#endif
}

}  // namespace ftp
