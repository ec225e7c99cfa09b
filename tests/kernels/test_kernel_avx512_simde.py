"""The AVX-512 micro-kernel's own source, compiled through SIMDe's portable AVX-512 (this CPU
has no AVX-512), against the native AVX2 kernel and float64 NumPy: masks for every column
edge, short row edges, accumulation onto C, bias and both activations.

Both kernels accumulate each output element with one fused multiply-add per k in the same
order, so their results must be bit-identical; NumPy bounds the error on top."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
SIMDE = Path("/usr/include/simde/x86/avx512.h")
LOAD_C, RELU, LEAKY = 1, 2, 4

pytestmark = pytest.mark.skipif(
    not SIMDE.is_file() or shutil.which("g++") is None,
    reason="needs SIMDe's headers (apt-get install libsimde-dev; tools/setup.sh does) and g++",
)


def _has_avx2_fma() -> bool:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    return " avx2" in flags and " fma" in flags


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> ctypes.CDLL:
    if not _has_avx2_fma():
        pytest.skip("the AVX2 peer kernel needs an AVX2+FMA CPU")
    out = tmp_path_factory.mktemp("simde")
    src = ROOT / "src"
    flags = ["g++", "-O2", "-std=c++17", "-fPIC", "-mavx2", "-mfma", f"-I{src}"]
    objs = []
    for name, extra in (
        ("src/ftp_core/gemm/f32-gemm-8x32-avx512.cpp", ["-DDEEPTHINGS_SIMDE_AVX512"]),
        ("src/ftp_core/gemm/f32-gemm-6x16-avx2.cpp", []),
        ("tests/kernels/simde/harness.cpp", []),
    ):
        obj = out / (Path(name).stem + ".o")
        subprocess.run(flags + extra + ["-c", str(ROOT / name), "-o", str(obj)], check=True, capture_output=True)
        objs.append(str(obj))
    so = out / "libdtsimde.so"
    subprocess.run(["g++", "-shared", *objs, "-o", str(so)], check=True, capture_output=True)
    dis = subprocess.run(["objdump", "-d", objs[0]], capture_output=True, text=True).stdout
    assert "zmm" not in dis  # really the portable build: it runs on this CPU
    lib = ctypes.CDLL(str(so))
    fp = ctypes.POINTER(ctypes.c_float)
    for fn in (lib.dt_gemm_8x32_avx512, lib.dt_gemm_6x16_avx2):
        fn.argtypes = [ctypes.c_size_t, fp, fp, ctypes.c_size_t, fp, ctypes.c_size_t,
                       ctypes.c_size_t, ctypes.c_size_t, fp, ctypes.c_int]
        fn.restype = None
    return lib


def _p(a: np.ndarray | None):
    return None if a is None else a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def _packed_a(a: np.ndarray, mr: int) -> np.ndarray:
    """Rows of A (m x kc) as the kernels read them: a[k * mr + i], rows past m zero."""
    m, kc = a.shape
    p = np.zeros((kc, mr), np.float32)
    p[:, :m] = a.T
    return np.ascontiguousarray(p.reshape(-1))


def _run(lib, fn: str, mr: int, nr: int, a, b, c0, bias, flags) -> np.ndarray:
    """One micro-kernel over an m x n block, tiled into its MR x NR calls, writing straight into
    a wider C whose extra columns hold a sentinel that must survive (masked stores)."""
    m, kc = a.shape
    n = b.shape[1]
    ldb = 32  # both kernels read NR (<= 32) columns of B from each block's first column: pad it
    bp = np.zeros((kc, n + ldb), np.float32)
    bp[:, :n] = b
    ldc = n + 40
    cbig = np.full((m, ldc), -12345.0, np.float32)
    cbig[:, :n] = c0
    bias_p = None if bias is None else np.concatenate([bias, np.zeros(16, np.float32)])
    f = ctypes.POINTER(ctypes.c_float)
    for r in range(0, m, mr):
        rows = min(mr, m - r)
        ap = _packed_a(a[r : r + rows], mr)
        for col in range(0, n, nr):
            cols = min(nr, n - col)
            sub_b = np.ascontiguousarray(bp[:, col : col + ldb])
            cptr = ctypes.cast(cbig.ctypes.data + 4 * (r * ldc + col), f)
            getattr(lib, fn)(kc, _p(ap), _p(sub_b), ldb, cptr, ldc, rows, cols,
                             None if bias_p is None else _p(bias_p[r:]), flags)
    assert (cbig[:, n:] == -12345.0).all(), f"{fn} wrote outside the {m}x{n} block"
    return np.ascontiguousarray(cbig[:, :n])


@settings(max_examples=150, deadline=None)
@given(
    m=st.integers(1, 8),
    n=st.integers(1, 32),
    kc=st.integers(1, 70),
    load_c=st.booleans(),
    with_bias=st.booleans(),
    act=st.sampled_from([0, RELU, LEAKY]),
    seed=st.integers(0, 2**32 - 1),
)
def test_avx512_kernel_logic_matches_avx2_bit_for_bit(lib, m, n, kc, load_c, with_bias, act, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, kc), dtype=np.float32)
    b = rng.standard_normal((kc, n), dtype=np.float32)
    c0 = rng.standard_normal((m, n), dtype=np.float32)
    bias = rng.standard_normal(m, dtype=np.float32) if with_bias else None
    flags = (LOAD_C if load_c else 0) | act
    got = _run(lib, "dt_gemm_8x32_avx512", 8, 32, a, b, c0, bias, flags)
    peer = _run(lib, "dt_gemm_6x16_avx2", 6, 16, a, b, c0, bias, flags)
    np.testing.assert_array_equal(got.view(np.uint32), peer.view(np.uint32))
    want = a.astype(np.float64) @ b.astype(np.float64)
    want += c0 if load_c else (bias[:, None] if bias is not None else 0.0)
    if act == RELU:
        want = np.maximum(want, 0.0)
    elif act == LEAKY:
        want = np.where(want > 0, want, 0.1 * want)
    scale = (np.abs(a).astype(np.float64) @ np.abs(b)).max() + np.abs(c0).max() + 1.0
    assert np.abs(got - want).max() <= 1e-5 * scale


def test_columns_outside_the_block_are_never_written(lib):
    """The masked stores of a full-height (8-row) block: every column count 1..31 inside a wider C
    leaves the rest of C alone."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((8, 9), dtype=np.float32)
    for n in range(1, 32):
        b = np.zeros((9, 32), np.float32)
        b[:, :n] = rng.standard_normal((9, n), dtype=np.float32)
        c = np.full((8, 40), 7.0, np.float32)
        lib.dt_gemm_8x32_avx512(9, _p(_packed_a(a, 8)), _p(b), 32, _p(c), 40, 8, n, None, 0)
        np.testing.assert_allclose(c[:, :n], a @ b[:, :n], rtol=1e-5, atol=1e-5)
        assert (c[:, n:] == 7.0).all(), n
