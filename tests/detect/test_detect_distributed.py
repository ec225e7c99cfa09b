"""Distributed detection equals single-device detection: FTP tiles run locally, and a Cluster."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import IMAGES

import deepthings
from deepthings.detect import decode_outputs, network_input
from deepthings.ftp import FTP
from detect_opencv_ref import assert_same_detections

IMAGE_NAMES = sorted(p.name for p in IMAGES.glob("*.jpg"))


@pytest.fixture(scope="module")
def net():
    return deepthings.default_model()


@pytest.fixture(scope="module")
def single(net):
    return {name: deepthings.detect(net, IMAGES / name) for name in IMAGE_NAMES}


@pytest.mark.parametrize("grid,fused", [((3, 3), 16), ((2, 3), 26), ((4, 4), 9)])
def test_ftp_tiles_give_identical_detections(net, single, grid, fused):
    """Tiles run one by one, stitched, rest of the net on the stitched map: same detections."""
    plan = FTP(net, grid=grid, fused_layers=fused)
    for name in IMAGE_NAMES:
        x, image_wh = network_input(net, IMAGES / name)
        tiles = {t.tile_id: plan.run_tile(t.tile_id, x) for t in plan.tiles}
        heads = plan.finish(tiles, outputs=net.head_layers)
        assert_same_detections(decode_outputs(net, heads, image_wh), single[name])


@pytest.mark.slow
def test_cluster_gives_identical_detections(net, single):
    """A local cluster (gateway + 2 edges, 3x3 tiles, WST-S) returns the single-device detections."""
    with deepthings.Cluster(net, edges=2, grid=(3, 3), fused_layers=16, schedule="wst-s") as cluster:
        results = cluster.infer_many([IMAGES / name for name in IMAGE_NAMES])
    for name, result in zip(IMAGE_NAMES, results):
        assert_same_detections(result.detections, single[name])
        assert len(result.trace.tiles) == 9 and all("device" in t for t in result.trace.tiles)
    # The head outputs themselves agree to float rounding (tiles sum in a different order).
    x, _ = network_input(net, IMAGES / IMAGE_NAMES[0])
    ref = net.forward(x, outputs=net.head_layers)
    for h in net.head_layers:
        np.testing.assert_allclose(results[0].outputs[h], ref[h], atol=1e-4)


def test_region_head_network_ftp_identical(tmp_path):
    """A YOLOv2 (region head) network: tiled first 8 layers give the single-device detections."""
    from conftest import DARKNET_CFGS

    cfg = DARKNET_CFGS / "yolov2-tiny-voc.cfg"
    weights = tmp_path / "random.weights"
    deepthings.write_random_weights(cfg, weights, seed=3)
    net = deepthings.load_darknet(cfg, weights)
    single = deepthings.detect(net, IMAGES / "dog.jpg", 0.5, 0.45)
    assert single and {d.label for d in single} <= set(deepthings.detect.class_names_for(20))
    plan = FTP(net, grid=(3, 3), fused_layers=8)
    x, image_wh = network_input(net, IMAGES / "dog.jpg")
    heads = plan.finish({t.tile_id: plan.run_tile(t.tile_id, x) for t in plan.tiles}, outputs=net.head_layers)
    assert_same_detections(decode_outputs(net, heads, image_wh, thresh=0.5, nms=0.45), single)


def test_detect_is_callable_however_it_was_imported():
    """`deepthings.detect(...)` and `deepthings.detect.decode_outputs` both hold after any import order."""
    import importlib

    import deepthings.detect as pkg
    import deepthings.runtime.cluster  # noqa: F401  (imports deepthings.detect internally)

    assert callable(deepthings.detect) and deepthings.detect.decode_outputs is decode_outputs
    assert importlib.import_module("deepthings").detect is pkg
    from deepthings import detect

    assert detect is pkg and callable(detect)
