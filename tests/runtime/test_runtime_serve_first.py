"""A data source with idle edges waiting hands out their tiles before starting its own
(EdgeConfig.serve_first_s): held until the expected steals are served, or until the hold times
out, and not at all when nobody waits."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq

from deepthings.darknet import network_from_cfg_text
from deepthings.runtime import transport
from deepthings.runtime.edge import Edge, EdgeConfig
from deepthings.runtime.model import build_workload
from deepthings.runtime.protocol import make
from deepthings.runtime.workload import FTPWorkload
from runtime_helpers import yolov2_cfg_text


@pytest.fixture()
def source():
    net = network_from_cfg_text(yolov2_cfg_text(96), random_seed=0, upto=16)
    wl = FTPWorkload(net, (3, 3), 16, reuse=True)
    edge = Edge(EdgeConfig(gateway="tcp://127.0.0.1:9", name="src", source=True, advertise_host="127.0.0.1",
                           serve_first_s=0.05), None, build_workload)
    # a gateway that only listens, and a thief on the steal server
    gw, gw_addr = transport.server_socket(edge._ctx, zmq.ROUTER, "tcp://127.0.0.1:0", None)
    edge.gw = transport.client_socket(edge._ctx, gw_addr, None)
    thief = transport.client_socket(edge._ctx, edge.steal_addr, None)
    edge.workload, edge.schedule, edge.peer_id, edge.ready = wl, "wst-s", 1, True
    edge.queue.steal_from_front = True
    edge.link_bytes_per_s = 1e9
    x = np.random.default_rng(1).random(net.input_shape, dtype=np.float32)
    yield edge, thief, x
    edge._ctx.destroy(0)


def _steal(edge: Edge, thief: zmq.Socket) -> int:
    transport.send(thief, make("STEAL_REQ", thief=7))
    for _ in range(200):
        edge._drain_router()
        if thief.poll(10):
            _, msg, _ = transport.recv(thief, False, "victim")
            assert msg is not None and msg.type == "TASK"
            return msg["tile"]
    raise AssertionError("the source never answered the steal")


def test_source_waits_for_the_waiting_thieves_then_runs_tile_0(source):
    edge, thief, x = source
    edge._on_frame(0, x, idle=2)
    edge._dispatch(time.monotonic())
    assert edge.current is None  # held: two thieves are on their way
    stolen = [_steal(edge, thief)]
    edge._dispatch(time.monotonic())
    assert edge.current is None  # one still expected
    stolen.append(_steal(edge, thief))
    assert 0 not in stolen and all(edge.workload.level(t) == 0 for t in stolen)
    edge._dispatch(time.monotonic())  # both served: the source starts its own first tile at once
    assert edge.current is not None and edge.current.tile == 0


def test_the_hold_ends_after_serve_first_s_without_thieves(source):
    edge, _, x = source
    edge._on_frame(0, x, idle=3)
    t0 = time.monotonic()
    edge._dispatch(t0)
    assert edge.current is None
    edge._dispatch(t0 + 0.06)  # nobody came: the source computes (its tiles stay stealable)
    assert edge.current is not None and edge.current.tile == 0


@pytest.mark.parametrize("idle", [0, None, "3", -1])
def test_no_hold_when_nobody_waits_or_the_count_is_bad(source, idle):
    edge, _, x = source
    edge._on_frame(0, x, idle=idle)
    edge._dispatch(time.monotonic())
    assert edge.current is not None and edge.current.tile == 0
