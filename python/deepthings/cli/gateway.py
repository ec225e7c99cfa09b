"""`deepthings gateway`: serve a cluster: edges join it, clients send it frames.

The gateway ships the model to every edge that joins (cfg + the fused block's weights,
SHA-256 checked and cached there), hands out victims for work stealing (or shares tasks
itself with --schedule wsh), re-issues tasks of silent edges, and runs the layers after the
fused block. Traffic is CURVE-authenticated with the cluster key (`deepthings keys`).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from deepthings.cli._args import parse_grid
from deepthings.runtime.scheduler import SCHEDULES
from deepthings.errors import ClusterError

log = logging.getLogger("deepthings.cli.gateway")


def add_key_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key", metavar="FILE", help="cluster key file (default $DEEPTHINGS_KEY or ./deepthings-cluster.key)")
    p.add_argument("--insecure", action="store_true", help="no CURVE authentication/encryption (trusted networks only)")


def resolve_key(args: argparse.Namespace) -> Any:
    """The ClusterKey to use, or None with --insecure; a clear error if there is none."""
    from deepthings.cli.keys import DEFAULT_KEY_FILE
    from deepthings.runtime.keys import ClusterKey

    if getattr(args, "insecure", False):
        log.warning("CURVE is off: anyone who reaches the port can join")
        return None
    path = args.key or os.environ.get("DEEPTHINGS_KEY") or (DEFAULT_KEY_FILE if Path(DEFAULT_KEY_FILE).is_file() else None)
    if path is None:
        raise ClusterError("no cluster key: run `deepthings keys` and pass --key FILE to every member (or --insecure)")
    return ClusterKey.load(path)


def register(subparsers: Any) -> None:
    """Add the `gateway` subcommand."""
    p = subparsers.add_parser("gateway", help="run a cluster gateway", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", metavar="default|CFG", help="'default' (Yolo-Fastest 1.1) or a .cfg")
    p.add_argument("--weights", metavar="W", help=".weights for --model CFG (default: random weights, seed 0)")
    p.add_argument("--bind", default="0.0.0.0:5555", metavar="HOST:PORT", help="where edges and clients connect (0.0.0.0:5555)")
    p.add_argument("--grid", type=parse_grid, default=(5, 5), metavar="NxM", help="FTP grid (default 5x5)")
    p.add_argument("--balance", type=int, default=0, metavar="K",
                   help="uneven grid: cell boundaries balanced so that K edges finish their tiles together")
    p.add_argument("--fused", type=int, default=None, metavar="L", help="fuse the first L layers (default: up to 16)")
    p.add_argument("--schedule", default="wst-s", choices=list(SCHEDULES), help="scheduling (default wst-s)")
    p.add_argument("--hb-interval", type=float, default=0.5, metavar="S", help="heartbeat interval in seconds (0.5)")
    p.add_argument("--hb-liveness", type=int, default=6, metavar="N", help="missed heartbeats before a peer is dead (6)")
    p.add_argument("--task-timeout", type=float, default=60.0, metavar="S", help="re-issue a task after S seconds (60)")
    p.add_argument("--link-mbps", type=float, default=100.0, metavar="MBIT", help="link speed for cost-aware stealing (100)")
    p.add_argument("--expect-edges", type=int, default=0, metavar="K", help="log when K edges have joined")
    p.add_argument("--verbose", "-v", action="count", default=argparse.SUPPRESS,
                   help="more log output (-v shows the steal traffic, -vv everything)")
    add_key_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from deepthings.runtime.cluster import run_gateway
    from deepthings.runtime.gateway import GatewayConfig
    from deepthings.runtime.model import describe_model

    key = resolve_key(args)
    desc = describe_model(args.model, args.weights)
    config = GatewayConfig(
        bind=args.bind,
        schedule=args.schedule,
        hb_interval_s=args.hb_interval,
        hb_liveness=args.hb_liveness,
        task_timeout_s=args.task_timeout,
        link_bytes_per_s=args.link_mbps * 1e6 / 8,
        expect_edges=args.expect_edges,
        balance=args.balance,
    )

    def ready(endpoint: str) -> None:
        print(f"gateway ready on {endpoint} (schedule {args.schedule}, grid {args.grid[0]}x{args.grid[1]}, "
              f"{'CURVE' if key else 'no encryption'})", flush=True)

    run_gateway(desc, args.grid, args.fused, config, key, ready)
    return 0
