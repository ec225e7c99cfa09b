"""`deepthings edge --gateway HOST:PORT [--source DIR]`: join a cluster as an edge device.

The edge needs only the gateway's address and the cluster key: the model comes from the
gateway (cached in --cache). With --source it is also a data source: it sends the images in
DIR (or the given files) as frames, keeps their tiles in its own queue, and prints (or writes
to --out as JSON lines) each frame's result. Without --source it only runs and steals tiles.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Iterator

from deepthings.cli.gateway import add_key_arguments, resolve_key
from deepthings.errors import ClusterError, DeepthingsError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp"}


def register(subparsers: Any) -> None:
    """Add the `edge` subcommand."""
    p = subparsers.add_parser("edge", help="join a cluster as an edge device", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gateway", required=True, metavar="HOST:PORT", help="the gateway's address")
    p.add_argument("--source", metavar="DIR|FILE", action="append",
                   help="be a data source: frames from these images (repeatable)")
    p.add_argument("--frames", type=int, default=None, metavar="N",
                   help="with --source: send N frames (cycling over the images), then exit")
    p.add_argument("--out", type=Path, metavar="FILE", help="with --source: append one JSON line per frame here")
    p.add_argument("--name", default=None, help="this device's name in logs and traces")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="native threads for tiles (default: all cores)")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR", help="model cache (default ~/.cache/deepthings)")
    p.add_argument("--advertise", default=None, metavar="HOST",
                   help="address other edges use to steal from this one (default: the interface towards the gateway)")
    p.add_argument("--inflight", type=int, default=2, metavar="K", help="with --source: frames in flight (2)")
    p.add_argument("--verbose", "-v", action="count", default=argparse.SUPPRESS,
                   help="more log output (-v shows the steal traffic, -vv everything)")
    add_key_arguments(p)
    p.set_defaults(func=run)


def source_images(sources: list[str]) -> list[Path]:
    """Image files named by --source (directories are listed, sorted)."""
    out: list[Path] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise ClusterError(f"--source {s}: no such file or directory")
    if not out:
        raise ClusterError(f"--source {' '.join(sources)}: no images found")
    return out


def run(args: argparse.Namespace) -> int:
    from deepthings.runtime.edge import Edge, EdgeConfig, default_cache_dir
    from deepthings.runtime.model import build_workload

    key = resolve_key(args)
    config = EdgeConfig(gateway=args.gateway, source=bool(args.source), cache_dir=args.cache or default_cache_dir(),
                        threads=args.threads, advertise_host=args.advertise, max_frames_in_flight=max(1, args.inflight))
    if args.name:
        config.name = args.name
    edge: Edge
    images = source_images(args.source) if args.source else []
    sizes: dict[str, tuple[int, int]] = {}
    skipped: list[str] = []
    out_fh = open(args.out, "a") if args.out else None

    def frames() -> Iterator[tuple[Any, Any]]:
        from deepthings.engine.preprocess import load_image
        from deepthings.engine.preprocess import preprocess

        count = args.frames if args.frames is not None else len(images)
        for i in range(count):
            path = images[i % len(images)]
            try:
                rgb = load_image(path)
            except DeepthingsError as exc:  # one bad image must not end the stream
                print(f"deepthings: skipping {path}: {exc}", file=sys.stderr)
                skipped.append(str(path))
                continue
            _, h, w = edge.workload.input_shape  # type: ignore[union-attr]
            sizes[str(path)] = (rgb.shape[1], rgb.shape[0])
            yield (i, str(path)), preprocess(rgb, (w, h))

    def on_done(tag: Any, msg: Any) -> None:
        index, path = tag
        record: dict[str, Any] = {"index": index, "image": path, "frame": msg["frame"],
                                  "latency_s": msg["trace"].get("stages", {}).get("gateway_total_s")}
        net = getattr(edge.workload, "net", None)
        heads = list(getattr(net, "head_layers", []) or [])
        outputs = {int(n[5:]): a for n, a in zip(msg["names"], msg.arrays) if n.startswith("layer") and n[5:].isdigit()}
        if heads and all(h in outputs for h in heads):
            from deepthings.detect import decode_outputs

            dets = decode_outputs(net, {h: outputs[h] for h in heads}, sizes.get(path, (1, 1)))
            record["detections"] = [{"label": d.label, "score": round(float(d.score), 4),
                                     "box": [round(float(v), 1) for v in (d.x1, d.y1, d.x2, d.y2)]} for d in dets]
        line = json.dumps(record)
        if out_fh is not None:
            out_fh.write(line + "\n")
            out_fh.flush()
        else:
            print(line, flush=True)

    edge = Edge(config, key, build_workload, frames() if images else None, on_done)
    logging.getLogger("deepthings.runtime.edge").info("edge %s connecting to %s", config.name, args.gateway)
    try:
        edge.serve(exit_when_sourced=bool(images))
    finally:
        if out_fh is not None:
            out_fh.close()
    if images:
        print(f"{edge.frames_done} frame(s) done" + (f", {len(skipped)} image(s) skipped" if skipped else ""),
              file=sys.stderr)
    return 1 if skipped else 0
