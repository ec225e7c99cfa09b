"""A data source submits its frames lazily (no input in SUBMIT: it partitions them itself); the
gateway asks for a frame (FRAME_REQ) only to re-issue a tile whose thief went silent, and the
frame is still answered exactly once, bit-exact."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from deepthings.errors import ProtocolError

from deepthings.runtime import protocol
from deepthings.runtime.edge import Edge, EdgeConfig
from deepthings.runtime.gateway import Gateway, GatewayConfig, ModelFiles
from deepthings.runtime.model import build_workload
from deepthings.runtime.workload import SyntheticWorkload

from runtime_helpers import serve_until_sourced

SHAPE = (3, 24, 28)
GRID = (2, 2)


def _cluster(tmp_path, n_frames: int, thief_drops_first_result: bool):
    wl = SyntheticWorkload(SHAPE, GRID, passes=2, compute_s=0.05)
    gw = Gateway(wl, ModelFiles(wl.spec()),
                 GatewayConfig(bind="tcp://127.0.0.1:0", schedule="wst", task_timeout_s=0.6), None)
    submits: list[int] = []
    on_submit = gw._on_submit

    def spy(peer, msg, nbytes, now):
        submits.append(len(msg.arrays))
        on_submit(peer, msg, nbytes, now)

    gw._on_submit = spy  # type: ignore[method-assign]
    rng = np.random.default_rng(5)
    xs = [rng.random(SHAPE, dtype=np.float32) for _ in range(n_frames)]
    answers: list[tuple[int, np.ndarray]] = []
    source = Edge(EdgeConfig(gateway=gw.endpoint, name="source", source=True, cache_dir=tmp_path / "s",
                             advertise_host="127.0.0.1", max_frames_in_flight=1),
                  None, build_workload, frames=[(i, x) for i, x in enumerate(xs)],
                  on_done=lambda tag, msg: answers.append((tag, np.array(msg.arrays[0]))))
    thief = Edge(EdgeConfig(gateway=gw.endpoint, name="thief", cache_dir=tmp_path / "t", advertise_host="127.0.0.1"),
                 None, build_workload)
    dropped: list[int] = []
    if thief_drops_first_result:
        send = thief._send_gw

        def lossy(msg):  # the thief's first result never arrives: the gateway re-issues that tile
            if msg.type == "RESULT" and not dropped:
                dropped.append(msg["tile"])
                return 0
            return send(msg)

        thief._send_gw = lossy  # type: ignore[method-assign]
    return wl, gw, source, thief, xs, answers, submits, dropped


def _serve(gw, source, thief) -> bool:
    stop = threading.Event()
    t = threading.Thread(target=thief.serve, args=(stop,), daemon=True)
    t.start()
    try:
        return serve_until_sourced(gw, source, timeout_s=60)
    finally:
        stop.set()
        t.join(timeout=10)


def test_lazy_frames_never_cross_the_sources_uplink(tmp_path):
    wl, gw, source, thief, xs, answers, submits, _ = _cluster(tmp_path, 3, thief_drops_first_result=False)
    assert _serve(gw, source, thief)
    assert submits == [0, 0, 0]  # every SUBMIT without the input
    assert gw.stats["frames_requested"] == 0
    assert sorted(tag for tag, _ in answers) == [0, 1, 2]
    for tag, out in answers:
        np.testing.assert_array_equal(out, wl.reference(xs[tag]))


def test_a_lost_tile_of_a_lazy_frame_is_reissued_with_the_frame_fetched_on_request(tmp_path):
    wl, gw, source, thief, xs, answers, submits, dropped = _cluster(tmp_path, 3, thief_drops_first_result=True)
    assert _serve(gw, source, thief)
    assert dropped, "the thief never stole a tile"
    assert gw.stats["reissued"] >= 1 and gw.stats["frames_requested"] >= 1
    assert sorted(tag for tag, _ in answers) == [0, 1, 2], "a frame was lost or answered twice"
    for tag, out in answers:
        np.testing.assert_array_equal(out, wl.reference(xs[tag]))


def test_a_lazy_submit_of_the_wrong_shape_is_refused(tmp_path):
    wl = SyntheticWorkload(SHAPE, GRID, passes=2)
    gw = Gateway(wl, ModelFiles(wl.spec()), GatewayConfig(bind="tcp://127.0.0.1:0", schedule="wst"), None)
    try:
        msg = protocol.make("SUBMIT", [], ref=1, keep=True, shape=[3, 24, 27])
        with pytest.raises(ProtocolError, match=r"SUBMIT input shape \[3, 24, 27\], the model takes \(3, 24, 28\)"):
            gw._on_submit(type("P", (), {"peer_id": 9})(), msg, 0, 0.0)
    finally:
        stop = threading.Event()
        stop.set()
        gw.serve(stop)  # closes its sockets


def test_a_lazy_frame_whose_source_left_is_dropped_after_the_task_timeout(tmp_path):
    """Nobody else has the frame and nobody waits for its answer: the gateway forgets it."""
    wl = SyntheticWorkload(SHAPE, GRID, passes=1, compute_s=1.0)
    gw = Gateway(wl, ModelFiles(wl.spec()), GatewayConfig(bind="tcp://127.0.0.1:0", schedule="wst", task_timeout_s=0.5,
                                                          hb_interval_s=0.1), None)
    x = np.random.default_rng(2).random(SHAPE, dtype=np.float32)
    source = Edge(EdgeConfig(gateway=gw.endpoint, name="source", source=True, cache_dir=tmp_path,
                             advertise_host="127.0.0.1"), None, build_workload, frames=[(0, x)])
    stop_gw, stop_src = threading.Event(), threading.Event()
    threads = [threading.Thread(target=gw.serve, args=(stop_gw,), daemon=True),
               threading.Thread(target=source.serve, args=(stop_src,), daemon=True)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 20
        while not gw.book.frames and time.monotonic() < deadline:
            time.sleep(0.02)
        frames = list(gw.book.frames.values())
        assert frames and frames[0].input is None, "the source did not submit lazily"
        stop_src.set()  # it says BYE with its frame unanswered and never sent
        threads[1].join(timeout=15)
        while gw.stats["frames_dropped"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert gw.stats["frames_dropped"] == 1 and not gw.book.frames
    finally:
        stop_src.set()
        stop_gw.set()
        for t in threads:
            t.join(timeout=15)
