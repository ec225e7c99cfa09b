// Bindings for the FTP region arithmetic (src/ftp_core/region.*).
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_region(py::module_& m) { (void)m; }
