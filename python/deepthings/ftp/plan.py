"""FTP plans: cut the output of the first L layers into an N x M grid of independent tiles.

``FTP(net, grid=(N, M), fused_layers=L)`` back-traces every tile through the fused block (a
DAG: routes, shortcuts and upsamples take the bounding box of what their consumers need) with
the C++ arithmetic, runs tiles, stitches their outputs and makes serialisable tasks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..errors import PlanError, ShapeError
from .regions import EMPTY, Region, core, layer_desc

if TYPE_CHECKING:
    from .cost import CostReport
    from .reuse import ReusePlan
    from .task import Task

Pad = tuple[int, int, int, int]


@dataclass(frozen=True)
class LayerTile:
    """One fused layer of one tile: what it computes, what it reads, its zero padding."""

    index: int
    type: str
    active: bool  # False: this tile needs nothing of the layer (a dead branch)
    out_region: Region  # on the layer's output map
    in_region: Region  # on its input map(s); the same region of every input
    # Per side; non-zero where the region meets a real border, and one row/column at the top/
    # left of a dense 3x3 stride-1 conv whose out_region starts at an odd row/column: the
    # engine then produces ``produced_region`` (one more row/column there, discarded) with the
    # same Winograd F(2x2,3x3) blocks as the full map, so tiles are bit-identical.
    pad: Pad
    produced_region: Region = EMPTY  # what the engine returns; contains out_region


@dataclass(frozen=True)
class Tile:
    """One task of the plan: grid cell (row, col) of layer L-1's output."""

    tile_id: int
    row: int
    col: int
    level: int  # checkerboard level for the data-reuse schedule: (row + col) % 2
    out_region: Region  # grid cell on layer L-1's output map
    input_region: Region  # on the network input
    layers: tuple[LayerTile, ...]
    export_regions: Mapping[int, Region] = field(default_factory=dict)  # layer -> grid cell

    @property
    def input_shape(self) -> tuple[int, int]:
        return (self.input_region.height, self.input_region.width)


def _resolve_engine(engine: Any) -> Any:
    """An Engine object from None (the native default), a name, or an Engine."""
    from ..engine import get_engine

    return get_engine(engine)


def _check_cuts(cuts: Any, n: int, m: int, h: int, w: int, L: int) -> tuple[list[int], list[int]]:
    """Validated explicit cell boundaries: n+1 rows from 0 to h, m+1 columns from 0 to w."""
    try:
        rows, cols = ([int(v) for v in part] for part in cuts)
    except (TypeError, ValueError):
        raise PlanError(f"cuts must be (row boundaries, column boundaries), got {cuts!r}") from None
    for name, b, parts, size in (("row", rows, n, h), ("column", cols, m, w)):
        if len(b) != parts + 1 or b[0] != 0 or b[-1] != size or any(x >= y for x, y in zip(b, b[1:])):
            raise PlanError(
                f"{name} cuts {b} must be {parts + 1} strictly increasing boundaries from 0 to {size} "
                f"(the output of layer {L - 1} is {h}x{w})"
            )
    return rows, cols


class FTP:
    """Fused Tile Partitioning plan of the first ``fused_layers`` layers of ``network``.

    ``tiles[t]`` gives per-tile, per-layer regions; ``exports`` lists the block layers whose
    stitched outputs the rest of the network needs (always ``L - 1`` first, plus layers a
    route/shortcut after the block reads across the cut). ``run_tile`` returns one array per
    exported layer (a bare array when only ``L - 1`` is exported).

    ``winograd_align`` (default on) makes tiles produce dense 3x3 stride-1 convs from even
    global rows/columns (zero padding, not more input), so that with the native engine's
    Winograd F(2x2,3x3) stitched tiles are bit-identical to ``net.forward``; off, tiles produce
    exactly their regions (slightly fewer FLOPs, results within rounding).

    ``cuts=(rows, cols)`` places the cell boundaries on layer L-1's output explicitly (n+1 and
    m+1 increasing values from 0 to H and W) instead of splitting it evenly; ``ftp.balance``
    chooses them so that tiles on the border, which need less overlap, get more rows.
    """

    def __init__(
        self,
        network: Any,
        grid: tuple[int, int] = (3, 3),
        fused_layers: int | None = None,
        *,
        winograd_align: bool = True,
        cuts: "tuple[Sequence[int], Sequence[int]] | None" = None,
    ) -> None:
        self.net = network
        self.winograd_align = bool(winograd_align)
        layers = list(network.layers)
        if fused_layers is None:
            fused_layers = len(layers)
        if isinstance(grid, str):  # "5x5", as the CLI spells it
            grid = tuple(grid.lower().split("x"))  # type: ignore[assignment]
        try:
            n, m = (int(v) for v in grid)
        except (TypeError, ValueError):
            raise PlanError(f"grid must be a pair (N, M), got {grid!r}") from None
        L = int(fused_layers)
        if not 1 <= L <= len(layers):
            raise PlanError(f"fused_layers={L} must be in 1..{len(layers)} (the network has {len(layers)} layers)")
        if n < 1 or m < 1:
            raise PlanError(f"grid {n}x{m} must be at least 1x1")
        self.grid = (n, m)
        self.fused_layers = L
        self.block = layers[:L]
        for layer in self.block:
            if layer.spatial.kind == "global":
                where = f" ({layer.cfg_path}:{layer.line})" if getattr(layer, "cfg_path", None) else ""
                raise PlanError(
                    f"layer {layer.index} [{layer.type}]{where} is a global layer and cannot be tiled: "
                    f"use fused_layers <= {layer.index}"
                )
        self.input_shape: tuple[int, int, int] = tuple(int(v) for v in network.input_shape)  # type: ignore[assignment]
        shapes: dict[int, tuple[int, int, int]] = {-1: self.input_shape}
        for layer in self.block:
            shapes[layer.index] = tuple(layer.out_shape)  # type: ignore[assignment]
        self._shapes = shapes
        c = core()
        self._descs = [layer_desc(layer, shapes, self.winograd_align) for layer in self.block]
        try:
            c.region_validate_block(self._descs, self.input_shape[1], self.input_shape[2])
        except ValueError as exc:
            raise PlanError(self._name_layer(str(exc))) from None

        # Layers of the block read after it (routes/shortcuts crossing the cut) are exported.
        crossing = {j for layer in layers[L:] for j in layer.inputs if 0 <= j < L - 1}
        if any(j == -1 for layer in layers[L:] for j in layer.inputs):
            raise PlanError(f"a layer after the fused block reads the network input; cannot fuse {L} layers")
        self.exports: tuple[int, ...] = (L - 1,) + tuple(sorted(crossing))
        for e in self.exports:
            _, eh, ew = shapes[e]
            if n > eh or m > ew:
                layer = layers[e]
                raise PlanError(
                    f"grid {n}x{m} is larger than the {eh}x{ew} output of layer {e} [{layer.type}]"
                    + (" (exported: read after the fused block)" if e != L - 1 else "")
                )

        _, H, W = shapes[L - 1]
        if cuts is None:
            row_cuts = [c.region_balanced_range(H, n, r)[0] for r in range(n)] + [H]
            col_cuts = [c.region_balanced_range(W, m, k)[0] for k in range(m)] + [W]
        else:
            row_cuts, col_cuts = _check_cuts(cuts, n, m, H, W, L)
        # The boundaries in use, even or given; ``cuts`` is stored only when given, so that
        # default plans keep their fingerprint.
        self.boundaries: tuple[tuple[int, ...], tuple[int, ...]] = (tuple(row_cuts), tuple(col_cuts))
        self.cuts: tuple[tuple[int, ...], tuple[int, ...]] | None = None if cuts is None else self.boundaries
        # Cell boundaries of every export: the cuts of layer L-1 scaled to its size.
        bounds = {}
        for e in self.exports:
            _, eh, ew = shapes[e]
            rb = [b * eh // H for b in row_cuts]
            cb = [b * ew // W for b in col_cuts]
            if any(a >= b for a, b in zip(rb, rb[1:])) or any(a >= b for a, b in zip(cb, cb[1:])):
                raise PlanError(
                    f"cuts {self.cuts} leave an empty cell in the {eh}x{ew} output of exported layer {e} "
                    f"[{layers[e].type}]"
                )
            bounds[e] = (rb, cb)

        tiles = []
        for r in range(n):
            for col in range(m):
                seeds = []
                export_regions = {}
                for e in self.exports:
                    rb, cb = bounds[e]
                    cell = Region(rb[r], cb[col], rb[r + 1], cb[col + 1])
                    export_regions[e] = cell
                    seeds.append((e, cell.as_tuple()))
                try:
                    per_layer, input_region = c.region_trace_tile(
                        self._descs, seeds, self.input_shape[1], self.input_shape[2]
                    )
                except ValueError as exc:
                    raise PlanError(self._name_layer(str(exc))) from None
                lt = tuple(
                    LayerTile(
                        index=i,
                        type=self.block[i].type,
                        active=bool(active),
                        out_region=Region.of(out) if active else EMPTY,
                        in_region=Region.of(inr) if active else EMPTY,
                        pad=tuple(int(v) for v in pad),  # type: ignore[arg-type]
                        produced_region=Region.of(produced) if active else EMPTY,
                    )
                    for i, (active, out, inr, pad, produced) in enumerate(per_layer)
                )
                tiles.append(
                    Tile(
                        tile_id=r * m + col,
                        row=r,
                        col=col,
                        level=(r + col) % 2,
                        out_region=export_regions[L - 1],
                        input_region=Region.of(input_region),
                        layers=lt,
                        export_regions=export_regions,
                    )
                )
        self.tiles: tuple[Tile, ...] = tuple(tiles)
        # Last block layer reading each layer, so execution frees buffers early.
        self._last_use: dict[int, int] = {}
        for layer in self.block:
            for j in layer.inputs:
                self._last_use[j] = layer.index
        self.key = self._fingerprint()
        self._reuse: ReusePlan | None = None

    # The C++ layer descriptions are not picklable: rebuild them after unpickling (the runtime
    # may ship a plan to another process).
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_descs"] = None
        state["_reuse"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("winograd_align", True)
        self.__dict__.setdefault("cuts", None)
        self._descs = [layer_desc(layer, self._shapes, self.winograd_align) for layer in self.block]

    # ----- description ---------------------------------------------------------------------
    def _name_layer(self, msg: str) -> str:
        """Prefix a C++ 'layer i: ...' message with the layer's type and cfg location."""
        if msg.startswith("layer "):
            try:
                i = int(msg.split()[1].rstrip(":"))
                layer = self.block[i]
                where = f" ({layer.cfg_path}:{layer.line})" if getattr(layer, "cfg_path", None) else ""
                return f"layer {i} [{layer.type}]{where}: " + msg.split(":", 1)[1].strip()
            except (ValueError, IndexError):
                pass
        return msg

    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(repr((self.grid, self.fused_layers, self.input_shape)).encode())
        if not self.winograd_align:  # other regions: another plan (default keys unchanged)
            h.update(b"no-winograd-align")
        if self.cuts is not None:
            h.update(repr(self.cuts).encode())
        for layer in self.block:
            h.update(repr((layer.type, tuple(layer.inputs), tuple(layer.out_shape), layer.spatial)).encode())
        return h.hexdigest()[:16]

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of layer L-1's output."""
        return self._shapes[self.fused_layers - 1]

    def layer_shape(self, index: int) -> tuple[int, int, int]:
        """(C, H, W) of a block layer's output (-1: the network input)."""
        return self._shapes[index]

    def tile_at(self, row: int, col: int) -> Tile:
        n, m = self.grid
        if not (0 <= row < n and 0 <= col < m):
            raise PlanError(f"tile ({row}, {col}) outside the {n}x{m} grid")
        return self.tiles[row * m + col]

    def _tile(self, tile_id: int) -> Tile:
        if not isinstance(tile_id, (int, np.integer)) or not 0 <= int(tile_id) < len(self.tiles):
            raise PlanError(f"tile id {tile_id!r} outside 0..{len(self.tiles) - 1}")
        return self.tiles[int(tile_id)]

    def __repr__(self) -> str:
        n, m = self.grid
        cuts = f" cuts={self.cuts}" if self.cuts is not None else ""
        return f"<FTP {n}x{m} fused_layers={self.fused_layers} exports={list(self.exports)}{cuts}>"

    # ----- execution -----------------------------------------------------------------------
    def crop_input(self, tile_id: int, x: np.ndarray) -> np.ndarray:
        """The tile's input crop from ``x`` (whole network input, or already the crop)."""
        tile = self._tile(tile_id)
        x = np.asarray(x)
        if x.dtype != np.float32:
            raise ShapeError(f"tile {tile_id}: input must be float32, got {x.dtype}")
        c = self.input_shape[0]
        crop_shape = (c, tile.input_region.height, tile.input_region.width)
        if x.shape == self.input_shape:
            full = Region(0, 0, self.input_shape[1], self.input_shape[2])
            return tile.input_region.crop(x, full)
        if x.shape == crop_shape:
            return x
        raise ShapeError(
            f"tile {tile_id}: input of shape {x.shape} is neither the network input {self.input_shape} "
            f"nor the tile's input crop {crop_shape} (region {tile.input_region})"
        )

    def run_tile(self, tile_id: int, x: np.ndarray, engine: Any = None) -> Any:
        """Run all fused layers of one tile; ``x`` is the whole input or exactly its crop.

        Returns layer L-1's output over the tile's cell, or, when the plan exports more layers,
        a list with one array per entry of ``exports``.
        """
        from .execute import execute_tile

        tile = self._tile(tile_id)
        outs = execute_tile(self, tile, self.crop_input(tile_id, x), _resolve_engine(engine))
        return outs[0] if len(outs) == 1 else outs

    def stitch_all(self, outputs: Sequence[Any] | Mapping[int, Any]) -> dict[int, np.ndarray]:
        """Full maps of every exported layer from all tiles' outputs (list or {tile_id: out})."""
        if isinstance(outputs, Mapping):
            items = dict(outputs)
        else:
            items = dict(enumerate(outputs))
        missing = [t.tile_id for t in self.tiles if t.tile_id not in items]
        if missing:
            raise PlanError(f"cannot stitch: outputs of tiles {missing} are missing")
        full = {e: np.empty(self._shapes[e], dtype=np.float32) for e in self.exports}
        for tile in self.tiles:
            out = items[tile.tile_id]
            arrays = [out] if isinstance(out, np.ndarray) else list(out)
            if len(arrays) != len(self.exports):
                raise ShapeError(
                    f"tile {tile.tile_id}: {len(arrays)} output arrays, the plan exports {len(self.exports)}"
                )
            for e, arr in zip(self.exports, arrays):
                cell = tile.export_regions[e]
                want = (self._shapes[e][0], cell.height, cell.width)
                if tuple(arr.shape) != want:
                    raise ShapeError(
                        f"tile {tile.tile_id}: output of layer {e} has shape {tuple(arr.shape)}, expected {want}"
                    )
                full[e][:, cell.top : cell.bottom, cell.left : cell.right] = arr
        return full

    def stitch(self, outputs: Sequence[Any] | Mapping[int, Any]) -> np.ndarray:
        """The full output of layer L-1 from all tiles' outputs (use stitch_all for exports)."""
        return self.stitch_all(outputs)[self.fused_layers - 1]

    def finish(self, tile_outputs: Sequence[Any] | Mapping[int, Any], engine: Any = None, **kwargs: Any) -> Any:
        """Stitch and run the rest of the network: ``net.forward(stitched, start=L, cache=...)``.

        ``kwargs`` go to ``net.forward`` (e.g. ``outputs=net.head_layers``)."""
        maps = self.stitch_all(tile_outputs)
        L = self.fused_layers
        if L == len(self.net.layers):
            return maps[L - 1]
        return self.net.forward(maps[L - 1], start=L, engine=engine, cache=maps, **kwargs)

    def run(self, x: np.ndarray, engine: Any = None) -> np.ndarray:
        """All tiles on one device, stitched: layer L-1's output (a reference for tests)."""
        eng = _resolve_engine(engine)
        return self.stitch([self.run_tile(t.tile_id, x, eng) for t in self.tiles])

    # ----- tasks, reuse, cost ---------------------------------------------------------------
    def task(self, tile_id: int, x: np.ndarray, frame_id: int = 0) -> "Task":
        """A serialisable description of one tile's work (its input crop and ids)."""
        from .task import Task

        tile = self._tile(tile_id)
        crop = np.ascontiguousarray(self.crop_input(tile_id, x), dtype=np.float32)
        return Task(
            tile_id=tile.tile_id,
            frame_id=int(frame_id),
            input=crop,
            meta={
                "plan": self.key,
                "grid": list(self.grid),
                "fused_layers": self.fused_layers,
                "input_region": list(tile.input_region.as_tuple()),
                "level": tile.level,
            },
        )

    def run_task(self, task: "Task", engine: Any = None) -> Any:
        """Run a Task made by ``task()`` (possibly on another device with the same plan)."""
        if task.meta.get("plan", self.key) != self.key:
            raise PlanError(
                f"task for tile {task.tile_id} frame {task.frame_id} was made by another plan "
                f"({task.meta.get('plan')} != {self.key})"
            )
        return self.run_tile(task.tile_id, task.input, engine)

    @property
    def reuse(self) -> "ReusePlan":
        """The data-reuse (WST-S) view of this plan (see deepthings.ftp.reuse)."""
        if self._reuse is None:
            from .reuse import ReusePlan

            self._reuse = ReusePlan(self)
        return self._reuse

    def cost(self, reuse: bool = False) -> "CostReport":
        """FLOPs, bytes and memory per tile and layer (see deepthings.ftp.cost)."""
        from .cost import plan_cost

        return plan_cost(self, reuse=reuse)
