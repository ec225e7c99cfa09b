"""Native conv (asymmetric padding, groups), depthwise and pooling against the NumPy
reference engine, on every GEMM path compiled here (NEON and scalar on ARM)."""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from deepthings import _core
from deepthings.engine import reference

ISAS = sorted(_core.available_isas())
ACTS = ["linear", "leaky", "relu", "logistic"]


@contextlib.contextmanager
def _isa(name: str) -> Iterator[None]:
    before = _core.active_isa()
    _core.set_isa(name)
    try:
        yield
    finally:
        _core.set_isa(before)


def _out(n: int, lo: int, hi: int, k: int, s: int) -> int:
    return (n + lo + hi - k) // s + 1 if n + lo + hi >= k else 0


def _close(got: np.ndarray, want: np.ndarray, scale: float) -> None:
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * max(scale, 1.0))


pads = st.tuples(*[st.integers(0, 3)] * 4)


@pytest.mark.parametrize("isa", ISAS)
@settings(max_examples=30)
@given(data=st.data(), c_per_g=st.integers(1, 5), o_per_g=st.integers(1, 7), groups=st.integers(1, 3),
       h=st.integers(1, 11), w=st.integers(1, 11), kh=st.integers(1, 5), kw=st.integers(1, 5),
       sh=st.integers(1, 3), sw=st.integers(1, 3), pad=pads, act=st.sampled_from(ACTS))
def test_conv_asymmetric_padding(isa, data, c_per_g, o_per_g, groups, h, w, kh, kw, sh, sw, pad, act):
    """Native conv == reference conv for any kernel, stride, groups and per-side padding."""
    t, l, b, r = pad
    assume(_out(h, t, b, kh, sh) >= 1 and _out(w, l, r, kw, sw) >= 1)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.standard_normal((c_per_g * groups, h, w), dtype=np.float32)
    wt = rng.standard_normal((o_per_g * groups, c_per_g, kh, kw), dtype=np.float32)
    bias = rng.standard_normal(o_per_g * groups, dtype=np.float32)
    want = reference.conv2d(x, wt, bias, (sh, sw), pad, groups, act)
    with _isa(isa):
        got = _core.conv2d_weights(x, wt, bias, (sh, sw), list(pad), groups, act)
    _close(got, want, c_per_g * kh * kw * 4.0)


@pytest.mark.parametrize("isa", ISAS)
@settings(max_examples=25)
@given(seed=st.integers(0, 2**16), c=st.integers(1, 24), h=st.integers(1, 14), w=st.integers(1, 14),
       k=st.sampled_from([1, 3, 5]), s=st.integers(1, 2), pad=pads, act=st.sampled_from(ACTS))
def test_depthwise(isa, seed, c, h, w, k, s, pad, act):
    """Depthwise conv (groups == channels, yolo-fastest's 3x3 dw) == reference."""
    t, l, b, r = pad
    assume(_out(h, t, b, k, s) >= 1 and _out(w, l, r, k, s) >= 1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((c, h, w), dtype=np.float32)
    wt = rng.standard_normal((c, 1, k, k), dtype=np.float32)
    bias = rng.standard_normal(c, dtype=np.float32)
    want = reference.conv2d(x, wt, bias, (s, s), pad, c, act)
    with _isa(isa):
        weights = _core.ConvWeights(wt, c)
        got = _core.conv2d(x, weights, bias, (s, s), list(pad), act)
    _close(got, want, k * k * 4.0)


@settings(max_examples=40)
@given(seed=st.integers(0, 2**16), c=st.integers(1, 6), h=st.integers(1, 13), w=st.integers(1, 13),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       pad=st.tuples(*[st.integers(0, 2)] * 4))
def test_maxpool(seed, c, h, w, kh, kw, sh, sw, pad):
    """Max pooling with per-side padding (padded cells never win) == reference, bit for bit."""
    t, l, b, r = pad
    assume(_out(h, t, b, kh, sh) >= 1 and _out(w, l, r, kw, sw) >= 1)
    assume(max(t, b) < kh and max(l, r) < kw)  # a window entirely in padding is meaningless
    x = np.random.default_rng(seed).standard_normal((c, h, w), dtype=np.float32)
    want = reference.maxpool2d(x, (kh, kw), (sh, sw), pad)
    got = _core.maxpool2d(x, (kh, kw), (sh, sw), list(pad))
    np.testing.assert_array_equal(got, want)


def test_conv_1x1_and_large_k_blocks() -> None:
    """1x1 conv (no im2col path) and a channel count that spans several K blocks."""
    kc = _core.gemm_blocking()[2]
    rng = np.random.default_rng(5)
    for cin, k in ((kc + 3, 1), (kc // 9 + 2, 3)):
        x = rng.standard_normal((cin, 7, 9), dtype=np.float32)
        wt = (rng.standard_normal((13, cin, k, k), dtype=np.float32) / np.sqrt(cin * k * k)).astype(np.float32)
        want = reference.conv2d(x, wt, None, (1, 1), (k // 2, 0, k // 2, 1), 1, "leaky")
        for isa in ISAS:
            with _isa(isa):
                got = _core.conv2d_weights(x, wt, None, (1, 1), [k // 2, 0, k // 2, 1], 1, "leaky")
            _close(got, want, 8.0)
