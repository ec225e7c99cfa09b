"""Shared pieces of the runtime tests."""

from __future__ import annotations

import threading
from typing import Any


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
