"""Native convolution vs the NumPy reference over random shapes, for every GEMM path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepthings import _core
from kernel_fixtures import isa, threads  # noqa: F401 (fixtures)
from deepthings.darknet.layers import ACTIVATIONS
from deepthings.engine import reference as ref


def _scale(x: np.ndarray, w: np.ndarray, stride: tuple[int, int], pad: tuple[int, int, int, int],
           groups: int) -> float:
    # Largest sum of |terms| of any output: the natural error scale of float32 accumulation.
    s = ref.conv2d(np.abs(x), np.abs(w), None, stride, pad, groups)
    return float(s.max()) + 1.0


@st.composite
def conv_cases(draw: st.DrawFn, depthwise: bool = False) -> dict:
    kh = draw(st.integers(1, 7))
    kw = draw(st.one_of(st.just(kh), st.integers(1, 7)))
    sh = draw(st.integers(1, 3))
    sw = draw(st.one_of(st.just(sh), st.integers(1, 3)))
    pad = tuple(draw(st.integers(0, 3)) for _ in range(4))
    if depthwise:
        groups = draw(st.integers(2, 12))
        c, o = groups, groups
    else:
        groups = draw(st.sampled_from([1, 1, 1, 2, 3]))
        c = groups * draw(st.integers(1, 6))
        o = groups * draw(st.integers(1, 12))
    h = draw(st.integers(max(1, kh - pad[0] - pad[2]), 23))
    w = draw(st.integers(max(1, kw - pad[1] - pad[3]), 23))
    act = draw(st.sampled_from(["linear", "leaky", "relu", "logistic", "mish"]))
    seed = draw(st.integers(0, 2**31))
    return dict(c=c, o=o, h=h, w=w, k=(kh, kw), stride=(sh, sw), pad=pad, groups=groups, act=act, seed=seed)


def _run(case: dict) -> None:
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["c"], case["h"], case["w"]), dtype=np.float32)
    w = rng.standard_normal((case["o"], case["c"] // case["groups"], *case["k"]), dtype=np.float32)
    b = rng.standard_normal(case["o"], dtype=np.float32)
    want = ref.conv2d(x, w, b, case["stride"], case["pad"], case["groups"], case["act"])
    cw = _core.ConvWeights(w, case["groups"])
    got = _core.conv2d(x, cw, b, case["stride"], list(case["pad"]), case["act"])
    assert got.shape == want.shape, case
    err = float(np.abs(got - want).max())
    assert err <= 1e-4 * _scale(x, w, case["stride"], case["pad"], case["groups"]), (case, err)


@settings(max_examples=40, suppress_health_check=[*settings.default.suppress_health_check, HealthCheck.function_scoped_fixture])
@given(case=conv_cases())
def test_conv_matches_reference(isa: str, case: dict) -> None:
    """Native conv == reference conv (kernels 1..7, strides 1..3, groups, asymmetric pad)."""
    _run(case)


@settings(max_examples=25, suppress_health_check=[*settings.default.suppress_health_check, HealthCheck.function_scoped_fixture])
@given(case=conv_cases(depthwise=True))
def test_depthwise_matches_reference(isa: str, case: dict) -> None:
    """The direct depthwise kernel == reference (groups == channels == filters)."""
    _run(case)


@pytest.mark.parametrize(
    "c,o,hw,k,s,pad",
    [
        (64, 96, (20, 31), (1, 1), (1, 1), (0, 0, 0, 0)),     # pointwise: B read in place
        (300, 20, (9, 9), (3, 3), (1, 1), (1, 1, 1, 1)),      # K = 2700: many K blocks
        (8, 70, (61, 47), (3, 3), (2, 2), (0, 1, 1, 0)),      # asymmetric tile padding
        (3, 16, (50, 50), (3, 3), (1, 1), (1, 0, 0, 1)),      # layer-0 like, many N blocks
    ],
)
def test_conv_block_boundaries(isa: str, c: int, o: int, hw: tuple[int, int], k: tuple[int, int],
                               s: tuple[int, int], pad: tuple[int, int, int, int]) -> None:
    _run(dict(c=c, o=o, h=hw[0], w=hw[1], k=k, stride=s, pad=pad, groups=1, act="leaky", seed=7))


def test_conv_threads_bit_identical(isa: str, threads: None) -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 40, 33), dtype=np.float32)
    w = rng.standard_normal((24, 16, 3, 3), dtype=np.float32)
    cw = _core.ConvWeights(w)
    outs = []
    for n in (1, 2):
        _core.set_num_threads(n)
        outs.append(_core.conv2d(x, cw, None, (1, 1), [1, 1, 1, 1], "leaky"))
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("c, o, hw", [(64, 70, (19, 19)), (40, 33, (38, 21)), (8, 16, (200, 9))])
def test_conv_threads_bit_identical_deep(isa: str, threads: None, c: int, o: int,
                                         hw: tuple[int, int]) -> None:
    """Deep layers on small maps (few Winograd blocks, fewer column blocks than threads x 2)
    and 1x1 convs: 1, 2 and 3 threads give the same bits, and the result matches the
    reference."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((c, *hw), dtype=np.float32)
    w3 = rng.standard_normal((o, c, 3, 3), dtype=np.float32) * 0.1
    w1 = rng.standard_normal((o, c, 1, 1), dtype=np.float32) * 0.1
    b = rng.standard_normal(o, dtype=np.float32)
    cw3, cw1 = _core.ConvWeights(w3), _core.ConvWeights(w1)
    outs3, outs1 = [], []
    for n in (1, 2, 3):
        _core.set_num_threads(n)
        outs3.append(_core.conv2d(x, cw3, b, (1, 1), [1, 1, 1, 1], "leaky"))
        outs1.append(_core.conv2d(x, cw1, b, (1, 1), [0, 0, 0, 0], "leaky"))
    for got in outs3[1:]:
        np.testing.assert_array_equal(got, outs3[0])
    for got in outs1[1:]:
        np.testing.assert_array_equal(got, outs1[0])
    np.testing.assert_allclose(outs3[0], ref.conv2d(x, w3, b, (1, 1), (1, 1, 1, 1), 1, "leaky"),
                               rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(outs1[0], ref.conv2d(x, w1, b, (1, 1), (0, 0, 0, 0), 1, "leaky"),
                               rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_conv_activations(act: str) -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 9, 11), dtype=np.float32)
    w = rng.standard_normal((5, 4, 3, 3), dtype=np.float32) * 0.3
    got = _core.conv2d_weights(x, w, None, (1, 1), [1, 1, 1, 1], 1, act)
    np.testing.assert_allclose(got, ref.conv2d(x, w, None, (1, 1), (1, 1, 1, 1), 1, act), rtol=1e-4, atol=1e-4)


def test_conv_errors_name_the_argument() -> None:
    cw = _core.ConvWeights(np.zeros((4, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"'x'.*\(C, H, W\).*float64"):
        _core.conv2d(np.zeros((3, 5, 5)), cw)
    with pytest.raises(ValueError, match=r"has 2 channels"):
        _core.conv2d(np.zeros((2, 5, 5), np.float32), cw)
    with pytest.raises(ValueError, match=r"smaller than the kernel"):
        _core.conv2d(np.zeros((3, 2, 5), np.float32), cw)
    with pytest.raises(ValueError, match=r"'bias'.*\(4,\)"):
        _core.conv2d(np.zeros((3, 5, 5), np.float32), cw, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="unknown activation"):
        _core.conv2d(np.zeros((3, 5, 5), np.float32), cw, None, (1, 1), [0, 0, 0, 0], "nope")
    with pytest.raises(ValueError, match="multiple of groups"):
        _core.ConvWeights(np.zeros((5, 1, 3, 3), np.float32), 2)


@pytest.fixture(params=[True, False], ids=["winograd", "im2col"])
def winograd(request: pytest.FixtureRequest):
    before = _core.winograd_enabled()
    _core.set_winograd(request.param)
    try:
        yield request.param
    finally:
        _core.set_winograd(before)


@st.composite
def conv3x3_cases(draw: st.DrawFn) -> dict:
    pad = tuple(draw(st.integers(0, 2)) for _ in range(4))
    return dict(c=draw(st.integers(8, 40)), o=draw(st.integers(16, 40)),
                h=draw(st.integers(max(1, 3 - pad[0] - pad[2]), 30)),
                w=draw(st.integers(max(1, 3 - pad[1] - pad[3]), 30)), k=(3, 3), stride=(1, 1), pad=pad,
                groups=1, act=draw(st.sampled_from(["linear", "leaky"])), seed=draw(st.integers(0, 2**31)))


@settings(max_examples=30, suppress_health_check=[*settings.default.suppress_health_check, HealthCheck.function_scoped_fixture])
@given(case=conv3x3_cases())
def test_conv3x3_winograd_and_im2col(isa: str, winograd: bool, case: dict) -> None:
    """3x3 stride-1 convs (Winograd F(2x2,3x3) when on) == reference, odd sizes, tile pads."""
    _run(case)


def test_winograd_deep_layer(isa: str) -> None:
    """K above the GEMM's KC block and many tile rows per block."""
    _run(dict(c=300, o=48, h=21, w=26, k=(3, 3), stride=(1, 1), pad=(1, 0, 1, 2), groups=1, act="leaky", seed=3))


@st.composite
def region_cases(draw: st.DrawFn) -> dict:
    case = draw(conv3x3_cases())
    oh = case["h"] + case["pad"][0] + case["pad"][2] - 2
    ow = case["w"] + case["pad"][1] + case["pad"][3] - 2
    top = draw(st.integers(0, oh - 1))
    left = draw(st.integers(0, ow - 1))
    case["region"] = (top, left, draw(st.integers(top + 1, oh)), draw(st.integers(left + 1, ow)))
    case["threads"] = draw(st.sampled_from([1, 2]))
    return case


@settings(max_examples=60, suppress_health_check=[*settings.default.suppress_health_check, HealthCheck.function_scoped_fixture])
@given(case=region_cases())
def test_out_region_is_bit_identical_to_the_whole_output(isa: str, winograd: bool, threads: None, case: dict) -> None:
    """A part of a conv's output (out_region) carries the bits of the whole output there: FTP
    tiles ask for one on Winograd-aligned layers, where odd first/last rows skip GEMMs."""
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["c"], case["h"], case["w"]), dtype=np.float32)
    w = rng.standard_normal((case["o"], case["c"], 3, 3), dtype=np.float32)
    b = rng.standard_normal(case["o"], dtype=np.float32)
    cw = _core.ConvWeights(w, 1)
    _core.set_num_threads(case["threads"])
    whole = _core.conv2d(x, cw, b, (1, 1), list(case["pad"]), case["act"])
    t, l, bt, r = case["region"]
    part = _core.conv2d(x, cw, b, (1, 1), list(case["pad"]), case["act"], out_region=case["region"])
    np.testing.assert_array_equal(part.view(np.uint32), whole[:, t:bt, l:r].view(np.uint32))


def test_out_region_one_row_of_a_deep_strip(isa: str) -> None:
    """A 1-row output at an odd and at an even row of a YOLOv2-like deep layer (12 of 16 GEMMs),
    and bad regions are refused with a message naming the argument."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((64, 4, 19), dtype=np.float32)
    w = rng.standard_normal((96, 64, 3, 3), dtype=np.float32)
    cw = _core.ConvWeights(w, 1)
    whole = _core.conv2d(x, cw, None, (1, 1), [1, 1, 0, 1], "leaky")  # 3 x 19 output
    for row in (0, 1, 2):
        part = _core.conv2d(x, cw, None, (1, 1), [1, 1, 0, 1], "leaky", out_region=(row, 0, row + 1, 19))
        np.testing.assert_array_equal(part.view(np.uint32), whole[:, row : row + 1].view(np.uint32))
    for bad in ((0, 0, 0, 19), (0, 0, 4, 19), (2, 0, 1, 19), (0, 0, 1)):
        with pytest.raises(ValueError, match="out_region"):
            _core.conv2d(x, cw, None, (1, 1), [1, 1, 0, 1], "leaky", out_region=bad)
