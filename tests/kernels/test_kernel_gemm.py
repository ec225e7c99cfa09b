"""GEMM micro-kernels and the blocked driver against float64 NumPy, over edge sizes."""

from __future__ import annotations

import numpy as np
import pytest

from deepthings import _core
from kernel_fixtures import isa, threads  # noqa: F401 (fixtures)
from deepthings.darknet.layers import ACTIVATIONS
from deepthings.engine.reference import activate


def _ref(a: np.ndarray, b: np.ndarray, bias: np.ndarray | None, act: str) -> np.ndarray:
    c = a.astype(np.float64) @ b.astype(np.float64)
    if bias is not None:
        c += bias[:, None]
    return activate(c.astype(np.float32), act)


def _bound(a: np.ndarray, b: np.ndarray) -> float:
    # Error scale of a float32 dot product: the sum of |terms|.
    return float((np.abs(a).astype(np.float64) @ np.abs(b)).max()) + 1.0


def test_kernel_names(isa: str) -> None:
    name, mr, nr = _core.active_kernel()
    assert _core.active_isa() == isa
    assert name.startswith("f32-gemm-") and f"-{isa}" in name
    assert f"-{mr}x{nr}-" in name


def test_edge_sizes_sweep(isa: str) -> None:
    """Every M, N around the tile multiples, K below/at/above the KC block, gives a @ b + bias."""
    _, mr, nr = _core.active_kernel()
    kc = _core.gemm_blocking()[2]
    rng = np.random.default_rng(1)
    for k in (1, 3, kc, kc + 5):
        for m in range(1, 2 * mr + 2):
            for n in sorted({1, 2, nr - 1, nr, nr + 1, 2 * nr + 3}):
                if n < 1:
                    continue
                a = rng.standard_normal((m, k), dtype=np.float32)
                b = rng.standard_normal((k, n), dtype=np.float32)
                bias = rng.standard_normal(m, dtype=np.float32)
                got = _core.gemm(a, b, bias, "linear")
                err = np.abs(got - _ref(a, b, bias, "linear")).max()
                assert err <= 1e-5 * _bound(a, b), (m, n, k, err)


def test_narrow_blocks_match_wide_ones_bit_for_bit(isa: str) -> None:
    """A block at most half a panel wide runs the micro-kernel's half-width path (thin FTP tiles
    end in such ragged panels); its columns must carry the same bits as in a full-width run, or
    stitched tiles would stop equalling the whole frame."""
    _, mr, nr = _core.active_kernel()
    kc = _core.gemm_blocking()[2]
    rng = np.random.default_rng(5)
    for k in (7, kc + 3):  # one K block, and two (the half path also accumulates onto C)
        m = 2 * mr + 1
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, 2 * nr), dtype=np.float32)
        bias = rng.standard_normal(m, dtype=np.float32)
        wide = _core.gemm(a, b, bias, "leaky")
        for n in range(1, nr + 1):
            narrow = _core.gemm(a, np.ascontiguousarray(b[:, :n]), bias, "leaky")
            np.testing.assert_array_equal(narrow.view(np.uint32), wide[:, :n].view(np.uint32), err_msg=f"n={n} k={k}")
            tail = _core.gemm(a, np.ascontiguousarray(b[:, nr : nr + n]), bias, "leaky")  # a ragged 2nd panel
            np.testing.assert_array_equal(tail.view(np.uint32), wide[:, nr : nr + n].view(np.uint32))


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_epilogue_activations(isa: str, act: str) -> None:
    """Every Darknet activation, fused or as the post-tile pass, matches the reference."""
    rng = np.random.default_rng(2)
    m, n, k = 13, 37, 300  # two K blocks: bias, accumulate, activation only at the end
    a = rng.standard_normal((m, k), dtype=np.float32) * 0.2
    b = rng.standard_normal((k, n), dtype=np.float32)
    bias = rng.standard_normal(m, dtype=np.float32)
    got = _core.gemm(a, b, bias, act)
    want = _ref(a, b, bias, act)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * _bound(a, b))


def test_no_bias_and_empty_k(isa: str) -> None:
    rng = np.random.default_rng(3)
    a = rng.standard_normal((5, 9), dtype=np.float32)
    b = rng.standard_normal((9, 70), dtype=np.float32)
    np.testing.assert_allclose(_core.gemm(a, b), _ref(a, b, None, "linear"), atol=1e-4)
    bias = np.arange(4, dtype=np.float32) - 2
    got = _core.gemm(np.zeros((4, 0), np.float32), np.zeros((0, 3), np.float32), bias, "relu")
    np.testing.assert_array_equal(got, np.maximum(bias, 0)[:, None].repeat(3, axis=1))


def test_threads_do_not_change_results(isa: str, threads: None) -> None:
    """Blocks split across threads compute each element in the same order: bit-identical."""
    rng = np.random.default_rng(4)
    a = rng.standard_normal((70, 600), dtype=np.float32)
    b = rng.standard_normal((600, 1100), dtype=np.float32)
    _core.set_num_threads(1)
    one = _core.gemm(a, b, None, "leaky")
    _core.set_num_threads(2)
    assert _core.get_num_threads() == 2
    two = _core.gemm(a, b, None, "leaky")
    _core.set_num_threads(3)  # more threads than cores still works
    three = _core.gemm(a, b, None, "leaky")
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one, three)


def test_isa_api() -> None:
    avail = _core.available_isas()
    assert "scalar" in avail and _core.active_isa() in avail
    with pytest.raises(ValueError, match="unknown ISA"):
        _core.set_isa("sse9")
    for name in ("avx2", "avx512", "neon"):
        if name not in avail:
            with pytest.raises(ValueError, match="not available"):
                _core.set_isa(name)


def test_bad_arrays_are_named() -> None:
    a = np.zeros((3, 4), np.float64)
    with pytest.raises(ValueError, match=r"'a'.*float32.*\(3, 4\)"):
        _core.gemm(a, np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"'b'.*non-contiguous"):
        _core.gemm(np.zeros((3, 4), np.float32), np.zeros((2, 4), np.float32).T)
    with pytest.raises(ValueError, match="do not chain"):
        _core.gemm(np.zeros((3, 4), np.float32), np.zeros((5, 2), np.float32))
    with pytest.raises(ValueError, match="num_threads|n must be"):
        _core.set_num_threads(0)


def _run_with_env(env_extra: dict[str, str], code: str) -> "subprocess.CompletedProcess[str]":
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPTHINGS_")}
    env.update(PYTHONPATH=os.pathsep.join(p for p in sys.path if p), **env_extra)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_env_vars_choose_isa_and_threads() -> None:
    """$DEEPTHINGS_ISA forces a kernel path, $DEEPTHINGS_THREADS sizes the pool; an unusable
    ISA name falls back to the best path with a warning instead of failing the import."""
    code = "import deepthings._core as c; print(c.active_isa(), c.get_num_threads())"
    out = _run_with_env({"DEEPTHINGS_ISA": "scalar", "DEEPTHINGS_THREADS": "3"}, code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["scalar", "3"]
    out = _run_with_env({"DEEPTHINGS_ISA": "sse9"}, code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == _core.available_isas()[-1]
    assert "DEEPTHINGS_ISA" in out.stderr
