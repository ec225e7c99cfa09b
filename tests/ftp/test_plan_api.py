"""FTP plan API: tasks, input handling, refusals, the C++ arithmetic, the cost model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepthings import _core
from deepthings.darknet import load_darknet, network_from_cfg_text
from deepthings.errors import PlanError, ProtocolError, ShapeError
from deepthings.ftp import FTP, Region, Task, format_cost_report

from ftp_netgen import DARKNET_CFGS

SMALL = """[net]
width=20
height=16
channels=2

[convolutional]
filters=3
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=4
size=3
stride=1
pad=1
activation=leaky
"""


@pytest.fixture(scope="module")
def small():
    return network_from_cfg_text(SMALL, random_seed=0)


@pytest.fixture()
def x(small):
    return np.random.default_rng(0).standard_normal(small.input_shape).astype(np.float32)


# ----- C++ arithmetic against brute force ------------------------------------------------
@settings(max_examples=60)
@given(
    k=st.integers(1, 7),
    s=st.integers(1, 3),
    t=st.integers(0, 6),
    b=st.integers(0, 6),
    n=st.integers(1, 30),
    data=st.data(),
)
def test_window_region_is_what_the_outputs_read(k, s, t, b, n, data):
    """in_region = the span of input rows the outputs read, clamped; pad = the overhang."""
    out_n = (n + t + b - k) // s + 1
    if out_n < 1:
        return
    o1 = data.draw(st.integers(0, out_n - 1))
    o2 = data.draw(st.integers(o1 + 1, out_n))
    desc = _core.LayerDesc(_core.RegionKind.window, (k, 1), (s, 1), (t, 0, b, 0), 1, [-1], [n], [1], out_n, 1)
    reads = [o * s - t + d for o in range(o1, o2) for d in range(k)]
    lo, hi = max(0, min(reads)), min(n, max(reads) + 1)
    if lo >= hi:
        with pytest.raises(ValueError, match="only padding"):
            _core.region_layer_input(desc, (o1, 0, o2, 1), 3)
        return
    active, out, inr, pad = _core.region_layer_input(desc, (o1, 0, o2, 1), 3)
    assert active and out == (o1, 0, o2, 1)
    assert (inr[0], inr[2]) == (lo, hi)
    assert pad[0] == max(0, -min(reads)) and pad[2] == max(0, max(reads) - (n - 1))
    assert (inr[2] - inr[0] + pad[0] + pad[2] - k) // s + 1 == o2 - o1


@settings(max_examples=60)
@given(h=st.integers(1, 60), w=st.integers(1, 60), data=st.data())
def test_balanced_grid_partitions_the_map(h, w, data):
    """Cells cover the map once, never empty, sizes differ by at most one."""
    n, m = data.draw(st.integers(1, h)), data.draw(st.integers(1, w))
    cells = _core.region_balanced_grid(h, w, n, m)
    cover = np.zeros((h, w), dtype=int)
    for top, left, bottom, right in cells:
        assert bottom > top and right > left
        cover[top:bottom, left:right] += 1
    assert (cover == 1).all()
    heights = {b - t for t, _, b, _ in cells}
    assert max(heights) - min(heights) <= 1
    with pytest.raises(ValueError, match="larger than"):
        _core.region_balanced_grid(h, w, h + 1, m)


def test_union_of_consumers_is_the_bounding_box():
    """A layer read by two consumers with different windows computes the union of both."""
    d = _core.RegionKind
    block = [
        _core.LayerDesc(d.window, (1, 1), (1, 1), (0, 0, 0, 0), 1, [-1], [20], [20], 20, 20),
        _core.LayerDesc(d.window, (5, 5), (1, 1), (2, 2, 2, 2), 1, [0], [20], [20], 20, 20),
        _core.LayerDesc(d.window, (3, 3), (1, 1), (0, 0, 0, 0), 1, [0], [20], [20], 18, 18),
        _core.LayerDesc(d.upsample, (1, 1), (1, 1), (0, 0, 0, 0), 1, [2], [18], [18], 18, 18),
    ]
    # Layer 3 is just layer 2 (factor 1); layer 1 and 3 are both seeds.
    layers, inp = _core.region_trace_tile(block, [(1, (4, 4, 8, 8)), (3, (10, 10, 12, 12))], 20, 20)
    assert layers[1][2] == (2, 2, 10, 10)
    assert layers[2][2] == (10, 10, 14, 14)
    assert layers[0][1] == (2, 2, 14, 14)  # bounding box of (2,2,10,10) and (10,10,14,14)
    assert inp == (2, 2, 14, 14)


def test_aligned_layer_pads_instead_of_reading_more():
    """align=2: an odd top/left is produced from one row/column earlier, out of zero padding
    (the input region is unchanged); produced == out where already even."""
    d = _core.RegionKind
    plain = _core.LayerDesc(d.window, (3, 3), (1, 1), (1, 1, 1, 1), 1, [-1], [20], [20], 20, 20)
    aligned = _core.LayerDesc(d.window, (3, 3), (1, 1), (1, 1, 1, 1), 1, [-1], [20], [20], 20, 20, align=2)
    assert _core.region_layer_input(plain, (3, 5, 9, 9), 0) == (True, (3, 5, 9, 9), (2, 4, 10, 10), (0, 0, 0, 0))
    assert _core.region_layer_input(aligned, (3, 5, 9, 9), 0) == (True, (3, 5, 9, 9), (2, 4, 10, 10), (1, 1, 0, 0))
    assert _core.region_layer_input(aligned, (4, 5, 9, 9), 0)[3] == (0, 1, 0, 0)
    assert _core.region_layer_input(aligned, (0, 1, 9, 9), 0)[3] == (1, 1, 0, 0)
    wide = _core.LayerDesc(d.window, (3, 3), (1, 1), (2, 2, 2, 2), 1, [-1], [20], [20], 22, 22, align=2)
    assert _core.region_layer_input(wide, (1, 2, 9, 9), 0)[2:] == ((0, 0, 9, 9), (2, 0, 0, 0))  # border + alignment
    layers, inp = _core.region_trace_tile([aligned], [(0, (3, 5, 9, 9))], 20, 20)
    active, out, inr, pad, produced = layers[0]
    assert (out, inr, pad, produced, inp) == ((3, 5, 9, 9), (2, 4, 10, 10), (1, 1, 0, 0), (2, 4, 9, 9), (2, 4, 10, 10))
    # Only stride-1 window layers can be aligned.
    with pytest.raises(ValueError, match="layer 0: alignment 2"):
        _core.region_validate_block(
            [_core.LayerDesc(d.window, (3, 3), (2, 2), (1, 1, 1, 1), 1, [-1], [20], [20], 10, 10, align=2)], 20, 20
        )
    with pytest.raises(ValueError, match="layer 0: alignment 2"):
        _core.region_validate_block(
            [_core.LayerDesc(d.pointwise, (1, 1), (1, 1), (0, 0, 0, 0), 1, [-1], [20], [20], 20, 20, align=2)], 20, 20
        )


@pytest.mark.parametrize("grid", [(3, 3), (5, 5)])
def test_alignment_cost_on_yolov2(grid):
    """The alignment changes no out/in region, only top/left padding and what the engine
    produces; the cost report's flops_align is exactly the difference to an unaligned plan."""
    from deepthings.darknet import load_darknet

    net = load_darknet(DARKNET_CFGS / "yolov2.cfg", random_seed=None)
    on = FTP(net, grid=grid, fused_layers=16)
    off = FTP(net, grid=grid, fused_layers=16, winograd_align=False)
    assert on.key != off.key
    for a, b in zip(on.tiles, off.tiles):
        assert a.input_region == b.input_region
        for la, lb in zip(a.layers, b.layers):
            assert (la.out_region, la.in_region) == (lb.out_region, lb.in_region)
            assert lb.produced_region == lb.out_region
    ca, cb = on.cost(), off.cost()
    assert cb.flops_align == cb.flops_align_reuse == 0
    assert ca.flops_tiles - ca.flops_align == cb.flops_tiles
    assert ca.flops_tiles_reuse - ca.flops_align_reuse == cb.flops_tiles_reuse
    assert ca.redundancy_unaligned == pytest.approx(cb.redundancy)
    assert 0 < ca.flops_align < 0.05 * cb.flops_tiles
    print(
        f"\nYOLOv2-608 {grid} L=16: tiles {ca.flops_tiles / 1e9:.3f} GFLOP aligned vs {cb.flops_tiles / 1e9:.3f} "
        f"(+{100 * (ca.flops_tiles / cb.flops_tiles - 1):.2f}%); with reuse {ca.flops_tiles_reuse / 1e9:.3f} vs "
        f"{cb.flops_tiles_reuse / 1e9:.3f} (+{100 * (ca.flops_tiles_reuse / cb.flops_tiles_reuse - 1):.2f}%)"
    )


# ----- plan API --------------------------------------------------------------------------
def test_tile_input_whole_or_crop_else_error(small, x):
    plan = FTP(small, grid=(2, 3), fused_layers=3)
    t = plan.tiles[4]
    full = Region(0, 0, 16, 20)
    crop = np.ascontiguousarray(t.input_region.crop(x, full))
    np.testing.assert_array_equal(plan.run_tile(4, x, "reference"), plan.run_tile(4, crop, "reference"))
    with pytest.raises(ShapeError, match="neither the network input"):
        plan.run_tile(4, crop[:, 1:], "reference")
    with pytest.raises(ShapeError, match="float32"):
        plan.run_tile(4, x.astype(np.float64), "reference")
    with pytest.raises(PlanError, match="tile id"):
        plan.run_tile(6, x, "reference")


def test_task_roundtrip_frames_and_dict(small, x):
    plan = FTP(small, grid=(2, 2), fused_layers=3)
    task = plan.task(3, x, frame_id=7)
    assert task.input.shape == (2, plan.tiles[3].input_region.height, plan.tiles[3].input_region.width)
    frames = [bytes(f) for f in task.to_frames()]
    back = Task.from_frames(frames)
    assert (back.tile_id, back.frame_id) == (3, 7)
    np.testing.assert_array_equal(back.input, task.input)
    np.testing.assert_array_equal(plan.run_task(back, "reference"), plan.run_tile(3, x, "reference"))
    import msgpack

    d = msgpack.unpackb(msgpack.packb(task.to_dict()))
    np.testing.assert_array_equal(Task.from_dict(d).input, task.input)
    with pytest.raises(ProtocolError, match="data bytes"):
        Task.from_frames([frames[0], frames[1][:-4]])
    with pytest.raises(ProtocolError, match="msgpack"):
        Task.from_frames([b"\xc1", frames[1]])
    with pytest.raises(ProtocolError, match="expected 2"):
        Task.from_frames(frames[:1])
    other = FTP(small, grid=(2, 2), fused_layers=2)
    with pytest.raises(PlanError, match="another plan"):
        other.run_task(back, "reference")


def test_stitch_checks_its_inputs(small, x):
    plan = FTP(small, grid=(2, 2), fused_layers=3)
    outs = [plan.run_tile(t.tile_id, x, "reference") for t in plan.tiles]
    with pytest.raises(PlanError, match=r"tiles \[3\]"):
        plan.stitch(outs[:3])
    with pytest.raises(ShapeError, match="tile 0"):
        plan.stitch([outs[0][:, :-1]] + outs[1:])


@pytest.mark.parametrize(
    "section, kind",
    [
        ("[avgpool]\n", "avgpool"),
        ("[connected]\noutput=5\nactivation=linear\n", "connected"),
        ("[softmax]\n", "softmax"),
        ("[reorg]\nstride=2\n", "reorg"),
    ],
)
def test_global_layers_are_refused_with_their_index(section, kind):
    net = network_from_cfg_text(SMALL + "\n" + section, random_seed=0)
    FTP(net, grid=(2, 2), fused_layers=3)  # the block before it is fine
    with pytest.raises(PlanError, match=rf"layer 3 \[{kind}\] \(<string>:\d+\).*global"):
        FTP(net, grid=(2, 2), fused_layers=4)


def test_yolo_head_inside_the_block_is_refused():
    net = load_darknet(DARKNET_CFGS / "yolov3-tiny.cfg", random_seed=None)
    head = net.head_layers[0]
    with pytest.raises(PlanError, match=rf"layer {head} \[yolo\]"):
        FTP(net, grid=(2, 2), fused_layers=head + 1)


# ----- cost model ------------------------------------------------------------------------
def test_cost_model_matches_execution(small, x):
    """Overlap bytes = bytes actually published; FLOPs and bytes add up."""
    plan = FTP(small, grid=(3, 3), fused_layers=3)
    cost = plan.cost()
    assert cost.flops_full == small.flops(0, 3)
    rp = plan.reuse
    sent = 0
    for t in rp.level0:
        _, pub = rp.run_level0(t, x, "reference")
        sent += sum(a.nbytes for per in pub.values() for a in per.values())
    assert sent == cost.overlap_bytes > 0
    for tc, t in zip(cost.tiles, plan.tiles):
        assert tc.input_bytes == plan.task(t.tile_id, x).input.nbytes
        assert tc.output_bytes == plan.run_tile(t.tile_id, x, "reference").nbytes
    one = FTP(small, grid=(1, 1), fused_layers=3).cost()
    assert one.flops_tiles == one.flops_full and one.redundancy == 0
    assert all(lc.footprint_tile == lc.footprint_full for lc in one.layers)


def test_format_cost_report_from_a_cfg_path():
    text = format_cost_report(DARKNET_CFGS / "yolov2.cfg", grid=(5, 5), fused_layers=16)
    assert "FTP 5x5, fused layers 0..15" in text
    assert "redundancy" in text and "average per-layer saving" in text
    assert len([line for line in text.splitlines() if "convolutional" in line]) == 12


def test_plan_pickles_for_other_processes(small, x):
    import pickle

    plan = FTP(small, grid=(2, 2), fused_layers=3)
    again = pickle.loads(pickle.dumps(plan))
    np.testing.assert_array_equal(again.run_tile(1, x, "reference"), plan.run_tile(1, x, "reference"))
    assert again.reuse.publish_regions(0) == plan.reuse.publish_regions(0)


def test_level1_reads_less_input_with_neighbours(small):
    plan = FTP(small, grid=(3, 3), fused_layers=3)
    rp = plan.reuse
    t = rp.level1[0]
    alone = rp.input_region(t, ())
    assert alone == plan.tiles[t].input_region
    assert plan.tiles[t].input_region.contains(rp.input_region(t, rp.neighbours(t).values()))
    assert rp.input_region(t, rp.neighbours(t).values()).area < alone.area


def test_grid_as_text(small):
    assert FTP(small, grid="2x3", fused_layers=3).grid == (2, 3)
    with pytest.raises(PlanError, match="grid must be a pair"):
        FTP(small, grid="2by3", fused_layers=3)


def test_cost_received_equals_published(small):
    cost = FTP(small, grid=(3, 4), fused_layers=3).cost()
    assert sum(t.received_bytes for t in cost.tiles) == cost.overlap_bytes
    for t in cost.tiles:
        assert t.input_bytes_reuse <= t.input_bytes
        assert (t.received_bytes > 0) == (t.level == 1)


def test_info_cli_prints_the_cost_report():
    import subprocess
    import sys

    cfg = str(DARKNET_CFGS / "yolov2.cfg")
    r = subprocess.run(
        [sys.executable, "-m", "deepthings", "info", cfg, "--grid", "5x5", "--fused", "16"],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr
    # 119.7%: DeepThings' redundancy; the Winograd alignment adds its discarded rows/columns.
    assert "FTP 5x5, fused layers 0..15" in r.stdout and "without them: redundancy 119.7%" in r.stdout
    assert "(redundancy 126.3%)" in r.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "deepthings", "info", cfg, "--grid", "5x5", "--fused", "31"],
        capture_output=True, text=True, timeout=300,
    )
    assert bad.returncode != 0 and "layer 27 [reorg]" in bad.stderr
