"""Tiled execution: run the fused layers of one tile on its input crop with an engine.

Every layer computes its ``out_region`` (or, with data reuse, a reduced part of it whose rest
comes from neighbours) from crops of its producers' buffers, with the tile's per-side padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import ShapeError
from .regions import Region

if TYPE_CHECKING:
    from .plan import FTP, Tile

# Called after each layer with (layer index, region held, array over that region).
LayerHook = Callable[[int, Region, np.ndarray], None]


def _run_layer(plan: "FTP", engine: Any, index: int, inputs: list[np.ndarray], pad: tuple[int, int, int, int],
               out_region: tuple[int, int, int, int] | None = None) -> np.ndarray:
    layer = plan.block[index]
    # Only window layers take padding; the others are defined pixel by pixel.
    p = pad if layer.spatial.kind == "window" else None
    if out_region is None:
        y = engine.run_layer(layer, inputs, p)
    else:
        y = engine.run_layer(layer, inputs, p, out_region=out_region)
    return np.asarray(y, dtype=np.float32)


@dataclass(frozen=True)
class Step:
    """How a tile handles one layer: hold ``need``, compute ``compute`` (a part of it) from
    ``in_region`` of the inputs with ``pad``; the rest of ``need`` comes from neighbours.
    The engine returns ``produced`` (``compute`` plus the rows/columns an aligned layer adds at
    the top/left, see LayerTile.pad), which is cropped to ``compute``."""

    active: bool
    need: Region
    compute: Region
    in_region: Region
    pad: tuple[int, int, int, int]
    produced: Region | None = None  # None: exactly ``compute``


def full_steps(tile: "Tile") -> list[Step]:
    """Steps computing every layer's out_region in full (no data reuse)."""
    return [
        Step(lt.active, lt.out_region, lt.out_region, lt.in_region, lt.pad, lt.produced_region) for lt in tile.layers
    ]


def execute_tile(
    plan: "FTP",
    tile: "Tile",
    x_crop: np.ndarray,
    engine: Any,
    steps: Sequence[Step] | None = None,
    provided: Mapping[int, Sequence[tuple[Region, np.ndarray]]] | None = None,
    on_layer: LayerHook | None = None,
    input_origin: Region | None = None,
) -> list[np.ndarray]:
    """Run one tile; returns its cell of each exported layer (in ``plan.exports`` order).

    ``steps`` (data reuse) say per layer what the tile holds and computes; ``provided[i]``
    lists (region, array) pieces from neighbours that fill the rest of layer i. Without them
    the tile computes every ``out_region`` in full. ``x_crop`` holds ``input_origin`` of the
    network input (default: the tile's ``input_region``).
    """
    buffers: dict[int, tuple[Region, np.ndarray]] = {-1: (input_origin or tile.input_region, x_crop)}
    keep = set(plan.exports)
    for step, layer in zip(steps or full_steps(tile), plan.block):
        if not step.active:
            continue
        i = layer.index
        y = None
        if not step.compute.empty:
            inputs = []
            for j in layer.inputs:
                src_region, src = buffers[j]
                inputs.append(np.ascontiguousarray(step.in_region.crop(src, src_region)))
            aligned = step.produced is not None and not step.produced.empty and step.produced != step.compute
            if aligned and getattr(engine, "takes_out_region", False) and layer.spatial.kind != "upsample":
                # The engine makes just ``compute`` of the aligned output (and skips the Winograd
                # work only the extra row/column needs).
                rows, cols = step.compute.relative_to(step.produced)
                y = _run_layer(plan, engine, i, inputs, step.pad, (rows.start, cols.start, rows.stop, cols.stop))
            else:
                y = _run_layer(plan, engine, i, inputs, step.pad)
                if layer.spatial.kind == "upsample":
                    # The input rows cover whole factor-blocks; keep the rows/columns asked for.
                    f = int(layer.spatial.factor)
                    r0 = step.compute.top - step.in_region.top * f
                    c0 = step.compute.left - step.in_region.left * f
                    y = y[:, r0 : r0 + step.compute.height, c0 : c0 + step.compute.width]
                elif aligned:
                    # Aligned layer: drop the leading rows/columns made only to align the blocks.
                    got = (layer.out_shape[0], step.produced.height, step.produced.width)
                    if y.shape != got:
                        raise ShapeError(
                            f"tile {tile.tile_id}: layer {i} [{layer.type}] returned {y.shape} for region "
                            f"{step.produced}, expected {got}"
                        )
                    y = y[(slice(None), *step.compute.relative_to(step.produced))]
            want = (layer.out_shape[0], step.compute.height, step.compute.width)
            if y.shape != want:
                raise ShapeError(
                    f"tile {tile.tile_id}: layer {i} [{layer.type}] returned {y.shape} for region "
                    f"{step.compute}, expected {want}"
                )
        if step.compute == step.need:
            assert y is not None
            buf = y
        else:
            buf = _assemble(plan, tile, i, step.need, step.compute, y, (provided or {}).get(i, ()))
        buffers[i] = (step.need, buf)
        if on_layer is not None:
            on_layer(i, step.need, buf)
        for j in layer.inputs:
            if plan._last_use.get(j) == i and j not in keep:
                buffers.pop(j, None)
    outs = []
    for e in plan.exports:
        region, buf = buffers[e]
        outs.append(np.ascontiguousarray(tile.export_regions[e].crop(buf, region)))
    return outs


def _assemble(
    plan: "FTP",
    tile: "Tile",
    index: int,
    full: Region,
    own: Region,
    y: np.ndarray | None,
    pieces: Sequence[tuple[Region, np.ndarray]],
) -> np.ndarray:
    """Layer ``index``'s buffer over ``full`` from the own part and neighbours' pieces."""
    ch = plan.block[index].out_shape[0]
    buf = np.empty((ch, full.height, full.width), dtype=np.float32)
    covered = np.zeros((full.height, full.width), dtype=bool)
    if y is not None and not own.empty:
        rows, cols = own.relative_to(full)
        buf[:, rows, cols] = y
        covered[rows, cols] = True
    for region, arr in pieces:
        part = region.intersect(full)
        if part.empty:
            continue
        rows, cols = part.relative_to(full)
        buf[:, rows, cols] = part.crop(arr, region)
        covered[rows, cols] = True
    if not covered.all():
        # The reduced regions are chosen so that this cannot happen; a wrong caller can.
        raise ShapeError(
            f"tile {tile.tile_id}: layer {index} [{plan.block[index].type}] region {full} is not covered "
            f"by its own part {own} and the neighbours' data"
        )
    return buf
