"""Native pooling, data-movement and small layers vs the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepthings import _core
from deepthings.darknet.layers import ACTIVATIONS
from deepthings.engine import reference as ref


@settings(max_examples=50)
@given(
    c=st.integers(1, 5), h=st.integers(1, 19), w=st.integers(1, 19), k=st.integers(1, 13),
    s=st.integers(1, 3), pad=st.tuples(*[st.integers(0, 6)] * 4), seed=st.integers(0, 2**31),
)
def test_maxpool_matches_reference(c: int, h: int, w: int, k: int, s: int,
                                   pad: tuple[int, int, int, int], seed: int) -> None:
    """Max pooling (any size/stride, asymmetric padding; padding never wins) == reference."""
    if h + pad[0] + pad[2] < k or w + pad[1] + pad[3] < k:
        return
    x = np.random.default_rng(seed).standard_normal((c, h, w), dtype=np.float32) - 5.0
    np.testing.assert_array_equal(_core.maxpool2d(x, (k, k), (s, s), list(pad)), ref.maxpool2d(x, (k, k), (s, s), pad))


def test_maxpool_rectangular() -> None:
    x = np.random.default_rng(0).standard_normal((3, 10, 13), dtype=np.float32)
    np.testing.assert_array_equal(_core.maxpool2d(x, (2, 5), (1, 3), [0, 2, 1, 1]),
                                  ref.maxpool2d(x, (2, 5), (1, 3), (0, 2, 1, 1)))


def test_global_avgpool_upsample() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 5, 9), dtype=np.float32)
    np.testing.assert_allclose(_core.global_avgpool(x), ref.avgpool_global(x), rtol=1e-6, atol=1e-7)
    for f, scale in ((1, 1.0), (2, 1.0), (3, 0.5)):
        np.testing.assert_array_equal(_core.upsample(x, f, scale), ref.upsample(x, f, scale))


@pytest.mark.parametrize("shape,stride", [((4, 6, 6), 2), ((8, 4, 6), 2), ((18, 6, 9), 3), ((64, 38, 38), 2)])
def test_reorg_matches_darknet_order(shape: tuple[int, int, int], stride: int) -> None:
    x = np.random.default_rng(2).standard_normal(shape, dtype=np.float32)
    np.testing.assert_array_equal(_core.reorg(x, stride), ref.reorg(x, stride))


def test_reorg_rejects_indivisible() -> None:
    with pytest.raises(ValueError, match="not divisible"):
        _core.reorg(np.zeros((4, 5, 6), np.float32), 2)


@pytest.mark.parametrize("act", ["linear", "leaky", "logistic"])
def test_shortcut_equal_and_sampled(act: str) -> None:
    rng = np.random.default_rng(4)
    a = rng.standard_normal((6, 8, 8), dtype=np.float32)
    b = rng.standard_normal((6, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(_core.shortcut(a, b, act, 0.5, 2.0), ref.shortcut([a, b], 0.5, 2.0, act), rtol=1e-6)
    big = rng.standard_normal((4, 16, 16), dtype=np.float32)  # sub-sampled, fewer channels
    np.testing.assert_allclose(_core.shortcut(a, big, act), ref.shortcut([a, big], 1.0, 1.0, act), rtol=1e-6)
    small = rng.standard_normal((9, 4, 4), dtype=np.float32)  # spread, more channels
    np.testing.assert_allclose(_core.shortcut(a, small, act), ref.shortcut([a, small], 1.0, 1.0, act), rtol=1e-6)


def test_route_connected_softmax() -> None:
    rng = np.random.default_rng(5)
    a = rng.standard_normal((3, 4, 5), dtype=np.float32)
    b = rng.standard_normal((6, 4, 5), dtype=np.float32)
    np.testing.assert_array_equal(_core.route([a, b[2:4]]), ref.route([a, b], [(0, 3), (2, 4)]))
    with pytest.raises(ValueError, match=r"xs\[1\]"):
        _core.route([a, np.zeros((2, 3, 5), np.float32)])
    x = rng.standard_normal((7, 3, 3), dtype=np.float32)
    w = rng.standard_normal((37, 63), dtype=np.float32)
    bias = rng.standard_normal(37, dtype=np.float32)
    np.testing.assert_allclose(_core.connected(x, w, bias, "leaky"), ref.connected(x, w, bias, "leaky"),
                               rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="expects 63"):
        _core.connected(a, w)
    s = rng.standard_normal((10, 1, 1), dtype=np.float32) * 10
    for groups, temp in ((1, 1.0), (2, 1.0), (5, 3.0)):
        np.testing.assert_allclose(_core.softmax(s, groups, temp), ref.softmax(s, groups, temp), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_activations(act: str) -> None:
    x = np.linspace(-30, 30, 2001, dtype=np.float32).reshape(1, 1, -1)
    np.testing.assert_allclose(_core.activate(x, act), ref.activate(x, act), rtol=1e-5, atol=1e-6)


def test_output_buffers_are_reused_safely() -> None:
    """Outputs come from a cache of freed buffers: live outputs never share memory, are
    writeable and own-able, and the cache can be emptied."""
    x = np.random.default_rng(7).standard_normal((8, 64, 64), dtype=np.float32)
    live = [_core.activate(x, "relu") for _ in range(4)]
    ptrs = {a.__array_interface__["data"][0] for a in live}
    assert len(ptrs) == 4
    for a in live:
        assert a.flags.writeable and a.flags.c_contiguous and a.dtype == np.float32
        np.testing.assert_array_equal(a, np.maximum(x, 0))
    live[0][:] = 5.0
    np.testing.assert_array_equal(live[1], np.maximum(x, 0))
    del live
    again = _core.activate(x, "linear")  # reuses a freed buffer: values fully overwritten
    np.testing.assert_array_equal(again, x)
    del again
    assert _core.buffer_cache_bytes() > 0
    assert _core.trim_buffer_cache() > 0
    assert _core.buffer_cache_bytes() == 0
