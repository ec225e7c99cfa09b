// FTP region arithmetic (see region.hpp for the conventions).
#include "ftp_core/region.hpp"

#include <algorithm>

namespace ftp {
namespace {

std::string layer_msg(int index, const std::string& what) {
  return "layer " + std::to_string(index) + ": " + what;
}

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Window: return "window";
    case Kind::Pointwise: return "pointwise";
    case Kind::Upsample: return "upsample";
    case Kind::Global: return "global";
  }
  return "?";
}

int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

}  // namespace

Region intersect(const Region& a, const Region& b) {
  Region r{std::max(a.top, b.top), std::max(a.left, b.left), std::min(a.bottom, b.bottom),
           std::min(a.right, b.right)};
  if (r.empty()) return Region{};
  return r;
}

Region bounding_box(const Region& a, const Region& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return Region{std::min(a.top, b.top), std::min(a.left, b.left), std::max(a.bottom, b.bottom),
                std::max(a.right, b.right)};
}

std::pair<int, int> balanced_range(int length, int parts, int i) {
  if (parts < 1 || parts > length)
    throw RegionError("cannot split " + std::to_string(length) + " rows/columns into " +
                      std::to_string(parts) + " non-empty parts");
  if (i < 0 || i >= parts) throw RegionError("part index " + std::to_string(i) + " out of range");
  // The first `length % parts` parts get one extra row: sizes differ by at most one.
  const int base = length / parts, extra = length % parts;
  const int start = i * base + std::min(i, extra);
  return {start, start + base + (i < extra ? 1 : 0)};
}

std::vector<Region> balanced_grid(int h, int w, int n, int m) {
  if (n < 1 || m < 1) throw RegionError("grid must be at least 1x1");
  if (n > h || m > w)
    throw RegionError("grid " + std::to_string(n) + "x" + std::to_string(m) +
                      " is larger than the " + std::to_string(h) + "x" + std::to_string(w) + " map");
  std::vector<Region> cells;
  cells.reserve(static_cast<size_t>(n) * m);
  for (int r = 0; r < n; ++r) {
    auto rows = balanced_range(h, n, r);
    for (int c = 0; c < m; ++c) {
      auto cols = balanced_range(w, m, c);
      cells.push_back(Region{rows.first, cols.first, rows.second, cols.second});
    }
  }
  return cells;
}

Range1D window_input_range(int o1, int o2, int k, int s, int t, int in_len) {
  // Unclamped rows o1*s - t .. (o2-1)*s - t + k - 1; whatever falls outside the map is the
  // tile's zero padding (only at real borders, since interior rows exist in the map).
  const int lo = o1 * s - t;
  const int hi = (o2 - 1) * s - t + k;  // exclusive
  Range1D r;
  r.begin = std::max(lo, 0);
  r.end = std::min(hi, in_len);
  r.pad_before = r.begin - lo;
  r.pad_after = hi - r.end;
  return r;
}

LayerRegion layer_input_region(const LayerDesc& d, const Region& out, int index) {
  LayerRegion lr;
  lr.active = !out.empty();
  lr.out = out;
  if (!lr.active) return lr;
  if (out.top < 0 || out.left < 0 || out.bottom > d.out_h || out.right > d.out_w)
    throw RegionError(layer_msg(index, "output region outside the " + std::to_string(d.out_h) + "x" +
                                           std::to_string(d.out_w) + " map"));
  switch (d.kind) {
    case Kind::Window: {
      auto rows = window_input_range(out.top, out.bottom, d.kh, d.sh, d.pad.top, d.in_h.at(0));
      auto cols = window_input_range(out.left, out.right, d.kw, d.sw, d.pad.left, d.in_w.at(0));
      lr.in = Region{rows.begin, cols.begin, rows.end, cols.end};
      lr.pad = Pad{rows.pad_before, cols.pad_before, rows.pad_after, cols.pad_after};
      if (lr.in.empty())
        throw RegionError(layer_msg(index, "output region reads only padding (kernel smaller than pad)"));
      break;
    }
    case Kind::Pointwise:
      lr.in = out;
      break;
    case Kind::Upsample:
      lr.in = Region{floor_div(out.top, d.factor), floor_div(out.left, d.factor),
                     floor_div(out.bottom - 1, d.factor) + 1, floor_div(out.right - 1, d.factor) + 1};
      break;
    case Kind::Global:
      throw RegionError(layer_msg(index, "global layer cannot be tiled"));
  }
  lr.produced = out;
  if (d.align > 1) {
    // Produce from the aligned corner: the missing input rows/cols before `in` become zero
    // padding (stride 1: one per extra output row/col); validate_block checks kind and stride.
    const int et = out.top - floor_div(out.top, d.align) * d.align;
    const int el = out.left - floor_div(out.left, d.align) * d.align;
    lr.produced.top -= et;
    lr.produced.left -= el;
    lr.pad.top += et;
    lr.pad.left += el;
  }
  return lr;
}

void validate_block(const std::vector<LayerDesc>& block, int net_in_h, int net_in_w) {
  for (size_t i = 0; i < block.size(); ++i) {
    const LayerDesc& d = block[i];
    const int idx = static_cast<int>(i);
    if (d.kind == Kind::Global) throw RegionError(layer_msg(idx, "global layer cannot be tiled"));
    if (d.inputs.empty()) throw RegionError(layer_msg(idx, "has no inputs"));
    if (d.in_h.size() != d.inputs.size() || d.in_w.size() != d.inputs.size())
      throw RegionError(layer_msg(idx, "one input size per input is required"));
    if (d.out_h < 1 || d.out_w < 1) throw RegionError(layer_msg(idx, "empty output map"));
    if (d.align < 1 || (d.align > 1 && (d.kind != Kind::Window || d.sh != 1 || d.sw != 1)))
      throw RegionError(layer_msg(idx, "alignment " + std::to_string(d.align) +
                                           " needs a stride-1 window layer (and must be >= 1)"));
    for (size_t j = 0; j < d.inputs.size(); ++j) {
      const int p = d.inputs[j];
      if (p < -1 || p >= idx) throw RegionError(layer_msg(idx, "input " + std::to_string(p) + " is not an earlier layer"));
      const int ph = p < 0 ? net_in_h : block[p].out_h, pw = p < 0 ? net_in_w : block[p].out_w;
      if (ph != d.in_h[j] || pw != d.in_w[j])
        throw RegionError(layer_msg(idx, "input " + std::to_string(p) + " size mismatch"));
    }
    switch (d.kind) {
      case Kind::Window: {
        if (d.inputs.size() != 1) throw RegionError(layer_msg(idx, "window layer needs exactly one input"));
        if (d.kh < 1 || d.kw < 1 || d.sh < 1 || d.sw < 1) throw RegionError(layer_msg(idx, "bad kernel or stride"));
        const int eh = (d.in_h[0] + d.pad.top + d.pad.bottom - d.kh) / d.sh + 1;
        const int ew = (d.in_w[0] + d.pad.left + d.pad.right - d.kw) / d.sw + 1;
        if (eh != d.out_h || ew != d.out_w)
          throw RegionError(layer_msg(idx, std::string(kind_name(d.kind)) + " output size " +
                                               std::to_string(d.out_h) + "x" + std::to_string(d.out_w) +
                                               " does not follow from kernel/stride/pad (" +
                                               std::to_string(eh) + "x" + std::to_string(ew) + ")"));
        break;
      }
      case Kind::Pointwise:
        for (size_t j = 0; j < d.inputs.size(); ++j)
          if (d.in_h[j] != d.out_h || d.in_w[j] != d.out_w)
            throw RegionError(layer_msg(idx, "pointwise layer reads a map of another size (input " +
                                                 std::to_string(d.inputs[j]) + ")"));
        break;
      case Kind::Upsample:
        if (d.inputs.size() != 1 || d.factor < 1 || d.in_h[0] * d.factor != d.out_h ||
            d.in_w[0] * d.factor != d.out_w)
          throw RegionError(layer_msg(idx, "upsample sizes do not match its factor"));
        break;
      case Kind::Global:
        break;
    }
  }
}

TileTrace trace_tile(const std::vector<LayerDesc>& block, const std::vector<std::pair<int, Region>>& seeds,
                     int net_in_h, int net_in_w) {
  const int n = static_cast<int>(block.size());
  std::vector<Region> need(n);
  for (const auto& [layer, region] : seeds) {
    if (layer < 0 || layer >= n) throw RegionError("seed layer " + std::to_string(layer) + " outside the block");
    need[layer] = bounding_box(need[layer], region);
  }
  TileTrace t;
  t.layers.resize(n);
  // Consumers always come after producers, so one backward sweep sees every consumer of a
  // layer before the layer itself: need[i] is final when we reach i.
  for (int i = n - 1; i >= 0; --i) {
    LayerRegion lr = layer_input_region(block[i], need[i], i);
    t.layers[i] = lr;
    if (!lr.active) continue;
    for (int p : block[i].inputs) {
      if (p < 0) {
        t.input_region = bounding_box(t.input_region, lr.in);
      } else {
        need[p] = bounding_box(need[p], lr.in);
      }
    }
  }
  if (!t.input_region.empty() &&
      (t.input_region.bottom > net_in_h || t.input_region.right > net_in_w || t.input_region.top < 0 ||
       t.input_region.left < 0))
    throw RegionError("input region outside the network input");
  return t;
}

namespace {

// Cut `r` by the present neighbours' regions at one layer (see region.hpp).
Region cut_region(const Region& r, const std::array<const Region*, 4>& nb) {
  Region c = r;
  // Vertical cuts first: the strips above/below span the own region's full width.
  if (const Region* u = nb[0]; u && u->left <= r.left && u->right >= r.right && u->top <= r.top)
    c.top = std::max(c.top, std::min(u->bottom, r.bottom));
  if (const Region* d = nb[2]; d && d->left <= r.left && d->right >= r.right && d->bottom >= r.bottom)
    c.bottom = std::min(c.bottom, std::max(d->top, r.top));
  if (c.top >= c.bottom) return Region{};  // neighbours cover everything: compute nothing
  // Horizontal cuts only need to cover the rows that are left.
  if (const Region* l = nb[1]; l && l->top <= c.top && l->bottom >= c.bottom && l->left <= r.left)
    c.left = std::max(c.left, std::min(l->right, r.right));
  if (const Region* rt = nb[3]; rt && rt->top <= c.top && rt->bottom >= c.bottom && rt->right >= r.right)
    c.right = std::min(c.right, std::max(rt->left, r.left));
  if (c.left >= c.right) return Region{};
  return c;
}

}  // namespace

ReducedTrace reduced_trace(const std::vector<LayerDesc>& block, const std::vector<std::pair<int, Region>>& seeds,
                           int net_in_h, int net_in_w, const Neighbours& neighbours,
                           const std::array<bool, 4>& present) {
  const int n = static_cast<int>(block.size());
  for (const TileTrace* t : neighbours)
    if (t != nullptr && static_cast<int>(t->layers.size()) != n)
      throw RegionError("neighbour trace has " + std::to_string(t->layers.size()) + " layers, the block " +
                        std::to_string(n));
  std::vector<Region> need(n);
  for (const auto& [layer, region] : seeds) {
    if (layer < 0 || layer >= n) throw RegionError("seed layer " + std::to_string(layer) + " outside the block");
    need[layer] = bounding_box(need[layer], region);
  }
  ReducedTrace t;
  t.layers.resize(n);
  for (int i = n - 1; i >= 0; --i) {
    ReducedLayer& rl = t.layers[i];
    rl.need = need[i];
    rl.active = !need[i].empty();
    if (!rl.active) continue;
    if (need[i].top < 0 || need[i].left < 0 || need[i].bottom > block[i].out_h || need[i].right > block[i].out_w)
      throw RegionError("layer " + std::to_string(i) + ": needed region outside the map");
    std::array<const Region*, 4> nb{nullptr, nullptr, nullptr, nullptr};
    for (int s = 0; s < 4; ++s) {
      const TileTrace* tr = neighbours[s];
      if (tr != nullptr && present[s] && tr->layers[i].active) nb[s] = &tr->layers[i].out;
    }
    rl.compute = cut_region(need[i], nb);
    if (rl.compute.empty()) continue;
    LayerRegion lr = layer_input_region(block[i], rl.compute, i);
    rl.in = lr.in;
    rl.pad = lr.pad;
    rl.produced = lr.produced;
    for (int p : block[i].inputs) {
      if (p < 0) {
        t.input_region = bounding_box(t.input_region, lr.in);
      } else {
        need[p] = bounding_box(need[p], lr.in);
      }
    }
  }
  if (!t.input_region.empty() && (t.input_region.bottom > net_in_h || t.input_region.right > net_in_w))
    throw RegionError("input region outside the network input");
  return t;
}

std::array<std::vector<Region>, 4> publish_regions(const std::vector<LayerDesc>& block,
                                                   const std::vector<std::pair<int, Region>>& seeds,
                                                   int net_in_h, int net_in_w, const Neighbours& neighbours) {
  const size_t n = block.size();
  std::array<std::vector<Region>, 4> out;
  for (auto& v : out) v.assign(n, Region{});
  for (int mask = 1; mask < 16; ++mask) {
    std::array<bool, 4> present{};
    bool valid = true;
    for (int s = 0; s < 4; ++s) {
      present[s] = (mask >> s) & 1;
      if (present[s] && neighbours[s] == nullptr) valid = false;
    }
    if (!valid) continue;
    ReducedTrace rt = reduced_trace(block, seeds, net_in_h, net_in_w, neighbours, present);
    for (int s = 0; s < 4; ++s) {
      if (!present[s]) continue;
      for (size_t i = 0; i < n; ++i) {
        const ReducedLayer& rl = rt.layers[i];
        const LayerRegion& theirs = neighbours[s]->layers[i];
        if (!rl.active || !theirs.active) continue;
        out[s][i] = bounding_box(out[s][i], intersect(theirs.out, rl.need));
      }
    }
  }
  return out;
}

}  // namespace ftp
