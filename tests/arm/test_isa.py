"""Which kernels run: on ARM the NEON micro-kernels, not the scalar fallback; and the module
that runs is the installed wheel's, built for this interpreter."""

from __future__ import annotations

import importlib.metadata
import os
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from deepthings import _core

from arm_env import MACHINE, ON_ARM

pytestmark = pytest.mark.arm

# platform.machine() -> (build_info prefix, GEMM kernel name suffix) of a native ARM build.
_ARM_BUILDS = {"aarch64": ("aarch64", "-neon-aarch64"), "armv7l": ("armv7", "-neon-armv7"),
               "armv8l": ("armv7", "-neon-armv7")}


@pytest.mark.skipif(not ON_ARM, reason=f"ARM only (this is {MACHINE})")
def test_neon_is_the_default_path() -> None:
    """A fresh process on ARM picks NEON by itself and reports the NEON micro-kernel."""
    if os.environ.get("DEEPTHINGS_ISA"):
        pytest.fail(f"DEEPTHINGS_ISA={os.environ['DEEPTHINGS_ISA']} forces a path: unset it for this test")
    arch, suffix = _ARM_BUILDS[MACHINE]
    assert _core.build_info().startswith(arch + " "), _core.build_info()
    assert _core.available_isas() == ["scalar", "neon"]
    assert _core.active_isa() == "neon"
    name, mr, nr = _core.active_kernel()
    assert name.startswith("f32-gemm-") and name.endswith(suffix), name
    assert f"-{mr}x{nr}-" in name


@pytest.mark.skipif(not ON_ARM, reason=f"ARM only (this is {MACHINE})")
def test_neon_and_scalar_both_run_and_agree() -> None:
    """Switching the path changes the kernel that computes (its name), never the result."""
    rng = np.random.default_rng(11)
    a = rng.standard_normal((23, 77), dtype=np.float32)
    b = rng.standard_normal((77, 41), dtype=np.float32)
    want = a.astype(np.float64) @ b.astype(np.float64)
    before = _core.active_isa()
    got = {}
    try:
        for isa in ("neon", "scalar"):
            _core.set_isa(isa)
            assert _core.active_isa() == isa and f"-{isa}" in _core.active_kernel()[0]
            got[isa] = _core.gemm(a, b)
    finally:
        _core.set_isa(before)
    scale = float((np.abs(a).astype(np.float64) @ np.abs(b)).max())
    for isa, c in got.items():
        assert np.abs(c - want).max() <= 1e-5 * scale, isa


@pytest.mark.skipif(not os.environ.get("DEEPTHINGS_EXPECT_WHEEL"),
                    reason="only where tools/arm/run_emulated_tests.sh installed a wheel")
def test_module_comes_from_the_installed_wheel() -> None:
    """The extension imported is the wheel's, named with this interpreter's EXT_SUFFIX."""
    wheel = Path(os.environ["DEEPTHINGS_EXPECT_WHEEL"]).name
    dist = importlib.metadata.distribution("deepthings")
    assert wheel.startswith(f"deepthings-{dist.version}-")
    core = Path(_core.__file__)
    assert core.name == "_core" + sysconfig.get_config_var("EXT_SUFFIX")
    assert "site-packages" in core.parts, core
    installed = {str(f) for f in dist.files or []}
    assert f"deepthings/{core.name}" in installed
