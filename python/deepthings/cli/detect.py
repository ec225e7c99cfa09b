"""`deepthings detect IMAGES...`: objects in photos, on this device or on a cluster.

Writes one annotated image per input (and JSON with --json) to --out, shows a progress bar and
ends with a summary table. Bad images are reported and skipped; the exit code is then 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from deepthings.cli._args import parse_grid
from deepthings.runtime.scheduler import SCHEDULES
from deepthings.errors import DeepthingsError, ImageError


def register(subparsers: Any) -> None:
    """Add the `detect` subcommand."""
    p = subparsers.add_parser(
        "detect",
        help="detect objects in images (one device or a cluster); annotated images + JSON",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (jpg, png, ...)")
    add_model_arguments(p)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--local-cluster", type=int, metavar="K", default=0,
                       help="start a gateway + K edges on this machine and run distributed")
    where.add_argument("--gateway", metavar="HOST:PORT",
                       help="use a running cluster's gateway (its model, grid and schedule; --model is ignored)")
    from deepthings.cli.gateway import add_key_arguments

    add_key_arguments(p)  # --key FILE / --insecure, as for `deepthings gateway` and `edge`
    p.add_argument("--grid", type=parse_grid, default=(3, 3), metavar="NxM", help="FTP grid (default 3x3)")
    p.add_argument("--fused", type=int, default=None, metavar="L",
                   help="fuse the first L layers into tiles (default: the longest block with <= 25%% redundant work)")
    p.add_argument("--schedule", default="wst-s", choices=list(SCHEDULES),
                   help="cluster scheduling (default wst-s)")
    p.add_argument("--thresh", type=float, default=0.25, help="class probability threshold (0.25)")
    p.add_argument("--nms", type=float, default=0.45, help="NMS IoU threshold, 0 = off (0.45)")
    p.add_argument("--letterbox", action="store_true", help="letterbox instead of stretching")
    p.add_argument("--engine", choices=["native", "reference"], default=None,
                   help="engine for single-device runs (default native)")
    p.add_argument("--out", type=Path, default=Path("deepthings-out"), metavar="DIR",
                   help="where annotated images (and JSON) go (default ./deepthings-out)")
    p.add_argument("--json", action="store_true",
                   help="also write DIR/<image>.json and print all detections as JSON on stdout")
    p.add_argument("--no-images", action="store_true", help="do not write annotated images")
    p.set_defaults(func=run)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--model/--weights/--names, shared with `deepthings demo`."""
    p.add_argument("--model", default="default", metavar="default|CFG",
                   help="'default' (embedded Yolo-Fastest 1.1, COCO) or a Darknet .cfg")
    p.add_argument("--weights", metavar="W", help="Darknet .weights for --model CFG")
    p.add_argument("--names", metavar="N", help="class names file (one per line)")


def load_model(args: argparse.Namespace) -> tuple[Any, list[str] | None]:
    """The Network named by --model/--weights and the class names (--names or the model's)."""
    from deepthings.detect.labels import read_names

    if args.model == "default":
        if args.weights:
            raise DeepthingsError("--weights goes with --model CFG, not with the default model")
        from deepthings.data import default_model

        net = default_model()
    else:
        from deepthings.darknet import load_darknet

        cfg = Path(args.model)
        if not cfg.is_file():
            raise DeepthingsError(f"{cfg}: no such model cfg (use --model default or a .cfg path)")
        if args.weights is None:
            print(f"deepthings: warning: no --weights for {cfg}: random weights, detections are noise",
                  file=sys.stderr)
            net = load_darknet(cfg, random_seed=0)
        else:
            if not Path(args.weights).is_file():
                raise DeepthingsError(f"{args.weights}: no such weights file")
            net = load_darknet(cfg, args.weights)
    names = read_names(args.names) if args.names else None
    if names is not None and isinstance(getattr(net, "meta", None), dict):
        net.meta["names"] = names
    if not getattr(net, "head_layers", None):
        raise DeepthingsError(f"{args.model}: the network has no region/yolo layer, nothing to detect")
    return net, names


def default_fused_layers(net: Any, grid: tuple[int, int], max_redundancy: float = 0.25) -> int:
    """The fused block used when --fused is not given: the longest tileable prefix whose tiles
    repeat at most ``max_redundancy`` (25%) extra work over the unpartitioned layers, by the
    FTP cost model (redundant halo work grows with depth, so this is where fusing stops paying).
    """
    from deepthings.ftp import FTP

    best = 1
    for layer in net.layers:
        if layer.type in ("region", "yolo") or layer.spatial.kind == "global":
            break
        fused = layer.index + 1
        try:
            cost = FTP(net, grid=grid, fused_layers=fused).cost()
        except DeepthingsError:
            break
        redundancy = cost.flops_tiles / max(cost.flops_full, 1) - 1.0
        if redundancy <= max_redundancy:
            best = fused
        elif redundancy > 2 * max_redundancy:  # only grows from here on
            break
    return best


PIPELINE_WINDOW = 4  # frames in flight on a cluster


@dataclass
class ImageResult:
    """What happened to one input image."""

    image: str
    detections: list = field(default_factory=list)
    seconds: float = 0.0
    written: list[Path] = field(default_factory=list)
    error: str | None = None


def _output_name(out: Path, image: Path, used: set[str]) -> Path:
    suffix = image.suffix.lower() if image.suffix.lower() in (".jpg", ".jpeg", ".png") else ".png"
    stem, n = image.stem, 1
    while stem + suffix in used:  # two inputs with the same name from different folders
        n += 1
        stem = f"{image.stem}-{n}"
    used.add(stem + suffix)
    return out / (stem + suffix)


def run(args: argparse.Namespace) -> int:
    """Run `deepthings detect`."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from deepthings.detect import save_annotated, to_json
    from deepthings.engine.preprocess import load_image

    console = Console(stderr=True)
    if args.thresh < 0 or args.thresh >= 1:
        raise DeepthingsError(f"--thresh must be in [0, 1), got {args.thresh}")
    if not 0 <= args.nms <= 1:
        raise DeepthingsError(f"--nms must be in [0, 1] (0 = no NMS), got {args.nms}")
    if args.gateway:
        # The gateway serves its own model; decode with the cfg it ships (see _make_infer).
        from deepthings.detect.labels import read_names

        net, names = None, (read_names(args.names) if args.names else None)
    else:
        net, names = load_model(args)
    results: list[ImageResult] = []
    used: set[str] = set()
    out: Path = args.out
    with ExitStack() as stack:
        infer, where = _make_infer(args, net, names, stack, console)
        console.print(f"running on {where}", soft_wrap=True)
        progress = stack.enter_context(
            Progress(TextColumn("[bold]detect"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                     TextColumn("{task.description}"), console=console, transient=False)
        )
        task = progress.add_task("", total=len(args.images))
        # A cluster gets several frames in flight (pipelining); one device takes them one by one.
        batch = 1 if not (args.local_cluster or args.gateway) else PIPELINE_WINDOW
        pending: list[tuple[ImageResult, Path, Any]] = []

        def flush() -> None:
            if not pending:
                return
            t0 = time.perf_counter()
            all_detections = infer([rgb for _, _, rgb in pending])
            per_image_s = (time.perf_counter() - t0) / len(pending)
            for (res, image, rgb), detections in zip(pending, all_detections):
                res.detections, res.seconds = detections, per_image_s
                out.mkdir(parents=True, exist_ok=True)
                target = _output_name(out, image, used)
                if not args.no_images:
                    res.written.append(save_annotated(rgb, res.detections, target))
                if args.json:
                    js = target.with_suffix(".json")
                    js.write_text(to_json(res.detections, image=str(image)) + "\n")
                    res.written.append(js)
                progress.advance(task)
            pending.clear()

        for image_arg in args.images:
            image = Path(image_arg)
            progress.update(task, description=image.name)
            res = ImageResult(str(image))
            results.append(res)
            try:
                pending.append((res, image, load_image(image)))
            except ImageError as exc:
                res.error = str(exc)
                console.print(f"[red]error:[/red] {exc}")
                progress.advance(task)
            if len(pending) >= batch:
                flush()
        flush()
    _summary(console, results, where, out)
    if args.json:
        print(json.dumps([{"image": r.image, "error": r.error,
                           "detections": [d.to_dict() for d in r.detections]} for r in results], indent=2))
    failed = [r for r in results if r.error]
    if failed:
        console.print(f"[red]{len(failed)} of {len(results)} image(s) failed[/red]")
        return 1
    return 0


def _make_infer(args: argparse.Namespace, net: Any, names: list[str] | None, stack: ExitStack,
                console: Any) -> tuple[Callable[[list[Any]], list[list]], str]:
    """A function [HxWx3 uint8 image] -> [detections] for the chosen place (this device or a cluster)."""
    from deepthings.detect import detect

    if not args.local_cluster and not args.gateway:
        def local(rgbs: list[Any]) -> list[list]:
            return [detect(net, rgb, args.thresh, args.nms, engine=args.engine, letterbox=args.letterbox,
                           names=names) for rgb in rgbs]

        return local, "this device"

    from deepthings.runtime.cluster import Cluster

    if args.gateway:
        from deepthings.cli.gateway import resolve_key

        cluster = stack.enter_context(Cluster.connect(args.gateway, key=resolve_key(args), thresh=args.thresh,
                                                      nms=args.nms, letterbox=args.letterbox))
        net = cluster.net
        if net is None or not getattr(net, "head_layers", None):
            raise DeepthingsError(f"the model served by {args.gateway} has no region/yolo layer: nothing to detect")
        where = f"cluster at {args.gateway}"
    else:
        if args.local_cluster < 1:
            raise DeepthingsError(f"--local-cluster needs at least 1 edge, got {args.local_cluster}")
        fused = args.fused if args.fused is not None else default_fused_layers(net, args.grid)
        with console.status(f"starting a local cluster: gateway + {args.local_cluster} edges"):
            cluster = stack.enter_context(
                Cluster(net, edges=args.local_cluster, grid=args.grid, fused_layers=fused,
                        schedule=args.schedule, thresh=args.thresh, nms=args.nms, letterbox=args.letterbox,
                        log_level=cluster_log_level(args))
            )
        where = (f"local cluster, {args.local_cluster} edges, {args.grid[0]}x{args.grid[1]} tiles "
                 f"over layers 0..{fused - 1}, {args.schedule}")
    def distributed(rgbs: list[Any]) -> list[list]:
        results = cluster.infer_many(rgbs, window=PIPELINE_WINDOW)
        return [result_detections(r, net, (rgb.shape[1], rgb.shape[0]), args.thresh, args.nms, args.letterbox, names)
                for r, rgb in zip(results, rgbs)]

    return distributed, where


def result_detections(result: Any, net: Any, image_wh: tuple[int, int], thresh: float, nms: float,
                      letterbox: bool, names: list[str] | None) -> list:
    """Detections of a cluster result, decoded here with the caller's thresholds.

    Decoding locally from the head outputs keeps --thresh/--nms/--letterbox/--names exact
    whatever defaults the cluster uses; if the result carries no head outputs, its own
    detections are used.
    """
    from deepthings.detect.decode import decode_outputs

    outputs = getattr(result, "outputs", None)
    if isinstance(outputs, dict) and all(i in outputs for i in net.head_layers):
        return decode_outputs(net, outputs, image_wh, thresh=thresh, nms=nms, letterbox=letterbox, names=names)
    return list(result.detections or [])


def cluster_log_level(args: argparse.Namespace) -> int:
    """Log level for the cluster's processes: quiet (errors only) unless -v was given."""
    import logging

    verbose = getattr(args, "verbose", 0)
    return logging.ERROR if not verbose else logging.INFO if verbose == 1 else logging.DEBUG


def _summary(console: Any, results: list[ImageResult], where: str, out: Path) -> None:
    from collections import Counter

    from rich.table import Table

    table = Table(title=f"deepthings detect: {len(results)} image(s) on {where.split(',')[0]}")
    table.add_column("image")
    table.add_column("objects", justify="right")
    table.add_column("found")
    table.add_column("time/image", justify="right")
    table.add_column("written")
    for r in results:
        if r.error:
            table.add_row(Path(r.image).name, "-", f"[red]{r.error}[/red]", "-", "-")
            continue
        counts = Counter(d.label for d in r.detections)
        found = ", ".join(f"{n} {label}" if n > 1 else label for label, n in counts.most_common())
        table.add_row(Path(r.image).name, str(len(r.detections)), found or "nothing", f"{r.seconds * 1e3:.0f} ms",
                      ", ".join(p.name for p in r.written) or "-")
    console.print(table)
    if any(r.written for r in results):
        console.print(f"output written to {out.resolve()}")
