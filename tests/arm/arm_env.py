"""What machine the ARM suite runs on (shared by its test modules; not a conftest, so that
importing it never picks up another directory's conftest.py)."""

from __future__ import annotations

import platform
from pathlib import Path

TINY_CFG = Path(__file__).resolve().parent / "tiny.cfg"
MACHINE = platform.machine().lower()
ON_ARM = MACHINE in ("aarch64", "arm64") or MACHINE.startswith("arm")
