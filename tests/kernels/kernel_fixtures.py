"""Fixtures for the native kernel tests (imported by name: a second conftest.py would shadow
the top-level one for `from conftest import ...`): run a test once per GEMM path compiled here."""

from __future__ import annotations

import platform
from typing import Iterator

import pytest

_core = pytest.importorskip("deepthings._core")

# Every path this architecture's build compiles; those this CPU lacks are skipped (reported).
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")
ALL_ISAS = ["scalar", "avx2", "avx512"] if _X86 else ["scalar", "neon"]


@pytest.fixture(params=ALL_ISAS)
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    name = request.param
    if name not in _core.available_isas():
        pytest.skip(f"ISA {name} not available on this build/CPU ({_core.available_isas()})")
    before = _core.active_isa()
    _core.set_isa(name)
    try:
        yield name
    finally:
        _core.set_isa(before)


@pytest.fixture
def threads() -> Iterator[None]:
    """Restore the thread count a test changes."""
    before = _core.get_num_threads()
    try:
        yield
    finally:
        _core.set_num_threads(before)
