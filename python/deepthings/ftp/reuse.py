"""Data reuse between neighbouring tiles (DeepThings' WST-S schedule), for any FTP plan.

Tiles are split in a checkerboard into two levels: ``level = (row + col) % 2``. Level-0 tiles
run in full and *publish*, for every fused layer, the parts of their layer outputs that their
level-1 neighbours (up/left/down/right) also need. A level-1 tile then computes, per layer,
only the rectangle that its *present* neighbours did not already compute, back-traces what it
needs from those reduced rectangles (so it takes only thin strips around the cut lines from
the neighbours, not their whole overlap), and assembles each layer's input from its own part
and the neighbours' pieces. Any neighbour may be missing: that side is simply computed by the
tile itself (fallback), so the result is exact for every subset and order of arrivals. A
neighbour counts as present only with all the layers it publishes for the tile (partial data
from one neighbour is ignored, and that side falls back). "All the layers" means those the
tile reads given the neighbours present (``needed_pieces``): with both neighbours of a strip
present, the early layers come entirely from them and the tile reads no input, so a cache
sends only the pieces that intersect what the tile then holds. DAG blocks (route/shortcut/upsample)
work unchanged: every layer's region is cut independently and assembled before its consumers.

API used by the runtime (gateway caches published data per frame and source tile)::

    rp = plan.reuse                                  # ReusePlan
    rp.level(t)                                      # 0 or 1
    rp.level0, rp.level1                             # tile ids in scheduling order
    rp.neighbours(t) -> {side: tile_id}              # level-0 neighbours of a level-1 tile
    rp.partners -> {level-0 tile: level-1 tile}      # who runs which level-1 tile next
    rp.publish_regions(t) -> {dest: {layer: Region}} # what a level-0 tile publishes
    out, published = rp.run_level0(t, x, engine=None)
        # out: like plan.run_tile; published: {dest_tile: {layer: float32 CHW array}}
    out = rp.run_level1(t, x, neighbour_data, engine=None, x_origin=None)
        # neighbour_data: {src_tile: {layer: array}} = published[src][t] of the level-0
        # neighbours that have arrived (any subset, possibly empty); x: the whole input, the
        # tile's input crop, the smaller crop rp.input_region(t, those neighbours), or any
        # crop containing that one with x_origin saying where it lies (may be empty)
    rp.compute_regions(t, present) -> [Region per layer]  # what t computes itself
    rp.steps(t, present) -> [Step per layer]             # hold/compute/input regions
    rp.input_region(t, present) -> Region                # part of the network input t reads
    rp.needed_pieces(t, present) -> {src: {layer, ...}}  # published pieces t then reads
    rp.complete_neighbours(t, {src: layers}) -> (present, needed)  # who counts as present
    rp.core_pieces(t) -> {dest: {layer, ...}}            # what dest reads with all neighbours in
    rp.run(t, x, neighbour_data=None)                # dispatches on the level
    rp.data_for(t, {src: published_by_src})          # a level-1 tile's neighbour_data from a cache

What a level-0 tile publishes for a neighbour is, per layer, the bounding box over every subset
of that neighbour's other neighbours being present of (its own region ^ what the neighbour then
needs), so one publication serves every arrival order.

Published data is plain ``dict[int, dict[int, np.ndarray]]`` (msgpack-friendly with the arrays
sent as raw frames); ``published_bytes`` counts it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np

from ..errors import PlanError, ShapeError
from .execute import Step, execute_tile, full_steps
from .regions import EMPTY, Region, core

if TYPE_CHECKING:
    from .plan import FTP, Tile

SIDES = ("up", "left", "down", "right")
_OFFSETS = {"up": (-1, 0), "left": (0, -1), "down": (1, 0), "right": (0, 1)}

NeighbourData = Mapping[int, Mapping[int, np.ndarray]]


def _trace_tuple(tile: "Tile") -> tuple[list[tuple[bool, tuple, tuple, tuple, tuple]], tuple]:
    layers = [
        (lt.active, lt.out_region.as_tuple(), lt.in_region.as_tuple(), lt.pad, lt.produced_region.as_tuple())
        for lt in tile.layers
    ]
    return layers, tile.input_region.as_tuple()


class ReusePlan:
    """The WST-S view of an FTP plan: levels, published overlaps, reduced regions."""

    def __init__(self, plan: "FTP") -> None:
        self.plan = plan
        self.level0 = tuple(t.tile_id for t in plan.tiles if t.level == 0)
        self.level1 = tuple(t.tile_id for t in plan.tiles if t.level == 1)
        self._traces = {t.tile_id: _trace_tuple(t) for t in plan.tiles}
        self._seeds = {t.tile_id: [(e, r.as_tuple()) for e, r in t.export_regions.items()] for t in plan.tiles}
        self._steps: dict[tuple[int, frozenset[int]], list[Step]] = {}
        self._needed: dict[tuple[int, frozenset[int]], dict[int, frozenset[int]]] = {}
        self._core: dict[int, dict[int, frozenset[int]]] = {}
        self._partners: dict[int, int] | None = None
        # _publish[src][dest][layer]: what level-0 tile src publishes for level-1 tile dest.
        self._publish: dict[int, dict[int, dict[int, Region]]] = {t: {} for t in self.level0}
        h, w = plan.input_shape[1], plan.input_shape[2]
        for dest in self.level1:
            adj = self._adjacent(dest)
            nbs = [self._traces[adj[side]] if side in adj else None for side in SIDES]
            try:
                per_side = core().region_publish(plan._descs, self._seeds[dest], h, w, nbs)
            except ValueError as exc:
                raise PlanError(f"data reuse for tile {dest}: {plan._name_layer(str(exc))}") from None
            for side, regions in zip(SIDES, per_side):
                if side not in adj:
                    continue
                pieces = {i: Region.of(q) for i, q in enumerate(regions) if not Region.of(q).empty}
                if pieces:
                    self._publish[adj[side]][dest] = pieces

    # ----- structure -----------------------------------------------------------------------
    def level(self, tile_id: int) -> int:
        """0 (computes in full, publishes) or 1 (reuses neighbours' data)."""
        return self.plan._tile(tile_id).level

    def _adjacent(self, tile_id: int) -> dict[str, int]:
        tile = self.plan._tile(tile_id)
        n, m = self.plan.grid
        out = {}
        for side in SIDES:
            dr, dc = _OFFSETS[side]
            r, c = tile.row + dr, tile.col + dc
            if 0 <= r < n and 0 <= c < m:
                out[side] = r * m + c
        return out

    def neighbours(self, tile_id: int) -> dict[str, int]:
        """The up/left/down/right neighbours of a tile (always of the other level)."""
        return self._adjacent(tile_id)

    @property
    def partners(self) -> dict[int, int]:
        """{level-0 tile: level-1 tile} pairs of neighbours, one level-1 tile per level-0 tile at
        most (below, else right, left, above, first come in tile order; row strips pair t with
        t + 1). An edge that ran a level-0 tile runs its partner next (it prefetches it by name),
        so the cuts can balance each pair's work: random pairings of heavy and light tiles made
        the busiest device 10-16% busier than the mean on YOLOv2 12x1."""
        if self._partners is None:
            taken: set[int] = set()
            pairs = {}
            for t in self.level0:
                adj = self._adjacent(t)
                for side in ("down", "right", "left", "up"):
                    dest = adj.get(side)
                    if dest is not None and dest not in taken:
                        pairs[t] = dest
                        taken.add(dest)
                        break
            self._partners = pairs
        return self._partners

    def publish_regions(self, tile_id: int) -> dict[int, dict[int, Region]]:
        """For a level-0 tile: {level-1 neighbour: {layer: region of that layer's output}}."""
        if self.level(tile_id) != 0:
            return {}
        return self._publish[tile_id]

    def published_bytes(self, tile_id: int) -> int:
        """float32 bytes a level-0 tile publishes (0 for level-1 tiles)."""
        total = 0
        for regions in self.publish_regions(tile_id).values():
            for layer, region in regions.items():
                total += 4 * self.plan.block[layer].out_shape[0] * region.area
        return total

    def steps(self, tile_id: int, present: Iterable[int] = ()) -> list[Step]:
        """Per layer, what a tile holds, computes and reads given the neighbours present."""
        tile = self.plan._tile(tile_id)
        if tile.level == 0:
            return full_steps(tile)
        adj = self._adjacent(tile_id)
        have = frozenset(int(p) for p in present) & frozenset(adj.values())
        key = (tile_id, have)
        cached = self._steps.get(key)
        if cached is not None:
            return cached
        nbs = [self._traces[adj[side]] if side in adj else None for side in SIDES]
        flags = [side in adj and adj[side] in have for side in SIDES]
        h, w = self.plan.input_shape[1], self.plan.input_shape[2]
        layers, _ = core().region_reduced_trace(self.plan._descs, self._seeds[tile_id], h, w, nbs, flags)
        steps = [
            Step(bool(a), Region.of(need), Region.of(comp), Region.of(inr), tuple(int(v) for v in pad), Region.of(prod))  # type: ignore[arg-type]
            for a, need, comp, inr, pad, prod in layers
        ]
        self._steps[key] = steps
        return steps

    def input_region(self, tile_id: int, present: Iterable[int] = ()) -> Region:
        """The part of the network input a tile reads given the neighbours present (a level-1
        tile with neighbours reads less than ``tiles[t].input_region``; it still accepts that)."""
        tile = self.plan._tile(tile_id)
        steps = self.steps(tile_id, present)
        box = EMPTY
        for step, layer in zip(steps, self.plan.block):
            if step.active and not step.compute.empty and -1 in layer.inputs:
                r = step.in_region
                box = r if box.empty else Region(
                    min(box.top, r.top), min(box.left, r.left), max(box.bottom, r.bottom), max(box.right, r.right)
                )
        return box if tile.level == 1 else tile.input_region

    def needed_pieces(self, tile_id: int, present: Iterable[int]) -> dict[int, frozenset[int]]:
        """{neighbour: layers} of the pieces a level-1 tile reads when ``present`` have arrived:
        those of the present neighbours' published pieces that meet what the tile holds of
        their layer. The rest of a publication (kept for other arrival orders) is never read."""
        adj = frozenset(self._adjacent(tile_id).values())
        have = frozenset(int(p) for p in present) & adj
        key = (tile_id, have)
        hit = self._needed.get(key)
        if hit is not None:
            return hit
        steps = self.steps(tile_id, have)
        out = {}
        for src in sorted(have):
            regions = self._publish.get(src, {}).get(tile_id, {})
            read = frozenset(
                layer for layer, region in regions.items()
                if steps[layer].active and not region.intersect(steps[layer].need).empty
            )
            # A neighbour the tile reads nothing from still has to show it is present (or the
            # tile computes its side): it then sends its whole publication.
            out[src] = read if read or not regions else frozenset(regions)
        self._needed[key] = out
        return out

    def complete_neighbours(self, tile_id: int, have: Mapping[int, Iterable[int]]) -> tuple[set[int], dict[int, frozenset[int]]]:
        """(present, needed_pieces(tile_id, present)) for neighbours holding the layers ``have``
        = {src: layers}. A neighbour is present when it has every piece the tile reads with
        the neighbours present; with fewer present the tile holds more, so the incomplete ones
        are dropped until the rest are complete (that side falls back)."""
        have_sets = {int(src): set(layers) for src, layers in have.items()}
        present = set(have_sets)
        while True:
            needed = self.needed_pieces(tile_id, present)
            short = {src for src in present if not needed[src] <= have_sets[src]}
            if not short:
                return present, needed
            present -= short

    def core_pieces(self, tile_id: int) -> dict[int, frozenset[int]]:
        """For a level-0 tile: {level-1 neighbour: layers} of the published pieces that
        neighbour reads when all its neighbours are present, the usual case (a WST-S gateway
        waits for them). The rest of the publication serves only the arrival orders where a
        neighbour is missing; without it such a tile computes in full, still exactly."""
        if self.level(tile_id) != 0:
            return {}
        hit = self._core.get(tile_id)
        if hit is None:
            hit = {}
            for dest in self._publish[tile_id]:
                layers = self.needed_pieces(dest, self._adjacent(dest).values()).get(tile_id, frozenset())
                if layers:
                    hit[dest] = layers
            self._core[tile_id] = hit
        return hit

    def compute_regions(self, tile_id: int, present: Iterable[int] = ()) -> list[Region]:
        """Per layer, the region a tile computes itself given the neighbours whose data is present."""
        return [s.compute if s.active else EMPTY for s in self.steps(tile_id, present)]

    # ----- execution -----------------------------------------------------------------------
    def run_level0(self, tile_id: int, x: np.ndarray, engine: Any = None,
                   pieces: Mapping[int, Iterable[int]] | None = None) -> tuple[Any, dict[int, dict[int, np.ndarray]]]:
        """Run a level-0 tile in full; also return the overlap pieces it publishes (all of
        them, or only ``pieces`` = {dest: layers}, e.g. ``core_pieces(tile_id)``)."""
        from .plan import _resolve_engine

        if self.level(tile_id) != 0:
            raise PlanError(f"tile {tile_id} is a level-1 tile; use run_level1")
        tile = self.plan.tiles[tile_id]
        wanted = self._publish[tile_id]
        if pieces is not None:
            keep = {int(d): {int(v) for v in ls} for d, ls in pieces.items()}
            wanted = {d: {l: r for l, r in regs.items() if l in keep.get(d, ())} for d, regs in wanted.items()}
            wanted = {d: regs for d, regs in wanted.items() if regs}
        published: dict[int, dict[int, np.ndarray]] = {d: {} for d in wanted}

        def grab(index: int, region: Region, buf: np.ndarray) -> None:
            for dest, regions in wanted.items():
                part = regions.get(index)
                if part is not None:
                    published[dest][index] = np.ascontiguousarray(part.crop(buf, region))

        outs = execute_tile(self.plan, tile, self.plan.crop_input(tile_id, x), _resolve_engine(engine), on_layer=grab)
        return (outs[0] if len(outs) == 1 else outs), published

    def run_level1(self, tile_id: int, x: np.ndarray, neighbour_data: NeighbourData | None = None, engine: Any = None,
                   x_origin: Region | None = None) -> Any:
        """Run a level-1 tile reusing whatever neighbour data is present (exact in every case).

        ``x_origin``: ``x`` holds that part of the network input, which must contain what the
        tile reads with these neighbours (``input_region(t, present)``; it may be empty)."""
        from .plan import _resolve_engine

        if self.level(tile_id) != 1:
            raise PlanError(f"tile {tile_id} is a level-0 tile; use run_level0")
        tile = self.plan.tiles[tile_id]
        adj = set(self._adjacent(tile_id).values())
        given: dict[int, dict[int, tuple[Region, np.ndarray]]] = {}
        for src, layers in (neighbour_data or {}).items():
            src = int(src)
            if src not in adj:
                raise PlanError(f"tile {src} is not a neighbour of tile {tile_id}; cannot reuse its data")
            regions = self._publish.get(src, {}).get(tile_id, {})
            pieces = []
            for layer, arr in layers.items():
                layer = int(layer)
                region = regions.get(layer)
                if region is None:
                    raise PlanError(f"tile {src} publishes nothing of layer {layer} for tile {tile_id}")
                arr = np.asarray(arr)
                want = (self.plan.block[layer].out_shape[0], region.height, region.width)
                if arr.dtype != np.float32 or tuple(arr.shape) != want:
                    raise ShapeError(
                        f"tile {tile_id}: data of layer {layer} from tile {src} has shape {arr.shape} "
                        f"{arr.dtype}, expected {want} float32"
                    )
                pieces.append((layer, region, arr))
            given[src] = {layer: (region, arr) for layer, region, arr in pieces}
        present, needed = self.complete_neighbours(tile_id, {src: set(p) for src, p in given.items()})
        provided: dict[int, list[tuple[Region, np.ndarray]]] = {}
        for src in sorted(present):
            for layer in sorted(needed[src]):
                provided.setdefault(layer, []).append(given[src][layer])
        steps = self.steps(tile_id, present)
        # Besides the whole input and the tile's crop, accept the smaller crop it reads with
        # these neighbours present (input_region(t, present)): less data to send.
        reduced = self.input_region(tile_id, present)
        x = np.asarray(x)
        if x_origin is not None:
            want = (self.plan.input_shape[0], x_origin.height, x_origin.width)
            if tuple(x.shape) != want or x.dtype != np.float32:
                raise ShapeError(f"tile {tile_id}: input of shape {x.shape} {x.dtype} for region {x_origin}, "
                                 f"expected {want} float32")
            if not x_origin.contains(reduced):
                raise PlanError(f"tile {tile_id}: the input given covers {x_origin}, but with neighbours "
                                f"{sorted(present)} the tile reads {reduced}")
            crop, origin = x, x_origin
        elif x.shape == (self.plan.input_shape[0], reduced.height, reduced.width) and x.dtype == np.float32:
            crop, origin = x, reduced
        else:
            crop, origin = self.plan.crop_input(tile_id, x), tile.input_region
        outs = execute_tile(
            self.plan, tile, crop, _resolve_engine(engine), steps=steps, provided=provided, input_origin=origin
        )
        return outs[0] if len(outs) == 1 else outs

    def run(self, tile_id: int, x: np.ndarray, neighbour_data: NeighbourData | None = None, engine: Any = None) -> Any:
        """Level-0: (output, published); level-1: output (with whatever data is given)."""
        if self.level(tile_id) == 0:
            return self.run_level0(tile_id, x, engine)
        return self.run_level1(tile_id, x, neighbour_data, engine)

    @staticmethod
    def data_for(tile_id: int, published: Mapping[int, Mapping[int, Mapping[int, np.ndarray]]]) -> dict[int, dict[int, np.ndarray]]:
        """Pick a level-1 tile's neighbour data out of {src_tile: published-by-src} (a cache)."""
        out: dict[int, dict[int, np.ndarray]] = {}
        for src, per_dest in published.items():
            if tile_id in per_dest:
                out[int(src)] = dict(per_dest[tile_id])
        return out
