"""The NumPy reference engine: plain, obviously-right layer math following Darknet.

It is the oracle for the native C++ engine and the tile code. The plain functions
(``conv2d``, ``maxpool2d``, ...) take explicit parameters so kernel tests can call them
directly; ``ReferenceEngine.run_layer`` applies them to a loaded layer.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from deepthings.darknet.layers import Layer, shortcut_sampling
from deepthings.errors import ShapeError

Pad = tuple[int, int, int, int]

# Darknet's maxpool starts every window at -FLT_MAX, so padded cells never win.
_NEG_FLT_MAX = np.float32(-np.finfo(np.float32).max)


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


# ----- activations (Darknet's activations.h, element-wise) -------------------------------
def _logistic(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def _softplus(x: np.ndarray, threshold: float = 20.0) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.where(x > threshold, x, np.where(x < -threshold, np.exp(x), np.log1p(np.exp(x))))


def _stair(x: np.ndarray) -> np.ndarray:
    n = np.floor(x)
    half = np.floor(x / 2.0)
    return np.where(n % 2 == 0, half, (x - n) + half)


_ACT: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda x: x,
    "leaky": lambda x: np.where(x > 0, x, np.float32(0.1) * x),
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.clip(x, 0, 6),
    "logistic": _logistic,
    "tanh": np.tanh,
    "elu": lambda x: np.where(x >= 0, x, np.expm1(np.minimum(x, 0))),
    "selu": lambda x: np.where(
        x >= 0, 1.0507 * x, 1.0507 * 1.6732 * np.expm1(np.minimum(x, 0))
    ),
    "mish": lambda x: x * np.tanh(_softplus(x)),
    "hard_mish": lambda x: np.where(x > 0, x, np.where(x > -2, x * x / 2 + x, 0)),
    "swish": lambda x: x * _logistic(x),
    "softplus": _softplus,
    "gelu": lambda x: 0.5 * x * (1 + np.tanh(0.797885 * x + 0.035677 * x**3)),
    "relie": lambda x: np.where(x > 0, x, np.float32(0.01) * x),
    "ramp": lambda x: x * (x > 0) + np.float32(0.1) * x,
    "lhtan": lambda x: np.where(x < 0, 0.001 * x, np.where(x > 1, 0.001 * (x - 1) + 1, x)),
    "hardtan": lambda x: np.clip(x, -1, 1),
    "plse": lambda x: np.where(
        x < -4, 0.01 * (x + 4), np.where(x > 4, 0.01 * (x - 4) + 1, 0.125 * x + 0.5)
    ),
    "stair": _stair,
    "loggy": lambda x: 2.0 * _logistic(x) - 1.0,
}


def activate(x: np.ndarray, name: str) -> np.ndarray:
    """Darknet activation ``name`` applied element-wise (returns a new float32 array)."""
    fn = _ACT.get(name)
    if fn is None:
        raise ValueError(f"unknown activation {name!r}")
    return _f32(fn(np.asarray(x, dtype=np.float32)))


# ----- window layers ---------------------------------------------------------------------
def _out_size(n: int, lo: int, hi: int, k: int, s: int, what: str) -> int:
    size = (n + lo + hi - k) // s + 1
    if n + lo + hi < k or size < 1:
        raise ShapeError(
            f"{what}: input size {n} with padding ({lo}, {hi}) is smaller than the kernel {k}"
        )
    return size


def conv2d(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    stride: tuple[int, int] = (1, 1),
    pad: Pad = (0, 0, 0, 0),
    groups: int = 1,
    activation: str = "linear",
) -> np.ndarray:
    """Cross-correlation of CHW ``x`` with ``w`` (O, C/groups, kh, kw), + bias, activation.

    Zero padding per side ``pad = (top, left, bottom, right)``.
    """
    x = np.asarray(x, dtype=np.float32)
    w = np.asarray(w, dtype=np.float32)
    c, h, wd = x.shape
    o, ig, kh, kw = w.shape
    sh, sw = stride
    t, left, bt, r = pad
    if c != ig * groups or o % groups:
        raise ShapeError(f"conv2d: input has {c} channels, weights {w.shape} with groups={groups}")
    oh = _out_size(h, t, bt, kh, sh, "conv2d rows")
    ow = _out_size(wd, left, r, kw, sw, "conv2d cols")
    xp = np.pad(x, ((0, 0), (t, bt), (left, r)))
    og = o // groups
    out = np.empty((o, oh, ow), dtype=np.float32)
    if ig == 1 and og == 1:
        # Depthwise: sum over kernel taps of shifted strided views (no im2col).
        acc = np.zeros((c, oh, ow), dtype=np.float32)
        for i in range(kh):
            for j in range(kw):
                tap = xp[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw]
                acc += tap * w[:, 0, i, j][:, None, None]
        out[:] = acc
    else:
        # im2col: (C, oh, ow, kh, kw) strided view -> (C*kh*kw, oh*ow) matrix per group.
        win = sliding_window_view(xp, (kh, kw), axis=(1, 2))
        win = win[:, : sh * (oh - 1) + 1 : sh, : sw * (ow - 1) + 1 : sw]
        for g in range(groups):
            cols = win[g * ig : (g + 1) * ig].transpose(0, 3, 4, 1, 2).reshape(ig * kh * kw, oh * ow)
            wm = w[g * og : (g + 1) * og].reshape(og, ig * kh * kw)
            out[g * og : (g + 1) * og] = (wm @ cols).reshape(og, oh, ow)
    if b is not None:
        out += np.asarray(b, dtype=np.float32)[:, None, None]
    return activate(out, activation)


def maxpool2d(
    x: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pad: Pad = (0, 0, 0, 0),
) -> np.ndarray:
    """Max pooling; padded cells hold -FLT_MAX (as in Darknet) so they never win."""
    x = np.asarray(x, dtype=np.float32)
    _, h, w = x.shape
    kh, kw = kernel
    sh, sw = stride
    t, left, b, r = pad
    oh = _out_size(h, t, b, kh, sh, "maxpool rows")
    ow = _out_size(w, left, r, kw, sw, "maxpool cols")
    # Darknet's output size can need more bottom/right cells than `pad` says; pad generously.
    need_h = (oh - 1) * sh + kh
    need_w = (ow - 1) * sw + kw
    xp = np.pad(
        x,
        ((0, 0), (t, max(0, need_h - h - t)), (left, max(0, need_w - w - left))),
        constant_values=_NEG_FLT_MAX,
    )
    out = np.full((x.shape[0], oh, ow), _NEG_FLT_MAX, dtype=np.float32)
    for i in range(kh):
        for j in range(kw):
            np.maximum(out, xp[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw], out=out)
    return out


def avgpool_global(x: np.ndarray) -> np.ndarray:
    """Mean over each channel's map: (C, H, W) -> (C, 1, 1)."""
    x = np.asarray(x, dtype=np.float32)
    return _f32(x.mean(axis=(1, 2), dtype=np.float64, keepdims=True))


def upsample(x: np.ndarray, factor: int, scale: float = 1.0) -> np.ndarray:
    """Nearest-neighbour upsampling: out[c, y, x] = scale * in[c, y // f, x // f]."""
    x = np.asarray(x, dtype=np.float32)
    out = np.repeat(np.repeat(x, factor, axis=1), factor, axis=2)
    if scale != 1.0:
        out = out * np.float32(scale)
    return _f32(out)


def reorg(x: np.ndarray, stride: int) -> np.ndarray:
    """Darknet's reorg (forward_reorg_layer -> reorg_cpu(input, w, h, c, stride, forward=0)).

    reorg_cpu walks k < C, j < H, i < W of the input dims and writes
    ``out[k, j, i] = in'[k % (C/s²), j*s + (k // (C/s²)) // s, i*s + (k // (C/s²)) % s]`` where
    ``in'`` is the input buffer read as (C/s², H*s, W*s); the flat result is then read as
    (C*s², H/s, W/s). This is not a plain space-to-depth.
    """
    x = np.asarray(x, dtype=np.float32)
    c, h, w = x.shape
    s = stride
    oc = c // (s * s)
    if oc * s * s != c or h % s or w % s:
        raise ShapeError(f"reorg: input {x.shape} not divisible by stride {s}")
    # in'[c2, j*s + dy, i*s + dx] == v[c2, j, dy, i, dx]
    v = x.reshape(oc, h, s, w, s)
    flat = v.transpose(2, 4, 0, 1, 3)  # (dy, dx, c2, j, i): k = (dy*s + dx) * oc + c2
    return _f32(flat.reshape(c * s * s, h // s, w // s))


def connected(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, activation: str = "linear"
) -> np.ndarray:
    """Fully connected: y = act(w @ flatten(x) + b), returned as (O, 1, 1)."""
    v = np.asarray(x, dtype=np.float32).reshape(-1)
    w = np.asarray(w, dtype=np.float32)
    if w.shape[1] != v.size:
        raise ShapeError(f"connected: weights {w.shape} do not fit {v.size} inputs")
    y = w @ v
    if b is not None:
        y = y + np.asarray(b, dtype=np.float32)
    return activate(y, activation).reshape(-1, 1, 1)


def softmax(x: np.ndarray, groups: int = 1, temperature: float = 1.0) -> np.ndarray:
    """Softmax over the flattened input in ``groups`` contiguous groups (Darknet softmax)."""
    x = np.asarray(x, dtype=np.float32)
    v = x.reshape(groups, -1).astype(np.float64) / temperature
    e = np.exp(v - v.max(axis=1, keepdims=True))
    return _f32((e / e.sum(axis=1, keepdims=True)).reshape(x.shape))


def region_head(
    x: np.ndarray, num: int, coords: int, classes: int, softmax_classes: bool, background: bool
) -> np.ndarray:
    """forward_region_layer's in-place activations on a copy of ``x``."""
    x = np.asarray(x, dtype=np.float32)
    c, h, w = x.shape
    per = coords + classes + 1
    out = x.copy().reshape(num, per, h, w)
    raw = x.reshape(num, per, h, w)
    out[:, 0:2] = _logistic(raw[:, 0:2])
    if not background:
        out[:, coords] = _logistic(raw[:, coords])
    if softmax_classes:
        start = coords + (0 if background else 1)
        cls = raw[:, start : start + classes + int(background)].astype(np.float64)
        e = np.exp(cls - cls.max(axis=1, keepdims=True))
        out[:, start : start + classes + int(background)] = e / e.sum(axis=1, keepdims=True)
    else:
        out[:, coords + 1 :] = _logistic(raw[:, coords + 1 :])
    return _f32(out.reshape(c, h, w))


def yolo_head(
    x: np.ndarray, num: int, classes: int, scale_x_y: float = 1.0, new_coords: bool = False
) -> np.ndarray:
    """forward_yolo_layer's (AlexeyAB) in-place activations on a copy of ``x``."""
    x = np.asarray(x, dtype=np.float32)
    c, h, w = x.shape
    out = x.copy().reshape(num, 5 + classes, h, w)
    if not new_coords:
        out[:, 0:2] = _logistic(out[:, 0:2])
        out[:, 4:] = _logistic(out[:, 4:])
    if scale_x_y != 1.0:
        out[:, 0:2] = out[:, 0:2] * np.float32(scale_x_y) - np.float32(0.5 * (scale_x_y - 1))
    return _f32(out.reshape(c, h, w))


def crop_center(x: np.ndarray, dh: int, dw: int, oh: int, ow: int, adjust: bool) -> np.ndarray:
    """Darknet crop at inference: rows dh..dh+oh, cols dw..dw+ow, then x*2-1 if adjust."""
    x = np.asarray(x, dtype=np.float32)
    out = x[:, dh : dh + oh, dw : dw + ow]
    if adjust:
        out = out * np.float32(2) - np.float32(1)
    return _f32(out)


def route(inputs: Sequence[np.ndarray], slices: Sequence[tuple[int, int]]) -> np.ndarray:
    """Concatenate channel ranges ``slices[i]`` of each input."""
    return _f32(np.concatenate([a[lo:hi] for a, (lo, hi) in zip(inputs, slices)], axis=0))


def shortcut(inputs: Sequence[np.ndarray], alpha: float = 1.0, beta: float = 1.0,
             activation: str = "linear") -> np.ndarray:
    """act(alpha * inputs[0] + beta * sum(inputs[1:])), Darknet's shortcut_cpu.

    An input whose map is an integer factor larger/smaller than inputs[0] is sub-sampled /
    spread and only the common channels are added (see Shortcut.spatial).
    """
    acc = np.array(inputs[0], dtype=np.float32)
    a_ = np.float32(alpha)
    b_ = np.float32(beta)
    for a in inputs[1:]:
        a = np.asarray(a, dtype=np.float32)
        if a.shape == acc.shape:
            acc = np.asarray(a_ * acc + b_ * a, dtype=np.float32)
            continue
        st, sa = shortcut_sampling(a.shape, acc.shape)  # type: ignore[misc,arg-type]
        c, h, w = (min(p, q) for p, q in zip(a.shape, acc.shape))
        view = acc[:c, : h * sa : sa, : w * sa : sa]
        view[...] = a_ * view + b_ * a[:c, : h * st : st, : w * st : st]
    return activate(acc, activation)


# ----- engine ----------------------------------------------------------------------------
class ReferenceEngine:
    """Runs one layer with the NumPy functions above (Engine protocol)."""

    name = "reference"
    takes_out_region = True

    def run_layer(
        self, layer: Layer, inputs: list[np.ndarray], pad: Pad | None = None, out_region: Pad | None = None
    ) -> np.ndarray:
        """Output of ``layer`` for ``inputs`` (one array per ``layer.inputs``).

        ``pad`` (top, left, bottom, right) overrides the layer's own padding for window
        layers (a tile passes zero padding where its region is interior). ``out_region``
        (top, left, bottom, right, half-open) returns only that part of the output.
        """
        _check_inputs(layer, inputs, pad)
        fn = _DISPATCH.get(layer.type)
        if fn is None:
            raise ShapeError(f"layer {layer.index} [{layer.type}]: no reference implementation")
        layer.require_weights()
        y = fn(layer, inputs, pad)
        if out_region is None:
            return y
        t, l, b, r = out_region
        if not (0 <= t < b <= y.shape[1] and 0 <= l < r <= y.shape[2]):
            raise ShapeError(
                f"layer {layer.index} [{layer.type}]: out_region {tuple(out_region)} is not a non-empty part "
                f"of the {y.shape[1]}x{y.shape[2]} output"
            )
        return np.ascontiguousarray(y[:, t:b, l:r])


def _check_inputs(layer: Layer, inputs: Sequence[np.ndarray], pad: Pad | None) -> None:
    where = f"layer {layer.index} [{layer.type}]"
    if len(inputs) != len(layer.inputs):
        raise ShapeError(f"{where}: got {len(inputs)} inputs, expected {len(layer.inputs)}")
    tileable = layer.spatial.kind != "global"
    for k, (a, shp) in enumerate(zip(inputs, layer.in_shapes)):
        if not isinstance(a, np.ndarray) or a.ndim != 3:
            got = getattr(a, "shape", type(a).__name__)
            raise ShapeError(f"{where}: input {k} must be a CHW array, got {got}")
        if a.dtype != np.float32:
            raise ShapeError(f"{where}: input {k} must be float32, got {a.dtype}")
        if a.shape[0] != shp[0] or (not tileable and a.shape != shp):
            expect = f"({shp[0]}, H, W)" if tileable else str(shp)
            raise ShapeError(f"{where}: input {k} has shape {a.shape}, expected {expect}")
    if tileable and len({a.shape[1:] for a in inputs}) > 1:
        raise ShapeError(f"{where}: inputs have different map sizes {[a.shape for a in inputs]}")
    if pad is not None and (len(pad) != 4 or min(pad) < 0):
        raise ShapeError(f"{where}: pad must be 4 non-negative ints, got {pad}")


def _conv(layer: Layer, ins: Sequence[np.ndarray], pad: Pad | None) -> np.ndarray:
    return conv2d(
        ins[0], layer.weight, layer.bias, layer.stride,  # type: ignore[attr-defined]
        layer.spatial.pad if pad is None else pad, layer.groups,  # type: ignore[attr-defined]
        layer.activation,
    )


def _maxpool(layer: Layer, ins: Sequence[np.ndarray], pad: Pad | None) -> np.ndarray:
    sp = layer.spatial
    return maxpool2d(ins[0], sp.kernel, sp.stride, sp.pad if pad is None else pad)


def _crop(layer: Layer, x: np.ndarray) -> np.ndarray:
    dh, dw = layer.offsets()  # type: ignore[attr-defined]
    return crop_center(x, dh, dw, layer.crop_height, layer.crop_width,  # type: ignore[attr-defined]
                       not layer.noadjust)  # type: ignore[attr-defined]


def _identity(layer: Layer, ins: Sequence[np.ndarray], pad: Pad | None) -> np.ndarray:
    return _f32(ins[0]).copy()


_DISPATCH: dict[str, Callable[[Layer, Sequence[np.ndarray], Pad | None], np.ndarray]] = {
    "convolutional": _conv,
    "maxpool": _maxpool,
    "avgpool": lambda ly, ins, p: avgpool_global(ins[0]),
    "connected": lambda ly, ins, p: connected(ins[0], ly.weight, ly.bias, ly.activation),  # type: ignore[attr-defined]
    "dropout": _identity,
    "cost": _identity,
    "softmax": lambda ly, ins, p: softmax(ins[0], ly.groups, ly.temperature),  # type: ignore[attr-defined]
    "route": lambda ly, ins, p: route(ins, ly.channel_slices()),  # type: ignore[attr-defined]
    "reorg": lambda ly, ins, p: reorg(ins[0], ly.stride),  # type: ignore[attr-defined]
    "shortcut": lambda ly, ins, p: shortcut(ins, ly.alpha, ly.beta, ly.activation),  # type: ignore[attr-defined]
    "upsample": lambda ly, ins, p: upsample(ins[0], ly.factor, ly.scale),  # type: ignore[attr-defined]
    "region": lambda ly, ins, p: region_head(
        ins[0], ly.num, ly.coords, ly.classes, ly.softmax, ly.background  # type: ignore[attr-defined]
    ),
    "yolo": lambda ly, ins, p: yolo_head(ins[0], ly.num, ly.classes, ly.scale_x_y, ly.new_coords),  # type: ignore[attr-defined]
    "crop": lambda ly, ins, p: _crop(ly, ins[0]),
}

__all__ = [
    "ReferenceEngine",
    "activate",
    "avgpool_global",
    "connected",
    "conv2d",
    "crop_center",
    "maxpool2d",
    "region_head",
    "reorg",
    "route",
    "shortcut",
    "softmax",
    "upsample",
    "yolo_head",
]
