"""`deepthings keys`: make the cluster's CURVE key pair (copy the file to every member)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from deepthings.errors import ClusterError

DEFAULT_KEY_FILE = "deepthings-cluster.key"


def register(subparsers: Any) -> None:
    """Add the `keys` subcommand."""
    p = subparsers.add_parser(
        "keys",
        help="write a new cluster key pair (CURVE) for gateway, edges and clients",
        description=__doc__,
    )
    p.add_argument("--out", type=Path, default=Path(DEFAULT_KEY_FILE), metavar="FILE",
                   help=f"key file to write (default ./{DEFAULT_KEY_FILE}, mode 0600)")
    p.add_argument("--force", action="store_true", help="overwrite an existing key file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from deepthings.runtime.keys import ClusterKey

    if args.out.exists() and not args.force:
        raise ClusterError(f"{args.out} exists; pass --force to replace it (members with the old key will be refused)")
    key = ClusterKey.generate()
    key.save(args.out)
    print(f"wrote {args.out} (public key {key.public.decode()})")
    print("copy it to the gateway, every edge and every client; pass it with --key")
    return 0
