"""Weights files: header versions, BN folding, truncation/oversize errors, upto, random."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import DARKNET_CFGS, YOLO_FASTEST

from deepthings.darknet import (
    WeightsHeader,
    expected_bytes,
    load_darknet,
    network_from_cfg_text,
    serialize_weights,
    write_random_weights,
)
from deepthings.engine.reference import activate
from deepthings.errors import WeightsError

YF_CFG = YOLO_FASTEST / "yolo-fastest-1.1.cfg"
YF_W = YOLO_FASTEST / "yolo-fastest-1.1.weights"


def test_serialize_round_trip_is_parameter_exact() -> None:
    """serialize_weights -> load gives bit-identical folded parameters (BN nets included)."""
    net = load_darknet(YF_CFG, YF_W)
    data = serialize_weights(net)
    assert len(data) == YF_W.stat().st_size == expected_bytes(net.layers, net.weights_header)
    again = load_darknet(YF_CFG, data)
    for a, b in zip(net.layers, again.layers):
        if a.has_weights:
            assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias), a
    assert serialize_weights(again) == data


def test_serialize_without_batchnorm_is_byte_exact(tmp_path: Path) -> None:
    """A file without batch-norm layers comes back byte for byte."""
    text = "[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=4\nsize=3\npad=1\n" \
           "[maxpool]\nsize=2\nstride=2\n[connected]\noutput=5\n"
    cfg = tmp_path / "nobn.cfg"
    cfg.write_text(text)
    path = tmp_path / "nobn.weights"
    write_random_weights(cfg, path, seed=4)
    assert serialize_weights(load_darknet(cfg, path)) == path.read_bytes()


@pytest.mark.parametrize("major,minor,seen_size", [(0, 1, 4), (0, 2, 8), (1, 0, 8), (0, 0, 4)])
def test_header_seen_width(tmp_path: Path, major: int, minor: int, seen_size: int) -> None:
    """``seen`` is uint64 iff major*10+minor >= 2; the parameters follow right after."""
    body = YF_W.read_bytes()[20:]
    seen = 123456
    head = struct.pack("<iii", major, minor, 7) + (
        struct.pack("<Q", seen) if seen_size == 8 else struct.pack("<i", seen)
    )
    path = tmp_path / "w.weights"
    path.write_bytes(head + body)
    net = load_darknet(YF_CFG, path)
    assert net.weights_header == WeightsHeader(major, minor, 7, seen)
    ref = load_darknet(YF_CFG, YF_W)
    for a, b in zip(net.layers, ref.layers):
        if a.type == "convolutional":
            assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)


def test_truncated_file_names_layer_and_sizes(tmp_path: Path) -> None:
    data = YF_W.read_bytes()
    net = load_darknet(YF_CFG)
    # Cut in the middle of layer 40's parameters.
    before = expected_bytes(net.layers, WeightsHeader(0, 2, 0, 0), upto=40)
    cut = before + 10
    path = tmp_path / "short.weights"
    path.write_bytes(data[:cut])
    with pytest.raises(WeightsError) as info:
        load_darknet(YF_CFG, path)
    msg = str(info.value)
    assert str(path) in msg and "truncated" in msg
    assert f"expected {len(data)} bytes, file has {cut}" in msg
    layer = net.layers[40]
    assert f"layer 40 [{layer.type}] ({YF_CFG}:{layer.line})" in msg


def test_oversized_file_names_sizes(tmp_path: Path) -> None:
    data = YF_W.read_bytes()
    path = tmp_path / "long.weights"
    path.write_bytes(data + b"\0" * 12)
    with pytest.raises(WeightsError) as info:
        load_darknet(YF_CFG, path)
    msg = str(info.value)
    assert str(path) in msg and "oversized" in msg
    assert f"expected {len(data)} bytes" in msg and f"file has {len(data) + 12}" in msg


def test_wrong_cfg_for_weights_is_caught(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="expected .* bytes"):
        load_darknet(YOLO_FASTEST / "yolo-fastest-1.1-xl.cfg", YF_W)


def test_header_too_short_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny.weights"
    path.write_bytes(b"\0" * 6)
    with pytest.raises(WeightsError, match="too short"):
        load_darknet(YF_CFG, path)
    with pytest.raises(WeightsError, match="not found"):
        load_darknet(YF_CFG, tmp_path / "absent.weights")


def test_upto_loads_only_the_prefix(tmp_path: Path) -> None:
    """upto=L needs only the bytes of layers < L and gives the same first L layers."""
    full = load_darknet(YF_CFG, YF_W)
    L = 30
    part_bytes = serialize_weights(full, upto=L)
    assert len(part_bytes) == expected_bytes(full.layers, full.weights_header, upto=L)
    path = tmp_path / "head.weights"
    path.write_bytes(part_bytes)
    part = load_darknet(YF_CFG, path, upto=L)
    assert all(layer.weights_loaded for layer in part.layers[:L])
    assert not all(layer.weights_loaded for layer in part.layers[L:])
    x = np.random.default_rng(0).random(full.input_shape, dtype=np.float32)
    a = part.forward(x, 0, L, engine="reference")
    b = full.forward(x, 0, L, engine="reference")
    np.testing.assert_array_equal(a, b)
    with pytest.raises(WeightsError, match="no weights loaded"):
        part.forward(x, engine="reference")
    # The complete file with upto= is fine too (extra bytes are ignored).
    load_darknet(YF_CFG, YF_W, upto=L)
    # Bytes work like a path.
    again = load_darknet(YF_CFG, part_bytes, upto=L)
    np.testing.assert_array_equal(again.layers[0].weight, full.layers[0].weight)


def test_bn_folding_matches_darknet_formula() -> None:
    """Folded conv == Darknet's scale * (conv - mean) / (sqrt(var) + .000001) + bias."""
    text = "[net]\nwidth=9\nheight=7\nchannels=2\n[convolutional]\nbatch_normalize=1\n" \
           "filters=3\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
    net = network_from_cfg_text(text, random_seed=None)
    conv = net.layers[0]
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    raw = {
        "biases": np.array([0.1, -0.2, 0.3], np.float32),
        "scales": np.array([1.5, 0.5, 2.0], np.float32),
        "rolling_mean": np.array([0.2, -0.1, 0.0], np.float32),
        "rolling_variance": np.array([0.25, 4.0, 1e-8], np.float32),
        "weights": w,
    }
    # File order for conv: biases, scales, mean, variance, weights.
    data = WeightsHeader(0, 2, 0, 0).pack() + b"".join(raw[k].tobytes() for k in
        ["biases", "scales", "rolling_mean", "rolling_variance", "weights"])
    net = network_from_cfg_text(text, weights=data)
    x = rng.standard_normal((2, 7, 9)).astype(np.float32)
    got = net.forward(x, engine="reference")
    # Unfolded, in float64, the way Darknet's forward_convolutional_layer does it.
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1)))
    conv_out = np.zeros((3, 7, 9))
    for o in range(3):
        for i in range(7):
            for j in range(9):
                conv_out[o, i, j] = np.sum(xp[:, i : i + 3, j : j + 3] * w[o])
    m, v, s, b = (raw[k].astype(np.float64)[:, None, None] for k in
                  ["rolling_mean", "rolling_variance", "scales", "biases"])
    y = s * (conv_out - m) / (np.sqrt(v) + 0.000001) + b
    want = np.where(y > 0, y, 0.1 * y)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    assert conv.weight is None  # the first net had no weights


def test_connected_file_order_biases_weights_then_bn() -> None:
    text = "[net]\nwidth=2\nheight=1\nchannels=1\n[connected]\noutput=3\nbatch_normalize=1\nactivation=linear\n"
    b = np.array([1, 2, 3], np.float32)
    w = np.arange(6, dtype=np.float32).reshape(3, 2)
    s = np.array([1, 2, 4], np.float32)
    m = np.array([0.5, 0, -1], np.float32)
    v = np.array([1, 1, 4], np.float32)
    data = WeightsHeader(0, 2, 0, 0).pack() + b"".join(a.tobytes() for a in [b, w, s, m, v])
    net = network_from_cfg_text(text, weights=data)
    x = np.array([[[1.0, -1.0]]], np.float32)
    got = net.forward(x, engine="reference").reshape(-1)
    y = w.astype(np.float64) @ np.array([1.0, -1.0])
    want = s * (y - m) / (np.sqrt(v) + 0.000001) + b
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)


def test_random_weights_deterministic(tmp_path: Path) -> None:
    cfg = DARKNET_CFGS / "yolov3-tiny.cfg"
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    size = write_random_weights(cfg, a, seed=5)
    write_random_weights(cfg, b, seed=5)
    write_random_weights(cfg, c, seed=6)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    net = load_darknet(cfg)
    assert size == a.stat().st_size == expected_bytes(net.layers)
    # random_seed= gives the same parameters without a file.
    from_file = load_darknet(cfg, a)
    direct = load_darknet(cfg, random_seed=5)
    for p, q in zip(from_file.layers, direct.layers):
        if p.has_weights:
            assert np.array_equal(p.weight, q.weight) and np.array_equal(p.bias, q.bias)
    # upto does not change the weights of the layers it keeps.
    head = load_darknet(cfg, random_seed=5, upto=6)
    assert np.array_equal(head.layers[4].weight, direct.layers[4].weight)
    assert not head.layers[8].weights_loaded
    with pytest.raises(WeightsError, match="either"):
        load_darknet(cfg, a, random_seed=1)


@pytest.mark.parametrize(
    "cfg,size",
    [(YOLO_FASTEST / "yolo-fastest-1.1-xl.cfg", None), (DARKNET_CFGS / "resnet18.cfg", 128),
     (DARKNET_CFGS / "yolov2.cfg", 256), (DARKNET_CFGS / "darknet19.cfg", 128)],
    ids=["yolo-fastest-xl", "resnet18", "yolov2", "darknet19"],
)
def test_random_weights_keep_activations_order_one(cfg: Path, size: int | None) -> None:
    """Random weights keep every layer's RMS activation O(1) through deep (residual) nets."""
    text = cfg.read_text()
    if size is not None:  # smaller input: activation scale does not depend on map size
        text = text.replace("width=", "#").replace("height=", "#").replace(
            "[net]", f"[net]\nwidth={size}\nheight={size}", 1)
    net = network_from_cfg_text(text, random_seed=2, name=cfg.name)
    x = np.random.default_rng(0).random(net.input_shape, dtype=np.float32)
    outs = net.forward(x, engine="reference", outputs=range(len(net)))
    for i, out in outs.items():
        rms = float(np.sqrt(np.mean(out.astype(np.float64) ** 2)))
        if net.layers[i].type == "softmax":
            continue  # sums to 1 by definition
        assert 0.05 < rms < 20, (net.layers[i], rms)


def test_activation_helper_is_darknet_leaky() -> None:
    x = np.array([-2.0, 0.0, 3.0], np.float32)
    np.testing.assert_array_equal(activate(x, "leaky"), np.array([-0.2, 0.0, 3.0], np.float32))


def test_upto_with_too_short_file_still_errors(tmp_path: Path) -> None:
    """upto=L reads only the first bytes, but a file shorter than those is still caught."""
    path = tmp_path / "cut.weights"
    path.write_bytes(YF_W.read_bytes()[:3000])
    with pytest.raises(WeightsError) as info:
        load_darknet(YF_CFG, path, upto=40)
    msg = str(info.value)
    assert "truncated" in msg and "file has 3000" in msg and str(path) in msg


def test_weights_without_batchnorm_are_shared_not_copied(tmp_path: Path) -> None:
    """A net with nothing to fold keeps its parameters as views of one writable buffer."""
    text = "[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=4\nsize=3\npad=1\n" \
           "[connected]\noutput=5\n"
    cfg = tmp_path / "nobn.cfg"
    cfg.write_text(text)
    path = tmp_path / "nobn.weights"
    write_random_weights(cfg, path, seed=2)
    net = load_darknet(cfg, path)
    conv, fc = net.layers
    assert conv.weight.base is not None and conv.weight.flags.writeable
    assert np.shares_memory(conv.weight, fc.weight) is False
    again = load_darknet(cfg, path.read_bytes())  # bytes: private copies
    np.testing.assert_array_equal(again.layers[1].weight, fc.weight)


def test_absurd_layer_sizes_are_refused_not_allocated() -> None:
    text = "[net]\nwidth=64\nheight=64\nchannels=3\n[connected]\noutput=99999999\n"
    with pytest.raises(WeightsError, match="refusing"):
        network_from_cfg_text(text, random_seed=0)
    assert network_from_cfg_text(text, random_seed=None).layers[0].out_shape == (99999999, 1, 1)
