"""Uneven grids: cell boundaries chosen so that K devices finish the tiles at the same time.

An even split gives every cell the same share of layer L-1's output, but not the same work:
a border tile needs overlap on fewer sides than an interior one, and under data reuse (WST-S)
the level-0 tiles compute their overlap while the level-1 tiles reuse it. With as many tiles
per level as devices, the slowest tile of each level sets the latency; and since an edge
runs a level-0 tile's partner next, the busiest pair of tiles. ``balanced_cuts`` moves
the boundaries (coordinate descent on the cost model's FLOPs) to minimise the makespan of a
greedy schedule of the tiles on K equal devices; ``FTP(..., cuts=...)`` takes the result.

    cuts = balanced_cuts(net, (6, 2), fused_layers=16, devices=6, reuse=True)
    plan = FTP(net, grid=(6, 2), fused_layers=16, cuts=cuts)
"""

from __future__ import annotations

import heapq
from typing import Any, Sequence

from ..errors import PlanError
from .plan import FTP

Cuts = tuple[tuple[int, ...], tuple[int, ...]]


# A data source also receives the frames, serves every steal and ships the crops: on the
# emulated testbed (0.25-core devices, 6 edges) its main and I/O threads used ~8% more CPU per
# frame than a thief's, on top of the same tile work.
SOURCE_LOAD = 0.1


def schedule_makespan(plan: FTP, devices: int, reuse: bool, source: float | None = None,
                      paired: bool = True) -> tuple[float, float]:
    """(makespan, total) in FLOPs of the plan's tiles greedily scheduled on ``devices`` equal
    devices: largest tile first to the earliest free device; under ``reuse`` the level-1 tiles
    start only once their level-0 neighbours are done (and cost their reduced FLOPs), and with
    ``paired`` a level-0 tile's partner (``ReusePlan.partners``) runs next on the same device,
    as the runtime's edges prefetch it by name; the other level-1 tiles go to whichever device
    is free first.

    ``source`` (a load s >= 0) makes device 0 the data source as the runtime runs it: it starts
    its queue's first tile (tile 0) at once and, under ``reuse``, keeps a level-1 tile: tile 0's
    partner (``paired``), else the last one, which the thieves (stealing from the front) leave
    to it; its tiles cost (1 + s) times more because it also serves the steals. None: no device
    is special (the gateway shares the tiles).
    """
    if devices < 1:
        raise PlanError(f"devices must be >= 1, got {devices}")
    if source is not None and not source >= 0:
        raise PlanError(f"source load must be >= 0, got {source}")
    cost = {t.tile_id: t for t in plan.cost(reuse=True).tiles}
    slow = [1.0 + (source or 0.0)] + [1.0] * (devices - 1) if source is not None else [1.0] * devices
    free = [(0.0, d) for d in range(devices)]
    heapq.heapify(free)

    def place(start_at: float, flops: float, device: int | None = None) -> tuple[float, int]:
        """Run a tile on ``device`` (default: the earliest free one) once it is ready."""
        if device is None:
            t, device = heapq.heappop(free)
        else:
            t = next(f for f, d in free if d == device)
            free.remove((t, device))
            heapq.heapify(free)
        end = max(t, start_at) + flops * slow[device]
        heapq.heappush(free, (end, device))
        return end, device

    rp = plan.reuse
    order0 = sorted(cost.values(), key=lambda t: -t.flops) if not reuse else \
        sorted((cost[i] for i in rp.level0), key=lambda t: -t.flops)
    pinned0 = 0 if source is not None and 0 in {t.tile_id for t in order0} else None
    done: dict[int, float] = {}
    ran_on: dict[int, int] = {}
    if pinned0 is not None:
        done[pinned0], ran_on[pinned0] = place(0.0, cost[pinned0].flops, device=0)
    for t in order0:
        if t.tile_id != pinned0:
            done[t.tile_id], ran_on[t.tile_id] = place(0.0, t.flops)
    if not reuse:
        return max(f for f, _ in free), float(sum(t.flops for t in cost.values()))
    ready = []
    for i in rp.level1:
        nbs = rp.neighbours(i).values()
        ready.append((max((done[s] for s in nbs), default=0.0), -cost[i].flops_reuse, i))
    end = max(done.values(), default=0.0)
    # level-1 tile -> the device it runs on: its level-0 partner's, or the source's
    fixed: dict[int, int] = {}
    if paired:
        fixed = {dest: ran_on[src] for src, dest in rp.partners.items()}
    elif source is not None and rp.level1:
        fixed = {rp.level1[-1]: 0}
    for r, neg, i in sorted(ready):  # in the order their inputs are ready
        e, _ = place(r, -neg, device=fixed.get(i))
        end = max(end, e)
    return end, float(sum(t.flops_reuse for t in cost.values()))


def balanced_cuts(
    net: Any,
    grid: Sequence[int],
    fused_layers: int,
    devices: int,
    reuse: bool = True,
    max_evaluations: int = 3000,
    source: float | None = None,
) -> Cuts:
    """Cell boundaries (rows, cols) on layer L-1's output that minimise the modelled makespan
    of the grid's tiles on ``devices`` devices (``reuse``: the WST-S two-level schedule;
    ``source``: device 0 is the data source, see schedule_makespan)."""
    n, m = (int(v) for v in grid)
    base = FTP(net, grid=(n, m), fused_layers=fused_layers)
    _, h, w = base.output_shape
    cuts = [list(b) for b in base.boundaries]
    cache: dict[tuple[tuple[int, ...], tuple[int, ...]], tuple[float, float]] = {}

    def score(c: list[list[int]]) -> tuple[float, float]:
        k = (tuple(c[0]), tuple(c[1]))
        if k not in cache:
            try:
                plan = FTP(net, grid=(n, m), fused_layers=fused_layers, cuts=k)
                cache[k] = schedule_makespan(plan, devices, reuse, source)
            except PlanError:
                cache[k] = (float("inf"), float("inf"))
        return cache[k]

    def moves(c: list[list[int]]):
        """Neighbouring cuts: one boundary moved by up to 3, or rows handed from one cell to
        any other along an axis (every boundary between them moves by one, so the cells in
        between keep their sizes: the busiest pair of tiles can pass work to the idlest one
        across the map, which single moves cannot do without first making a cell worse)."""
        for axis in (0, 1):
            b = c[axis]
            for i in range(1, len(b) - 1):
                for step in (1, -1, 2, -2, 3, -3):
                    yield axis, (i,), step
            cells = len(b) - 1
            for i in range(cells):
                for j in range(i + 1, cells):
                    # cell i gives a row to cell j (step -1 on boundaries i+1..j), or takes one
                    for step in (-1, 1):
                        yield axis, tuple(range(i + 1, j + 1)), step

    best = score(cuts)
    improved = True
    while improved and len(cache) < max_evaluations:
        improved = False
        for axis, idx, step in moves(cuts):
            trial = [list(cuts[0]), list(cuts[1])]
            for i in idx:
                trial[axis][i] += step
            b = trial[axis]
            if not all(b[i - 1] < b[i] < b[i + 1] for i in idx):
                continue
            s = score(trial)
            if s < best:
                best, cuts, improved = s, trial, True
                break
    return tuple(cuts[0]), tuple(cuts[1])

