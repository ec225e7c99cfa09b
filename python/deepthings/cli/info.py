"""`deepthings info CFG [WEIGHTS]`: the layer table of a Darknet network, with costs.

Per layer: index, type, inputs, input -> output shape, kernel/stride/padding, FLOPs,
weight bytes and output memory; then totals. With --grid NxM --fused L, also the FTP cost
report of tiling the first L layers into an N x M grid.
"""

from __future__ import annotations

import argparse
from typing import Any

from deepthings.cli._args import parse_grid


def register(subparsers: Any) -> None:
    """Add the `info` subcommand."""
    p = subparsers.add_parser(
        "info",
        help="layer table of a Darknet cfg: shapes, FLOPs, weights, memory (+ FTP cost)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("cfg", metavar="CFG", help="Darknet .cfg file")
    p.add_argument("weights", metavar="WEIGHTS", nargs="?", default=None,
                   help="optional .weights file (checked against the cfg)")
    p.add_argument("--grid", type=parse_grid, default=None, metavar="NxM",
                   help="FTP grid for the cost report (needs --fused)")
    p.add_argument("--fused", type=int, default=None, metavar="L",
                   help="number of fused layers for the FTP cost report")
    p.set_defaults(func=run_info)


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23M' (decimal prefixes)."""
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{prefix}{unit}"
    return f"{n:.0f}{unit}"


def _shape(s: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in s)


def format_layer_table(net: Any) -> str:
    """The layer table and totals of ``net`` as text."""
    rows = [("#", "type", "from", "input", "output", "kernel", "FLOPs", "weights", "out mem")]
    for layer in net.layers:
        ins = ",".join("in" if j == -1 else str(j) for j in layer.inputs)
        in_shape = " + ".join(_shape(s) for s in layer.in_shapes)
        rows.append((
            str(layer.index), layer.type + ("" if layer.activation == "linear" else f" {layer.activation}"),
            ins, in_shape, _shape(layer.out_shape), layer.describe(), human(layer.flops()),
            human(layer.weight_bytes(), "B"), human(layer.output_bytes(), "B"),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = {0, 6, 7, 8}
    lines = []
    for k, r in enumerate(rows):
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("-" * len(lines[0]))
    peak = max(layer.output_bytes() for layer in net.layers)
    lines.append("")
    lines.append(
        f"{len(net.layers)} layers, input {_shape(net.input_shape)}, "
        f"{net.flops() / 1e9:.3f} GFLOP, weights {human(net.weight_bytes(), 'B')}, "
        f"all outputs {human(sum(ly.output_bytes() for ly in net.layers), 'B')}, "
        f"largest output {human(peak, 'B')}"
    )
    if net.head_layers:
        lines.append("heads: " + ", ".join(f"{i} [{net.layers[i].type}]" for i in net.head_layers))
    return "\n".join(lines)


def run_info(args: argparse.Namespace) -> int:
    """Print the layer table (and the FTP cost report); exit code 0."""
    from deepthings.darknet import load_darknet

    net = load_darknet(args.cfg, args.weights)
    print(f"{args.cfg}" + (f" + {args.weights}" if args.weights else " (no weights loaded)"))
    if net.weights_header is not None:
        h = net.weights_header
        print(f"weights: version {h.major}.{h.minor}.{h.revision}, seen {h.seen}")
    print(format_layer_table(net))
    if args.grid is not None or args.fused is not None:
        if args.grid is None or args.fused is None:
            from deepthings.errors import PlanError

            raise PlanError("the FTP cost report needs both --grid NxM and --fused L")
        from deepthings.ftp.cost import format_cost_report

        print()
        print(format_cost_report(net, grid=args.grid, fused_layers=args.fused))
    return 0
