"""DeepThings' original command syntax, mapped onto the subcommands.

    deepthings -mode gateway -total_edge 2 -n 5 -m 5 -l 16   ->  deepthings gateway --grid 5x5 --fused 16 --expect-edges 2
    deepthings -mode data_src -edge_id 0                      ->  deepthings edge --source <images> --name edge0
    deepthings -mode non_data_src -edge_id 1                  ->  deepthings edge --name edge1
    deepthings -mode start [-total_edge K -n N -m M -l L]     ->  deepthings start --edges K --grid NxM --fused L

The original compiles the gateway's address in; here it is ``-gateway HOST:PORT`` or
``$DEEPTHINGS_GATEWAY`` (default 127.0.0.1:5555). Keys come from ``--key``/``$DEEPTHINGS_KEY``/
``./deepthings-cluster.key`` as for the subcommands; ``-insecure`` turns CURVE off. A data
source reads ``-source DIR`` or ``$DEEPTHINGS_SOURCE`` (default: the sample image);
``-frames N`` as in the original's fixed frame count.
"""

from __future__ import annotations

import os
from typing import Sequence

from deepthings.errors import DeepthingsError

MODES = ("gateway", "data_src", "non_data_src", "start")
_VALUED = {"-mode", "-total_edge", "-n", "-m", "-l", "-edge_id", "-gateway", "-source", "-frames", "-schedule", "-key", "-model", "-weights", "-bind", "-threads"}
_FLAGS = {"-insecure", "-v", "--verbose"}


class LegacyArgsError(DeepthingsError, ValueError):
    """The original DeepThings syntax was used with something it does not have."""


def _parse(argv: Sequence[str]) -> dict[str, str]:
    opts: dict[str, str] = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in _FLAGS:
            opts[a] = "1"
            i += 1
        elif a in _VALUED:
            if i + 1 >= len(argv):
                raise LegacyArgsError(f"{a} needs a value")
            opts[a] = argv[i + 1]
            i += 2
        else:
            raise LegacyArgsError(f"unknown DeepThings option {a!r} (known: {', '.join(sorted(_VALUED | _FLAGS))})")
    return opts


def _int(opts: dict[str, str], name: str) -> int | None:
    if name not in opts:
        return None
    try:
        return int(opts[name])
    except ValueError:
        raise LegacyArgsError(f"{name} {opts[name]!r} is not an integer") from None


def translate(argv: Sequence[str]) -> list[str]:
    """Map a `-mode ...` command line to the equivalent subcommand arguments.

    A bad legacy command line exits with status 2 and a message (the dispatcher calls this
    before its own error handling), like argparse does."""
    import sys

    try:
        return _translate(argv)
    except LegacyArgsError as exc:
        print(f"deepthings: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _translate(argv: Sequence[str]) -> list[str]:
    argv = list(argv)
    wants_help = any(a in ("-h", "--help", "-help") for a in argv)
    argv = [a for a in argv if a not in ("-h", "--help", "-help")]
    opts = _parse(argv)
    mode = opts.get("-mode")
    if mode not in MODES:
        raise LegacyArgsError(f"-mode {mode!r}: expected one of {', '.join(MODES)}")
    out: list[str] = []
    if "-v" in opts or "--verbose" in opts:
        out.append("--verbose")
    n, m, layers = _int(opts, "-n"), _int(opts, "-m"), _int(opts, "-l")
    grid = ["--grid", f"{n or m or 5}x{m or n or 5}"] if (n or m) else []
    fused = ["--fused", str(layers)] if layers else []
    total = _int(opts, "-total_edge")
    model = ["--model", opts["-model"]] if "-model" in opts else []
    if "-weights" in opts:
        model += ["--weights", opts["-weights"]]
    security = ["--insecure"] if "-insecure" in opts else (["--key", opts["-key"]] if "-key" in opts else [])
    gateway = opts.get("-gateway") or os.environ.get("DEEPTHINGS_GATEWAY", "127.0.0.1:5555")
    schedule = ["--schedule", opts["-schedule"]] if "-schedule" in opts else []
    if mode == "gateway":
        bind = opts.get("-bind", "0.0.0.0:" + gateway.rpartition(":")[2])
        out += ["gateway", "--bind", bind, *grid, *fused, *model, *schedule, *security]
        if total:
            out += ["--expect-edges", str(total)]
    elif mode in ("data_src", "non_data_src"):
        edge_id = _int(opts, "-edge_id")
        out += ["edge", "--gateway", gateway, *security]
        if edge_id is not None:
            out += ["--name", f"edge{edge_id}"]
        if "-threads" in opts:
            out += ["--threads", opts["-threads"]]
        if mode == "data_src":
            source = opts.get("-source") or os.environ.get("DEEPTHINGS_SOURCE")
            if source is None:
                from deepthings.data import sample_image_path

                source = str(sample_image_path())
            out += ["--source", source]
            if "-frames" in opts:
                out += ["--frames", str(_int(opts, "-frames"))]
    else:  # start: the whole cluster on this machine
        out += ["start", *grid, *fused, *model, *schedule]
        if total:
            out += ["--edges", str(total)]
        if "-frames" in opts:
            out += ["--frames", str(_int(opts, "-frames"))]
        if "-source" in opts:
            out.append(opts["-source"])
    if wants_help:
        out.append("--help")
    return out
