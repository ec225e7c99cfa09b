"""What one distributed inference returns: the outputs, detections, and a trace of where the
time and the bytes went (per stage, per tile: which device, stolen or local, bytes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Trace:
    """Per-frame story. ``stages`` are seconds (client side: preprocess_s, roundtrip_s, decode_s;
    gateway side: tiles_s, merge_s, gateway_total_s); ``tiles`` has one dict per tile with
    device, device_name, stolen, compute_s, cpu_s, level, reused, queue_s, input_bytes, result_bytes;
    ``events`` are (t_s, tile, event, peer, detail) rows from the gateway's event log. On the
    wire the gateway also sends ``clock`` (its CLOCK_MONOTONIC at the frame's SUBMIT and at
    the merged output), which only means something to processes on the gateway's host."""

    frame: int
    stages: dict[str, float] = field(default_factory=dict)
    tiles: list[dict[str, Any]] = field(default_factory=list)
    bytes: dict[str, int] = field(default_factory=dict)
    events: list[list[Any]] = field(default_factory=list)
    reissues: int = 0

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> "Trace":
        return cls(
            frame=int(d.get("frame", -1)),
            stages={k: float(v) for k, v in d.get("stages", {}).items()},
            tiles=list(d.get("tiles", [])),
            bytes={k: int(v) for k, v in d.get("bytes", {}).items()},
            events=list(d.get("events", [])),
            reissues=int(d.get("reissues", 0)),
        )

    def devices(self) -> dict[int, int]:
        """tile -> id of the device that computed it."""
        return {t["tile"]: t["device"] for t in self.tiles if "device" in t}

    @property
    def stolen_tiles(self) -> list[int]:
        return [t["tile"] for t in self.tiles if t.get("stolen")]

    @property
    def bytes_sent(self) -> int:
        """Payload bytes moved for this frame: through the gateway (in + out) plus the inputs of
        stolen tiles, which go from victim to thief directly."""
        return int(sum(self.bytes.values()))

    def device_map(self, cols: int) -> str:
        """The grid with the device id of each tile (``*`` marks stolen tiles)."""
        rows = []
        by_tile = {t["tile"]: t for t in self.tiles}
        for r in range((len(by_tile) + cols - 1) // cols):
            cells = []
            for c in range(cols):
                t = by_tile.get(r * cols + c)
                cells.append("  ." if t is None else f"{t.get('device', '?'):>2}{'*' if t.get('stolen') else ' '}")
            rows.append(" ".join(cells))
        return "\n".join(rows)


@dataclass
class InferenceResult:
    """``output``: the network's last layer; ``outputs``: {layer index: array} (heads + last);
    ``detections``: decoded objects when the net has a region/yolo head (else None)."""

    output: np.ndarray
    outputs: dict[int, np.ndarray]
    detections: list[Any] | None
    trace: Trace
