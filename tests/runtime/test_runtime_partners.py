"""Partner prefetch under data reuse: an edge running a level-0 tile prefetches that tile's
level-1 partner by name (WORK_REQ/STEAL_REQ want), the gateway sends it to the edge holding
that tile and the victim hands that one over first, so each edge runs the pair the balanced
cuts planned for it instead of a random one."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq

from deepthings.darknet import load_darknet, network_from_cfg_text
from deepthings.runtime import transport
from deepthings.runtime.cluster import Cluster
from deepthings.runtime.edge import Edge, EdgeConfig
from deepthings.runtime.model import build_workload
from deepthings.runtime.protocol import make
from deepthings.runtime.scheduler import LocalTask
from deepthings.runtime.workload import FTPWorkload
from runtime_helpers import yolov2_cfg_text

GRID = (6, 1)


@pytest.fixture()
def source():
    net = network_from_cfg_text(yolov2_cfg_text(160), random_seed=0, upto=16)
    wl = FTPWorkload(net, GRID, 16, reuse=True)
    edge = Edge(EdgeConfig(gateway="tcp://127.0.0.1:9", name="src", source=True, advertise_host="127.0.0.1",
                           serve_first_s=0.0), None, build_workload)
    gw, gw_addr = transport.server_socket(edge._ctx, zmq.ROUTER, "tcp://127.0.0.1:0", None)
    edge.gw = transport.client_socket(edge._ctx, gw_addr, None)
    thief = transport.client_socket(edge._ctx, edge.steal_addr, None)
    edge.workload, edge.schedule, edge.peer_id, edge.ready = wl, "wst-s", 1, True
    edge.link_bytes_per_s = 1e9
    x = np.random.default_rng(1).random(net.input_shape, dtype=np.float32)
    yield edge, thief, x
    edge._ctx.destroy(0)


def _steal(edge: Edge, thief: zmq.Socket, **fields) -> int:
    transport.send(thief, make("STEAL_REQ", thief=7, prefetch=True, **fields))
    for _ in range(200):
        edge._drain_router()
        if thief.poll(10):
            _, msg, _ = transport.recv(thief, False, "victim")
            assert msg is not None and msg.type == "TASK"
            return msg["tile"]
    raise AssertionError("the source never answered the steal")


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
