"""Reference forward agrees with OpenCV DNN layer by layer (max abs error <= 1e-3 x max |a|).

OpenCV's region/yolo layers emit detection rows instead of the activated map; those heads are
compared on what the rows hold: objectness, box centre x/y and class probabilities.

With real weights the largest gap (about 5e-4 on yolo-fastest, layers whose BN variance is
~1e-3) is OpenCV's, not ours: OpenCV normalises by sqrt(var + 1e-6), Darknet (and we) by
sqrt(var) + 1e-6; with OpenCV's formula the gap drops to 1e-5 (checked by hand).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import DARKNET_CFGS, IMAGES, YOLO_FASTEST
from cv_oracle import cv_call, layer_map, max_rel_err, read_net

from deepthings.darknet import load_darknet, write_random_weights
from deepthings.engine.preprocess import preprocess

TOL = 1e-3


def _compare(cfg: Path, weights: Path, x: np.ndarray) -> tuple[dict[int, float], int]:
    """Run both; assert every exposed layer agrees; return ({layer: relative error}, number
    of class probabilities OpenCV's heads kept)."""
    net = load_darknet(cfg, weights)
    cvnet = read_net(cfg, weights)
    owner = layer_map(cvnet)
    head_names = {}
    for i in net.head_layers:
        # OpenCV calls a YOLOv2 region's output 'detection_out'.
        head_names[i] = owner[i] if net.layers[i].type == "yolo" else "detection_out"
    cvnet.setInput(x[None])
    # Ask for every layer: with only some requested, OpenCV fuses and reuses blobs in place.
    wanted = list(cvnet.getLayerNames())
    cv_out = dict(zip(wanted, cv_call("forward", cfg, lambda: cvnet.forward(wanted))))
    ours = net.forward(x, engine="reference", outputs=range(len(net)))
    errors: dict[int, float] = {}
    kept = 0
    for layer in net.layers:
        if layer.index in head_names:
            kept += _check_head(layer, ours[layer.index], cv_out[head_names[layer.index]])
            continue
        name = owner.get(layer.index)
        if name is None:
            continue
        err = max_rel_err(ours[layer.index], cv_out[name])
        errors[layer.index] = err
        assert err <= TOL, f"layer {layer.index} [{layer.type}] vs OpenCV {name}: {err:.3g}"
    assert len(errors) >= len(net.layers) - len(net.head_layers) - 1
    return errors, kept


def _check_head(layer, ours: np.ndarray, rows: np.ndarray) -> int:
    """OpenCV rows are ordered (row, col, anchor): [x, y, w, h, obj, class probs...]."""
    c, h, w = ours.shape
    coords = layer.coords if layer.type == "region" else 4
    per = coords + 1 + layer.classes
    v = ours.reshape(layer.num, per, h, w).transpose(2, 3, 0, 1).reshape(-1, per)
    assert rows.shape == (h * w * layer.num, per)
    obj = v[:, coords]
    np.testing.assert_allclose(rows[:, 4], obj, atol=TOL)
    col = np.tile(np.repeat(np.arange(w), layer.num), h)
    row = np.repeat(np.arange(h), w * layer.num)
    # Our head output already holds logistic(tx) (and scale_x_y applied for yolo).
    np.testing.assert_allclose(rows[:, 0], (col + v[:, 0]) / w, atol=TOL)
    np.testing.assert_allclose(rows[:, 1], (row + v[:, 1]) / h, atol=TOL)
    probs = v[:, coords + 1 :] * obj[:, None]
    kept = rows[:, 5:] > 0  # OpenCV zeroes probabilities below its threshold
    np.testing.assert_allclose(rows[:, 5:][kept], probs[kept], atol=TOL)
    # ... and keeps every clearly large one.
    assert not np.any((probs > 0.7) & ~kept)
    return int(kept.sum())


def test_yolo_fastest_real_weights_on_dog() -> None:
    """yolo-fastest-1.1 with its real weights on dog.jpg: every layer within 1e-3."""
    cfg = YOLO_FASTEST / "yolo-fastest-1.1.cfg"
    x = preprocess(IMAGES / "dog.jpg", (320, 320))
    errors, kept = _compare(cfg, cfg.with_suffix(".weights"), x)
    assert len(errors) > 100
    assert kept > 0  # the dog photo gives confident class probabilities to compare


def test_yolo_fastest_xl_real_weights() -> None:
    """yolo-fastest-1.1-xl (SPP max-pools, routes, upsample) with real weights."""
    cfg = YOLO_FASTEST / "yolo-fastest-1.1-xl.cfg"
    x = preprocess(IMAGES / "person.jpg", (320, 320))
    _compare(cfg, cfg.with_suffix(".weights"), x)


def _random_case(tmp_path: Path, cfg_text: str, name: str, seed: int) -> tuple[Path, Path]:
    cfg = tmp_path / f"{name}.cfg"
    cfg.write_text(cfg_text)
    weights = tmp_path / f"{name}.weights"
    write_random_weights(cfg, weights, seed=seed)
    return cfg, weights


def _with_size(text: str, size: int) -> str:
    lines = []
    for line in text.splitlines():
        key = line.split("=")[0].strip()
        lines.append(f"{key}={size}" if key in ("width", "height") else line)
    return "\n".join(lines) + "\n"


def test_yolov2_random_weights_320(tmp_path: Path) -> None:
    """yolov2 (reorg, route, region) with random weights. The net input is reduced from 608
    to 320 (width/height edited in the cfg text) to keep the NumPy forward quick."""
    text = _with_size((DARKNET_CFGS / "yolov2.cfg").read_text(), 320)
    cfg, weights = _random_case(tmp_path, text, "yolov2-320", seed=11)
    x = np.random.default_rng(5).random((3, 320, 320), dtype=np.float32)
    _compare(cfg, weights, x)


@pytest.mark.parametrize(
    "name,size",
    [("yolov2-tiny", 416), ("yolov3-tiny", 416), ("darknet", 256), ("tiny", 224),
     ("darknet19", 224)],
)
def test_small_nets_random_weights(tmp_path: Path, name: str, size: int) -> None:
    """Stride-1 maxpool, yolo heads, avgpool + softmax classifiers with random weights."""
    text = _with_size((DARKNET_CFGS / f"{name}.cfg").read_text(), size)
    cfg, weights = _random_case(tmp_path, text, name, seed=7)
    x = np.random.default_rng(1).random((3, size, size), dtype=np.float32)
    _compare(cfg, weights, x)


@pytest.mark.slow
def test_alexnet_random_weights(tmp_path: Path) -> None:
    """Connected layers (and dropout) with random weights (250 MB of them)."""
    cfg, weights = _random_case(tmp_path, (DARKNET_CFGS / "alexnet.cfg").read_text(), "alexnet", 2)
    x = np.random.default_rng(2).random((3, 227, 227), dtype=np.float32)
    _compare(cfg, weights, x)
