"""Per-tile runtime overhead of the distributed runtime on loopback (YOLOv2, 5x5 FTP tiles).

What it measures, in one run:
  * compute_s  : the edge's own time to run the tile (reported by the edge),
  * rtt_s      : gateway sends TASK -> gateway has decoded the RESULT (work sharing, 1 edge,
                 so every task is pushed by the gateway and timed there),
  * overhead   : rtt_s - compute_s - time queued behind the running tile = dispatch on the
                 edge + transport + (de)serialisation both ways + CURVE, per tile, in ms and as %
                 of the tile's compute,
  * the peer   : the same tile run in this process with no runtime at all (plan.run_tile), so
                 the ratio distributed/local is measured against a peer in the same run.

    python benchmarks/runtime_overhead.py [--size 608] [--frames 3] [--grid 5x5] [--insecure]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def yolov2_cfg(size: int, out_dir: Path) -> Path:
    text = (SHARED / "models" / "darknet" / "yolov2.cfg").read_text()
    lines = [f"{l.split('=')[0].strip()}={size}" if l.split("=")[0].strip() in ("width", "height") else l
             for l in text.splitlines()]
    path = out_dir / f"yolov2-{size}.cfg"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=608, help="YOLOv2 input size (default 608)")
    ap.add_argument("--frames", type=int, default=3, help="timed frames (after one warm-up frame)")
    ap.add_argument("--grid", default="5x5")
    ap.add_argument("--fused", type=int, default=16)
    ap.add_argument("--insecure", action="store_true", help="no CURVE (measures its share of the overhead)")
    args = ap.parse_args()
    grid = tuple(int(v) for v in args.grid.lower().split("x"))

    from deepthings.darknet import load_darknet
    from deepthings.engine import native
    from deepthings.runtime.cluster import Cluster
    from deepthings.runtime.workload import FTPWorkload

    tmp = Path(tempfile.mkdtemp(prefix="dt-bench-"))
    cfg = yolov2_cfg(args.size, tmp)
    net = load_darknet(cfg, random_seed=0)
    rng = np.random.default_rng(0)
    xs = [rng.random(net.input_shape, dtype=np.float32) for _ in range(args.frames + 1)]

    # peer: the same tiles in this process, one native thread (like the edge), no runtime
    native.set_num_threads(1)
    wl = FTPWorkload(net, grid, args.fused)
    local: dict[int, list[float]] = {t: [] for t in range(wl.n_tiles)}
    for x in xs[1:]:
        for t in range(wl.n_tiles):
            crop = wl.crop(x, t)
            t0 = time.perf_counter()
            wl.run(t, crop)
            local[t].append(time.perf_counter() - t0)

    rows = []
    with Cluster(cfg, random_seed=0, edges=1, grid=grid, fused_layers=args.fused, schedule="wsh", sources=0,
                 threads_per_edge=1, secure=not args.insecure) as c:
        c.infer(xs[0])  # warm-up: weights packed, sockets and CURVE sessions up
        results = c.infer_many(xs[1:], window=1)
    for r in results:
        for tr in r.trace.tiles:
            rows.append(tr)

    comp = [t["compute_s"] for t in rows]
    # the edge prefetches one task under work sharing: time queued behind the running tile is
    # waiting for compute, not runtime overhead, so it is taken out (and reported apart)
    over = [t["rtt_s"] - t["compute_s"] - t.get("queue_s", 0.0) for t in rows]
    queue = [t.get("queue_s", 0.0) for t in rows]
    in_b = [t.get("input_bytes", 0) for t in rows]
    out_b = [t.get("result_bytes", 0) for t in rows]
    local_all = [v for vs in local.values() for v in vs]
    med = statistics.median
    print(f"YOLOv2 {args.size}x{args.size}, layers 0..{args.fused - 1}, grid {grid[0]}x{grid[1]}, "
          f"{len(rows)} tiles over {len(results)} frames, loopback, CURVE {'off' if args.insecure else 'on'}, 1 thread")
    print(f"  tile input  : median {med(in_b) / 1e3:.0f} kB   result: median {med(out_b) / 1e3:.0f} kB")
    print(f"  compute     : median {med(comp) * 1e3:.1f} ms on the edge, {med(local_all) * 1e3:.1f} ms in-process peer "
          f"(edge/peer = {med(comp) / med(local_all):.2f}x)")
    print(f"  overhead    : median {med(over) * 1e3:.2f} ms, p90 {np.percentile(over, 90) * 1e3:.2f} ms, "
          f"max {max(over) * 1e3:.2f} ms per tile (not counted: median {med(queue) * 1e3:.2f} ms queued behind the running tile)")
    print(f"  overhead as % of the tile's compute: median {100 * med(o / c for o, c in zip(over, comp)):.2f} %, "
          f"total {100 * sum(over) / sum(comp):.2f} %")
    tiles_phase = [r.trace.stages["tiles_s"] for r in results]
    peer_frame = [sum(local[t][i] for t in local) for i in range(len(results))]
    print(f"  a frame's tile phase on the cluster (gateway: submit -> last tile result) {med(tiles_phase) * 1e3:.0f} ms "
          f"vs the same tiles back to back in this process {med(peer_frame) * 1e3:.0f} ms: "
          f"{med(tiles_phase) / med(peer_frame):.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
