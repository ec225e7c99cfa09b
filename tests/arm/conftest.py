"""Fixtures of the ARM suite: these tests run inside the emulated (qemu-user) aarch64 and
armv7 Pythons against the installed wheel (tools/arm/run_emulated_tests.sh), and on any
host as ordinary tests of the native engine."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Iterator

import pytest

_core = pytest.importorskip("deepthings._core")

TINY_CFG = Path(__file__).resolve().parent / "tiny.cfg"
MACHINE = platform.machine().lower()
ON_ARM = MACHINE in ("aarch64", "arm64") or MACHINE.startswith("arm")


@pytest.fixture(params=sorted(_core.available_isas()))
def any_isa(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a test once per GEMM path this build and CPU offer (on ARM: neon and scalar)."""
    before = _core.active_isa()
    _core.set_isa(request.param)
    try:
        yield request.param
    finally:
        _core.set_isa(before)


@pytest.fixture(scope="session")
def tiny_cfg() -> Path:
    return TINY_CFG
