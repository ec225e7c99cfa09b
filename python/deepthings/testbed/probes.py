"""Small programs the experiments run inside testbed nodes; each prints one JSON line.

    python -m deepthings.testbed.probes single --cfg C [--weights W | --seed S] --fused L --frames N

`single` is the one-device baseline: the whole fused block on one emulated device, no network.
`ftp-gateway`, `ftp-edge` and `ftp-wait` run the deepthings runtime (runtime/) on the testbed:
the gateway in its namespace, one edge per device; a data-source edge makes its own frames
(the camera is on the device, as in DeepThings), waits for a start file so that every device
has joined before the first frame, and prints per-frame latencies and traces when done.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Sequence

from deepthings.data import camera_frame
from deepthings.testbed.gate import wait_for_go


def _load(cfg: str, weights: str | None, seed: int, upto: int):
    import deepthings

    if weights:
        return deepthings.load_darknet(cfg, weights, upto=upto)
    return deepthings.load_darknet(cfg, random_seed=seed, upto=upto)


def single(args: argparse.Namespace) -> dict:
    import deepthings

    if args.threads:
        try:
            deepthings.set_num_threads(args.threads)
        except (ImportError, AttributeError):
            pass
    net = _load(args.cfg, args.weights, args.seed, args.fused)
    x = camera_frame(net.input_shape)
    wait_for_go(args.ready_file, args.start_file)
    net.forward(x, end=args.fused, engine=args.engine)  # warm-up: first-touch of buffers
    latencies = []
    for _ in range(args.frames):
        t = time.perf_counter()
        net.forward(x, end=args.fused, engine=args.engine)
        latencies.append(time.perf_counter() - t)
    return {
        "latencies_s": latencies,
        "flops": net.flops(0, args.fused),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def ftp_gateway(args: argparse.Namespace) -> dict:
    from deepthings.runtime.cluster import run_gateway
    from deepthings.runtime.gateway import GatewayConfig
    from deepthings.runtime.model import describe_model

    desc = describe_model(args.cfg, args.weights, None if args.weights else args.seed)
    config = GatewayConfig(bind=f"tcp://{args.bind}", schedule=args.schedule,
                           link_bytes_per_s=args.link_bytes_per_s, balance=args.balance)
    grid = tuple(int(v) for v in args.grid.lower().split("x"))
    run_gateway(desc, grid, args.fused, config, None)  # serves until SIGTERM
    return {}


def ftp_wait(args: argparse.Namespace) -> dict:
    from deepthings.runtime.cluster import Cluster

    deadline = time.monotonic() + args.timeout
    client = Cluster.connect(args.gateway, timeout_s=args.timeout)
    try:
        while True:
            edges = client.status()["edges"]
            ready = sum(1 for e in edges if e.get("ready"))
            if ready >= args.ready:
                return {"ready": ready}
            if time.monotonic() > deadline:
                raise SystemExit(f"only {ready} of {args.ready} edges ready after {args.timeout}s")
            time.sleep(0.1)
    finally:
        client.close()


def ftp_edge(args: argparse.Namespace) -> dict:
    import os
    from pathlib import Path

    from deepthings.runtime.edge import Edge, EdgeConfig
    from deepthings.runtime.model import build_workload

    submitted: dict[int, float] = {}
    done: list[dict] = []
    start = Path(args.start_file) if args.start_file else None

    def frames():
        from deepthings.runtime.protocol import exact8

        x = camera_frame(tuple(args.shape))
        coded = exact8(x)  # a camera delivers 8-bit codes: the source gets those, as uint8
        x = coded.codes if coded is not None else x
        for i in range(args.frames):
            submitted[i] = time.monotonic()
            yield i, x

    def on_done(tag, msg) -> None:
        trace = msg["trace"]
        now = time.monotonic()
        merged = trace.get("clock", {}).get("merged")
        # merged_s: when the gateway held the merged block output (CLOCK_MONOTONIC is
        # system-wide: the testbed's namespaces share it)
        done.append({"frame": tag, "submitted_s": submitted[tag], "done_s": now, "latency_s": now - submitted[tag],
                     "merged_s": float(merged) if isinstance(merged, (int, float)) else None, "trace": trace})

    class GatedEdge(Edge):
        # A source waits for the start file so every device has joined before frame 0.
        def _submit_own_frames(self) -> None:  # noqa: D401 (runtime hook)
            if start is None or start.exists():
                super()._submit_own_frames()

    source = args.frames > 0
    config = EdgeConfig(gateway=args.gateway, name=os.environ.get("DEEPTHINGS_TESTBED_NODE", "edge"),
                        source=source, cache_dir=Path(args.cache_dir), threads=args.threads,
                        advertise_host=args.advertise, max_frames_in_flight=args.in_flight)
    edge = GatedEdge(config, None, build_workload, frames=frames() if source else None, on_done=on_done)
    if os.environ.get("DEEPTHINGS_PROBE_LOG"):  # e.g. DEBUG: the edge's story on stderr
        import logging

        logging.basicConfig(level=os.environ["DEEPTHINGS_PROBE_LOG"], stream=sys.stderr,
                            format="%(relativeCreated)9.1f %(name)s %(message)s")
    prof_dir = os.environ.get("DEEPTHINGS_PROFILE_DIR")
    if prof_dir:  # where the edge's own thread spends its CPU (the tile worker is not profiled)
        import cProfile

        prof = cProfile.Profile()
        prof.runcall(edge.serve, exit_when_sourced=source)
        Path(prof_dir).mkdir(parents=True, exist_ok=True)
        prof.dump_stats(str(Path(prof_dir) / f"{config.name}.prof"))
    else:
        edge.serve(exit_when_sourced=source)
    return {"frames": done, "stats": dict(edge.stats),
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deepthings.testbed.probes")
    sub = p.add_subparsers(dest="probe", required=True)
    s = sub.add_parser("single", help="time the fused block on this (emulated) device")
    s.add_argument("--cfg", required=True)
    s.add_argument("--weights", default=None)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--fused", type=int, default=16)
    s.add_argument("--frames", type=int, default=3)
    s.add_argument("--engine", default=None)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--ready-file", default=None)
    s.add_argument("--start-file", default=None)
    g = sub.add_parser("ftp-gateway", help="deepthings runtime gateway (serves until SIGTERM)")
    g.add_argument("--bind", required=True)
    g.add_argument("--cfg", required=True)
    g.add_argument("--weights", default=None)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--fused", type=int, default=16)
    g.add_argument("--grid", default="5x5")
    g.add_argument("--schedule", default="wst-s")
    g.add_argument("--balance", type=int, default=0)
    g.add_argument("--link-bytes-per-s", type=float, default=12.5e6)
    w = sub.add_parser("ftp-wait", help="wait until N edges are ready")
    w.add_argument("--gateway", required=True)
    w.add_argument("--ready", type=int, required=True)
    w.add_argument("--timeout", type=float, default=120.0)
    e = sub.add_parser("ftp-edge", help="deepthings runtime edge; with --frames N a data source")
    e.add_argument("--gateway", required=True)
    e.add_argument("--advertise", required=True, help="own address for thieves")
    e.add_argument("--cache-dir", required=True)
    e.add_argument("--frames", type=int, default=0)
    e.add_argument("--shape", type=int, nargs=3, default=[3, 608, 608])
    e.add_argument("--start-file", default=None)
    e.add_argument("--in-flight", type=int, default=1)
    e.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    run = {"single": single, "ftp-gateway": ftp_gateway, "ftp-wait": ftp_wait, "ftp-edge": ftp_edge}[args.probe]
    print(json.dumps(run(args)))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
