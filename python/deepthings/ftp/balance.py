"""Uneven grids: cell boundaries chosen so that K devices finish the tiles at the same time.

An even split gives every cell the same share of layer L-1's output, but not the same work:
a border tile needs overlap on fewer sides than an interior one, and under data reuse (WST-S)
the level-0 tiles compute their overlap while the level-1 tiles reuse it. With as many tiles
per level as devices, the slowest tile of each level sets the latency. ``balanced_cuts`` moves
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


def schedule_makespan(plan: FTP, devices: int, reuse: bool) -> tuple[float, float]:
    """(makespan, total) in FLOPs of the plan's tiles greedily scheduled on ``devices`` equal
    devices: largest tile first to the earliest free device; under ``reuse`` the level-1 tiles
    start only once their level-0 neighbours are done (and cost their reduced FLOPs)."""
    if devices < 1:
        raise PlanError(f"devices must be >= 1, got {devices}")
    cost = plan.cost(reuse=True).tiles
    free = [0.0] * devices
    heapq.heapify(free)
    if not reuse:
        for f in sorted((t.flops for t in cost), reverse=True):
            heapq.heappush(free, heapq.heappop(free) + f)
        return max(free), float(sum(t.flops for t in cost))
    done: dict[int, float] = {}
    for t in sorted((t for t in cost if t.level == 0), key=lambda t: -t.flops):
        done[t.tile_id] = heapq.heappop(free) + t.flops
        heapq.heappush(free, done[t.tile_id])
    rp = plan.reuse
    ready = []
    for t in cost:
        if t.level == 1:
            nbs = rp.neighbours(t.tile_id).values()
            ready.append((max((done[s] for s in nbs), default=0.0), -t.flops_reuse, t.tile_id))
    end = max(done.values(), default=0.0)
    for r, neg, tid in sorted(ready):
        start = max(heapq.heappop(free), r)
        end = max(end, start - neg)
        heapq.heappush(free, start - neg)
    return end, float(sum(t.flops_reuse for t in cost))


def balanced_cuts(
    net: Any,
    grid: Sequence[int],
    fused_layers: int,
    devices: int,
    reuse: bool = True,
    max_evaluations: int = 400,
) -> Cuts:
    """Cell boundaries (rows, cols) on layer L-1's output that minimise the modelled makespan
    of the grid's tiles on ``devices`` devices (``reuse``: the WST-S two-level schedule)."""
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
                cache[k] = schedule_makespan(plan, devices, reuse)
            except PlanError:
                cache[k] = (float("inf"), float("inf"))
        return cache[k]

    best = score(cuts)
    improved = True
    while improved and len(cache) < max_evaluations:
        improved = False
        for axis, size in ((0, h), (1, w)):
            for i in range(1, len(cuts[axis]) - 1):
                for step in (1, -1, 2, -2, 3, -3):
                    trial = [list(cuts[0]), list(cuts[1])]
                    trial[axis][i] += step
                    if not trial[axis][i - 1] < trial[axis][i] < trial[axis][i + 1]:
                        continue
                    s = score(trial)
                    if s < best:
                        best, cuts, improved = s, trial, True
                        break
    return tuple(cuts[0]), tuple(cuts[1])

