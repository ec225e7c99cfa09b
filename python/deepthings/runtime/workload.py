"""What the runtime computes, behind one small interface: tiles in, stitched outputs out.

The gateway and edges never touch layers or regions; they call a :class:`Workload`:
``crop`` (cut a tile's input from a frame), ``run`` (compute one tile, optionally with WST-S
reuse data), ``publish``/``reuse_for`` (WST-S overlap data), ``merge`` (stitch + the layers after
the fused block). :class:`FTPWorkload` wraps an FTP plan of a Darknet network;
:class:`SyntheticWorkload` is a tiny stencil with the same tiling structure, used to test and
measure the runtime alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from deepthings.errors import PlanError, ProtocolError, ShapeError
from deepthings.ftp.regions import Region
from deepthings.runtime.protocol import Exact8

Quad = tuple[int, int, int, int]  # (top, left, bottom, right), half-open


@dataclass
class TileOutput:
    """What one tile run produces: arrays for the gateway plus a JSON-able description."""

    arrays: list[np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)
    n_publish: int = 0  # how many of the trailing arrays are WST-S overlap data (level-0 tiles)


class Workload(Protocol):
    """The runtime's view of a tiled computation (see module docstring)."""

    n_tiles: int
    input_shape: tuple[int, int, int]
    supports_reuse: bool

    def level(self, tile: int) -> int: ...

    def crop(self, x: "np.ndarray | Exact8", tile: int) -> "np.ndarray | Exact8": ...

    def check_crop(self, tile: int, crop: np.ndarray) -> None: ...

    def run(self, tile: int, crop: np.ndarray, reuse: "ReuseData | None" = None) -> TileOutput: ...

    def check_output(self, tile: int, out: TileOutput) -> None: ...

    def reuse_for(self, tile: int, published: dict[int, TileOutput],
                  local: "dict[int, list[int]] | None" = None) -> "ReuseData | None": ...

    def neighbours(self, tile: int) -> list[int]: ...

    def merge(self, results: dict[int, TileOutput]) -> dict[str, np.ndarray]: ...


@dataclass
class ReuseData:
    """Overlap data a level-1 tile receives from the gateway's cache."""

    arrays: list[np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)


def grid_bounds(size: int, parts: int) -> list[tuple[int, int]]:
    """Balanced split of ``size`` into ``parts`` half-open intervals (sizes differ by <= 1)."""
    base, extra = divmod(size, parts)
    out, start = [], 0
    for i in range(parts):
        stop = start + base + (1 if i < extra else 0)
        out.append((start, stop))
        start = stop
    return out


def checkerboard_level(tile: int, cols: int) -> int:
    """WST-S level of a tile in row-major order: 0 on the checkerboard's black squares."""
    r, c = divmod(tile, cols)
    return (r + c) % 2


class SyntheticWorkload:
    """A ``passes``-times repeated 3x3 mean filter with zero padding, tiled on a grid.

    Each tile reads its output region grown by ``passes`` pixels (clamped to the map) and
    produces exactly the full-map result on its region, like an FTP tile of a stack of 3x3
    convolutions. ``compute_s`` adds a sleep per tile to emulate a slow device."""

    supports_reuse = False

    def __init__(self, shape: tuple[int, int, int], grid: tuple[int, int], passes: int = 2, compute_s: float = 0.0):
        c, h, w = shape
        n, m = grid
        if not (1 <= n <= h and 1 <= m <= w):
            raise ShapeError(f"synthetic workload: grid {n}x{m} does not fit a {h}x{w} map")
        self.input_shape = (int(c), int(h), int(w))
        self.grid = (int(n), int(m))
        self.passes = int(passes)
        self.compute_s = float(compute_s)
        rows, cols = grid_bounds(h, n), grid_bounds(w, m)
        self.out_regions = [(r0, c0, r1, c1) for (r0, r1) in rows for (c0, c1) in cols]
        p = self.passes
        self.in_regions = [
            (max(0, r0 - p), max(0, c0 - p), min(h, r1 + p), min(w, c1 + p)) for (r0, c0, r1, c1) in self.out_regions
        ]
        self.n_tiles = len(self.out_regions)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "SyntheticWorkload":
        return cls(tuple(spec["shape"]), tuple(spec["grid"]), spec.get("passes", 2), spec.get("compute_s", 0.0))

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "synthetic",
            "shape": list(self.input_shape),
            "grid": list(self.grid),
            "passes": self.passes,
            "compute_s": self.compute_s,
        }

    def level(self, tile: int) -> int:
        return checkerboard_level(tile, self.grid[1])

    def crop(self, x: "np.ndarray | Exact8", tile: int) -> "np.ndarray | Exact8":
        t, l, b, r = self.in_regions[tile]
        if isinstance(x, Exact8):
            return x[:, t:b, l:r]
        return np.ascontiguousarray(x[:, t:b, l:r])

    def check_crop(self, tile: int, crop: np.ndarray) -> None:
        if not 0 <= tile < self.n_tiles:
            raise ProtocolError(f"tile {tile} out of range 0..{self.n_tiles - 1}")
        t, l, b, r = self.in_regions[tile]
        want = (self.input_shape[0], b - t, r - l)
        if tuple(crop.shape) != want:
            raise ProtocolError(f"tile {tile}: input crop shape {tuple(crop.shape)}, expected {want}")

    @staticmethod
    def _pass(x: np.ndarray, pad: tuple[int, int, int, int]) -> np.ndarray:
        t, l, b, r = pad
        xp = np.pad(x, ((0, 0), (t, b), (l, r)))
        h, w = xp.shape[1] - 2, xp.shape[2] - 2
        acc = np.zeros((x.shape[0], h, w), np.float32)
        for dy in range(3):  # fixed summation order: bit-identical on any crop
            for dx in range(3):
                acc += xp[:, dy : dy + h, dx : dx + w]
        return acc / np.float32(9.0)

    def run(self, tile: int, crop: np.ndarray, reuse: ReuseData | None = None) -> TileOutput:
        self.check_crop(tile, crop)
        if self.compute_s:
            time.sleep(self.compute_s)
        _, h, w = self.input_shape
        t, l, b, r = self.in_regions[tile]
        y = np.asarray(crop, np.float32)
        for _ in range(self.passes):
            # zero padding only where the current region touches the real border
            pad = (1 if t == 0 else 0, 1 if l == 0 else 0, 1 if b == h else 0, 1 if r == w else 0)
            y = self._pass(y, pad)
            t, l = (t if t == 0 else t + 1), (l if l == 0 else l + 1)
            b, r = (b if b == h else b - 1), (r if r == w else r - 1)
        r0, c0, r1, c1 = self.out_regions[tile]
        y = y[:, r0 - t : r0 - t + (r1 - r0), c0 - l : c0 - l + (c1 - c0)]
        return TileOutput([np.ascontiguousarray(y)], {})

    def check_output(self, tile: int, out: TileOutput) -> None:
        r0, c0, r1, c1 = self.out_regions[tile]
        want = (self.input_shape[0], r1 - r0, c1 - c0)
        if len(out.arrays) != 1 or tuple(out.arrays[0].shape) != want:
            raise ProtocolError(f"tile {tile}: result shapes {[a.shape for a in out.arrays]}, expected [{want}]")

    def reuse_for(self, tile: int, published: dict[int, TileOutput],
                  local: "dict[int, list[int]] | None" = None) -> ReuseData | None:
        return None

    def neighbours(self, tile: int) -> list[int]:
        return []

    def merge(self, results: dict[int, TileOutput]) -> dict[str, np.ndarray]:
        out = np.empty(self.input_shape, np.float32)
        for tile, (r0, c0, r1, c1) in enumerate(self.out_regions):
            out[:, r0:r1, c0:c1] = results[tile].arrays[0]
        return {"layer0": out}

    def reference(self, x: np.ndarray) -> np.ndarray:
        """The same computation on the whole map (the single-device answer)."""
        y = np.asarray(x, np.float32)
        for _ in range(self.passes):
            y = self._pass(y, (1, 1, 1, 1))
        return y


# What a WST-S level-0 tile returns of its publication (FTPWorkload(publish=...)).
PUBLISH_MODES = ("all", "core")


class FTPWorkload:
    """An FTP plan of a Darknet network as a runtime workload.

    Tile outputs are one array per exported layer (``plan.exports``); under WST-S a level-0
    tile also returns the overlap pieces it publishes (``meta["publish"] = [[dest, layer], ...]``)
    and a level-1 tile receives its neighbours' pieces (``meta["pieces"] = [[src, layer], ...]``).
    ``merge`` stitches and runs the remaining layers, returning ``{"layer<i>": array}`` for the
    head layers and the last layer."""

    def __init__(self, net: Any, grid: tuple[int, int], fused_layers: int, reuse: bool = False, engine: Any = None,
                 cuts: Any = None, publish: str = "all"):
        from deepthings.ftp import FTP

        self.net = net
        self.plan = FTP(net, grid=tuple(grid), fused_layers=int(fused_layers), cuts=cuts)
        self.grid = tuple(self.plan.grid)
        self.fused_layers = int(self.plan.fused_layers)
        self.engine = engine
        self.n_tiles = len(self.plan.tiles)
        self.input_shape = tuple(net.input_shape)
        self.exports = list(self.plan.exports)
        self._export_shapes = {e: tuple(self.plan.layer_shape(e)) for e in self.exports}
        self.supports_reuse = bool(reuse)
        self._rp = self.plan.reuse if reuse else None
        # "all": a level-0 tile returns its whole publication (wst-sp holds it and serves any
        # arrival order); "core": only what its neighbours read with all their neighbours in
        # (wst-s sends it through the gateway, which waits for those: half the bytes on strips).
        if publish not in PUBLISH_MODES:
            raise ValueError(f"publish must be 'all' or 'core', not {publish!r}")
        self.publish = publish

    # ----- structure
    def level(self, tile: int) -> int:
        return int(self.plan.tiles[tile].level)

    def _tile(self, tile: int) -> Any:
        if type(tile) is not int or not 0 <= tile < self.n_tiles:
            raise ProtocolError(f"tile {tile!r} out of range 0..{self.n_tiles - 1}")
        return self.plan.tiles[tile]

    def crop(self, x: "np.ndarray | Exact8", tile: int) -> "np.ndarray | Exact8":
        """The tile's input crop of a whole frame; an 8-bit coded frame gives coded crops."""
        if isinstance(x, Exact8):
            if x.shape != self.input_shape:
                raise ShapeError(f"tile {tile}: frame of shape {x.shape}, the network takes {self.input_shape}")
            r = self._tile(tile).input_region
            return x[:, r.top : r.bottom, r.left : r.right]
        return np.ascontiguousarray(self.plan.crop_input(tile, x), dtype=np.float32)

    def check_crop(self, tile: int, crop: "np.ndarray | None", region: Quad | None = None) -> None:
        """ProtocolError unless ``crop`` is the tile's input crop, or (``region``: which part of
        the network input it holds) a part of it; an empty region comes without a crop."""
        t = self._tile(tile)
        r = t.input_region if region is None else Region.of(region)
        if region is not None and not (len(region) == 4 and (r.empty or t.input_region.contains(r))):
            raise ProtocolError(f"tile {tile}: input region {list(region)} is not inside its input {t.input_region}")
        if r.empty:
            if crop is not None:
                raise ProtocolError(f"tile {tile}: a crop of shape {tuple(crop.shape)} for the empty region")
            return
        want = (self.input_shape[0], r.height, r.width)
        if crop is None or tuple(crop.shape) != want or crop.dtype != np.float32:
            got = "none" if crop is None else f"{tuple(crop.shape)} {crop.dtype}"
            raise ProtocolError(f"tile {tile}: input crop {got}, expected {want} float32")

    def input_region(self, tile: int) -> Quad:
        """The part of the network input ``tile`` reads without any reuse data."""
        return self._tile(tile).input_region.as_tuple()

    def lean_region(self, tile: int) -> "Quad | None":
        """Under data reuse, the part of the network input a level-1 tile reads when the data of
        all its neighbours arrives, the usual case (None for other tiles: they read their whole
        input). A row strip between two level-0 strips reads none of it: a thief needs no crop
        until a neighbour is missing (then ``input_needed`` grows)."""
        if self._rp is None or self.level(tile) != 1:
            return None
        return self._rp.input_region(tile, self._rp.neighbours(tile).values()).as_tuple()

    def input_needed(self, tile: int, reuse: "ReuseData | None") -> Quad:
        """The part of the network input ``tile`` reads given the reuse data it has."""
        t = self._tile(tile)
        if self._rp is None or t.level != 1 or reuse is None:
            return t.input_region.as_tuple()
        data = self._neighbour_data(tile, reuse)
        present, _ = self._rp.complete_neighbours(tile, {src: layers.keys() for src, layers in data.items()})
        return self._rp.input_region(tile, present).as_tuple()

    def crop_region(self, x: "np.ndarray | Exact8", region: Quad) -> "np.ndarray | Exact8 | None":
        """``region`` of a whole frame (8-bit coded frames give coded crops; None if empty)."""
        r = Region.of(region)
        if r.empty:
            return None
        if isinstance(x, Exact8):
            return x[:, r.top : r.bottom, r.left : r.right]
        return np.ascontiguousarray(x[:, r.top : r.bottom, r.left : r.right], dtype=np.float32)

    # ----- tiles
    def run(self, tile: int, crop: "np.ndarray | None", reuse: ReuseData | None = None,
            region: Quad | None = None) -> TileOutput:
        """Compute ``tile`` on its input crop (``region``: the part of the input ``crop`` holds,
        which must contain what the tile reads with the reuse data given)."""
        self.check_crop(tile, crop, region)
        if region is not None and self._rp is not None and self.level(tile) == 1:
            r = Region.of(region)
            x = crop if crop is not None else np.empty((self.input_shape[0], 0, 0), np.float32)
            data = self._neighbour_data(tile, reuse) if reuse is not None else {}
            try:
                out = self._rp.run_level1(tile, x, data, self.engine, x_origin=r)
            except PlanError as exc:
                raise ProtocolError(str(exc)) from None
            arrays = [out] if isinstance(out, np.ndarray) else list(out)
            return TileOutput([np.ascontiguousarray(a, np.float32) for a in arrays], {})
        if region is not None and Region.of(region) != self._tile(tile).input_region:
            raise ProtocolError(f"tile {tile}: needs its whole input, got region {list(region)}")
        if self._rp is not None and self.level(tile) == 0:
            only = self._rp.core_pieces(tile) if self.publish == "core" else None
            out, published = self._rp.run_level0(tile, crop, self.engine, pieces=only)
            arrays = [out] if isinstance(out, np.ndarray) else list(out)
            pairs, pieces = [], []
            for dest in sorted(published):
                for layer in sorted(published[dest]):
                    pairs.append([int(dest), int(layer)])
                    pieces.append(np.ascontiguousarray(published[dest][layer], np.float32))
            return TileOutput(arrays + pieces, {"publish": pairs}, len(pieces))
        if self._rp is not None and reuse is not None:
            data = self._neighbour_data(tile, reuse)
            out = self._rp.run_level1(tile, crop, data, self.engine)
        elif self._rp is not None:
            out = self._rp.run_level1(tile, crop, {}, self.engine)
        else:
            out = self.plan.run_tile(tile, crop, self.engine)
        arrays = [out] if isinstance(out, np.ndarray) else list(out)
        return TileOutput([np.ascontiguousarray(a, np.float32) for a in arrays], {})

    def _neighbour_data(self, tile: int, reuse: ReuseData) -> dict[int, dict[int, np.ndarray]]:
        pairs = reuse.meta.get("pieces") if isinstance(reuse.meta, dict) else None
        if not isinstance(pairs, list) or len(pairs) != len(reuse.arrays):
            raise ProtocolError(f"tile {tile}: reuse data has {len(reuse.arrays)} arrays but pieces {pairs!r}")
        data: dict[int, dict[int, np.ndarray]] = {}
        assert self._rp is not None
        for pair, arr in zip(pairs, reuse.arrays):
            if not (isinstance(pair, list) and len(pair) == 2 and all(type(v) is int for v in pair)):
                raise ProtocolError(f"tile {tile}: bad reuse piece id {pair!r}")
            src, layer = pair
            region = self._rp.publish_regions(src).get(tile, {}).get(layer) if 0 <= src < self.n_tiles and self.level(src) == 0 else None
            if region is None:
                raise ProtocolError(f"tile {tile}: tile {src} publishes nothing of layer {layer} for it")
            want = (self.net.layers[layer].out_shape[0], region.height, region.width)
            if tuple(arr.shape) != want:
                raise ProtocolError(f"tile {tile}: reuse piece {src}/{layer} shape {tuple(arr.shape)} != {want}")
            data.setdefault(src, {})[layer] = arr
        return data

    def partner(self, tile: int) -> int | None:
        """Under data reuse, the level-1 tile an edge that ran level-0 ``tile`` runs next
        (``ReusePlan.partners``: the balanced cuts assume these pairs); None otherwise."""
        if self._rp is None:
            return None
        return self._rp.partners.get(tile)

    def neighbours(self, tile: int) -> list[int]:
        """The level-0 tiles whose overlap data a level-1 ``tile`` can reuse (WST-S)."""
        if self._rp is None or self.level(self._tile(tile).tile_id) != 1:
            return []
        return sorted(int(v) for v in self._rp.neighbours(tile).values())

    def needed_pieces(self, tile: int, present: list[int]) -> dict[int, frozenset[int]]:
        """{neighbour: layers} a level-1 tile reads when ``present`` neighbours have published."""
        if self._rp is None or self._tile(tile).level != 1:
            return {}
        return self._rp.needed_pieces(tile, [int(p) for p in present if type(p) is int])

    def check_reuse(self, tile: int, reuse: ReuseData) -> None:
        """ProtocolError unless ``reuse`` holds pieces the plan says tile's neighbours publish for it."""
        self._neighbour_data(tile, reuse)

    def check_output(self, tile: int, out: TileOutput) -> None:
        t = self._tile(tile)
        n_out = len(out.arrays) - out.n_publish
        if n_out != len(self.exports):
            raise ProtocolError(f"tile {tile}: {n_out} output arrays, the plan exports {len(self.exports)}")
        for e, arr in zip(self.exports, out.arrays):
            cell = t.export_regions[e]
            want = (self._export_shapes[e][0], cell.height, cell.width)
            if tuple(arr.shape) != want:
                raise ProtocolError(f"tile {tile}: output of layer {e} has shape {tuple(arr.shape)}, expected {want}")
        if out.n_publish:
            if self._rp is None or self.level(tile) != 0:
                raise ProtocolError(f"tile {tile}: publishes overlap data but is not a WST-S level-0 tile")
            pairs = out.meta.get("publish")
            if not isinstance(pairs, list) or len(pairs) != out.n_publish:
                raise ProtocolError(f"tile {tile}: publish list {pairs!r} does not match {out.n_publish} arrays")
            regions = self._rp.publish_regions(tile)
            for pair, arr in zip(pairs, out.arrays[n_out:]):
                ok = isinstance(pair, list) and len(pair) == 2 and all(type(v) is int for v in pair)
                region = regions.get(pair[0], {}).get(pair[1]) if ok else None
                if region is None:
                    raise ProtocolError(f"tile {tile}: does not publish {pair!r}")
                want = (self.net.layers[pair[1]].out_shape[0], region.height, region.width)
                if tuple(arr.shape) != want:
                    raise ProtocolError(f"tile {tile}: published {pair} has shape {tuple(arr.shape)}, expected {want}")

    def reuse_for(self, tile: int, published: dict[int, TileOutput],
                  local: "dict[int, list[int]] | None" = None) -> ReuseData | None:
        """The cached pieces the level-0 neighbours published for ``tile`` that it reads with
        those neighbours present (None: none usable). The rest of a publication covers arrival
        orders that did not happen (e.g. half the bytes of a 12x1 strip's with both in). A
        neighbour that lacks a piece the tile would read (a core-only publication when another
        neighbour is missing) does not count as present: the same fixed point as run_level1,
        so no bytes go out that the tile would ignore.

        ``local`` = {src: layers}: pieces the asking edge holds itself (it ran level-0 tile src,
        the tile's partner): they count for who is present, and are not sent."""
        if self._rp is None or self.level(tile) != 1:
            return None
        local = local or {}
        mine: dict[int, dict[int, Any]] = {}
        for src in sorted(published):
            out = published[src]
            n_out = len(out.arrays) - out.n_publish
            pieces = {int(pair[1]): arr for pair, arr in zip(out.meta.get("publish", []), out.arrays[n_out:])
                      if pair[0] == tile}
            if pieces:
                mine[int(src)] = pieces
        have = {src: set(pieces) for src, pieces in mine.items() if src not in local}
        have.update({int(src): set(layers) for src, layers in local.items()})
        present, needed = self._rp.complete_neighbours(tile, have)
        pairs, arrays = [], []
        for src in sorted(present):
            if src in local:
                continue
            for layer in sorted(needed[src]):
                pairs.append([src, layer])
                arrays.append(mine[src][layer])
        if not arrays:
            return None
        return ReuseData(arrays, {"pieces": pairs})

    # ----- gateway
    def output_layers(self) -> list[int]:
        last = len(self.net.layers) - 1
        return sorted(set(self.net.head_layers) | {last})

    def merge(self, results: dict[int, TileOutput]) -> dict[str, np.ndarray]:
        outs = {t: o.arrays[: len(o.arrays) - o.n_publish] for t, o in results.items()}
        outs = {t: (a[0] if len(a) == 1 else a) for t, a in outs.items()}
        maps = self.plan.stitch_all(outs)
        L = self.fused_layers
        if L == len(self.net.layers):
            return {f"layer{L - 1}": maps[L - 1]}
        got = self.net.forward(maps[L - 1], start=L, engine=self.engine, cache=maps, outputs=self.output_layers())
        return {f"layer{i}": np.asarray(a, np.float32) for i, a in got.items()}
