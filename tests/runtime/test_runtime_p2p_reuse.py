"""wst-sp at one edge: overlap data from its own store and from other edges; a holder that
never answers, or answers garbage, costs only that side's reuse (computed instead), never
the exactness of the tile."""

from __future__ import annotations

import numpy as np
import pytest

from deepthings.darknet import network_from_cfg_text
from deepthings.runtime.edge import Edge, EdgeConfig
from deepthings.runtime.model import build_workload
from deepthings.runtime.protocol import make
from deepthings.runtime.scheduler import LocalTask
from deepthings.runtime.workload import FTPWorkload
from runtime_helpers import yolov2_cfg_text

GRID = (3, 3)
TILE = 1  # level 1: its level-0 neighbours are 0, 2 and 4


@pytest.fixture(scope="module")
def setup():
    net = network_from_cfg_text(yolov2_cfg_text(96), random_seed=0, upto=16)
    wl = FTPWorkload(net, GRID, 16, reuse=True)
    x = np.random.default_rng(1).random(net.input_shape, dtype=np.float32)
    published = {}
    for src in wl.neighbours(TILE):
        out = wl.run(src, wl.crop(x, src))
        n_out = len(out.arrays) - out.n_publish
        published[src] = (out.meta["publish"], out.arrays[n_out:])
    want = wl.plan.run_tile(TILE, wl.crop(x, TILE))
    edge = Edge(EdgeConfig(gateway="tcp://127.0.0.1:9", name="p2p", advertise_host="127.0.0.1"), None, build_workload)
    edge.workload, edge.schedule, edge.peer_id = wl, "wst-sp", 3
    yield wl, x, published, want, edge
    edge._ctx.destroy(0)


def _parked(edge: Edge, wl: FTPWorkload, x: np.ndarray) -> LocalTask:
    task = LocalTask(0, TILE, 1, wl.crop(x, TILE), {"origin": "local"})
    edge.parked, edge.current = task, None
    return task


def _run(wl: FTPWorkload, task: LocalTask) -> np.ndarray:
    from deepthings.runtime.workload import ReuseData

    reuse = task.meta["reuse"]
    data = ReuseData(task.extra, reuse) if reuse is not None and task.extra else None
    out = wl.run(task.tile, task.crop, data)
    return out.arrays[0]


def test_own_pieces_are_used_and_a_silent_holder_falls_back(setup):
    wl, x, published, want, edge = setup
    pairs, arrays = published[0]
    edge._hold(0, 0, pairs, arrays)  # this edge computed tile 0 itself
    task = _parked(edge, wl, x)
    # tile 2's holder never answers (nothing listens there); tile 4's holder is unknown
    edge._fetch_pieces(task, [[0, 3, edge.steal_addr], [2, 5, "tcp://127.0.0.1:9"]])
    assert edge.parked is task and set(edge._fetching) == {2}
    assert {p[0] for p in task.meta["reuse"]["pieces"]} == {0}
    edge._pieces_done()  # what the timeout does
    assert edge.parked is None and edge.current is task
    np.testing.assert_array_equal(_run(wl, task), want)


def test_pieces_from_another_edge_and_bad_ones_ignored(setup):
    wl, x, published, want, edge = setup
    edge._held.clear()
    task = _parked(edge, wl, x)
    addr2, addr4 = "tcp://127.0.0.1:9", "tcp://127.0.0.1:10"
    edge._fetch_pieces(task, [[2, 5, addr2], [4, 6, addr4]])
    assert set(edge._fetching) == {2, 4}
    # tile 2's pieces arrive intact, tile 4's with a wrong shape: the latter side is computed
    pairs, arrays = published[2]
    mine = [(p, a) for p, a in zip(pairs, arrays) if p[0] == TILE]
    edge._on_pieces(addr2, make("PIECES", [a for _, a in mine], frame=0, src=2, dest=TILE,
                                meta={"layers": [p[1] for p, _ in mine]}))
    pairs4, arrays4 = published[4]
    bad = [np.zeros((1, 1, 1), np.float32) for p in pairs4 if p[0] == TILE]
    edge._on_pieces(addr4, make("PIECES", bad, frame=0, src=4, dest=TILE,
                                meta={"layers": [p[1] for p in pairs4 if p[0] == TILE]}))
    assert edge.parked is None and edge.current is task  # both answered: it runs
    assert {p[0] for p in task.meta["reuse"]["pieces"]} == {2}
    np.testing.assert_array_equal(_run(wl, task), want)


def test_a_late_answer_is_ignored(setup):
    wl, x, published, want, edge = setup
    edge.current = None
    edge.parked = None
    edge._fetching = {}
    # nothing parked: a PIECES out of the blue changes nothing
    edge._on_pieces("tcp://127.0.0.1:9", make("PIECES", [], frame=0, src=2, dest=TILE, meta={"layers": []}))
    assert edge.parked is None


def test_the_steal_server_serves_held_pieces(setup):
    wl, x, published, want, edge = setup
    pairs, arrays = published[4]
    edge._held.clear()
    edge._hold(0, 4, pairs, arrays)
    sent = []
    import deepthings.runtime.edge as edge_mod

    real = edge_mod.transport.send
    edge_mod.transport.send = lambda sock, msg, identity=None: sent.append(msg) or 0
    try:
        edge._on_pieces_req(b"thief", make("PIECES_REQ", frame=0, src=4, dest=TILE))
        edge._on_pieces_req(b"thief", make("PIECES_REQ", frame=9, src=4, dest=TILE))  # not held
    finally:
        edge_mod.transport.send = real
    full, empty = sent
    assert full["meta"]["layers"] == sorted(p[1] for p in pairs if p[0] == TILE) and len(full.arrays) > 0
    assert empty.arrays == [] and empty["meta"]["layers"] == []


def test_held_overlap_data_is_bounded(setup, monkeypatch):
    import deepthings.runtime.edge as edge_mod

    wl, x, published, want, edge = setup
    edge._held.clear()
    edge._held_bytes = 0
    pairs, arrays = published[4]
    size = sum(a.nbytes for a in arrays)
    monkeypatch.setattr(edge_mod, "HELD_BYTES", int(2.5 * size))
    for frame in range(5):
        edge._hold(frame, 4, pairs, arrays)
    assert list(edge._held) == [(3, 4), (4, 4)] and edge._held_bytes == 2 * size  # oldest dropped first
    edge._hold(4, 4, pairs, arrays)  # held again: replaced, not counted twice
    assert edge._held_bytes == 2 * size
