// Bindings for the FTP region arithmetic (src/ftp_core/region.*). Regions and paddings cross
// the boundary as plain (top, left, bottom, right) tuples; python/deepthings/ftp wraps them.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <tuple>
#include <vector>

#include "ftp_core/region.hpp"

namespace py = pybind11;

namespace {

using Quad = std::tuple<int, int, int, int>;

Quad to_quad(const ftp::Region& r) { return {r.top, r.left, r.bottom, r.right}; }
Quad to_quad(const ftp::Pad& p) { return {p.top, p.left, p.bottom, p.right}; }
ftp::Region to_region(const Quad& q) {
  return ftp::Region{std::get<0>(q), std::get<1>(q), std::get<2>(q), std::get<3>(q)};
}

// (active, out, in, pad) of one layer; a trace has (active, out, in, pad, produced) per
// layer, plus the input region.
using LayerTuple = std::tuple<bool, Quad, Quad, Quad>;
using TraceLayerTuple = std::tuple<bool, Quad, Quad, Quad, Quad>;
using TraceTuple = std::tuple<std::vector<TraceLayerTuple>, Quad>;

TraceTuple to_tuple(const ftp::TileTrace& t) {
  std::vector<TraceLayerTuple> layers;
  layers.reserve(t.layers.size());
  for (const auto& l : t.layers)
    layers.emplace_back(l.active, to_quad(l.out), to_quad(l.in), to_quad(l.pad), to_quad(l.produced));
  return {layers, to_quad(t.input_region)};
}

ftp::TileTrace from_tuple(const TraceTuple& tt) {
  ftp::TileTrace t;
  for (const auto& [active, out, in, pad, produced] : std::get<0>(tt)) {
    ftp::LayerRegion lr;
    lr.active = active;
    lr.out = to_region(out);
    lr.produced = to_region(produced);
    lr.in = to_region(in);
    lr.pad = ftp::Pad{std::get<0>(pad), std::get<1>(pad), std::get<2>(pad), std::get<3>(pad)};
    t.layers.push_back(lr);
  }
  t.input_region = to_region(std::get<1>(tt));
  return t;
}

std::vector<std::pair<int, ftp::Region>> to_seeds(const std::vector<std::pair<int, Quad>>& seeds) {
  std::vector<std::pair<int, ftp::Region>> s;
  for (const auto& [l, q] : seeds) s.emplace_back(l, to_region(q));
  return s;
}

// Owns the converted neighbour traces and the pointer array the C++ API takes.
struct Neighbours {
  std::array<ftp::TileTrace, 4> storage;
  ftp::Neighbours ptrs{nullptr, nullptr, nullptr, nullptr};
  explicit Neighbours(const std::array<std::optional<TraceTuple>, 4>& nbs) {
    for (int s = 0; s < 4; ++s)
      if (nbs[s]) {
        storage[s] = from_tuple(*nbs[s]);
        ptrs[s] = &storage[s];
      }
  }
};

}  // namespace

void bind_region(py::module_& m) {
  py::register_exception<ftp::RegionError>(m, "RegionError", PyExc_ValueError);

  py::enum_<ftp::Kind>(m, "RegionKind")
      .value("window", ftp::Kind::Window)
      .value("pointwise", ftp::Kind::Pointwise)
      .value("upsample", ftp::Kind::Upsample)
      .value("global_", ftp::Kind::Global);

  py::class_<ftp::LayerDesc>(m, "LayerDesc", "plain description of one fused-block layer")
      .def(py::init([](ftp::Kind kind, std::pair<int, int> kernel, std::pair<int, int> stride, Quad pad, int factor,
                       std::vector<int> inputs, std::vector<int> in_h, std::vector<int> in_w, int out_h,
                       int out_w, int align) {
             ftp::LayerDesc d;
             d.kind = kind;
             d.kh = kernel.first;
             d.kw = kernel.second;
             d.sh = stride.first;
             d.sw = stride.second;
             d.pad = ftp::Pad{std::get<0>(pad), std::get<1>(pad), std::get<2>(pad), std::get<3>(pad)};
             d.factor = factor;
             d.inputs = std::move(inputs);
             d.in_h = std::move(in_h);
             d.in_w = std::move(in_w);
             d.out_h = out_h;
             d.out_w = out_w;
             d.align = align;
             return d;
           }),
           py::arg("kind"), py::arg("kernel"), py::arg("stride"), py::arg("pad"), py::arg("factor"),
           py::arg("inputs"), py::arg("in_h"), py::arg("in_w"), py::arg("out_h"), py::arg("out_w"),
           py::arg("align") = 1)
      .def_readonly("align", &ftp::LayerDesc::align)
      .def_readonly("out_h", &ftp::LayerDesc::out_h)
      .def_readonly("out_w", &ftp::LayerDesc::out_w);

  m.def("region_balanced_range", &ftp::balanced_range, py::arg("length"), py::arg("parts"), py::arg("i"),
        "[start, end) of part i of a balanced split (sizes differ by at most one)");

  m.def(
      "region_balanced_grid",
      [](int h, int w, int n, int mm) {
        std::vector<Quad> out;
        for (const auto& r : ftp::balanced_grid(h, w, n, mm)) out.push_back(to_quad(r));
        return out;
      },
      py::arg("h"), py::arg("w"), py::arg("n"), py::arg("m"), "row-major N x M balanced grid over an h x w map");

  m.def(
      "region_layer_input",
      [](const ftp::LayerDesc& d, Quad out, int index) {
        auto lr = ftp::layer_input_region(d, to_region(out), index);
        return LayerTuple{lr.active, to_quad(lr.out), to_quad(lr.in), to_quad(lr.pad)};
      },
      py::arg("layer"), py::arg("out"), py::arg("index"),
      "(active, out, in, pad) of one layer producing output region `out`");

  m.def("region_validate_block", &ftp::validate_block, py::arg("block"), py::arg("net_in_h"), py::arg("net_in_w"));

  m.def(
      "region_trace_tile",
      [](const std::vector<ftp::LayerDesc>& block, const std::vector<std::pair<int, Quad>>& seeds, int h, int w) {
        std::vector<std::pair<int, ftp::Region>> s;
        for (const auto& [l, q] : seeds) s.emplace_back(l, to_region(q));
        return to_tuple(ftp::trace_tile(block, s, h, w));
      },
      py::arg("block"), py::arg("seeds"), py::arg("net_in_h"), py::arg("net_in_w"),
      "back-trace one tile: ([(active, out, in, pad, produced) per layer], input_region); produced: "
      "what the engine returns, out extended up/left to LayerDesc.align");

  m.def(
      "region_reduced_trace",
      [](const std::vector<ftp::LayerDesc>& block, const std::vector<std::pair<int, Quad>>& seeds, int h, int w,
         const std::array<std::optional<TraceTuple>, 4>& nbs, std::array<bool, 4> present) {
        Neighbours n(nbs);
        auto rt = ftp::reduced_trace(block, to_seeds(seeds), h, w, n.ptrs, present);
        std::vector<std::tuple<bool, Quad, Quad, Quad, Quad, Quad>> layers;
        for (const auto& l : rt.layers)
          layers.emplace_back(l.active, to_quad(l.need), to_quad(l.compute), to_quad(l.in), to_quad(l.pad),
                              to_quad(l.produced));
        return std::make_tuple(layers, to_quad(rt.input_region));
      },
      py::arg("block"), py::arg("seeds"), py::arg("net_in_h"), py::arg("net_in_w"), py::arg("neighbours"),
      py::arg("present"),
      "level-1 tile with data reuse: ([(active, need, compute, in, pad, produced) per layer], "
      "input_region); neighbours: (up, left, down, right) full traces or None");

  m.def(
      "region_publish",
      [](const std::vector<ftp::LayerDesc>& block, const std::vector<std::pair<int, Quad>>& seeds, int h, int w,
         const std::array<std::optional<TraceTuple>, 4>& nbs) {
        Neighbours n(nbs);
        auto pub = ftp::publish_regions(block, to_seeds(seeds), h, w, n.ptrs);
        std::array<std::vector<Quad>, 4> out;
        for (int s = 0; s < 4; ++s)
          for (const auto& r : pub[s]) out[s].push_back(to_quad(r));
        return out;
      },
      py::arg("block"), py::arg("seeds"), py::arg("net_in_h"), py::arg("net_in_w"), py::arg("neighbours"),
      "per side (up, left, down, right), per layer: the region that neighbour publishes for this tile");
}
