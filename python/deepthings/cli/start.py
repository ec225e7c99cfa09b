"""`deepthings start`: a whole cluster on this machine (gateway + K edges as processes), run
frames through it and print the results, the tile map and the timing.

Useful to try a model/grid/schedule before deploying edges on real devices; the processes are
stopped when it finishes (or on Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from deepthings.cli._args import parse_grid
from deepthings.runtime.scheduler import SCHEDULES


def register(subparsers: Any) -> None:
    """Add the `start` subcommand."""
    p = subparsers.add_parser("start", help="start a local cluster and run frames through it", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="*", metavar="IMAGE", help="images or directories (default: the sample image)")
    p.add_argument("--model", default="default", metavar="default|CFG", help="'default' (Yolo-Fastest 1.1) or a .cfg")
    p.add_argument("--weights", metavar="W", help=".weights for --model CFG (default: random weights)")
    p.add_argument("--edges", type=int, default=3, metavar="K", help="edge processes (3)")
    p.add_argument("--sources", type=int, default=1, metavar="S", help="how many edges are data sources (1)")
    p.add_argument("--grid", type=parse_grid, default=(3, 3), metavar="NxM", help="FTP grid (3x3)")
    p.add_argument("--fused", type=int, default=None, metavar="L", help="fused layers (default: up to 16)")
    p.add_argument("--schedule", default="wst-s", choices=list(SCHEDULES), help="scheduling (wst-s)")
    p.add_argument("--frames", type=int, default=None, metavar="N", help="frames to run (default: one per image)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="native threads per edge (1)")
    p.add_argument("--json", action="store_true", help="one JSON line per frame instead of text")
    p.add_argument("--verbose", "-v", action="count", default=argparse.SUPPRESS,
                   help="more log output (-v shows the steal traffic, -vv everything)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from deepthings.cli.edge import source_images
    from deepthings.runtime.cluster import Cluster

    if args.images:
        images = [str(p) for p in source_images(args.images)]
    else:
        from deepthings.data import sample_image_path

        images = [str(sample_image_path())]
    count = args.frames if args.frames is not None else len(images)
    frames = [images[i % len(images)] for i in range(count)]
    level = logging.getLogger().getEffectiveLevel()
    t0 = time.perf_counter()
    with Cluster(args.model, edges=args.edges, grid=args.grid, fused_layers=args.fused, schedule=args.schedule,
                 weights=args.weights, sources=args.sources, threads_per_edge=args.threads,
                 log_level=level if level < logging.WARNING else None) as cluster:
        t_up = time.perf_counter() - t0
        if not args.json:
            print(f"cluster up in {t_up:.1f} s: gateway {cluster.address}, {args.edges} edges, "
                  f"grid {args.grid[0]}x{args.grid[1]}, schedule {args.schedule}")
        t1 = time.perf_counter()
        results = cluster.infer_many(frames)
        wall = time.perf_counter() - t1
    for i, (path, r) in enumerate(zip(frames, results)):
        dets = r.detections or []
        if args.json:
            print(json.dumps({
                "index": i, "image": path, "frame": r.trace.frame, "latency_s": r.trace.stages.get("total_s"),
                "stolen_tiles": r.trace.stolen_tiles, "bytes": r.trace.bytes,
                "detections": [{"label": d.label, "score": round(float(d.score), 4),
                                "box": [round(float(v), 1) for v in (d.x1, d.y1, d.x2, d.y2)]} for d in dets],
            }))
            continue
        print(f"\nframe {i} ({Path(path).name}): {r.trace.stages.get('total_s', 0) * 1e3:.0f} ms, "
              f"{len(r.trace.stolen_tiles)} stolen tile(s), {r.trace.bytes_sent / 1e6:.2f} MB through the gateway")
        print("device per tile (* = stolen):")
        print(r.trace.device_map(args.grid[1]))
        for d in dets:
            print(f"  {d.label:<14} {d.score:.2f}  ({d.x1:.0f}, {d.y1:.0f}) - ({d.x2:.0f}, {d.y2:.0f})")
    if not args.json:
        print(f"\n{len(frames)} frame(s) in {wall:.2f} s ({len(frames) / wall:.2f} FPS)")
    return 0
