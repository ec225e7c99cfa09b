"""DeepThings' experiments on the emulated edge testbed (needs root).

    python benchmarks/paper_experiments.py            # full suite, < 20 min, writes benchmarks/results/paper/
    python benchmarks/paper_experiments.py --quick    # CI version, ~3 min

Same as `deepthings bench paper`; the code lives in deepthings.testbed.experiments so the
installed package can run it too.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import deepthings  # noqa: F401  (installed, or PYTHONPATH=python)
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

from deepthings.errors import DeepthingsError
from deepthings.testbed.experiments import main

if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except DeepthingsError as exc:
        print(f"paper_experiments: error: {exc}", file=sys.stderr)
        raise SystemExit(1)
