"""Shared pieces of the runtime tests."""

from __future__ import annotations

import threading
from typing import Any

from conftest import DARKNET_CFGS


def yolov2_cfg_text(size: int) -> str:
    """YOLOv2's cfg with its input shrunk to size x size (keeps the tests fast; same layers)."""
    lines = []
    for line in (DARKNET_CFGS / "yolov2.cfg").read_text().splitlines():
        key = line.split("=")[0].strip()
        lines.append(f"{key}={size}" if key in ("width", "height") else line)
    return "\n".join(lines) + "\n"


def serve_until_sourced(gateway: Any, source: Any, timeout_s: float = 30.0) -> bool:
    """Serve ``gateway`` and the data-source edge ``source`` in threads until the source has
    every one of its frames answered (or ``timeout_s``); both stop either way. True if the
    source finished in time."""
    stop = threading.Event()
    threads = [threading.Thread(target=gateway.serve, args=(stop,), daemon=True),
               threading.Thread(target=source.serve, args=(stop, True), daemon=True)]
    try:
        for t in threads:
            t.start()
        threads[1].join(timeout=timeout_s)
        return not threads[1].is_alive()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)


def source_edge(grid: tuple[int, int], size: int, serve_first_s: float) -> tuple[Any, Any, Any]:
    """A WST-S data-source edge on YOLOv2 at ``size`` (no event loop: tests drive it), a
    gateway socket that only listens, and a thief's socket on its steal server; plus a frame.
    Returns (edge, thief socket, frame); destroy ``edge._ctx`` when done."""
    import numpy as np
    import zmq

    from deepthings.darknet import network_from_cfg_text
    from deepthings.runtime import transport
    from deepthings.runtime.edge import Edge, EdgeConfig
    from deepthings.runtime.model import build_workload
    from deepthings.runtime.workload import FTPWorkload

    net = network_from_cfg_text(yolov2_cfg_text(size), random_seed=0, upto=16)
    wl = FTPWorkload(net, grid, 16, reuse=True)
    edge = Edge(EdgeConfig(gateway="tcp://127.0.0.1:9", name="src", source=True, advertise_host="127.0.0.1",
                           serve_first_s=serve_first_s), None, build_workload)
    _, gw_addr = transport.server_socket(edge._ctx, zmq.ROUTER, "tcp://127.0.0.1:0", None)
    edge.gw = transport.client_socket(edge._ctx, gw_addr, None)
    thief = transport.client_socket(edge._ctx, edge.steal_addr, None)
    edge.workload, edge.schedule, edge.peer_id, edge.ready = wl, "wst-s", 1, True
    edge.queue.steal_from_front = True
    edge.link_bytes_per_s = 1e9
    x = np.random.default_rng(1).random(net.input_shape, dtype=np.float32)
    return edge, thief, x


def steal(edge: Any, thief: Any, **fields: Any) -> int:
    """Send STEAL_REQ (with ``fields``) from ``thief`` to ``edge``'s steal server, serve it,
    and return the tile of the TASK that comes back."""
    from deepthings.runtime import transport
    from deepthings.runtime.protocol import make

    transport.send(thief, make("STEAL_REQ", thief=7, **fields))
    for _ in range(200):
        edge._drain_router()
        if thief.poll(10):
            _, msg, _ = transport.recv(thief, False, "victim")
            assert msg is not None and msg.type == "TASK"
            return msg["tile"]
    raise AssertionError("the source never answered the steal")
