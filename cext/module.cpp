// deepthings._core: the pybind11 module. Bindings only; the work lives in src/ftp_core/.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_engine(py::module_& m);  // cext/bind_engine.cpp: layer kernels, threads, ISA dispatch
void bind_region(py::module_& m);  // cext/bind_region.cpp: FTP region arithmetic

PYBIND11_MODULE(_core, m) {
  m.doc() = "deepthings native core (private: import deepthings, not deepthings._core)";
  bind_engine(m);
  bind_region(m);
}
