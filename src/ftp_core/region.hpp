// Fused Tile Partitioning (FTP) region arithmetic: balanced grids, back-tracing of the
// regions each tile needs through a fused block (a DAG of layers), and the reduced regions of
// the data-reuse (WST-S) schedule. Pure functions on integers; no tensors, no Python.
//
// Conventions (docs/ARCHITECTURE.md): regions are half-open [top, bottom) x [left, right) in
// the coordinates of the map they live on; padding is explicit per side (top, left, bottom,
// right); a window layer's output pixel o reads input rows o*s - t .. o*s - t + k - 1.
#pragma once

#include <array>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace ftp {

struct Region {
  int top = 0, left = 0, bottom = 0, right = 0;  // half-open
  int height() const { return bottom > top ? bottom - top : 0; }
  int width() const { return right > left ? right - left : 0; }
  bool empty() const { return height() == 0 || width() == 0; }
  long long area() const { return static_cast<long long>(height()) * width(); }
  bool contains(const Region& o) const {
    return o.empty() || (top <= o.top && left <= o.left && bottom >= o.bottom && right >= o.right);
  }
  bool operator==(const Region& o) const {
    return top == o.top && left == o.left && bottom == o.bottom && right == o.right;
  }
};

struct Pad {
  int top = 0, left = 0, bottom = 0, right = 0;
  bool operator==(const Pad& o) const {
    return top == o.top && left == o.left && bottom == o.bottom && right == o.right;
  }
};

// How an output pixel depends on the input map(s); mirrors SpatialSpec.kind.
enum class Kind : int { Window = 0, Pointwise = 1, Upsample = 2, Global = 3 };

// A plain description of one layer of the fused block, filled from Python's Layer objects.
// `inputs` are producer indices inside the block (-1 = the network input); `in_h/in_w` are the
// sizes of the producers' maps (one entry per input), `out_h/out_w` the layer's output map.
struct LayerDesc {
  Kind kind = Kind::Pointwise;
  int kh = 1, kw = 1, sh = 1, sw = 1;
  Pad pad;         // the layer's own full-map padding (window layers)
  int factor = 1;  // upsample factor
  // Stride-1 window layers only: a tile makes the engine produce its output from a top/left
  // corner that is a multiple of `align` (global coordinates), by adding zero padding on those
  // sides instead of reading more input; the extra rows/columns it produces are discarded.
  // 2 for dense 3x3 convs, which the native engine may run as Winograd F(2x2,3x3): its 2x2
  // output blocks start at row/col 0 of the map it is given, so the tile then uses the full
  // map's blocks, and a block's second row/col (the first one the tile keeps) reads only input
  // rows/cols 1..3 of the block, never the zero row/col: bit-identical to the full map. (At the
  // bottom/right a partial block is exact too: a block's first row/col never reads row/col 3.)
  int align = 1;
  std::vector<int> inputs;
  std::vector<int> in_h, in_w;
  int out_h = 0, out_w = 0;
};

// One layer of one tile: the part of the layer's output the tile computes, the part of the
// input map(s) it reads (same region for every input of a pointwise layer), and the zero
// padding per side to apply to that crop (non-zero where the region meets a real border, and
// on the top/left of an aligned layer, see LayerDesc::align). `produced` is what the engine
// returns for `in` with `pad`: `out` extended up/left to the alignment (else `out`).
struct LayerRegion {
  bool active = false;  // false: the tile does not need this layer at all
  Region out;
  Region in;
  Pad pad;
  Region produced;
};

struct TileTrace {
  std::vector<LayerRegion> layers;  // one per block layer
  Region input_region;              // on the network input (bounding box of what layers read)
};

// Raised for arguments no valid plan can have; the message names the layer index.
class RegionError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// [start, end) of part `i` of `parts` nearly equal parts of `length` (sizes differ by <= 1,
// larger parts first). Requires 1 <= parts <= length.
std::pair<int, int> balanced_range(int length, int parts, int i);

// The N x M balanced grid over an h x w map, row-major. Never an empty cell.
std::vector<Region> balanced_grid(int h, int w, int n, int m);

// What a window layer with kernel k, stride s and leading pad t needs of an input map of size
// `in_len` to produce outputs [o1, o2): the clamped input range and the padding on both sides.
struct Range1D {
  int begin = 0, end = 0;  // half-open, clamped to [0, in_len)
  int pad_before = 0, pad_after = 0;
};
Range1D window_input_range(int o1, int o2, int k, int s, int t, int in_len);

// Input region (and per-side padding, alignment included) layer `d` needs to produce output
// region `out`.
LayerRegion layer_input_region(const LayerDesc& d, const Region& out, int layer_index);

// Checks the block for consistent sizes and tileable layer kinds; throws RegionError.
void validate_block(const std::vector<LayerDesc>& block, int net_in_h, int net_in_w);

// Back-traces a tile: `seeds` give, per layer, a region of its output the tile must produce
// (layer L-1's grid cell and the cells of exported layers). A layer read by several consumers
// computes the bounding box of what they need.
TileTrace trace_tile(const std::vector<LayerDesc>& block, const std::vector<std::pair<int, Region>>& seeds,
                     int net_in_h, int net_in_w);

// Data reuse (WST-S). A level-1 tile whose level-0 neighbours above/left/below/right (in that
// order; nullptr = no neighbour) have published their overlap computes, per layer, only the
// rectangle those neighbours did not compute, and back-traces what it needs from *that* (so it
// takes from the neighbours only thin strips around the cut lines, not their whole overlap).
// A side is cut only where the present neighbour's full region covers the strip across the
// tile's whole width/height, so the rest is always a rectangle that together with the
// neighbours' data covers `need`.
struct ReducedLayer {
  bool active = false;
  Region need;     // what consumers need of this layer (the tile's buffer)
  Region compute;  // the part the tile computes itself (may be empty)
  Region in;       // input region for `compute`
  Pad pad;
  Region produced;  // what the engine returns for `in` with `pad` (contains `compute`)
};
struct ReducedTrace {
  std::vector<ReducedLayer> layers;
  Region input_region;
};
using Neighbours = std::array<const TileTrace*, 4>;

ReducedTrace reduced_trace(const std::vector<LayerDesc>& block, const std::vector<std::pair<int, Region>>& seeds,
                           int net_in_h, int net_in_w, const Neighbours& neighbours,
                           const std::array<bool, 4>& present);

// What each neighbour (side) must publish per layer so that the tile works for every subset of
// neighbours present: the bounding box over all subsets of (neighbour region ^ need).
std::array<std::vector<Region>, 4> publish_regions(const std::vector<LayerDesc>& block,
                                                   const std::vector<std::pair<int, Region>>& seeds,
                                                   int net_in_h, int net_in_w, const Neighbours& neighbours);

Region intersect(const Region& a, const Region& b);
Region bounding_box(const Region& a, const Region& b);  // empty operands are ignored

}  // namespace ftp
