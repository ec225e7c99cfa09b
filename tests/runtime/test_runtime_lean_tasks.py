"""Lean level-1 tasks under data reuse: a stolen level-1 tile carries only the part of its
input it reads once all its neighbours' data is in (for a row strip between two level-0
strips, nothing), and fetches more from the frame's data source (CROP_REQ) only when a
neighbour's data is missing. Every case stays bit-identical to the tile run in full."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq

from deepthings.darknet import network_from_cfg_text
from deepthings.errors import ProtocolError
from deepthings.runtime.edge import Edge, EdgeConfig
from deepthings.runtime.model import build_workload
from deepthings.runtime.protocol import exact8, make
from deepthings.runtime.scheduler import LocalTask
from deepthings.runtime.workload import FTPWorkload, ReuseData
from runtime_helpers import yolov2_cfg_text

GRID = (6, 1)


@pytest.fixture(scope="module")
def strips():
    """YOLOv2 at 320 in 6 uneven row strips (the bottom level-1 strip reads a few input rows
    even with its one neighbour in), a frame (8-bit) and every level-0 publication."""
    net = network_from_cfg_text(yolov2_cfg_text(320), random_seed=0, upto=16)
    cuts = ((0, 4, 9, 10, 15, 16, 20), (0, 20))
    wl = FTPWorkload(net, GRID, 16, reuse=True, cuts=cuts)
    codes = np.random.default_rng(4).integers(0, 256, net.input_shape, dtype=np.uint8)
    x = exact8(codes.astype(np.float32) / np.float32(255))
    assert x is not None
    published = {}
    for t in range(wl.n_tiles):
        if wl.level(t) == 0:
            published[t] = wl.run(t, wl.crop(x, t).to_float())
    return wl, x, published


def _reuse(wl: FTPWorkload, tile: int, published: dict, present: list[int]) -> ReuseData | None:
    return wl.reuse_for(tile, {src: published[src] for src in present})


def _full(wl: FTPWorkload, x, tile: int) -> np.ndarray:
    return wl.plan.run_tile(tile, x.to_float())


def test_lean_region_is_what_a_strip_reads_with_all_neighbours_in(strips):
    """Middle strips read no input at all with both neighbours in; the bottom strip (one
    neighbour) reads a few rows. Runs on the lean crop are bit-identical to full runs."""
    wl, x, published = strips
    level1 = [t for t in range(wl.n_tiles) if wl.level(t) == 1]
    lean = {t: wl.lean_region(t) for t in level1}
    assert all(wl.lean_region(t) is None for t in range(wl.n_tiles) if wl.level(t) == 0)
    empty = [t for t, r in lean.items() if r[0] >= r[2]]
    assert empty and len(empty) < len(level1), lean  # both kinds occur on this plan
    for t in level1:
        reuse = _reuse(wl, t, published, wl.neighbours(t))
        assert wl.input_needed(t, reuse) == lean[t]
        crop = wl.crop_region(x, lean[t])
        out = wl.run(t, None if crop is None else crop.to_float(), reuse, region=lean[t])
        np.testing.assert_array_equal(out.arrays[0], _full(wl, x, t))


def test_a_missing_neighbour_needs_more_input_and_a_lean_crop_is_refused(strips):
    wl, x, published = strips
    t = next(t for t in range(wl.n_tiles) if wl.level(t) == 1 and len(wl.neighbours(t)) == 2)
    lean = wl.lean_region(t)
    one = wl.neighbours(t)[:1]
    reuse = _reuse(wl, t, published, one)
    need = wl.input_needed(t, reuse)
    assert need[2] - need[0] > lean[2] - lean[0] and need != wl.input_region(t)
    assert wl.input_needed(t, None) == wl.input_region(t)
    with pytest.raises(ProtocolError, match="reads"):
        wl.run(t, None, reuse, region=lean)
    out = wl.run(t, wl.crop_region(x, need).to_float(), reuse, region=need)
    np.testing.assert_array_equal(out.arrays[0], _full(wl, x, t))
    # a crop that does not match its region, or a region outside the tile's input: refused
    with pytest.raises(ProtocolError, match="expected"):
        wl.check_crop(t, wl.crop_region(x, need).to_float()[:, 1:], need)
    with pytest.raises(ProtocolError, match="not inside"):
        wl.check_crop(t, None, (0, 0, 320, 320))


class _Pair:
    """A data-source edge and a thief edge, driven by hand (no gateway): the thief's event loop
    steps are called directly, the source's steal server is drained on demand."""

    def __init__(self, wl: FTPWorkload, x) -> None:
        cfg = dict(gateway="tcp://127.0.0.1:9", advertise_host="127.0.0.1")
        self.source = Edge(EdgeConfig(name="source", **cfg), None, build_workload)
        self.thief = Edge(EdgeConfig(name="thief", **cfg), None, build_workload)
        for e, pid in ((self.source, 1), (self.thief, 2)):
            e.workload, e.schedule, e.peer_id, e.ready = wl, "wst-s", pid, True
            e.gw = e._ctx.socket(zmq.DEALER)  # never connected: what goes to the gateway is dropped
            e.gw.linger = 0
            e._last_gw_rx = e._last_gw_tx = time.monotonic() + 1e6  # and it is never missed

    def pump(self, until, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not until() and time.monotonic() < deadline:
            self.source._drain_router()
            for addr, sock in list(self.thief._victims.items()):
                if sock.poll(10, zmq.POLLIN):
                    self.thief._drain(sock, lambda m, a=addr: self.thief._on_victim(a, m))
        assert until(), "timed out"

    def close(self) -> None:
        for e in (self.source, self.thief):
            e._ctx.destroy(0)


@pytest.fixture
def pair(strips):
    wl, x, _ = strips
    p = _Pair(wl, x)
    yield p
    p.close()


def _stolen(pair: _Pair, wl: FTPWorkload, x, tile: int, frame: int = 5) -> LocalTask:
    """The source partitions the frame, and a thief steals `tile` (as TASK would carry it)."""
    src = pair.source
    src._on_frame(frame, x)
    task = next(t for t in src.queue._q if t.tile == tile)
    given = src._lean(task)
    msg = make("TASK", ([given.crop] if given.crop is not None else []) + list(given.extra), frame=frame,
               tile=tile, level=1, meta={"origin": "local", "source_addr": src.steal_addr, "victim": 1,
                                         **({"crop": list(given.region)} if given.region is not None else {})})
    from deepthings.runtime import protocol

    pair.thief._on_task(protocol.decode(protocol.encode(msg)), stolen=True)  # through the codec
    return pair.thief.queue.pop_own()


def test_a_stolen_level1_tile_carries_only_its_lean_crop(pair, strips):
    wl, x, published = strips
    t = next(t for t in range(wl.n_tiles) if wl.level(t) == 1 and len(wl.neighbours(t)) == 2)
    task = _stolen(pair, wl, x, t)
    assert task.crop is None and task.region == (0, 0, 0, 0) and task.input_bytes == 0
    # the source keeps the frame for later CROP_REQs, and its own tasks their whole crops
    assert 5 in pair.source._partitioned
    assert all(q.region is None and q.crop is not None for q in pair.source.queue._q)


def test_a_missing_neighbour_fetches_the_input_from_the_source(pair, strips):
    """REUSE brought one neighbour only: the thief asks the source (CROP_REQ), gets exactly
    the rows it now reads, and the tile is bit-identical to a full run."""
    wl, x, published = strips
    t = next(t for t in range(wl.n_tiles) if wl.level(t) == 1 and len(wl.neighbours(t)) == 2)
    task = _stolen(pair, wl, x, t)
    reuse = _reuse(wl, t, published, wl.neighbours(t)[:1])
    task.extra, task.meta["reuse"] = list(reuse.arrays), reuse.meta
    th = pair.thief
    th._start(task)
    assert th.parked is task and th._crop_fetch is not None and th.current is None
    pair.pump(lambda: th.current is not None)
    assert th.parked is None and task.region == wl.input_needed(t, reuse)
    got = th._work_in.get_nowait()
    assert got is task
    out = wl.run(t, task.crop.to_float(), reuse, region=task.region)
    np.testing.assert_array_equal(out.arrays[0], _full(wl, x, t))


def test_a_source_without_the_frame_makes_the_thief_drop_the_task(pair, strips):
    wl, x, published = strips
    t = next(t for t in range(wl.n_tiles) if wl.level(t) == 1 and len(wl.neighbours(t)) == 2)
    task = _stolen(pair, wl, x, t, frame=6)
    pair.source._partitioned.clear()  # e.g. the frame was long done there
    task.meta["reuse"] = None  # no overlap data at all: the tile needs its whole input
    th = pair.thief
    th._start(task)
    assert th._crop_fetch is not None
    pair.pump(lambda: th.parked is None)
    assert th.current is None and th._crop_fetch is None  # dropped: the gateway re-issues it


def test_an_unanswered_crop_request_times_out(pair, strips):
    wl, x, published = strips
    t = next(t for t in range(wl.n_tiles) if wl.level(t) == 1 and len(wl.neighbours(t)) == 2)
    task = _stolen(pair, wl, x, t, frame=7)
    task.meta["reuse"] = None
    task.meta["source_addr"] = "tcp://127.0.0.1:9"  # nobody listens there
    th = pair.thief
    th._start(task)
    assert th.parked is task
    th._tick(time.monotonic() + 10.0)
    assert th.parked is None and th._crop_fetch is None
