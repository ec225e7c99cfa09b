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
