// Bindings for the layer kernels (owned by the engine work; see src/ftp_core/).
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_engine(py::module_& m) {
#if defined(DT_ARCH_X86)
  m.attr("ARCH") = "x86_64";
#elif defined(DT_ARCH_AARCH64)
  m.attr("ARCH") = "aarch64";
#elif defined(DT_ARCH_ARMV7)
  m.attr("ARCH") = "armv7";
#else
  m.attr("ARCH") = "generic";
#endif
}
