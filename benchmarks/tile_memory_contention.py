"""How much more the FTP tiles suffer than the whole frame when another core streams memory.

On the emulated testbed six device processes share two cores, one L3 and one memory bus,
while the one-device baseline runs alone: the tiles' CPU time grows there by 1.2-1.5x. A thin
tile reads every layer's (Winograd) weights once more, where the whole frame reads them once
for many rows, so the tiles lean harder on the memory system. This measures it in one run, on
one thread each, on core 0:

  * quiet : the whole frame (``net.forward``) and all WST-S tiles of the grid (level 0, then
            level 1 with its neighbours' data), best of ``--reps``;
  * loaded: the same while a NumPy copy loop streams 200 MB on core 1;

and prints time(loaded) / time(quiet) for both, and the tiles / whole-frame ratio in each.

    python benchmarks/tile_memory_contention.py [--grid 12x1] [--size 608] [--reps 5]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

try:
    import deepthings  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

SHARED = Path(os.environ.get("DEEPTHINGS_SHARED", Path(__file__).resolve().parent.parent.parent / "shared"))


def _stream(stop: "mp.synchronize.Event") -> None:
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {1})
    a = np.ones(25_000_000, np.float32)
    b = np.empty_like(a)
    while not stop.is_set():
        np.copyto(b, a)


def main() -> int:
    from deepthings.darknet import network_from_cfg_text
    from deepthings.engine.native import NativeEngine, set_num_threads
    from deepthings.ftp import FTP
    from deepthings.ftp.balance import SOURCE_LOAD, balanced_cuts
    from deepthings.testbed.experiments import truncated_cfg

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", default="12x1")
    p.add_argument("--size", type=int, default=608)
    p.add_argument("--fused", type=int, default=16)
    p.add_argument("--devices", type=int, default=6, help="balance the cuts for this many devices")
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    if (os.cpu_count() or 1) < 2:
        print("needs two cores (the tiles on one, the memory stream on the other)", file=sys.stderr)
        return 1
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    set_num_threads(1)
    grid = tuple(int(v) for v in args.grid.lower().split("x"))
    cfg = SHARED / "models" / "darknet" / "yolov2.cfg"
    net = network_from_cfg_text(truncated_cfg(str(cfg), args.fused, args.size), random_seed=1)
    cuts = balanced_cuts(net, grid, args.fused, args.devices, source=SOURCE_LOAD)
    plan = FTP(net, grid=grid, fused_layers=args.fused, cuts=cuts)
    rp, eng = plan.reuse, NativeEngine()
    x = np.random.default_rng(0).random(net.input_shape, dtype=np.float32)

    def whole() -> None:
        net.forward(x, engine=eng)

    def tiles() -> None:
        published = {}
        for t in rp.level0:
            _, published[t] = rp.run_level0(t, x, eng)
        for t in rp.level1:
            rp.run_level1(t, x, rp.data_for(t, published), eng)

    def best(fn) -> float:
        fn()
        out = float("inf")
        for _ in range(args.reps):
            t0 = time.perf_counter()
            fn()
            out = min(out, time.perf_counter() - t0)
        return out

    quiet = {"whole frame": best(whole), "tiles": best(tiles)}
    stop = mp.Event()
    streamer = mp.Process(target=_stream, args=(stop,), daemon=True)
    streamer.start()
    time.sleep(1.0)
    try:
        loaded = {"whole frame": best(whole), "tiles": best(tiles)}
    finally:
        stop.set()
        streamer.join(10)
    print(f"YOLOv2 layers 0..{args.fused - 1} at {args.size}, grid {args.grid} (cuts {cuts}), one thread")
    for k in quiet:
        print(f"  {k:12s} quiet {quiet[k] * 1e3:7.1f} ms   loaded {loaded[k] * 1e3:7.1f} ms   "
              f"loaded/quiet {loaded[k] / quiet[k]:.2f}")
    print(f"  tiles / whole frame: quiet {quiet['tiles'] / quiet['whole frame']:.2f}, "
          f"loaded {loaded['tiles'] / loaded['whole frame']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
