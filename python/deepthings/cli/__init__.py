"""The `deepthings` command line.

Every module in this package that defines ``register(subparsers)`` adds one subcommand; the
dispatcher below finds them, so a new subcommand is a new file and nothing else.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Sequence

from deepthings.errors import DeepthingsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepthings",
        description="Distributed CNN inference on edge clusters (Fused Tile Partitioning).",
    )
    parser.add_argument("--verbose", "-v", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `deepthings` command; returns the process exit code."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if "-mode" in args_in:
        # DeepThings' original command syntax (-mode gateway -total_edge 2 ...).
        from deepthings.cli._legacy import translate

        args_in = translate(args_in)
    parser = build_parser()
    args = parser.parse_args(args_in)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    _setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except DeepthingsError as exc:
        print(f"deepthings: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("deepthings: interrupted", file=sys.stderr)
        return 130


def _setup_logging(verbosity: int) -> None:
    import logging

    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
