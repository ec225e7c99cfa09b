"""`deepthings bench paper`: DeepThings' evaluation on the emulated testbed (root; see
deepthings.testbed.experiments). `--quick` is the small CI version."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("bench", help="benchmarks: `bench paper` reruns the DeepThings paper's experiments")
    sub = p.add_subparsers(dest="bench", metavar="BENCH")
    from deepthings.testbed.experiments import build_parser

    paper = sub.add_parser(
        "paper",
        help="speedup, communication, throughput and memory of FTP vs MoDNN on emulated devices (root)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build_parser(paper)
    paper.set_defaults(func=_paper)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _paper(args: argparse.Namespace) -> int:
    from deepthings.testbed.experiments import run_from_args

    return run_from_args(args)
