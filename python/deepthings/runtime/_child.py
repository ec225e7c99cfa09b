"""Entry point of the gateway and edge processes a local :class:`~deepthings.runtime.Cluster`
starts: ``python -m deepthings.runtime._child`` reads one pickled job from stdin and runs it
until stdin closes (the parent stopped the cluster, or died: no orphan outlives its parent).

A fresh interpreter instead of multiprocessing, so the caller's script is never re-imported in
the children (no ``if __name__ == "__main__"`` guard needed around ``Cluster(...)``).
"""

from __future__ import annotations

import logging
import pickle
import signal
import sys
import threading
from typing import Any


def _watch_stdin(stop: threading.Event) -> None:
    try:
        while sys.stdin.buffer.read(65536):
            pass
    except Exception:
        pass
    stop.set()


def main() -> int:
    job: dict[str, Any] = pickle.load(sys.stdin.buffer)
    # Ctrl-C in a terminal reaches the whole process group: the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if job.get("log_level") is not None:
        logging.basicConfig(level=job["log_level"],
                            format=f"%(asctime)s {job.get('name', job['role'])} %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    threading.Thread(target=_watch_stdin, args=(stop,), name="stdin-watch", daemon=True).start()
    from deepthings.runtime.keys import ClusterKey

    key = None if job["key"] is None else ClusterKey(*job["key"])
    if job["role"] == "gateway":
        from deepthings.runtime.cluster import run_gateway

        def ready(endpoint: str) -> None:
            print(f"READY {endpoint}", flush=True)

        try:
            run_gateway(job["desc"], job["grid"], job["fused_layers"], job["config"], key, ready, stop)
        except Exception as exc:
            print(f"ERROR {type(exc).__name__}: {exc}".replace("\n", " "), flush=True)
            raise
        return 0
    from deepthings.runtime.edge import Edge
    from deepthings.runtime.model import build_workload

    Edge(job["config"], key, build_workload).serve(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
