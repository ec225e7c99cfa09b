"""The NumPy reference layers against literal Python translations of Darknet's C loops.

Each ``_dn_*`` helper transcribes the Darknet source (pjreddie/darknet src/*.c, AlexeyAB's
yolo layer) loop for loop on flat buffers; hypothesis picks awkward shapes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepthings.darknet import network_from_cfg_text
from deepthings.engine.reference import (
    ReferenceEngine,
    activate,
    avgpool_global,
    connected,
    conv2d,
    crop_center,
    maxpool2d,
    region_head,
    reorg,
    shortcut,
    softmax,
    upsample,
    yolo_head,
)
from deepthings.errors import ShapeError

F32 = np.float32


def _rand(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(F32)


# ----- conv ---------------------------------------------------------------------------
def _naive_conv(x, w, b, stride, pad, groups):
    c, h, wd = x.shape
    o, ig, kh, kw = w.shape
    t, l, bt, r = pad
    sh, sw = stride
    oh = (h + t + bt - kh) // sh + 1
    ow = (wd + l + r - kw) // sw + 1
    og = o // groups
    out = np.zeros((o, oh, ow))
    for oc in range(o):
        g = oc // og
        for i in range(oh):
            for j in range(ow):
                acc = 0.0
                for ic in range(ig):
                    for u in range(kh):
                        for v in range(kw):
                            y, xx = i * sh - t + u, j * sw - l + v
                            if 0 <= y < h and 0 <= xx < wd:
                                acc += float(x[g * ig + ic, y, xx]) * float(w[oc, ic, u, v])
                out[oc, i, j] = acc + b[oc]
    return out


@settings(max_examples=40)
@given(
    groups=st.sampled_from([1, 2, 3]), cin_per=st.integers(1, 3), out_per=st.integers(1, 3),
    h=st.integers(1, 8), w=st.integers(1, 8), kh=st.integers(1, 4), kw=st.integers(1, 4),
    sh=st.integers(1, 3), sw=st.integers(1, 3), pad=st.tuples(*[st.integers(0, 3)] * 4),
    seed=st.integers(0, 2**16), depthwise=st.booleans(),
)
def test_conv2d_matches_naive(groups, cin_per, out_per, h, w, kh, kw, sh, sw, pad, seed, depthwise):
    """conv2d == the textbook loop for any groups, stride, asymmetric padding, odd sizes."""
    if depthwise:
        cin_per, out_per = 1, 1
    t, l, b, r = pad
    if h + t + b < kh or w + l + r < kw:
        with pytest.raises(ShapeError):
            conv2d(np.zeros((groups * cin_per, h, w), F32),
                   np.zeros((groups * out_per, cin_per, kh, kw), F32), None, (sh, sw), pad, groups)
        return
    rng = np.random.default_rng(seed)
    x = _rand(rng, groups * cin_per, h, w)
    wt = _rand(rng, groups * out_per, cin_per, kh, kw)
    bias = _rand(rng, groups * out_per)
    got = conv2d(x, wt, bias, (sh, sw), pad, groups)
    want = _naive_conv(x, wt, bias, (sh, sw), pad, groups)
    assert got.dtype == F32 and got.flags.c_contiguous
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_conv_tile_with_interior_padding_equals_crop() -> None:
    """A tile run with zero padding on its interior sides equals the crop of the full map."""
    text = "[net]\nwidth=12\nheight=10\nchannels=3\n[convolutional]\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
    net = network_from_cfg_text(text, random_seed=4)
    layer = net.layers[0]
    x = np.random.default_rng(0).random((3, 10, 12), dtype=F32)
    eng = ReferenceEngine()
    full = eng.run_layer(layer, [x])
    # Top-left tile: output rows 0..4, cols 0..5 -> input rows 0..5, cols 0..6 (+1 halo).
    tile = eng.run_layer(layer, [np.ascontiguousarray(x[:, 0:6, 0:7])], pad=(1, 1, 0, 0))
    np.testing.assert_allclose(tile, full[:, 0:5, 0:6], rtol=1e-6, atol=1e-6)


# ----- maxpool (forward_maxpool_layer) -------------------------------------------------
def _dn_maxpool(x, size, stride, padding):
    c, h, w = x.shape
    out_h = (h + padding - size) // stride + 1
    out_w = (w + padding - size) // stride + 1
    w_offset = h_offset = -(padding // 2)
    out = np.zeros((c, out_h, out_w), F32)
    for k in range(c):
        for i in range(out_h):
            for j in range(out_w):
                mx = -np.finfo(F32).max
                for n in range(size):
                    for m in range(size):
                        cur_h = h_offset + i * stride + n
                        cur_w = w_offset + j * stride + m
                        if 0 <= cur_h < h and 0 <= cur_w < w:
                            mx = max(mx, x[k, cur_h, cur_w])
                out[k, i, j] = mx
    return out


@settings(max_examples=40)
@given(c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9), size=st.integers(1, 5),
       stride=st.integers(1, 3), extra=st.integers(-1, 3), seed=st.integers(0, 2**16))
def test_maxpool_matches_darknet(c, h, w, size, stride, extra, seed):
    """Darknet maxpool (padding total, top/left padding//2); padded cells never win."""
    padding = max(0, size - 1 + extra)
    if h + padding < size or w + padding < size:
        return
    lo, hi = padding // 2, padding - padding // 2
    x = -np.abs(_rand(np.random.default_rng(seed), c, h, w)) - 1  # all negative: pads must lose
    got = maxpool2d(x, (size, size), (stride, stride), (lo, lo, hi, hi))
    want = _dn_maxpool(x, size, stride, padding)
    np.testing.assert_array_equal(got, want)


# ----- reorg (reorg_cpu with forward=0) -------------------------------------------------
def _dn_reorg(x, stride):
    c, h, w = x.shape
    flat_in = x.reshape(-1)
    out = np.zeros(c * h * w, F32)
    out_c = c // (stride * stride)
    for k in range(c):
        for j in range(h):
            for i in range(w):
                in_index = i + w * (j + h * k)
                c2 = k % out_c
                offset = k // out_c
                w2 = i * stride + offset % stride
                h2 = j * stride + offset // stride
                out_index = w2 + w * stride * (h2 + h * stride * c2)
                out[in_index] = flat_in[out_index]  # forward=0: out[in_index] = x[out_index]
    return out.reshape(c * stride * stride, h // stride, w // stride)


@pytest.mark.parametrize("c,h,w,s", [(4, 2, 2, 2), (8, 4, 6, 2), (9, 3, 6, 3), (16, 6, 4, 2), (4, 4, 4, 1)])
def test_reorg_matches_darknet_order(c, h, w, s):
    x = np.arange(c * h * w, dtype=F32).reshape(c, h, w)
    np.testing.assert_array_equal(reorg(x, s), _dn_reorg(x, s))


def test_reorg_is_not_space_to_depth():
    x = np.arange(4 * 2 * 2, dtype=F32).reshape(4, 2, 2)
    s2d = x.reshape(4, 1, 2, 1, 2).transpose(2, 4, 0, 1, 3).reshape(16, 1, 1)
    assert not np.array_equal(reorg(x, 2), s2d)


# ----- heads ------------------------------------------------------------------------------
def _logistic(v):
    return 1.0 / (1.0 + math.exp(-v))


def _dn_region(x, n, coords, classes, use_softmax, background):
    c, h, w = x.shape
    per = coords + classes + 1
    inp = x.reshape(-1).astype(np.float64)
    out = inp.copy()

    def entry(nn, loc, e):
        return nn * h * w * per + e * h * w + loc

    for a in range(n):
        idx = entry(a, 0, 0)
        for q in range(2 * h * w):
            out[idx + q] = _logistic(out[idx + q])
        idx = entry(a, 0, coords)
        if not background:
            for q in range(h * w):
                out[idx + q] = _logistic(out[idx + q])
        idx = entry(a, 0, coords + 1)
        if not use_softmax:
            for q in range(classes * h * w):
                out[idx + q] = _logistic(out[idx + q])
    if use_softmax:
        start = entry(0, 0, coords + (0 if background else 1))
        nvals = classes + int(background)
        for a in range(n):
            for loc in range(h * w):
                base = start + a * (c * h * w // n) + loc
                vals = [inp[base + k * h * w] for k in range(nvals)]
                m = max(vals)
                e = [math.exp(v - m) for v in vals]
                s = sum(e)
                for k in range(nvals):
                    out[base + k * h * w] = e[k] / s
    return out.reshape(c, h, w)


@pytest.mark.parametrize("use_softmax,background", [(True, False), (False, False), (True, True)])
def test_region_matches_forward_region_layer(use_softmax, background):
    n, coords, classes, h, w = 3, 4, 5, 3, 4
    x = _rand(np.random.default_rng(2), n * (coords + classes + 1), h, w) * 3
    got = region_head(x, n, coords, classes, use_softmax, background)
    np.testing.assert_allclose(got, _dn_region(x, n, coords, classes, use_softmax, background),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scale", [1.0, 1.05, 2.0])
def test_yolo_matches_forward_yolo_layer(scale):
    n, classes, h, w = 3, 2, 2, 5
    x = _rand(np.random.default_rng(3), n * (5 + classes), h, w) * 3
    got = yolo_head(x, n, classes, scale)
    v = x.reshape(n, 5 + classes, h, w).astype(np.float64)
    sig = 1 / (1 + np.exp(-v))
    want = v.copy()
    want[:, 0:2] = sig[:, 0:2] * scale - 0.5 * (scale - 1)
    want[:, 4:] = sig[:, 4:]
    np.testing.assert_allclose(got, want.reshape(x.shape), rtol=1e-5, atol=1e-6)
    # new_coords: no logistic, only the scale on x, y.
    got2 = yolo_head(x, n, classes, scale, new_coords=True).reshape(v.shape)
    np.testing.assert_allclose(got2[:, 2:], v[:, 2:], rtol=1e-6)
    np.testing.assert_allclose(got2[:, :2], v[:, :2] * scale - 0.5 * (scale - 1), rtol=1e-5, atol=1e-6)


# ----- the rest ---------------------------------------------------------------------------
def _dn_shortcut(prev, add, alpha, beta):
    c2, h2, w2 = prev.shape
    c1, h1, w1 = add.shape
    stride, sample = max(w1 // w2, 1), max(w2 // w1, 1)
    out = prev.reshape(-1).astype(np.float64).copy()
    a = add.reshape(-1)
    for k in range(min(c1, c2)):
        for j in range(min(h1, h2)):
            for i in range(min(w1, w2)):
                oi = i * sample + w2 * (j * sample + h2 * k)
                ai = i * stride + w1 * (j * stride + h1 * k)
                out[oi] = alpha * out[oi] + beta * a[ai]
    return out.reshape(prev.shape)


@pytest.mark.parametrize("prev,add", [((4, 4, 4), (4, 4, 4)), ((6, 2, 3), (3, 4, 6)),
                                      ((2, 6, 6), (5, 2, 2)), ((3, 3, 3), (3, 9, 9))])
def test_shortcut_matches_shortcut_cpu(prev, add):
    rng = np.random.default_rng(9)
    p, a = _rand(rng, *prev), _rand(rng, *add)
    got = shortcut([p, a], 1.0, 1.0, "linear")
    np.testing.assert_allclose(got, _dn_shortcut(p, a, 1.0, 1.0), rtol=1e-6, atol=1e-6)
    got = shortcut([p, a], 0.5, 2.0, "leaky")
    want = _dn_shortcut(p, a, 0.5, 2.0)
    np.testing.assert_allclose(got, np.where(want > 0, want, 0.1 * want), rtol=1e-5, atol=1e-6)


def test_upsample_avgpool_connected_softmax_crop():
    rng = np.random.default_rng(1)
    x = _rand(rng, 2, 3, 4)
    up = upsample(x, 3, scale=0.5)
    for y in range(9):
        for xx in range(12):
            np.testing.assert_array_equal(up[:, y, xx], 0.5 * x[:, y // 3, xx // 3])
    np.testing.assert_allclose(avgpool_global(x).reshape(-1), x.astype(np.float64).mean(axis=(1, 2)), rtol=1e-6)
    wt = _rand(rng, 5, 24)
    b = _rand(rng, 5)
    np.testing.assert_allclose(connected(x, wt, b, "relu").reshape(-1),
                               np.maximum(wt @ x.reshape(-1) + b, 0), rtol=1e-5, atol=1e-6)
    sm = softmax(x, groups=2, temperature=2.0).reshape(2, -1)
    e = np.exp(x.reshape(2, -1).astype(np.float64) / 2.0)
    np.testing.assert_allclose(sm, e / e.sum(axis=1, keepdims=True), rtol=1e-6)
    # Darknet crop at inference: central, then *2 - 1 unless noadjust.
    big = _rand(rng, 2, 7, 8)
    np.testing.assert_array_equal(crop_center(big, 1, 2, 5, 4, adjust=False), big[:, 1:6, 2:6])
    np.testing.assert_allclose(crop_center(big, 1, 2, 5, 4, adjust=True), big[:, 1:6, 2:6] * 2 - 1)


def test_crop_layer_offsets():
    text = "[net]\nwidth=9\nheight=8\nchannels=1\n[crop]\ncrop_height=5\ncrop_width=4\n"
    net = network_from_cfg_text(text)
    assert net.layers[0].offsets() == (1, 2) and net.layers[0].out_shape == (1, 5, 4)
    x = np.arange(72, dtype=F32).reshape(1, 8, 9) / 72
    np.testing.assert_allclose(net.forward(x, engine="reference"), x[:, 1:6, 2:6] * 2 - 1)


def _dn_act(name: str, v: float) -> float:
    """activations.h, one float at a time."""
    if name == "linear":
        return v
    if name == "leaky":
        return v if v > 0 else 0.1 * v
    if name == "relu":
        return v * (v > 0)
    if name == "logistic":
        return 1.0 / (1.0 + math.exp(-v))
    if name == "tanh":
        return (math.exp(2 * v) - 1) / (math.exp(2 * v) + 1)
    if name == "elu":
        return (v >= 0) * v + (v < 0) * (math.exp(v) - 1)
    if name == "mish":
        sp = v if v > 20 else (math.exp(v) if v < -20 else math.log(math.exp(v) + 1))
        return v * math.tanh(sp)
    if name == "swish":
        return v / (1.0 + math.exp(-v))
    if name == "relie":
        return v if v > 0 else 0.01 * v
    if name == "ramp":
        return v * (v > 0) + 0.1 * v
    if name == "hardtan":
        return -1.0 if v < -1 else (1.0 if v > 1 else v)
    if name == "plse":
        return 0.01 * (v + 4) if v < -4 else (0.01 * (v - 4) + 1 if v > 4 else 0.125 * v + 0.5)
    if name == "lhtan":
        return 0.001 * v if v < 0 else (0.001 * (v - 1) + 1 if v > 1 else v)
    if name == "loggy":
        return 2.0 / (1.0 + math.exp(-v)) - 1
    if name == "stair":
        n = math.floor(v)
        return math.floor(v / 2.0) if n % 2 == 0 else (v - n) + math.floor(v / 2.0)
    raise KeyError(name)


@pytest.mark.parametrize("name", ["linear", "leaky", "relu", "logistic", "tanh", "elu", "mish",
                                  "swish", "relie", "ramp", "hardtan", "plse", "lhtan", "loggy",
                                  "stair"])
def test_activations_match_darknet(name):
    xs = np.array([-25.0, -5.0, -2.5, -1.0, -0.3, 0.0, 0.4, 1.0, 1.7, 3.0, 5.5, 25.0], F32)
    got = activate(xs, name)
    want = np.array([_dn_act(name, float(v)) for v in xs])
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)


def test_run_layer_rejects_bad_inputs():
    text = "[net]\nwidth=4\nheight=4\nchannels=2\n[convolutional]\nfilters=2\nsize=1\n[avgpool]\n"
    net = network_from_cfg_text(text, random_seed=0)
    eng = ReferenceEngine()
    with pytest.raises(ShapeError, match=r"layer 0 \[convolutional\].*expected \(2, H, W\)"):
        eng.run_layer(net.layers[0], [np.zeros((3, 4, 4), F32)])
    with pytest.raises(ShapeError, match="float32"):
        eng.run_layer(net.layers[0], [np.zeros((2, 4, 4))])
    with pytest.raises(ShapeError, match="got 2 inputs"):
        eng.run_layer(net.layers[0], [np.zeros((2, 4, 4), F32)] * 2)
    with pytest.raises(ShapeError, match=r"layer 1 \[avgpool\].*expected \(2, 4, 4\)"):
        eng.run_layer(net.layers[1], [np.zeros((2, 3, 4), F32)])
