"""An edge facing a fake (scripted, partly hostile) gateway: bad messages are dropped, good
tasks still come back right."""

from __future__ import annotations

import threading
import time

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepthings.runtime import protocol, transport
from deepthings.runtime.edge import Edge, EdgeConfig
from deepthings.runtime.keys import ClusterKey, start_authenticator
from deepthings.runtime.model import build_workload
from deepthings.runtime.protocol import make
from deepthings.runtime.workload import SyntheticWorkload

SPEC = {"kind": "synthetic", "shape": [2, 16, 20], "grid": [2, 2], "passes": 2, "compute_s": 0.0}


class FakeGateway:
    def __init__(self, tmp_path):
        self.key = ClusterKey.generate()
        self.ctx = zmq.Context()
        self.auth = start_authenticator(self.ctx, self.key)
        self.sock, self.endpoint = transport.server_socket(self.ctx, zmq.ROUTER, "tcp://127.0.0.1:0", self.key)
        self.edge = Edge(EdgeConfig(gateway=self.endpoint, name="probe", cache_dir=tmp_path, advertise_host="127.0.0.1"),
                         self.key, build_workload)
        self.thread = threading.Thread(target=self.edge.serve, daemon=True)
        self.thread.start()
        self.identity, hello = self.expect("HELLO")
        assert hello["role"] == "edge" and hello["steal_addr"].startswith("tcp://127.0.0.1:")
        self.send(make("WELCOME", peer_id=7, model=SPEC, schedule="wst", hb_interval_s=5.0, hb_liveness=10,
                       link_bytes_per_s=1e9))
        self.expect("READY")

    def send(self, msg):
        transport.send(self.sock, msg, self.identity)

    def send_raw(self, frames):
        self.sock.send_multipart([self.identity, *frames])

    def expect(self, type_, timeout_s=10.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.sock.poll(100):
                ident, msg, _ = transport.recv(self.sock, True, "edge")
                if msg is not None and msg.type == type_:
                    return ident, msg
        raise AssertionError(f"no {type_} from the edge")

    def close(self):
        self.edge.stop()
        self.thread.join(timeout=10)
        self.sock.close(0)
        self.auth.stop()
        self.ctx.term()


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    g = FakeGateway(tmp_path_factory.mktemp("edge-cache"))
    yield g
    g.close()


def _task_round_trip(g: FakeGateway, frame: int, tile: int, seed: int) -> None:
    wl = SyntheticWorkload(tuple(SPEC["shape"]), tuple(SPEC["grid"]), SPEC["passes"])
    x = np.random.default_rng(seed).random(wl.input_shape, dtype=np.float32)
    g.send(make("TASK", [wl.crop(x, tile)], frame=frame, tile=tile, level=wl.level(tile), meta={"origin": "gateway"}))
    while True:
        _, res = g.expect("RESULT")
        if (res["frame"], res["tile"]) == (frame, tile):
            break
    want = wl.reference(x)
    r0, c0, r1, c1 = wl.out_regions[tile]
    np.testing.assert_array_equal(res.arrays[0], want[:, r0:r1, c0:c1])


def test_edge_runs_a_task_for_the_fake_gateway(fake):
    _task_round_trip(fake, frame=1, tile=3, seed=0)


def test_semantically_wrong_gateway_messages_are_dropped(fake):
    g = fake
    bad = [
        make("TASK", [np.zeros((2, 3, 3), np.float32)], frame=2, tile=0, level=0, meta={}),  # wrong crop shape
        make("TASK", [np.zeros((2, 10, 12), np.float32)], frame=2, tile=99, level=0, meta={}),  # no such tile
        make("TASK", [np.zeros((2, 10, 12), np.float32)], frame=2, tile=0, level=0, meta={"origin": 5}),
        make("FRAME", [np.zeros((2, 4, 4), np.float32)], frame=3),  # wrong frame shape
        make("REUSE", [], frame=9, tile=9, meta={}),  # nobody asked
        make("MODEL", [np.zeros(4, np.uint8)], sha="ab" * 32, name="x", offset=0, total=4),  # not requested
        make("ACCEPT", ref=12345, frame=1, keep=True),  # unknown ref
        make("VICTIM", victim=3, addr="not an address"),
        make("STEAL_REQ", thief=1),  # not a gateway message
    ]
    for m in bad:
        g.send(m)
    _task_round_trip(g, frame=4, tile=1, seed=1)
    assert g.edge.stats["dropped"] >= len(bad) - 1


_value = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**33), st.floats(), st.text(max_size=5),
                   st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(0, 9), max_size=2))


@st.composite
def gateway_garbage(draw):
    if draw(st.booleans()):
        return draw(st.lists(st.binary(max_size=32), min_size=1, max_size=3))
    t = draw(st.sampled_from(sorted(protocol.SCHEMAS)))
    header = {"v": draw(st.sampled_from([protocol.PROTOCOL_VERSION, 2])), "t": t}
    for name in protocol.SCHEMAS[t][0]:
        if draw(st.integers(0, 5)):
            header[name] = draw(_value)
    shapes = draw(st.lists(st.sampled_from([(2, 10, 12), (2, 16, 20), (4,), (2, 3, 3)]), max_size=2))
    header["a"] = [["f4", list(s)] for s in shapes]
    return [msgpack.packb(header), *[np.zeros(int(np.prod(s)), np.float32).tobytes() for s in shapes]]


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(gateway_garbage(), min_size=1, max_size=5), tile=st.integers(0, 3))
def test_hostile_gateway_traffic_never_breaks_the_edge(fake, batch, tile):
    """Whatever a (compromised or buggy) gateway sends, the edge stays up and computes right."""
    for frames in batch:
        fake.send_raw(frames)
    _task_round_trip(fake, frame=100 + tile, tile=tile, seed=tile)
    assert fake.thread.is_alive()
