"""MoDNN (Mao et al., DATE 2017) as DeepThings compared against it: Biased One-Dimensional
Partition (BODP) of every layer's output into horizontal strips sized by device speed, work
sharing, and a layer-by-layer exchange of boundary rows through the gateway.

This module is the pure part: the partition, what each device computes per layer, which rows
it must export and import after each layer, and an in-process execution of exactly that data
flow (``run_local``) that the tests compare with the single-device forward pass. The
networked gateway/worker pair lives in ``modnn_net.py``.

Per frame and device d, with ``own[l][d]`` the rows of layer l's output that d computes::

    gateway --input rows need[0][d]--> d
    for l in fused layers:
        d computes own[l][d] from its input rows need[l][d]
        if l is not the last: d --rows of own[l][d] others need--> gateway
                              gateway --need[l+1][d] minus own[l][d]--> d
    d --own[L-1][d]--> gateway, which stitches the output of layer L-1
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from deepthings.errors import PlanError

Rows = tuple[int, int]  # half-open [lo, hi) range of rows


def bodp_rows(height: int, speeds: Sequence[float]) -> list[Rows]:
    """Split `height` rows into consecutive strips proportional to `speeds` (largest remainder).

    A device may get an empty strip when the map has fewer rows than devices.
    """
    if height < 0:
        raise PlanError(f"height must be >= 0, got {height}")
    if not speeds or any(not (s > 0) for s in speeds):
        raise PlanError(f"device speeds must be positive, got {list(speeds)}")
    total = float(sum(speeds))
    exact = [height * s / total for s in speeds]
    counts = [int(np.floor(e)) for e in exact]
    left = height - sum(counts)
    # Ties go to the earlier device, so the split is deterministic.
    order = sorted(range(len(speeds)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[:left]:
        counts[i] += 1
    rows, lo = [], 0
    for c in counts:
        rows.append((lo, lo + c))
        lo += c
    return rows


def _intersect(a: Rows, b: Rows) -> Rows | None:
    lo, hi = max(a[0], b[0]), min(a[1], b[1])
    return (lo, hi) if lo < hi else None


def _subtract(a: Rows, b: Rows) -> list[Rows]:
    """Rows of a that are not in b, as up to two ranges."""
    if a[0] >= a[1]:
        return []
    if b[0] >= b[1] or b[1] <= a[0] or b[0] >= a[1]:
        return [a]
    out = []
    if a[0] < b[0]:
        out.append((a[0], b[0]))
    if b[1] < a[1]:
        out.append((b[1], a[1]))
    return out


def _merge(ranges: list[Rows]) -> list[Rows]:
    out: list[Rows] = []
    for lo, hi in sorted(r for r in ranges if r[0] < r[1]):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


@dataclass(frozen=True)
class StripStep:
    """What one device does for one layer."""

    out_rows: Rows  # rows of the layer's output it computes
    in_rows: Rows  # rows of the layer's input it reads (clamped to the map)
    pad: tuple[int, int, int, int]  # explicit padding for run_layer (top, left, bottom, right)

    @property
    def empty(self) -> bool:
        return self.out_rows[0] >= self.out_rows[1]


@dataclass
class ModnnPlan:
    """BODP over the first `fused_layers` layers of `net` for devices of the given speeds."""

    net: Any
    fused_layers: int
    speeds: list[float]
    steps: list[list[StripStep]] = field(default_factory=list)  # [layer][device]

    @property
    def devices(self) -> int:
        return len(self.speeds)

    def exports(self, layer: int, device: int) -> list[Rows]:
        """Rows of `layer`'s output that `device` computed and other devices need next."""
        own = self.steps[layer][device].out_rows
        wanted = []
        for e in range(self.devices):
            if e == device:
                continue
            for miss in self.imports(layer, e):
                hit = _intersect(own, miss)
                if hit:
                    wanted.append(hit)
        return _merge(wanted)

    def imports(self, layer: int, device: int) -> list[Rows]:
        """Rows of `layer`'s output that `device` needs for layer+1 but did not compute."""
        if layer + 1 >= self.fused_layers:
            return []
        nxt = self.steps[layer + 1][device]
        if nxt.empty:
            return []
        return _subtract(nxt.in_rows, self.steps[layer][device].out_rows)

    def input_rows(self, device: int) -> Rows:
        """Rows of the network input the gateway sends `device` per frame."""
        return self.steps[0][device].in_rows

    def exchange_bytes(self) -> dict[str, int]:
        """Float32 bytes per frame: input scatter, boundary rows up and down, results gathered."""
        c0, _h0, w0 = self.net.input_shape
        scatter = sum(max(0, s.in_rows[1] - s.in_rows[0]) for s in self.steps[0]) * c0 * w0 * 4
        up = down = 0
        for l in range(self.fused_layers - 1):
            c, _h, w = self.net.layers[l].out_shape
            for d in range(self.devices):
                up += sum(hi - lo for lo, hi in self.exports(l, d)) * c * w * 4
                down += sum(hi - lo for lo, hi in self.imports(l, d)) * c * w * 4
        c, h, w = self.net.layers[self.fused_layers - 1].out_shape
        return {"scatter": scatter, "boundary_up": up, "boundary_down": down, "gather": c * h * w * 4}

    def flops(self, device: int) -> int:
        """Multiply-adds x 2 device `device` performs per frame (its strips of every layer)."""
        total = 0
        for l in range(self.fused_layers):
            layer = self.net.layers[l]
            rows = self.steps[l][device].out_rows
            total += int(layer.flops() * (rows[1] - rows[0]) / layer.out_shape[1])
        return total

    # ------------------------------------------------------------------ execution
    def run_strip(self, layer: int, device: int, x: np.ndarray, engine: Any = None) -> np.ndarray:
        """Output rows `steps[layer][device].out_rows` from exactly the input rows `in_rows`."""
        from deepthings.engine import get_engine

        step = self.steps[layer][device]
        want = step.in_rows[1] - step.in_rows[0]
        if x.shape[1] != want:
            raise PlanError(
                f"layer {layer} device {device}: strip input has {x.shape[1]} rows, expected {want}"
            )
        lyr = self.net.layers[layer]
        pad = step.pad if lyr.spatial.kind == "window" else None
        return get_engine(engine).run_layer(lyr, [np.ascontiguousarray(x)], pad=pad)

    def assemble_input(
        self, layer: int, device: int, own: np.ndarray, received: dict[Rows, np.ndarray]
    ) -> np.ndarray:
        """Input rows of `layer` (>= 1) for `device` from its own previous strip + imported rows."""
        step = self.steps[layer][device]
        prev = self.steps[layer - 1][device].out_rows
        lo, hi = step.in_rows
        c, _h, w = self.net.layers[layer - 1].out_shape
        buf = np.empty((c, hi - lo, w), dtype=np.float32)
        covered = np.zeros(hi - lo, dtype=bool)
        mine = _intersect(step.in_rows, prev)
        if mine:
            buf[:, mine[0] - lo : mine[1] - lo] = own[:, mine[0] - prev[0] : mine[1] - prev[0]]
            covered[mine[0] - lo : mine[1] - lo] = True
        for (rlo, rhi), rows in received.items():
            part = _intersect((rlo, rhi), step.in_rows)
            if part:
                buf[:, part[0] - lo : part[1] - lo] = rows[:, part[0] - rlo : part[1] - rlo]
                covered[part[0] - lo : part[1] - lo] = True
        if not covered.all():
            missing = np.flatnonzero(~covered) + lo
            raise PlanError(f"layer {layer} device {device}: input rows {missing.tolist()} never arrived")
        return buf

    def stitch(self, strips: Sequence[np.ndarray]) -> np.ndarray:
        """The full output of layer L-1 from every device's last strip."""
        last = self.fused_layers - 1
        c, h, w = self.net.layers[last].out_shape
        out = np.empty((c, h, w), dtype=np.float32)
        for d, strip in enumerate(strips):
            lo, hi = self.steps[last][d].out_rows
            if hi > lo:
                out[:, lo:hi] = strip
        return out

    def run_local(self, x: np.ndarray, engine: Any = None) -> tuple[np.ndarray, dict[str, int]]:
        """Execute the MoDNN data flow in one process; returns (layer L-1 output, bytes moved).

        The exchanges go through a gateway-side copy of each layer's boundary rows, exactly
        as the networked version does, so this checks the plan's exports/imports too.
        """
        moved = {"scatter": 0, "boundary_up": 0, "boundary_down": 0, "gather": 0}
        own: list[np.ndarray] = []
        for d in range(self.devices):
            lo, hi = self.input_rows(d)
            part = np.ascontiguousarray(x[:, lo:hi])
            moved["scatter"] += part.nbytes
            own.append(self.run_strip(0, d, part, engine) if not self.steps[0][d].empty else part[:, :0])
        for layer in range(1, self.fused_layers):
            prev = layer - 1
            c, h, w = self.net.layers[prev].out_shape
            gateway_rows = np.full((c, h, w), np.nan, dtype=np.float32)  # NaN: never sent
            for d in range(self.devices):
                plo = self.steps[prev][d].out_rows[0]
                for lo, hi in self.exports(prev, d):
                    gateway_rows[:, lo:hi] = own[d][:, lo - plo : hi - plo]
                    moved["boundary_up"] += own[d][:, lo - plo : hi - plo].nbytes
            nxt = []
            for d in range(self.devices):
                if self.steps[layer][d].empty:
                    nxt.append(np.empty((self.net.layers[layer].out_shape[0], 0, w), np.float32))
                    continue
                received = {}
                for lo, hi in self.imports(prev, d):
                    received[(lo, hi)] = gateway_rows[:, lo:hi].copy()
                    moved["boundary_down"] += received[(lo, hi)].nbytes
                xin = self.assemble_input(layer, d, own[d], received)
                nxt.append(self.run_strip(layer, d, xin, engine))
            own = nxt
        out = self.stitch(own)
        moved["gather"] = out.nbytes
        return out, moved


def _window_rows(layer: Any, rows: Rows, in_h: int) -> tuple[Rows, int, int]:
    """Input rows an output strip reads, clamped, and the top/bottom padding that replaces the rest."""
    kh, _kw = layer.spatial.kernel
    sh, _sw = layer.spatial.stride
    top = layer.spatial.pad[0]
    lo_raw = rows[0] * sh - top
    hi_raw = (rows[1] - 1) * sh - top + kh
    lo, hi = max(0, lo_raw), min(in_h, hi_raw)
    return (lo, hi), lo - lo_raw, hi_raw - hi


def modnn_plan(net: Any, fused_layers: int, speeds: Sequence[float] | int) -> ModnnPlan:
    """BODP plan: each of the first `fused_layers` layers split in strips sized by `speeds`.

    `speeds` is a list of relative device speeds, or a device count (equal speeds). Only
    chains of window (conv, maxpool) and single-input pointwise layers can be split in rows;
    anything else raises PlanError naming the layer.
    """
    if isinstance(speeds, int):
        speeds = [1.0] * speeds
    speeds = [float(s) for s in speeds]
    if not 1 <= fused_layers <= len(net.layers):
        raise PlanError(f"fused_layers={fused_layers} outside 1..{len(net.layers)} for {net.cfg_path}")
    plan = ModnnPlan(net=net, fused_layers=fused_layers, speeds=speeds)
    for l in range(fused_layers):
        layer = net.layers[l]
        kind = layer.spatial.kind
        where = f"layer {l} [{layer.type}] of {net.cfg_path}"
        if tuple(layer.inputs) != (l - 1,):
            raise PlanError(f"MoDNN splits only layer chains: {where} reads layers {tuple(layer.inputs)}")
        if kind not in ("window", "pointwise"):
            raise PlanError(f"MoDNN cannot split {where} by rows (spatial kind {kind!r})")
        in_h = layer.in_shapes[0][1]
        _c, out_h, _w = layer.out_shape
        steps = []
        for rows in bodp_rows(out_h, speeds):
            if rows[0] >= rows[1]:
                steps.append(StripStep(rows, (0, 0), (0, 0, 0, 0)))
            elif kind == "window":
                in_rows, ptop, pbot = _window_rows(layer, rows, in_h)
                _t, left, _b, right = layer.spatial.pad
                steps.append(StripStep(rows, in_rows, (ptop, left, pbot, right)))
            else:
                steps.append(StripStep(rows, rows, (0, 0, 0, 0)))
        plan.steps.append(steps)
    return plan
