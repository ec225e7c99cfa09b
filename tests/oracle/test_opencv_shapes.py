"""Every shared cfg loads, and each layer's output shape equals OpenCV DNN's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import DARKNET_CFGS, YOLO_FASTEST
from cv_oracle import cv_call, layer_map, read_net

from deepthings.darknet import WeightsHeader, expected_bytes, load_darknet

ALL_CFGS = sorted(DARKNET_CFGS.glob("*.cfg")) + sorted(YOLO_FASTEST.glob("*.cfg"))


def test_all_shared_cfgs_found() -> None:
    """The shared model directory holds the cfgs this suite is about."""
    names = {p.name for p in ALL_CFGS}
    assert {"yolov2.cfg", "yolov3-tiny.cfg", "vgg-16.cfg", "yolo-fastest-1.1.cfg",
            "yolo-fastest-1.1-xl.cfg"} <= names


def _weights_for(cfg: Path, tmp_path: Path) -> Path:
    """The real weights if shared, else an all-zero file of the right size (shapes do not
    depend on values; a sparse file is instant even for vgg-16's 553 MB)."""
    real = cfg.with_suffix(".weights")
    if real.exists():
        return real
    layers = load_darknet(cfg).layers
    path = tmp_path / (cfg.stem + ".weights")
    with open(path, "wb") as f:
        f.write(WeightsHeader(0, 2, 0, 0).pack())
        f.truncate(expected_bytes(layers))
    return path


@pytest.mark.parametrize("cfg", ALL_CFGS, ids=[p.name for p in ALL_CFGS])
def test_layer_shapes_match_opencv(cfg: Path, tmp_path: Path) -> None:
    """Each layer's output shape equals OpenCV's getLayersShapes for the same cfg+weights."""
    weights = _weights_for(cfg, tmp_path)
    net = load_darknet(cfg, weights)  # loads: weights size matches the cfg exactly
    cvnet = read_net(cfg, weights)
    c, h, w = net.input_shape
    ids, _ins, outs = cv_call("shape inference", cfg, lambda: cvnet.getLayersShapes([1, c, h, w]))
    cv_shape = {int(i): tuple(int(v) for v in o[0]) for i, o in zip(np.ravel(ids), outs)}
    owner = layer_map(cvnet)
    checked = 0
    for layer in net.layers:
        name = owner.get(layer.index)
        assert name is not None, f"no OpenCV layer for layer {layer.index} [{layer.type}]"
        shape = cv_shape[cvnet.getLayerId(name)]
        if layer.type in ("region", "yolo"):
            # OpenCV's heads emit one row per (cell, anchor): [x, y, w, h, obj, classes...].
            # Its shape inference reports the region head as the permuted (1, H, W, C) input.
            cc, hh, ww = layer.out_shape
            per = (layer.coords if layer.type == "region" else 4) + 1 + layer.classes
            assert shape in ((hh * ww * layer.num, per), (1, hh, ww, cc)), (layer, shape)
        elif len(shape) == 2:  # fullyConnected gives (1, N)
            assert (shape[1], 1, 1) == layer.out_shape, (layer, shape)
        else:
            assert shape[1:] == layer.out_shape, (layer, name, shape)
        checked += 1
    assert checked == len(net.layers)


def test_vgg16_without_crop_shapes_match_opencv(tmp_path: Path) -> None:
    """vgg-16 minus its [crop] (which OpenCV mis-imports) at 224x224: shapes equal OpenCV's."""
    text = (DARKNET_CFGS / "vgg-16.cfg").read_text()
    text = _drop_crop(text)
    cfg = tmp_path / "vgg16-nocrop.cfg"
    cfg.write_text(text)
    weights = _weights_for(cfg, tmp_path)
    net = load_darknet(cfg, weights)
    assert net.input_shape == (3, 224, 224)
    cvnet = read_net(cfg, weights)
    ids, _ins, outs = cvnet.getLayersShapes([1, 3, 224, 224])
    cv_shape = {int(i): tuple(int(v) for v in o[0]) for i, o in zip(np.ravel(ids), outs)}
    owner = layer_map(cvnet)
    for layer in net.layers:
        shape = cv_shape[cvnet.getLayerId(owner[layer.index])]
        ours = layer.out_shape if len(shape) == 4 else (layer.out_shape[0],)
        assert shape[1:] == ours, (layer, shape)


def _drop_crop(text: str) -> str:
    """Remove the [crop] section and make the net input the crop size."""
    out, skipping = [], False
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("["):
            skipping = s == "[crop]"
        if skipping:
            continue
        if s.startswith("height="):
            line = "height=224"
        elif s.startswith("width="):
            line = "width=224"
        out.append(line)
    return "\n".join(out) + "\n"
