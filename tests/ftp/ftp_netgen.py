"""Hypothesis strategies for the FTP tests: random Darknet layer stacks as cfg text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import strategies as st

# The same locations as tests/conftest.py, without importing a module named "conftest" (other
# test directories have their own).
SHARED = Path(os.environ.get("DEEPTHINGS_SHARED", Path(__file__).resolve().parents[2].parent / "shared")).resolve()
DARKNET_CFGS = SHARED / "models" / "darknet"
YOLO_FASTEST = SHARED / "models" / "yolo-fastest-1.1"
IMAGES = SHARED / "images"

ACTIVATIONS = ("leaky", "linear", "relu")


def _engines() -> list:
    """reference always; native when it is built (tests then compare it tile vs whole map)."""
    params = [pytest.param("reference", id="reference")]
    try:
        from deepthings.engine import get_engine

        get_engine("native")
        params.append(pytest.param("native", id="native"))
    except Exception as exc:  # the native engine may not be built in a checkout
        params.append(pytest.param("native", id="native", marks=pytest.mark.skip(reason=f"native engine: {exc}")))
    return params


ENGINES = _engines()


def _winograd_conv(draw, cur):
    """A conv the native engine runs as Winograd F(2x2,3x3): 3x3, stride 1, groups 1, C >= 8,
    O >= 16 (any padding)."""
    c, h, w = cur
    p = draw(st.integers(0, 2))
    oh, ow = h + 2 * p - 2, w + 2 * p - 2
    if oh < 1 or ow < 1:
        return None
    filters = draw(st.integers(16, 20))
    act = draw(st.sampled_from(ACTIVATIONS))
    sec = (
        f"[convolutional]\nfilters={filters}\nsize=3\nstride=1\npadding={p}\n"
        f"batch_normalize={int(draw(st.booleans()))}\nactivation={act}\n"
    )
    return sec, (filters, oh, ow)


def _conv(draw, cur, winograd=False):
    c, h, w = cur
    if winograd and c >= 8 and draw(st.booleans()):
        return _winograd_conv(draw, cur)
    k = draw(st.integers(1, 7))
    s = draw(st.integers(1, 3))
    sx = draw(st.sampled_from([s, s, draw(st.integers(1, 3))]))  # sometimes stride_x != stride_y
    if draw(st.booleans()):
        p, text = k // 2, "pad=1"
    else:
        p = draw(st.integers(0, k - 1))
        text = f"padding={p}"
    text += f"\nstride_x={sx}"
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // sx + 1
    if oh < 1 or ow < 1:
        return None
    filters = draw(st.integers(1, 6))
    common = [g for g in range(1, c + 1) if c % g == 0 and filters % g == 0]
    groups = draw(st.sampled_from(common))
    bn = draw(st.booleans())
    act = draw(st.sampled_from(ACTIVATIONS))
    sec = (
        f"[convolutional]\nfilters={filters}\nsize={k}\nstride={s}\n{text}\ngroups={groups}\n"
        f"batch_normalize={int(bn)}\nactivation={act}\n"
    )
    return sec, (filters, oh, ow)


def _maxpool(draw, cur):
    c, h, w = cur
    size = draw(st.integers(1, 4))
    stride = draw(st.integers(1, 3))
    padding = draw(st.one_of(st.none(), st.integers(0, size)))
    pad_total = size - 1 if padding is None else padding
    if pad_total - pad_total // 2 > size - 1:
        return None  # some output pixels would read only padding (FTP refuses such a layer)
    oh, ow = (h + pad_total - size) // stride + 1, (w + pad_total - size) // stride + 1
    if oh < 1 or ow < 1:
        return None
    text = "" if padding is None else f"padding={padding}\n"
    return f"[maxpool]\nsize={size}\nstride={stride}\n{text}", (c, oh, ow)


@st.composite
def random_cfg(draw, max_layers: int = 7, max_side: int = 26, pointwise_and_pool_only: bool = False,
               winograd: bool = False):
    """(cfg text, list of layer output shapes): conv (k 1..7, stride 1..3, groups, any pad),
    maxpool (incl. stride 1, any padding), route, shortcut, upsample. ``winograd``: the first
    layer, and half the convs reading >= 8 channels, are convs the native engine runs as
    Winograd F(2x2,3x3) (whose tiles are exact only thanks to the plans' alignment)."""
    c = draw(st.integers(8, 12)) if winograd else draw(st.integers(1, 4))
    h = draw(st.integers(4, max_side))
    w = draw(st.integers(4, max_side))
    text = f"[net]\nwidth={w}\nheight={h}\nchannels={c}\n\n"
    shapes: list[tuple[int, int, int]] = []
    cur = (c, h, w)
    n = draw(st.integers(1, max_layers))
    kinds = ["maxpool", "route", "shortcut", "upsample"] if pointwise_and_pool_only else [
        "conv", "conv", "conv", "maxpool", "route", "shortcut", "upsample"
    ]
    while len(shapes) < n:
        i = len(shapes)
        kind = draw(st.sampled_from(kinds if i else [k for k in kinds if k in ("conv", "maxpool")]))
        made = None
        if winograd and i == 0:
            made = _winograd_conv(draw, cur)
        elif kind == "conv":
            made = _conv(draw, cur, winograd)
        elif kind == "maxpool":
            made = _maxpool(draw, cur)
        elif kind == "route":
            same = [j for j in range(i) if shapes[j][1:] == cur[1:]]
            if draw(st.booleans()) and len(same) > 0:
                picks = draw(st.lists(st.sampled_from(same), min_size=1, max_size=3))
                refs = [-1] + [j - i for j in picks]
                ch = cur[0] + sum(shapes[j][0] for j in picks)
                made = (f"[route]\nlayers={','.join(str(r) for r in refs)}\n", (ch, cur[1], cur[2]))
            else:
                j = draw(st.integers(0, i - 1))
                made = (f"[route]\nlayers={j}\n", shapes[j])
        elif kind == "shortcut":
            same = [j for j in range(i - 1) if shapes[j] == cur]
            if same:
                j = draw(st.sampled_from(same))
                act = draw(st.sampled_from(ACTIVATIONS))
                made = (f"[shortcut]\nfrom={j - i}\nactivation={act}\n", cur)
        elif kind == "upsample" and cur[1] * 2 <= 2 * max_side and cur[2] * 2 <= 2 * max_side:
            f = draw(st.sampled_from([2, 2, 3])) if max(cur[1:]) * 3 <= 2 * max_side else 2
            made = (f"[upsample]\nstride={f}\n", (cur[0], cur[1] * f, cur[2] * f))
        if made is None:
            # Nothing valid of this kind here: a 1x1 layer always fits and keeps the stack going.
            if pointwise_and_pool_only:
                made = ("[maxpool]\nsize=1\nstride=1\n", cur)
            else:
                f = draw(st.integers(1, 5))
                made = (f"[convolutional]\nfilters={f}\nsize=1\nstride=1\npad=0\nactivation=leaky\n", (f, cur[1], cur[2]))
        sec, cur = made
        text += sec + "\n"
        shapes.append(cur)
    return text, shapes


def grid_limit(plan_shapes: list[tuple[int, int, int]]) -> tuple[int, int]:
    """Largest grid (N, M) every given map allows."""
    return min(s[1] for s in plan_shapes), min(s[2] for s in plan_shapes)


def scale_of(arr) -> float:
    import numpy as np

    return max(1.0, float(np.abs(arr).max())) if arr.size else 1.0

