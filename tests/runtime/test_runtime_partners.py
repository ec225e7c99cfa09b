"""Partner prefetch under data reuse: an edge running a level-0 tile prefetches that tile's
level-1 partner by name (WORK_REQ/STEAL_REQ want), the gateway sends it to the edge holding
that tile and the victim hands that one over first, so each edge runs the pair the balanced
cuts planned for it instead of a random one."""

from __future__ import annotations


import numpy as np
import pytest

from deepthings.darknet import load_darknet
from deepthings.runtime.cluster import Cluster
from deepthings.runtime.protocol import make
from deepthings.runtime.scheduler import LocalTask
from deepthings.runtime.workload import FTPWorkload
from runtime_helpers import source_edge, steal, yolov2_cfg_text

GRID = (6, 1)


@pytest.fixture()
def source():
    edge, thief, x = source_edge(GRID, 160, serve_first_s=0.0)
    yield edge, thief, x
    edge._ctx.destroy(0)


def _steal(edge, thief, **fields) -> int:
    return steal(edge, thief, prefetch=True, **fields)


def test_the_victim_hands_over_the_wanted_tile_first(source):
    edge, thief, x = source
    edge._on_frame(4, x)
    assert edge.workload.partner(2) == 3 and edge.workload.partner(1) is None
    assert _steal(edge, thief, want=[4, 5]) == 5  # not the front level-1 tile (1)
    assert _steal(edge, thief, want=[4, 5]) == 1  # gone: the front one instead
    assert _steal(edge, thief, want=[3, 3]) == 3  # another frame's tile 3 is not this one's


def test_an_edge_running_a_level0_tile_wants_its_partner(source):
    edge, _, x = source
    edge.current = LocalTask(9, 2, 0, None)
    req = edge._work_req()
    assert req["prefetch"] is True and req["want"] == [9, 3]
    edge.current = LocalTask(9, 3, 1, None)  # a level-1 tile has no partner
    assert "want" not in edge._work_req().fields
    edge.current = None
    assert "want" not in edge._work_req().fields and "prefetch" not in edge._work_req().fields


def test_edges_run_the_planned_pairs(tmp_path):
    """In a real cluster (strips, data source + 2 thieves) most level-1 tiles run on the edge
    that ran their level-0 partner, and the answer stays bit-identical."""
    cfg = tmp_path / "yolov2-320.cfg"
    cfg.write_text(yolov2_cfg_text(320))
    net = load_darknet(cfg, random_seed=0)
    wl = FTPWorkload(net, GRID, 16, reuse=True)
    rng = np.random.default_rng(0)
    xs = [rng.random(net.input_shape, dtype=np.float32) for _ in range(4)]
    with Cluster(cfg, edges=3, grid=GRID, fused_layers=16, schedule="wst-s", sources=1) as c:
        results = c.infer_many(xs, window=1)
    paired = total = 0
    for x, r in zip(xs, results):
        np.testing.assert_array_equal(r.output, net.forward(x))
        device = {t["tile"]: t["device"] for t in r.trace.tiles}
        for src in range(0, GRID[0], 2):
            total += 1
            paired += device[src] == device[wl.partner(src)]
    assert paired >= total * 3 // 4, f"only {paired} of {total} pairs ran on one edge"


def test_reuse_for_leaves_out_the_pieces_the_edge_holds(source):
    """WST-S: the pieces the asking edge computed itself (its level-0 tile is the partner)
    count for who is present but are not sent; with them the tile is exact."""
    edge, _, x = source
    wl = edge.workload
    t = 3
    up, down = sorted(wl.neighbours(t))
    assert wl.partner(up) == t
    outs = {src: wl.run(src, wl.crop(x, src)) for src in (up, down)}
    full = wl.reuse_for(t, outs)
    local_layers = sorted({pair[1] for pair in full.meta["pieces"] if pair[0] == up})
    lean = wl.reuse_for(t, {down: outs[down]}, local={up: local_layers})
    assert {p[0] for p in lean.meta["pieces"]} == {down}
    assert lean.meta["pieces"] == [p for p in full.meta["pieces"] if p[0] == down]


def test_an_edge_keeps_its_partners_pieces_and_uses_them(source):
    """A level-0 result leaves the partner's pieces on the edge when it holds the partner task;
    REUSE_REQ says so, and the pieces join the gateway's to give the exact tile."""
    from deepthings.runtime.protocol import decode, encode
    from deepthings.runtime.workload import ReuseData

    edge, _, x = source
    wl = edge.workload
    up, t = 2, 3
    down = 4
    edge._on_frame(11, x)
    # this edge runs level-0 tile 2 and holds its partner (tile 3) in its queue
    task = next(q for q in edge.queue._q if q.tile == up)
    out = wl.run(up, wl.crop(x, up))
    meta = dict(out.meta)
    n_out = len(out.arrays) - out.n_publish
    arrays, n_pub = edge._keep_partner_pieces(task, meta, list(out.arrays), out.n_publish)
    assert all(p[0] != t for p in meta["publish"]) and n_pub == len(meta["publish"]) < out.n_publish
    assert len(arrays) == n_out + n_pub and edge._own_pieces(11, t)
    # the task asks the gateway for the other side only
    level1 = next(q for q in edge.queue._q if q.tile == t)
    edge.queue._q.remove(level1)
    edge._start(level1)
    assert edge.parked is level1
    # the gateway answers with tile 4's pieces (as reuse_for would, given the local ones)
    own = {src: sorted(layers) for src, layers in edge._own_pieces(11, t).items()}
    reuse = wl.reuse_for(t, {down: wl.run(down, wl.crop(x, down))}, local=own)
    msg = decode(encode(make("REUSE", reuse.arrays, frame=11, tile=t, meta=reuse.meta)))
    edge._on_reuse(msg)
    assert edge.current is level1 and not edge._own_pieces(11, t)  # used once, then let go
    got = wl.run(t, wl.crop(x, t), ReuseData(level1.extra, level1.meta["reuse"]))
    np.testing.assert_array_equal(got.arrays[0], wl.plan.run_tile(t, wl.crop(x, t)))
    assert {p[0] for p in level1.meta["reuse"]["pieces"]} == {up, down}


def test_a_victim_keeps_the_level1_tile_whose_pieces_it_holds(source):
    edge, thief, x = source
    wl = edge.workload
    edge._on_frame(12, x)
    out = wl.run(2, wl.crop(x, 2))
    task = next(q for q in edge.queue._q if q.tile == 2)
    meta = dict(out.meta)
    edge._keep_partner_pieces(task, meta, list(out.arrays), out.n_publish)
    assert _steal(edge, thief, want=[12, 3]) != 3  # tile 3's overlap data is here: it stays
