"""Cost model of an FTP plan: FLOPs, bytes and per-device memory, with and without reuse.

Model (DeepThings' per-layer memory footprint): running fused layer i of a tile needs the
tile's input of layer i (all producers, over ``in_region``), its output (``out_region``) and
layer i's weights, all float32. The unpartitioned footprint uses the full maps. A device
running whole tiles also keeps every fused layer's weights loaded: ``device_bytes`` is that
sum plus the largest per-layer input + output of any tile. With data reuse, a level-1 tile
computes and reads only its reduced regions and holds what its consumers need of each layer
(own part + neighbours' strips), and a level-0 tile additionally holds the overlap pieces it publishes for each layer.

FLOPs of a region = the layer's full-map FLOPs x region area / map area (every output pixel of
conv/pool/shortcut costs the same).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .regions import EMPTY, Region

if TYPE_CHECKING:
    from .plan import FTP

MB = 1024.0 * 1024.0


@dataclass(frozen=True)
class TileCost:
    """One tile's work and traffic."""

    tile_id: int
    row: int
    col: int
    level: int
    flops: int  # computing every out_region in full (with the Winograd alignment's extra)
    flops_reuse: int  # level-1 tiles with all neighbours' data present (level 0: = flops)
    input_bytes: int  # the tile's input crop
    output_bytes: int  # its cells of the exported layers
    published_bytes: int  # overlap pieces it publishes (level 0)
    received_bytes: int = 0  # pieces a level-1 tile receives with all neighbours present
    input_bytes_reuse: int = 0  # input a level-1 tile reads with all neighbours present


@dataclass(frozen=True)
class LayerCost:
    """One fused layer: full-map figures and the worst tile's."""

    index: int
    type: str
    out_shape: tuple[int, int, int]
    flops: int  # full map
    weight_bytes: int
    full_in_bytes: int
    full_out_bytes: int
    tile_in_bytes: int  # max over tiles
    tile_out_bytes: int
    footprint_full: int  # full_in + full_out + weights
    footprint_tile: int  # max over tiles of (in + out) + weights
    footprint_tile_reuse: int

    @property
    def reduction(self) -> float:
        """Fraction of the unpartitioned per-layer footprint saved by FTP."""
        return 1.0 - self.footprint_tile / self.footprint_full if self.footprint_full else 0.0


@dataclass
class CostReport:
    """Totals and per-tile/per-layer figures of one plan."""

    grid: tuple[int, int]
    fused_layers: int
    input_shape: tuple[int, int, int]
    flops_full: int
    flops_tiles: int
    flops_tiles_reuse: int
    weight_bytes: int
    overlap_bytes: int  # all level-0 tiles' published pieces
    input_bytes_full: int
    tiles: list[TileCost] = field(default_factory=list)
    layers: list[LayerCost] = field(default_factory=list)
    # Part of flops_tiles / flops_tiles_reuse spent on the rows/columns aligned layers produce
    # only to use the full map's Winograd blocks (discarded; see FTP(winograd_align=...)).
    flops_align: int = 0
    flops_align_reuse: int = 0

    @property
    def redundancy(self) -> float:
        """Extra FLOPs of the tiles over the unpartitioned block (0.1 = 10 %)."""
        return self.flops_tiles / self.flops_full - 1.0 if self.flops_full else 0.0

    @property
    def redundancy_unaligned(self) -> float:
        """``redundancy`` without the Winograd alignment (DeepThings' own figure)."""
        return (self.flops_tiles - self.flops_align) / self.flops_full - 1.0 if self.flops_full else 0.0

    @property
    def redundancy_reuse(self) -> float:
        return self.flops_tiles_reuse / self.flops_full - 1.0 if self.flops_full else 0.0

    @property
    def reuse_saving(self) -> float:
        """Fraction of the no-reuse tile FLOPs that data reuse saves."""
        return 1.0 - self.flops_tiles_reuse / self.flops_tiles if self.flops_tiles else 0.0

    @property
    def peak_footprint_full(self) -> int:
        return max(lc.footprint_full for lc in self.layers)

    @property
    def peak_footprint_tile(self) -> int:
        return max(lc.footprint_tile for lc in self.layers)

    @property
    def peak_footprint_tile_reuse(self) -> int:
        return max(lc.footprint_tile_reuse for lc in self.layers)

    @property
    def device_bytes(self) -> int:
        """All fused weights + the largest per-layer tile input + output."""
        return self.weight_bytes + max(lc.footprint_tile - lc.weight_bytes for lc in self.layers)

    @property
    def device_bytes_full(self) -> int:
        """The unpartitioned counterpart of device_bytes: all fused weights + largest layer."""
        return self.weight_bytes + max(lc.footprint_full - lc.weight_bytes for lc in self.layers)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            redundancy=self.redundancy,
            redundancy_reuse=self.redundancy_reuse,
            redundancy_unaligned=self.redundancy_unaligned,
            reuse_saving=self.reuse_saving,
            device_bytes=self.device_bytes,
            device_bytes_full=self.device_bytes_full,
        )
        return d

    def format(self) -> str:
        """A plain-text report (what `deepthings info --grid --fused` prints)."""
        n, m = self.grid
        lines = [
            f"FTP {n}x{m}, fused layers 0..{self.fused_layers - 1}, input {self.input_shape[0]}x"
            f"{self.input_shape[1]}x{self.input_shape[2]}",
            "",
            f"{'layer':>5} {'type':<14} {'output':>14} {'MFLOP':>9} {'weights MB':>10} "
            f"{'full MB':>8} {'tile MB':>8} {'saved':>6} {'reuse MB':>8} {'device MB':>9}",
        ]
        for lc in self.layers:
            shape = "x".join(str(v) for v in lc.out_shape)
            lines.append(
                f"{lc.index:>5} {lc.type:<14} {shape:>14} {lc.flops / 1e6:>9.1f} {lc.weight_bytes / MB:>10.2f} "
                f"{lc.footprint_full / MB:>8.2f} {lc.footprint_tile / MB:>8.2f} {100 * lc.reduction:>5.1f}% "
                f"{lc.footprint_tile_reuse / MB:>8.2f} {(lc.footprint_tile - lc.weight_bytes + self.weight_bytes) / MB:>9.2f}"
            )
        avg = sum(lc.reduction for lc in self.layers) / max(1, len(self.layers))
        ins = [t.input_bytes for t in self.tiles]
        outs = [t.output_bytes for t in self.tiles]
        lines += [
            "",
            "full/tile/reuse MB: input + output + the layer's weights, unpartitioned / worst tile / worst",
            "tile with reuse; device MB: worst tile's input + output + the weights of all fused layers.",
            "",
            f"FLOPs unpartitioned      {self.flops_full / 1e9:10.3f} GFLOP",
            f"FLOPs all tiles          {self.flops_tiles / 1e9:10.3f} GFLOP  (redundancy {100 * self.redundancy:.1f}%)",
            f"  of which alignment     {self.flops_align / 1e9:10.3f} GFLOP  (rows/cols produced only to match the full map's "
            f"Winograd blocks; without them: redundancy {100 * self.redundancy_unaligned:.1f}%)",
            f"FLOPs all tiles, reuse   {self.flops_tiles_reuse / 1e9:10.3f} GFLOP  (redundancy "
            f"{100 * self.redundancy_reuse:.1f}%, {100 * self.reuse_saving:.1f}% less than without reuse)",
            f"max tile FLOPs           {max(t.flops for t in self.tiles) / 1e9:10.3f} GFLOP",
            f"tile input bytes         min {min(ins) / MB:.3f} MB, max {max(ins) / MB:.3f} MB, total "
            f"{sum(ins) / MB:.3f} MB (full input {self.input_bytes_full / MB:.3f} MB)",
            f"tile output bytes        min {min(outs) / MB:.3f} MB, max {max(outs) / MB:.3f} MB, total {sum(outs) / MB:.3f} MB",
            f"tile input bytes, reuse  total {sum(t.input_bytes_reuse for t in self.tiles) / MB:.3f} MB "
            "(level-1 tiles read less input when their neighbours' data is there)",
            f"overlap data (reuse)     {self.overlap_bytes / MB:10.3f} MB published by level-0 tiles",
            f"fused weights            {self.weight_bytes / MB:10.3f} MB",
            f"peak per-layer footprint {self.peak_footprint_full / MB:.2f} MB unpartitioned, "
            f"{self.peak_footprint_tile / MB:.2f} MB per device "
            f"({100 * (1 - self.peak_footprint_tile / self.peak_footprint_full):.1f}% less), "
            f"{self.peak_footprint_tile_reuse / MB:.2f} MB with reuse",
            f"average per-layer saving {100 * avg:.1f}%",
            f"device memory            {self.device_bytes / MB:10.3f} MB (all fused weights + largest tile layer) vs "
            f"{self.device_bytes_full / MB:.3f} MB unpartitioned ({100 * (1 - self.device_bytes / self.device_bytes_full):.1f}% less)",
        ]
        return "\n".join(lines)


def _region_flops(layer: Any, region: Region) -> int:
    _, h, w = layer.out_shape
    total = int(layer.flops())
    if region.empty or total == 0:
        return 0
    return (total * region.area) // (h * w)


def _produced(produced: Region | None, region: Region) -> Region:
    return region if produced is None or produced.empty else produced


def _in_bytes(layer: Any, region: Region) -> int:
    return 4 * sum(int(shape[0]) for shape in layer.in_shapes) * region.area


def plan_cost(plan: "FTP", reuse: bool = True) -> CostReport:
    """The cost report of ``plan`` (reuse figures are always computed; ``reuse`` is kept for
    symmetry with ``FTP.cost`` and selects nothing else)."""
    rp = plan.reuse
    block = plan.block
    steps_all = {t.tile_id: rp.steps(t.tile_id, rp.neighbours(t.tile_id).values()) for t in plan.tiles}
    published_per_layer: dict[int, dict[int, int]] = {}
    for t in plan.tiles:
        per_layer: dict[int, int] = {}
        for regions in rp.publish_regions(t.tile_id).values():
            for li, region in regions.items():
                per_layer[li] = per_layer.get(li, 0) + 4 * block[li].out_shape[0] * region.area
        published_per_layer[t.tile_id] = per_layer

    tiles = []
    align_all = align_reuse = 0
    for t in plan.tiles:
        # What the engine produces: out_region plus an aligned layer's discarded leading row/col.
        flops = sum(_region_flops(block[lt.index], _produced(lt.produced_region, lt.out_region)) for lt in t.layers if lt.active)
        flops_reuse = sum(
            _region_flops(block[i], _produced(st.produced, st.compute))
            for i, st in enumerate(steps_all[t.tile_id])
            if st.active and not st.compute.empty
        )
        align_all += flops - sum(_region_flops(block[lt.index], lt.out_region) for lt in t.layers if lt.active)
        align_reuse += flops_reuse - sum(
            _region_flops(block[i], st.compute) for i, st in enumerate(steps_all[t.tile_id]) if st.active
        )
        c0 = plan.input_shape[0]
        tiles.append(
            TileCost(
                tile_id=t.tile_id,
                row=t.row,
                col=t.col,
                level=t.level,
                flops=flops,
                flops_reuse=flops_reuse,
                input_bytes=4 * c0 * t.input_region.area,
                output_bytes=sum(4 * plan.layer_shape(e)[0] * t.export_regions[e].area for e in plan.exports),
                published_bytes=rp.published_bytes(t.tile_id),
                received_bytes=sum(
                    4 * block[li].out_shape[0] * rp.publish_regions(src)[t.tile_id][li].area
                    for src, layers in rp.needed_pieces(t.tile_id, rp.neighbours(t.tile_id).values()).items()
                    for li in layers
                ),
                input_bytes_reuse=4 * c0 * rp.input_region(t.tile_id, rp.neighbours(t.tile_id).values()).area,
            )
        )

    layers = []
    for layer in block:
        i = layer.index
        _, h, w = layer.out_shape
        full = Region(0, 0, h, w)
        wb = int(layer.weight_bytes())
        tile_in = tile_out = tile_sum = reuse_sum = 0
        for t in plan.tiles:
            lt = t.layers[i]
            if not lt.active:
                continue
            tin = _in_bytes(layer, lt.in_region)
            tout = 4 * layer.out_shape[0] * _produced(lt.produced_region, lt.out_region).area
            tile_in, tile_out, tile_sum = max(tile_in, tin), max(tile_out, tout), max(tile_sum, tin + tout)
            st = steps_all[t.tile_id][i]
            if t.level == 1:
                rin = st.in_region if st.active and not st.compute.empty else EMPTY
                rsum = _in_bytes(layer, rin) + 4 * layer.out_shape[0] * st.need.area
            else:
                rsum = tin + tout + published_per_layer[t.tile_id].get(i, 0)
            reuse_sum = max(reuse_sum, rsum)
        full_in = _in_bytes(layer, Region(0, 0, layer.in_shapes[0][1], layer.in_shapes[0][2]))
        full_out = 4 * layer.out_shape[0] * full.area
        layers.append(
            LayerCost(
                index=i,
                type=layer.type,
                out_shape=tuple(int(v) for v in layer.out_shape),  # type: ignore[arg-type]
                flops=int(layer.flops()),
                weight_bytes=wb,
                full_in_bytes=full_in,
                full_out_bytes=full_out,
                tile_in_bytes=tile_in,
                tile_out_bytes=tile_out,
                footprint_full=full_in + full_out + wb,
                footprint_tile=tile_sum + wb,
                footprint_tile_reuse=reuse_sum + wb,
            )
        )
    return CostReport(
        grid=plan.grid,
        fused_layers=plan.fused_layers,
        input_shape=plan.input_shape,
        flops_full=sum(int(layer.flops()) for layer in block),
        flops_tiles=sum(t.flops for t in tiles),
        flops_tiles_reuse=sum(t.flops_reuse for t in tiles),
        weight_bytes=sum(int(layer.weight_bytes()) for layer in block),
        overlap_bytes=sum(t.published_bytes for t in tiles),
        input_bytes_full=4 * plan.input_shape[0] * plan.input_shape[1] * plan.input_shape[2],
        tiles=tiles,
        layers=layers,
        flops_align=align_all,
        flops_align_reuse=align_reuse,
    )


def format_cost_report(net: Any, grid: tuple[int, int] = (5, 5), fused_layers: int = 16) -> str:
    """The cost report of ``FTP(net, grid, fused_layers)`` as text; ``net`` may be a cfg path."""
    from .plan import FTP

    if isinstance(net, (str, bytes)) or hasattr(net, "__fspath__"):
        from ..darknet import load_darknet

        net = load_darknet(net, random_seed=None)
    return FTP(net, grid=grid, fused_layers=fused_layers).cost().format()
