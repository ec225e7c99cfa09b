"""A data source fed a camera's 8-bit codes (uint8 CHW) answers exactly as with the float
frames ``codes / 255``, and sends them as 8 bits; a frame of the wrong shape is skipped; the
worker's optional lower priority (EdgeConfig.worker_nice) takes effect per thread."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from deepthings.runtime.edge import Edge, EdgeConfig, _lower_priority
from deepthings.runtime.gateway import Gateway, GatewayConfig, ModelFiles
from deepthings.runtime.model import build_workload
from deepthings.runtime.workload import SyntheticWorkload

from runtime_helpers import serve_until_sourced

SHAPE = (3, 24, 28)
GRID = (2, 2)


def _run_source(tmp_path, frames):
    wl = SyntheticWorkload(SHAPE, GRID, passes=2)
    gw = Gateway(wl, ModelFiles(wl.spec()), GatewayConfig(bind="tcp://127.0.0.1:0", schedule="wst"), None)
    answers: dict[int, np.ndarray] = {}
    edge = Edge(EdgeConfig(gateway=gw.endpoint, name="camera", source=True, cache_dir=tmp_path,
                           advertise_host="127.0.0.1"),
                None, build_workload, frames=frames,
                on_done=lambda tag, msg: answers.__setitem__(tag, np.array(msg.arrays[0])))
    assert serve_until_sourced(gw, edge), "the source hung"
    return wl, gw, answers


def test_uint8_camera_frames_equal_their_float_frames(tmp_path):
    rng = np.random.default_rng(5)
    codes = [rng.integers(0, 256, SHAPE, dtype=np.uint8) for _ in range(3)]
    wl, gw, answers = _run_source(tmp_path, [(i, c) for i, c in enumerate(codes)])
    assert sorted(answers) == [0, 1, 2]
    for i, c in enumerate(codes):
        x = c.astype(np.float32) / np.float32(255.0)
        np.testing.assert_array_equal(answers[i], wl.reference(x))


def test_wrong_sized_uint8_frame_is_refused_naming_the_shape(tmp_path, caplog):
    good = np.zeros(SHAPE, np.uint8)
    bad = np.zeros((3, 10, 10), np.uint8)
    with caplog.at_level("ERROR", logger="deepthings.runtime.edge"):
        wl, gw, answers = _run_source(tmp_path, [(0, good), (1, bad), (2, good)])
    assert sorted(answers) == [0, 2]  # the bad frame is skipped, the source goes on
    assert any("skipping source frame 1" in r.getMessage() and "(3, 10, 10)" in r.getMessage()
               and "(3, 24, 28)" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="no per-thread priorities here")
def test_worker_thread_runs_nicer_than_the_event_loop():
    seen = {}

    def probe():
        _lower_priority(10)
        seen["worker"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen["worker"] == min(19, mine + 10)
