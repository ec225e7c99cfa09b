"""FTP on the real models: YOLOv2 (DeepThings' set-up) and yolo-fastest-1.1 (a DAG block)."""

from __future__ import annotations

import numpy as np
import pytest

import deepthings
from deepthings.darknet import load_darknet, network_from_cfg_text
from deepthings.errors import PlanError
from deepthings.ftp import FTP

from ftp_netgen import DARKNET_CFGS, IMAGES, YOLO_FASTEST, scale_of


@pytest.fixture(scope="module")
def yolov2():
    return load_darknet(DARKNET_CFGS / "yolov2.cfg", random_seed=0, upto=16)


def _deepthings_trace(net, cell, L):
    """DeepThings' formulas, inclusive ranges: conv (pad = k/2) [o1*s - k/2, o2*s + k/2],
    maxpool (k = s) [o1*s, o2*s + s - 1], both clamped to the map; returns per-layer inputs."""
    (r1, r2), (c1, c2) = cell
    out = {}
    for i in range(L - 1, -1, -1):
        layer = net.layers[i]
        k, s = layer.kernel[0], layer.stride[0]
        _, h, w = layer.in_shapes[0]
        if layer.type == "convolutional":
            assert layer.padding == k // 2
            rows, cols = (r1 * s - k // 2, r2 * s + k // 2), (c1 * s - k // 2, c2 * s + k // 2)
        else:
            assert layer.type == "maxpool" and k == s
            rows, cols = (r1 * s, r2 * s + s - 1), (c1 * s, c2 * s + s - 1)
        r1, r2 = max(rows[0], 0), min(rows[1], h - 1)
        c1, c2 = max(cols[0], 0), min(cols[1], w - 1)
        out[i] = ((r1, r2), (c1, c2))
    return out


@pytest.mark.parametrize("grid", [(3, 3), (5, 5)])
def test_yolov2_regions_follow_deepthings_formulas(yolov2, grid):
    """Per tile and layer the input region is DeepThings'; the grid is balanced."""
    plan = FTP(yolov2, grid=grid, fused_layers=16)
    assert plan.output_shape == (256, 38, 38)
    sizes = {(t.out_region.height, t.out_region.width) for t in plan.tiles}
    hs, ws = {h for h, _ in sizes}, {w for _, w in sizes}
    assert max(hs) - min(hs) <= 1 and max(ws) - min(ws) <= 1
    for t in plan.tiles:
        cell = ((t.out_region.top, t.out_region.bottom - 1), (t.out_region.left, t.out_region.right - 1))
        expected = _deepthings_trace(yolov2, cell, 16)
        for lt in t.layers:
            (r1, r2), (c1, c2) = expected[lt.index]
            assert (lt.in_region.top, lt.in_region.bottom - 1, lt.in_region.left, lt.in_region.right - 1) == (
                r1, r2, c1, c2
            ), f"tile {t.tile_id} layer {lt.index}"
        assert t.input_region == t.layers[0].in_region


@pytest.mark.parametrize("grid", [(3, 3), (5, 5)])
def test_yolov2_reuse_cuts_flops(yolov2, grid):
    """Data reuse removes most of FTP's redundant FLOPs (numbers in the closing report)."""
    cost = FTP(yolov2, grid=grid, fused_layers=16).cost()
    assert cost.flops_full == yolov2.flops(0, 16)
    assert cost.flops_tiles > cost.flops_full
    assert cost.flops_full <= cost.flops_tiles_reuse < cost.flops_tiles
    print(
        f"\nYOLOv2 {grid}: unpartitioned {cost.flops_full / 1e9:.2f} GFLOP, tiles {cost.flops_tiles / 1e9:.2f} "
        f"(+{100 * cost.redundancy:.1f}%), with reuse {cost.flops_tiles_reuse / 1e9:.2f} "
        f"(+{100 * cost.redundancy_reuse:.1f}%): reuse saves {100 * cost.reuse_saving:.1f}%"
    )


def _stitched_with_and_without_reuse(plan, x):
    plain = plan.stitch([plan.run_tile(t.tile_id, x) for t in plan.tiles])
    rp = plan.reuse
    outs, pub = {}, {}
    for t in rp.level0:
        outs[t], pub[t] = rp.run_level0(t, x)
    for t in rp.level1:
        outs[t] = rp.run_level1(t, x, rp.data_for(t, pub))
    return plain, plan.stitch(outs)


@pytest.mark.parametrize("grid", [(3, 3), (5, 5)])
def test_yolov2_608_tiles_bit_identical_to_full(yolov2, grid):
    """YOLOv2-608, 16 fused layers, native engine (3x3 convs as Winograd F(2x2,3x3)): stitched
    tiles, with and without reuse, are bit-identical to the full forward."""
    plan = FTP(yolov2, grid=grid, fused_layers=16)
    x = deepthings.preprocess(IMAGES / "dog.jpg", (608, 608))
    want = yolov2.forward(x, end=16)
    plain, reused = _stitched_with_and_without_reuse(plan, x)
    np.testing.assert_array_equal(plain, want)
    np.testing.assert_array_equal(reused, want)


@pytest.mark.parametrize("size, grid", [(416, (4, 4)), (320, (2, 3)), (224, (5, 4)), (160, (3, 5))])
def test_yolov2_smaller_inputs_bit_identical(size, grid):
    """Other input sizes and grids (odd and even cell corners everywhere): still bit for bit."""
    net = network_from_cfg_text(_shrunk_cfg(DARKNET_CFGS / "yolov2.cfg", size), random_seed=1, upto=16)
    plan = FTP(net, grid=grid, fused_layers=16)
    x = np.random.default_rng(size).random(net.input_shape, dtype=np.float32)
    want = net.forward(x, end=16)
    plain, reused = _stitched_with_and_without_reuse(plan, x)
    np.testing.assert_array_equal(plain, want)
    np.testing.assert_array_equal(reused, want)


def test_yolov2_without_alignment_is_not_bit_identical(yolov2):
    """The alignment is what makes it exact: without it tiles starting at odd rows/columns use
    other Winograd blocks than the full map and round differently (but stay close)."""
    x = deepthings.preprocess(IMAGES / "dog.jpg", (608, 608))
    plan = FTP(yolov2, grid=(3, 3), fused_layers=8, winograd_align=False)
    want = yolov2.forward(x, end=8)
    got = plan.stitch([plan.run_tile(t.tile_id, x) for t in plan.tiles])
    assert not np.array_equal(got, want)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale_of(want))


@pytest.fixture(scope="module")
def yolo_fastest():
    return load_darknet(YOLO_FASTEST / "yolo-fastest-1.1.cfg", YOLO_FASTEST / "yolo-fastest-1.1.weights")


@pytest.mark.parametrize("fused, grid", [(20, (3, 3)), (24, (4, 4)), (47, (3, 3))])
def test_yolo_fastest_dag_block_gives_same_outputs_and_detections(yolo_fastest, fused, grid):
    """Shortcuts inside the block and across the cut: heads (bit for bit) and detections are
    unchanged."""
    net = yolo_fastest
    plan = FTP(net, grid=grid, fused_layers=fused)
    assert any(net.layers[i].type == "shortcut" for i in range(fused))
    images = sorted(IMAGES.glob("*.jpg"))
    for path in images[:2] if fused != 20 else images:
        x = deepthings.preprocess(path, (320, 320))
        want = net.forward(x, outputs=net.head_layers)
        got = plan.finish([plan.run_tile(t.tile_id, x) for t in plan.tiles], outputs=net.head_layers)
        for h in net.head_layers:
            np.testing.assert_array_equal(got[h], want[h], err_msg=str(path))
        try:
            from deepthings.detect import decode_outputs
        except ImportError:
            continue
        from PIL import Image

        wh = Image.open(path).size
        a = decode_outputs(net, want, wh, thresh=0.25, nms=0.45, letterbox=False)
        b = decode_outputs(net, got, wh, thresh=0.25, nms=0.45, letterbox=False)
        assert [(d.class_id, round(d.score, 4)) for d in a] == [(d.class_id, round(d.score, 4)) for d in b]


def test_yolo_fastest_exports_layers_read_after_the_cut(yolo_fastest):
    """Cutting inside a residual block or before the route to layer 80 exports those layers."""
    assert FTP(yolo_fastest, grid=(2, 2), fused_layers=20).exports == (19, 16)
    assert 80 in FTP(yolo_fastest, grid=(2, 2), fused_layers=90).exports


def test_yolo_fastest_with_reuse_across_shortcuts(yolo_fastest):
    """WST-S on a DAG block with exports (real weights): heads equal, less work than no reuse."""
    net = yolo_fastest
    plan = FTP(net, grid=(3, 3), fused_layers=47)
    rp = plan.reuse
    x = deepthings.preprocess(IMAGES / "eagle.jpg", (320, 320))
    want = net.forward(x, outputs=net.head_layers)
    outs, pub = {}, {}
    for t in rp.level0:
        outs[t], pub[t] = rp.run_level0(t, x)
    for k, t in enumerate(rp.level1):
        data = rp.data_for(t, pub)
        keep = sorted(data)[: len(data) - (k % 2)]  # every other tile misses one neighbour
        outs[t] = rp.run_level1(t, x, {s: data[s] for s in keep})
    got = plan.finish(outs, outputs=net.head_layers)
    for h in net.head_layers:
        np.testing.assert_array_equal(got[h], want[h])
    cost = plan.cost()
    assert cost.flops_tiles_reuse < cost.flops_tiles


def _shrunk_cfg(path, side):
    """The cfg text with the [net] input size replaced (keeps the test fast)."""
    import re

    text = path.read_text()
    text = re.sub(r"(?m)^\s*width\s*=.*$", f"width={side}", text, count=1)
    return re.sub(r"(?m)^\s*height\s*=.*$", f"height={side}", text, count=1)


@pytest.mark.slow
@pytest.mark.parametrize("cfg", sorted(p.name for p in DARKNET_CFGS.glob("*.cfg")))
def test_every_shared_cfg_longest_tileable_prefix(cfg):
    """The longest prefix without a global layer of every shared cfg stitches bit for bit."""
    from deepthings.darknet import network_from_cfg_text

    path = DARKNET_CFGS / cfg
    text = path.read_text() if "[crop]" in path.read_text() else _shrunk_cfg(path, 160)  # crop needs its size
    shapes_only = network_from_cfg_text(text, random_seed=None, name=cfg)
    L = next((layer.index for layer in shapes_only.layers if layer.spatial.kind == "global"), len(shapes_only.layers))
    if L == 0:
        with pytest.raises(PlanError, match=r"layer 0 \["):
            FTP(shapes_only, grid=(1, 1), fused_layers=1)
        return
    net = network_from_cfg_text(text, random_seed=1, name=cfg, upto=L)
    probe = FTP(net, grid=(1, 1), fused_layers=L)
    n = min(3, *(probe.layer_shape(e)[1] for e in probe.exports))
    m = min(3, *(probe.layer_shape(e)[2] for e in probe.exports))
    plan = FTP(net, grid=(n, m), fused_layers=L)
    x = np.random.default_rng(0).random(net.input_shape, dtype=np.float32)
    want = net.forward(x, end=L, outputs=list(plan.exports))
    maps = plan.stitch_all([plan.run_tile(t.tile_id, x) for t in plan.tiles])
    for e in plan.exports:
        np.testing.assert_array_equal(maps[e], want[e], err_msg=f"{cfg} layer {e}")
    if L < len(net.layers):
        with pytest.raises(PlanError, match=rf"layer {L} \[{net.layers[L].type}\]"):
            FTP(net, grid=(1, 1), fused_layers=L + 1)
