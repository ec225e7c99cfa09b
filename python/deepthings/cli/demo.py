"""`deepthings demo`: find objects in the sample photo with a local cluster, and on one device.

Starts a gateway + 3 edges on this machine (loopback), runs the embedded Yolo-Fastest 1.1 on
the shipped dog.jpg distributed with Fused Tile Partitioning and on this one device, and shows
the detections, which device ran which tile, where the time went and the speedup. The annotated
image goes to ./deepthings-demo/ (or --out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from deepthings.cli._args import parse_grid
from deepthings.runtime.scheduler import SCHEDULES
from deepthings.cli.detect import add_model_arguments, cluster_log_level, load_model, result_detections
from deepthings.errors import DeepthingsError


def register(subparsers: Any) -> None:
    """Add the `demo` subcommand."""
    p = subparsers.add_parser(
        "demo",
        help="objects in a photo, found by a local cluster of 3 edges and by one device",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--image", type=Path, default=None, help="photo to use (default: the shipped dog.jpg)")
    p.add_argument("--edges", type=int, default=3, help="edge devices in the local cluster (default 3)")
    p.add_argument("--grid", type=parse_grid, default=(3, 3), metavar="NxM", help="FTP grid (default 3x3)")
    p.add_argument("--fused", type=int, default=16, metavar="L", help="fused layers (default 16)")
    p.add_argument("--schedule", default="wst", choices=list(SCHEDULES),
                   help="cluster scheduling: wst = DeepThings' work stealing (default), wst-s = with "
                        "data reuse through the gateway, wst-sp = with data reuse peer to peer, wsh = work sharing")
    p.add_argument("--frames", type=int, default=5,
                   help="timed frames per mode after one warm-up (median reported; default 5)")
    p.add_argument("--thresh", type=float, default=0.25, help="class probability threshold (0.25)")
    p.add_argument("--nms", type=float, default=0.45, help="NMS IoU threshold (0.45)")
    add_model_arguments(p)
    p.add_argument("--out", type=Path, default=Path("deepthings-demo"), metavar="DIR",
                   help="where the annotated image, detections.json and trace.json go")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run `deepthings demo`."""
    from rich.console import Console

    from deepthings.data import sample_image_path
    from deepthings.detect import detect, save_annotated, to_json
    from deepthings.engine.preprocess import load_image
    from deepthings.runtime.cluster import Cluster

    console = Console(highlight=False)
    if args.edges < 1:
        raise DeepthingsError(f"--edges must be at least 1, got {args.edges}")
    if args.frames < 1:
        raise DeepthingsError(f"--frames must be at least 1, got {args.frames}")
    image = args.image or sample_image_path()
    rgb = load_image(image)
    net, names = load_model(args)
    n, m = args.grid
    console.rule("[bold]deepthings demo")
    console.print(f"model  {Path(net.cfg_path).name}: {len(net.layers)} layers, input "
                  f"{net.input_shape[2]}x{net.input_shape[1]}, {net.flops() / 1e9:.2f} GFLOP")
    console.print(f"image  {image} ({rgb.shape[1]}x{rgb.shape[0]})")

    # One device: this process, the native engine on one thread (each edge also runs one
    # thread), no network in between.
    from deepthings.engine import native

    threads = native.get_num_threads()
    native.set_num_threads(1)
    try:
        single_s, single = _timed(lambda: detect(net, rgb, args.thresh, args.nms, names=names), args.frames)
    finally:
        native.set_num_threads(threads)

    # The cluster: gateway + edges as local processes on loopback.
    with console.status(f"starting a local cluster: gateway + {args.edges} edges ..."):
        t0 = time.perf_counter()
        cluster = Cluster(net, edges=args.edges, grid=(n, m), fused_layers=args.fused, schedule=args.schedule,
                          thresh=args.thresh, nms=args.nms, log_level=cluster_log_level(args))
        cluster.__enter__()
    try:
        startup_s = time.perf_counter() - t0
        results: list[Any] = []

        def distributed() -> list:
            r = cluster.infer(rgb)
            results.append(r)
            return result_detections(r, net, (rgb.shape[1], rgb.shape[0]), args.thresh, args.nms, False, names)

        with console.status(f"running {args.frames + 1} frame(s) on the cluster ..."):
            dist_s, dist = _timed(distributed, args.frames)
    finally:
        cluster.__exit__(None, None, None)
    trace = _trace_dict(results[-1])

    console.print(f"cluster  gateway + {args.edges} edges on 127.0.0.1, {n}x{m} tiles over layers "
                  f"0..{args.fused - 1}, schedule {args.schedule} (started in {startup_s:.1f} s)")
    _print_plan(console, net, (n, m), args.fused)
    console.print()
    _print_detections(console, dist)
    same = _same_detections(single, dist)
    console.print(f"distributed result identical to the single-device one: "
                  f"{'[green]yes[/green]' if same else '[red]NO[/red]'}")
    console.print()
    _print_tile_map(console, trace, (n, m), reuse=args.schedule in ("wst-s", "wst-sp"))
    console.print()
    _print_timing(console, trace, single_s, dist_s, args.frames)

    args.out.mkdir(parents=True, exist_ok=True)
    suffix = Path(image).suffix.lower() if Path(image).suffix.lower() in (".jpg", ".jpeg", ".png") else ".png"
    annotated = save_annotated(rgb, dist, args.out / f"{Path(image).stem}-detections{suffix}")
    (args.out / "detections.json").write_text(to_json(dist, image=str(image)) + "\n")
    (args.out / "trace.json").write_text(json.dumps(trace, indent=2, default=str) + "\n")
    console.print()
    console.print(f"annotated image written to [bold]{annotated.resolve()}[/bold]")
    console.print(f"detections and the cluster trace: {(args.out / 'detections.json').resolve()}, "
                  f"{(args.out / 'trace.json').resolve()}")
    return 0 if same else 1


def _print_plan(console: Any, net: Any, grid: tuple[int, int], fused: int) -> None:
    """What FTP costs for this block: share of the network, redundant halo work, data moved."""
    from deepthings.ftp import FTP

    cost = FTP(net, grid=grid, fused_layers=fused).cost()
    share = cost.flops_full / max(net.flops(), 1)
    extra = cost.flops_tiles / max(cost.flops_full, 1) - 1
    console.print(f"FTP      the fused block is {share:.0%} of the network's FLOPs; tiles redo {extra:.0%} "
                  f"of it at their borders; the rest runs on the gateway")


def _timed(fn: Any, frames: int) -> tuple[float, Any]:
    """One warm-up call, then ``frames`` timed calls: (median seconds, last result)."""
    out = fn()
    times = []
    for _ in range(frames):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _trace_dict(result: Any) -> dict:
    trace = getattr(result, "trace", None)
    if trace is None:
        return {}
    if isinstance(trace, dict):
        return trace
    to_dict = getattr(trace, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    return dict(vars(trace))


def _same_detections(a: list, b: list, tol: float = 1e-4) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x.class_id != y.class_id or abs(x.score - y.score) > tol:
            return False
        if max(abs(p - q) for p, q in zip((x.x1, x.y1, x.x2, x.y2), (y.x1, y.y1, y.x2, y.y2))) > 0.5:
            return False
    return True


def _print_detections(console: Any, dets: list) -> None:
    from rich.table import Table

    table = Table(title=f"{len(dets)} object(s) found")
    for col, just in (("object", "left"), ("score", "right"), ("box (x1, y1, x2, y2) px", "left")):
        table.add_column(col, justify=just)
    for d in dets:
        table.add_row(d.label, f"{d.score:.2f}", f"{d.x1:.0f}, {d.y1:.0f}, {d.x2:.0f}, {d.y2:.0f}")
    console.print(table)


def _print_tile_map(console: Any, trace: dict, grid: tuple[int, int], reuse: bool) -> None:
    """The grid of tiles, each labelled with the device that ran it (* = stolen)."""
    from rich.table import Table

    tiles = {int(t["tile"]): t for t in trace.get("tiles", []) if "tile" in t}
    n, m = grid
    palette = ["cyan", "magenta", "yellow", "green", "blue", "red", "bright_cyan", "bright_magenta"]
    devices = sorted({str(t.get("device_name") or t.get("device")) for t in tiles.values() if "device" in t})
    colour = {d: palette[i % len(palette)] for i, d in enumerate(devices)}
    title = "which device ran which tile (* = stolen" + (", L1 = level-1 tile using reuse)" if reuse else ")")
    table = Table(title=title,
                  show_header=False, show_lines=True)
    for _ in range(m):
        table.add_column(justify="center")
    for row in range(n):
        cells = []
        for col in range(m):
            t = tiles.get(row * m + col)
            if t is None or "device" not in t:
                cells.append("?")
                continue
            dev = str(t.get("device_name") or t.get("device"))
            mark = "*" if t.get("stolen") else ""
            level = " L1" if reuse and t.get("level") == 1 else ""
            ms = f"{float(t['compute_s']) * 1e3:.1f} ms" if "compute_s" in t else ""
            cells.append(f"[{colour[dev]}]{dev}{mark}{level}[/]\n{ms}")
        table.add_row(*cells)
    console.print(table)
    per_device: dict[str, list[float]] = {}
    for t in tiles.values():
        if "device" in t:
            per_device.setdefault(str(t.get("device_name") or t.get("device")), []).append(float(t.get("compute_s", 0.0)))
    if per_device:
        console.print("tiles per device: " + ", ".join(
            f"[{colour[d]}]{d}[/] {len(v)} ({sum(v) * 1e3:.1f} ms compute)" for d, v in sorted(per_device.items())))


def _print_timing(console: Any, trace: dict, single_s: float, dist_s: float, frames: int) -> None:
    from rich.table import Table

    table = Table(title=f"timing (median of {frames} frame(s) after a warm-up)")
    table.add_column("stage")
    table.add_column("time", justify="right")
    stages = trace.get("stages", {})
    labels = {
        "preprocess_s": "client: load + resize the image",
        "tiles_s": "gateway: tiles out to the edges, computed, back",
        "merge_wait_s": "gateway: waiting for the merge thread",
        "merge_s": "gateway: stitch + remaining layers + heads",
        "gateway_total_s": "gateway: total for this frame",
        "roundtrip_s": "client: round trip to the gateway",
        "decode_s": "client: decode heads + NMS",
        "total_s": "client: total for this frame",
    }
    for key in [k for k in labels if k in stages] + [k for k in stages if k not in labels]:
        table.add_row(labels.get(key, key), f"{float(stages[key]) * 1e3:.1f} ms")
    compute = [float(t.get("compute_s", 0.0)) for t in trace.get("tiles", [])]
    if compute:
        table.add_row("sum of tile compute on all edges", f"{sum(compute) * 1e3:.1f} ms")
    bytes_ = trace.get("bytes", {})
    if bytes_:
        table.add_row("bytes gateway <-> edges", f"{sum(int(v) for v in bytes_.values()) / 1e3:.0f} kB")
    table.add_row("[bold]distributed, end to end (client)", f"[bold]{dist_s * 1e3:.1f} ms")
    table.add_row("[bold]one device (this process, 1 thread like an edge)", f"[bold]{single_s * 1e3:.1f} ms")
    console.print(table)
    speedup = single_s / dist_s if dist_s > 0 else float("inf")
    console.print(f"speedup of the cluster over one device: [bold]{speedup:.2f}x[/bold]"
                  + ("" if speedup >= 1 else "  (all 'devices' share this machine's cores, and the model is "
                     "tiny: process hops cost more than the tiles save; see `deepthings emulate` for real "
                     "slow devices)"))
