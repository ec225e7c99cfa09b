"""Random small Darknet networks: every layer equals OpenCV DNN's (shape and values).

Hypothesis writes cfg text layer by layer (conv with groups/stride/padding/BN, maxpool with
any size/stride/padding, route, shortcut, upsample, reorg, dropout), random weights go to a
file, and both engines run the same input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from cv_oracle import cv_call, layer_map, max_rel_err, read_net
from hypothesis import given, settings
from hypothesis import strategies as st

from deepthings.darknet import load_darknet, network_from_cfg_text, write_random_weights

ACTS = ["linear", "leaky", "relu", "logistic", "mish"]


@st.composite
def random_cfg(draw: st.DrawFn) -> str:
    c = draw(st.integers(1, 4))
    h = draw(st.integers(6, 20))
    w = draw(st.integers(6, 20))
    lines = [f"[net]\nwidth={w}\nheight={h}\nchannels={c}\n"]
    shapes: list[tuple[int, int, int]] = []
    cur = (c, h, w)
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["conv", "conv", "conv", "maxpool", "route", "shortcut",
                                     "upsample", "reorg", "dropout"]))
        cc, hh, ww = cur
        text = None
        if kind == "conv":
            divisors = [g for g in range(1, cc + 1) if cc % g == 0]
            groups = draw(st.sampled_from(divisors))
            filters = groups * draw(st.integers(1, 3))
            size = draw(st.integers(1, 4))
            stride = draw(st.integers(1, 2))
            if draw(st.booleans()):
                padding, pad_txt = size // 2, "pad=1"
            else:
                padding = draw(st.integers(0, 2))
                pad_txt = f"padding={padding}"
            oh = (hh + 2 * padding - size) // stride + 1
            ow = (ww + 2 * padding - size) // stride + 1
            if oh >= 1 and ow >= 1:
                bn = draw(st.booleans())
                act = draw(st.sampled_from(ACTS))
                text = (f"[convolutional]\nbatch_normalize={int(bn)}\nfilters={filters}\n"
                        f"size={size}\nstride={stride}\n{pad_txt}\ngroups={groups}\nactivation={act}\n")
                new = (filters, oh, ow)
        elif kind == "maxpool":
            size = draw(st.integers(1, 4))
            stride = draw(st.integers(1, 3))
            # padding >= size allows windows made only of padding: Darknet gives -FLT_MAX
            # there (so do we), OpenCV something else; real cfgs never do it.
            padding = draw(st.one_of(st.none(), st.integers(0, size - 1)))
            p = size - 1 if padding is None else padding
            oh, ow = (hh + p - size) // stride + 1, (ww + p - size) // stride + 1
            if oh >= 1 and ow >= 1 and stride <= size:
                text = f"[maxpool]\nsize={size}\nstride={stride}\n" + (
                    "" if padding is None else f"padding={padding}\n")
                new = (cc, oh, ow)
        elif kind == "route" and shapes:
            same = [i for i, s in enumerate(shapes) if s[1:] == (hh, ww)]
            picks = draw(st.lists(st.sampled_from(same), min_size=1, max_size=2)) if same else []
            if picks:
                n = len(shapes)
                text = "[route]\nlayers=" + ",".join(str(i - n) for i in picks) + "\n"
                new = (sum(shapes[i][0] for i in picks), hh, ww)
        elif kind == "shortcut" and len(shapes) >= 2:
            same = [i for i, s in enumerate(shapes[:-1]) if s == cur]
            if same:
                i = draw(st.sampled_from(same))
                act = draw(st.sampled_from(["linear", "leaky"]))
                text = f"[shortcut]\nfrom={i - len(shapes)}\nactivation={act}\n"
                new = cur
        elif kind == "upsample" and hh <= 16 and ww <= 16:
            text, new = "[upsample]\nstride=2\n", (cc, hh * 2, ww * 2)
        elif kind == "reorg" and hh % 2 == 0 and ww % 2 == 0 and cc % 4 == 0:
            text, new = "[reorg]\nstride=2\n", (cc * 4, hh // 2, ww // 2)
        elif kind == "dropout" and shapes:  # OpenCV's importer cannot start with a dropout
            text, new = "[dropout]\nprobability=.5\n", cur
        if text is None:
            continue
        lines.append(text)
        shapes.append(new)
        cur = new
    if not shapes:
        lines.append("[convolutional]\nfilters=2\nsize=1\nactivation=leaky\n")
    return "\n".join(lines)


@settings(max_examples=40)
@given(random_cfg(), st.integers(0, 1000))
def test_random_net_matches_opencv(tmp_path_factory, text: str, seed: int) -> None:
    """Every layer of a random network equals OpenCV's, shape and values (1e-3 x max |a|)."""
    tmp: Path = tmp_path_factory.mktemp("net")
    cfg = tmp / "net.cfg"
    cfg.write_text(text)
    weights = tmp / "net.weights"
    write_random_weights(cfg, weights, seed=seed)
    net = load_darknet(cfg, weights)
    # Our own shape bookkeeping agrees with what the layers compute.
    x = np.random.default_rng(seed).random(net.input_shape, dtype=np.float32)
    ours = net.forward(x, engine="reference", outputs=range(len(net)))
    for layer in net.layers:
        assert ours[layer.index].shape == layer.out_shape
    cvnet = read_net(cfg, weights)
    cvnet.setInput(x[None])
    names = list(cvnet.getLayerNames())
    outs = dict(zip(names, cv_call("forward", cfg, lambda: cvnet.forward(names))))
    owner = layer_map(cvnet)
    for layer in net.layers:
        theirs = outs[owner[layer.index]]
        assert theirs.shape[1:] == layer.out_shape, (layer, theirs.shape, text)
        err = max_rel_err(ours[layer.index], theirs)
        assert err <= 1e-3, (layer, err, text)


def test_generator_makes_valid_nets() -> None:
    """The strategy only writes cfgs our parser accepts (sanity of the test itself)."""
    from hypothesis import find

    net_text = find(random_cfg(), lambda t: t.count("[") >= 6)
    assert len(network_from_cfg_text(net_text, random_seed=None).layers) >= 5
