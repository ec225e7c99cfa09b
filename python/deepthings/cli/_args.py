"""Argument types shared by several subcommands (not a subcommand itself)."""

from __future__ import annotations

import argparse


def parse_grid(text: str) -> tuple[int, int]:
    """An FTP grid argument: '5x5' -> (5, 5); a single number '5' means 5x5."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"grid must look like 3x3, got {text!r}") from None
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"grid must be NxM with N, M >= 1, got {text!r}")
    return vals[0], vals[1]
