"""Distributed output == single-device output, bit for bit (same native kernels), for real
models: yolo-fastest-1.1 (real weights) and YOLOv2 (random weights), every schedule, 1..4 edges,
grids 1x1..5x5 (a sample of the product)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import DARKNET_CFGS, IMAGES, YOLO_FASTEST
from deepthings.darknet import load_darknet
from deepthings.runtime.cluster import Cluster
from runtime_helpers import yolov2_cfg_text

FASTEST_CFG = YOLO_FASTEST / "yolo-fastest-1.1.cfg"
FASTEST_WEIGHTS = YOLO_FASTEST / "yolo-fastest-1.1.weights"


def yolov2_cfg(tmp_dir: Path, size: int) -> Path:
    """YOLOv2 with its input shrunk to size x size (keeps the tests fast; same layers)."""
    path = tmp_dir / f"yolov2-{size}.cfg"
    path.write_text(yolov2_cfg_text(size))
    return path


def single_device(net, x):
    layers = sorted(set(net.head_layers) | {len(net.layers) - 1})
    return net.forward(x, outputs=layers)


def single_device_ftp(net, grid, fused, x):
    """The same tiles on this one device (same kernels, no reuse), stitched, then the rest."""
    from deepthings.runtime.workload import FTPWorkload

    wl = FTPWorkload(net, grid, fused)
    merged = wl.merge({t: wl.run(t, wl.crop(x, t)) for t in range(wl.n_tiles)})
    return {int(k[5:]): v for k, v in merged.items()}


def run_case(cfg, weights, schedule, edges, grid, fused, n_frames=2, seed=0, sources=None):
    """Distributed == single-device FTP == the unpartitioned single-device forward, bit for bit
    (same native kernels; FTP plans align Winograd convs so tiles round like the full map)."""
    net = load_darknet(cfg, weights) if weights else load_darknet(cfg, random_seed=0)
    rng = np.random.default_rng(seed)
    xs = [rng.random(net.input_shape, dtype=np.float32) for _ in range(n_frames)]
    if sources is None:
        sources = 1 if schedule != "wsh" else 0
    # a frame that never comes back fails the test within a minute instead of hanging it
    with Cluster(cfg, weights=weights, edges=edges, grid=grid, fused_layers=fused, schedule=schedule,
                 sources=sources, frame_timeout_s=60.0) as c:
        results = c.infer_many(xs, window=2)
    for x, r in zip(xs, results):
        ref = single_device(net, x)
        tiled = single_device_ftp(net, grid, fused, x)
        assert set(ref) == set(r.outputs) == set(tiled)
        for i, arr in ref.items():
            assert np.array_equal(r.outputs[i], tiled[i]), f"layer {i}: not bit-identical to single-device FTP"
            assert np.array_equal(r.outputs[i], arr), (
                f"layer {i}: not bit-identical to net.forward (max diff {np.abs(r.outputs[i] - arr).max()})"
            )
        assert len(r.trace.tiles) == grid[0] * grid[1]
        assert {t["tile"] for t in r.trace.tiles} == set(range(grid[0] * grid[1]))
        # each tile's own CPU time is reported, and a thread cannot use more CPU than wall time
        assert all(0.0 <= t["cpu_s"] <= t["compute_s"] + 1e-3 for t in r.trace.tiles)
    return results


@pytest.mark.parametrize(
    "schedule, edges, grid",
    [("wst-s", 3, (3, 3)), ("wst", 2, (5, 5)), ("wsh", 4, (2, 2)), ("wst-s", 1, (1, 1)), ("wst-sp", 3, (3, 3))],
)
def test_yolo_fastest_real_weights(schedule, edges, grid):
    results = run_case(FASTEST_CFG, FASTEST_WEIGHTS, schedule, edges, grid, fused=16)
    if schedule in ("wst-s", "wst-sp") and grid != (1, 1):
        # level-1 tiles reused their neighbours' overlap data at least sometimes
        assert any(t.get("reused") for r in results for t in r.trace.tiles)


@pytest.mark.parametrize(
    "schedule, edges, grid", [("wst-s", 4, (5, 5)), ("wst", 3, (4, 3)), ("wsh", 2, (3, 3)), ("wst-sp", 4, (5, 5))]
)
def test_yolov2_random_weights_small_input(tmp_path, schedule, edges, grid):
    # YOLOv2's 3x3 convs run as Winograd F(2x2,3x3): exact only thanks to the plans' alignment.
    run_case(yolov2_cfg(tmp_path, 160), None, schedule, edges, grid, fused=16)


def test_wst_sp_overlap_data_goes_peer_to_peer_not_through_the_gateway(tmp_path):
    """wst-sp: level-0 results carry no overlap data to the gateway, level-1 tiles still reuse
    it (from the edges that computed it), and the answer is bit-identical."""
    cfg = yolov2_cfg(tmp_path, 160)
    via_gateway = run_case(cfg, None, "wst-s", 3, (3, 3), fused=16, n_frames=3)
    p2p = run_case(cfg, None, "wst-sp", 3, (3, 3), fused=16, n_frames=3)
    assert any(t.get("reused") for r in p2p for t in r.trace.tiles)
    net = load_darknet(cfg, random_seed=0)
    from deepthings.ftp import FTP

    plan = FTP(net, grid=(3, 3), fused_layers=16)
    rp = plan.reuse
    # wst-s sends up what the neighbours read with all their neighbours in (the core)
    core = sum(4 * plan.block[layer].out_shape[0] * rp.publish_regions(s)[d][layer].area
               for s in rp.level0 for d, layers in rp.core_pieces(s).items() for layer in layers)
    assert 0 < core <= plan.cost(reuse=True).overlap_bytes
    for r in via_gateway:
        assert r.trace.bytes["gateway_in"] > core
    for r in p2p:
        assert r.trace.bytes["gateway_in"] < min(v.trace.bytes["gateway_in"] for v in via_gateway) - core // 2
        assert r.trace.bytes["gateway_out"] < min(v.trace.bytes["gateway_out"] for v in via_gateway)


def test_wst_s_without_a_data_source_shares_level1_tiles_with_their_reuse_data(tmp_path):
    """No edge is a data source: the gateway hands out every tile itself, level-1 ones with
    the overlap data it has cached, and the edges' partner pieces change nothing of the answer."""
    results = run_case(yolov2_cfg(tmp_path, 160), None, "wst-s", 2, (3, 3), fused=16, n_frames=3, sources=0)
    assert all(not t["stolen"] for r in results for t in r.trace.tiles if t.get("origin") == "gateway")


def test_stolen_level1_strips_carry_no_input_crop(tmp_path):
    """WST-S on row strips: a thief's level-1 strip reads nothing of the input once both
    neighbours' data is in, so its TASK carried none (its input bytes are the reuse data
    alone), and the answer is still bit-identical."""
    from deepthings.runtime.workload import FTPWorkload

    cfg = yolov2_cfg(tmp_path, 320)
    results = run_case(cfg, None, "wst-s", 3, (6, 1), fused=16, n_frames=3)
    wl = FTPWorkload(load_darknet(cfg, random_seed=0), (6, 1), 16, reuse=True)
    lean = {t: wl.lean_region(t) for t in range(wl.n_tiles) if wl.level(t) == 1}
    stolen = [t for r in results for t in r.trace.tiles
              if t["level"] == 1 and t["stolen"] and t["reused"] and lean[t["tile"]][0] >= lean[t["tile"]][2]]
    assert stolen, "no level-1 strip with an empty lean region was stolen"
    # A strip whose neighbours' data all came ran on reuse data alone; one whose data was late
    # (a loaded test machine) fetched the rows it then read from the source: never more.
    bare = [t for t in stolen if t["crop_bytes"] == 0]
    assert len(bare) * 2 >= len(stolen), stolen
    for t in stolen:
        top, left, bottom, right = wl.input_region(t["tile"])
        assert t["crop_bytes"] <= 4 * 3 * (bottom - top) * (right - left), t


@pytest.mark.slow
def test_yolov2_608_wst_5x5(tmp_path):
    run_case(DARKNET_CFGS / "yolov2.cfg", None, "wst", 3, (5, 5), fused=16, n_frames=1)


def test_detections_match_single_device_on_real_images():
    from deepthings.detect import decode_outputs
    from deepthings.engine.preprocess import load_image
    from deepthings.engine.preprocess import preprocess

    net = load_darknet(FASTEST_CFG, FASTEST_WEIGHTS)
    images = sorted(IMAGES.glob("*.jpg"))[:3]
    with Cluster(FASTEST_CFG, weights=FASTEST_WEIGHTS, edges=2, grid=(3, 3), schedule="wst-s") as c:
        results = c.infer_many([str(p) for p in images])
    for path, r in zip(images, results):
        rgb = load_image(path)
        x = preprocess(rgb, (net.input_shape[2], net.input_shape[1]))
        ref = single_device(net, x)
        want = decode_outputs(net, {h: ref[h] for h in net.head_layers}, (rgb.shape[1], rgb.shape[0]))
        assert r.detections == want and len(want) > 0


def test_balanced_uneven_grid_is_exact_and_reaches_the_edges(tmp_path):
    """Cluster(balance=True): the gateway's balanced cuts travel in the spec, every edge builds
    the same uneven plan, and the answer is still bit-identical to net.forward."""
    from deepthings.ftp import FTP
    from deepthings.ftp.balance import SOURCE_LOAD, balanced_cuts

    cfg = yolov2_cfg(tmp_path, 192)
    net = load_darknet(cfg, random_seed=0)
    # one of the edges is the data source (Cluster's default sources=1): the gateway balances for it
    cuts = balanced_cuts(net, (4, 2), 16, devices=3, reuse=True, source=SOURCE_LOAD)
    even = FTP(net, grid=(4, 2), fused_layers=16)
    assert [t.out_region for t in FTP(net, grid=(4, 2), fused_layers=16, cuts=cuts).tiles] != [
        t.out_region for t in even.tiles
    ]  # else this test would not test uneven grids
    xs = [np.random.default_rng(s).random(net.input_shape, dtype=np.float32) for s in range(2)]
    with Cluster(cfg, edges=3, grid=(4, 2), fused_layers=16, schedule="wst-s", balance=True) as c:
        results = c.infer_many(xs, window=2)
        assert c.spec["cuts"] == [list(b) for b in cuts]
    for x, r in zip(xs, results):
        for i, arr in single_device(net, x).items():
            assert np.array_equal(r.outputs[i], arr), f"layer {i}"
        assert any(t.get("reused") for t in r.trace.tiles)
