"""NativeEngine vs ReferenceEngine on whole networks and on tiles, for every GEMM path."""

from __future__ import annotations

import platform
import re
from typing import Iterator

import numpy as np
import pytest

from deepthings import _core
from deepthings.darknet import load_darknet, network_from_cfg_text
from deepthings.engine import get_engine
from deepthings.engine import native
from deepthings.errors import ShapeError

from conftest import DARKNET_CFGS, YOLO_FASTEST

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")
ISAS = ["scalar", "avx2", "avx512"] if _X86 else ["scalar", "neon"]


@pytest.fixture(params=ISAS)
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param not in native.available_isas():
        pytest.skip(f"ISA {request.param} not available here ({native.available_isas()})")
    before = native.active_isa()
    native.set_isa(request.param)
    try:
        yield request.param
    finally:
        native.set_isa(before)


def _compare_all_layers(net, x: np.ndarray, tol: float = 1e-4) -> None:
    every = list(range(len(net.layers)))
    want = net.forward(x, engine="reference", outputs=every)
    got = net.forward(x, engine="native", outputs=every)
    for i in every:
        scale = max(1.0, float(np.abs(want[i]).max()))
        err = float(np.abs(got[i] - want[i]).max())
        assert err <= tol * scale, f"layer {i} [{net.layers[i].type}]: max abs err {err} (scale {scale})"


@pytest.fixture(scope="module")
def yolo_fastest():
    cfg = YOLO_FASTEST / "yolo-fastest-1.1.cfg"
    return load_darknet(cfg, YOLO_FASTEST / "yolo-fastest-1.1.weights")


def test_yolo_fastest_every_layer(yolo_fastest, isa: str) -> None:
    """Real weights, depthwise + shortcut + SPP maxpool + upsample + route + yolo heads."""
    x = np.random.default_rng(0).random(yolo_fastest.input_shape, dtype=np.float32)
    _compare_all_layers(yolo_fastest, x)


def _small(cfg_name: str, size: int) -> str:
    text = (DARKNET_CFGS / cfg_name).read_text()
    text = re.sub(r"(?m)^width\s*=.*$", f"width={size}", text)
    return re.sub(r"(?m)^height\s*=.*$", f"height={size}", text)


@pytest.mark.parametrize("cfg,size", [("yolov2.cfg", 96), ("yolov2-tiny.cfg", 96), ("darknet19.cfg", 64),
                                      ("alexnet.cfg", 227)])
def test_darknet_cfgs_random_weights(cfg: str, size: int) -> None:
    """Reorg, route, region head, stride-1 maxpool, avgpool, connected + softmax."""
    net = network_from_cfg_text(_small(cfg, size), random_seed=1, name=cfg)
    x = np.random.default_rng(1).random(net.input_shape, dtype=np.float32)
    _compare_all_layers(net, x)


def test_tile_padding_override(yolo_fastest) -> None:
    """A tile passes its own per-side padding: native == reference for asymmetric pads."""
    eng, refe = get_engine("native"), get_engine("reference")
    rng = np.random.default_rng(2)
    convs = [l for l in yolo_fastest.layers if l.type == "convolutional" and l.kernel[0] == 3][:6]
    pools = [l for l in yolo_fastest.layers if l.type == "maxpool"]
    for layer in convs + pools:
        c = layer.in_shapes[0][0]
        x = rng.standard_normal((c, 13, 17), dtype=np.float32)
        for pad in [(1, 0, 0, 1), (0, 0, 0, 0), (0, 1, 1, 0)]:
            if layer.type == "maxpool":
                pad = tuple(p * (layer.kernel[0] - 1) for p in pad)
            got = eng.run_layer(layer, [x], pad)
            want = refe.run_layer(layer, [x], pad)
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))


def test_non_contiguous_input_is_accepted(yolo_fastest) -> None:
    layer = yolo_fastest.layers[0]
    big = np.random.default_rng(3).random((3, 40, 60), dtype=np.float32)
    view = big[:, 5:30, 7:50]  # a tile crop: a strided view
    np.testing.assert_allclose(get_engine("native").run_layer(layer, [view]),
                               get_engine("reference").run_layer(layer, [np.ascontiguousarray(view)]),
                               rtol=1e-4, atol=1e-4)


def test_bad_inputs_name_the_layer(yolo_fastest) -> None:
    eng = get_engine("native")
    layer = yolo_fastest.layers[0]
    with pytest.raises(ShapeError, match=r"layer 0 \[convolutional\].*float32"):
        eng.run_layer(layer, [np.zeros((3, 8, 8), np.float64)])
    with pytest.raises(ShapeError, match=r"layer 0 \[convolutional\].*shape"):
        eng.run_layer(layer, [np.zeros((4, 8, 8), np.float32)])
    with pytest.raises(ShapeError, match=r"layer 0 \[convolutional\].*smaller than the kernel"):
        eng.run_layer(layer, [np.zeros((3, 1, 1), np.float32)], (0, 0, 0, 0))


def test_packed_weights_cached_per_layer(yolo_fastest) -> None:
    eng = native.NativeEngine()
    layer = yolo_fastest.layers[0]
    first = eng.conv_weights(layer)
    assert eng.conv_weights(layer) is first


def test_thread_api() -> None:
    before = native.get_num_threads()
    try:
        native.set_num_threads(1)
        assert native.get_num_threads() == 1
        native.set_num_threads(2)
        assert native.get_num_threads() == 2
        with pytest.raises(ValueError):
            native.set_num_threads(0)
    finally:
        native.set_num_threads(before)
    assert native.active_isa() in native.available_isas()
    assert _core.default_num_threads() >= 1
