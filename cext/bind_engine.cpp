// Bindings for the layer kernels (owned by the engine work; see src/ftp_core/).
#include <pybind11/pybind11.h>

#include "ftp_core/build_info.hpp"

namespace py = pybind11;

void bind_engine(py::module_& m) {
  m.def("build_info", &ftp::build_info, "compiler and target architecture of this build");
}
