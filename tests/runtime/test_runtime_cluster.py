"""A real gateway + edges (processes on loopback) running the synthetic stencil workload:
schedules, membership, fault tolerance, authentication, malformed traffic at every endpoint."""

from __future__ import annotations

import threading
import time

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepthings.errors import ClusterError
from deepthings.runtime import protocol, transport
from deepthings.runtime.cluster import Cluster
from deepthings.runtime.keys import ClusterKey
from deepthings.runtime.protocol import make
from deepthings.runtime.workload import SyntheticWorkload

SHAPE = (3, 36, 44)


def spec(compute_s: float = 0.0, passes: int = 3) -> dict:
    return {"kind": "synthetic", "shape": list(SHAPE), "passes": passes, "compute_s": compute_s}


def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random(SHAPE, dtype=np.float32) for _ in range(n)]


def check(results, xs, grid, passes=3):
    wl = SyntheticWorkload(SHAPE, grid, passes)
    assert len(results) == len(xs)
    for r, x in zip(results, xs):
        np.testing.assert_array_equal(r.output, wl.reference(x))
    ids = [r.trace.frame for r in results]
    assert len(set(ids)) == len(ids), "a frame was answered twice"


@pytest.mark.parametrize(
    "schedule, edges, sources, grid",
    [("wst", 1, 1, (1, 1)), ("wst-s", 2, 1, (3, 3)), ("wsh", 3, 0, (2, 4)), ("wst", 4, 2, (5, 5))],
)
def test_distributed_equals_single_device(schedule, edges, sources, grid):
    xs = frames(5)
    with Cluster(spec(0.02), edges=edges, grid=grid, schedule=schedule, sources=sources) as c:
        rs = c.infer_many(xs, window=3)
        check(rs, xs, grid)
        devices = {d for r in rs for d in r.trace.devices().values()}
        assert len(devices) >= 1
        for r in rs:
            assert len(r.trace.tiles) == grid[0] * grid[1]
            assert r.trace.bytes["gateway_in"] > 0 and r.trace.stages["total_s"] > 0
        if edges > 1 and schedule != "wsh":
            # slow-ish tiles and one data source: idle edges must have stolen something
            assert any(r.trace.stolen_tiles for r in rs)


def test_no_steal_when_moving_a_tile_costs_more_than_waiting_for_it():
    """Cost-aware stealing: on a (declared) 1 kB/s link no move pays, so nothing is stolen,
    and every frame still completes on the data source."""
    xs = frames(3, seed=5)
    with Cluster(spec(0.02), edges=3, grid=(2, 2), schedule="wst", sources=1, link_bytes_per_s=1e3) as c:
        rs = c.infer_many(xs, window=2)
    check(rs, xs, (2, 2))
    assert not any(r.trace.stolen_tiles for r in rs)
    assert len({d for r in rs for d in r.trace.devices().values()}) == 1


def test_stream_yields_in_input_order_from_an_iterator():
    xs = frames(6, seed=6)
    with Cluster(spec(0.0), edges=2, grid=(2, 2), schedule="wsh", sources=0) as c:
        got = list(c.stream(iter(xs), window=3))
    check(got, xs, (2, 2))


def _run_in_thread(cluster: Cluster, xs, window=3):
    box: dict = {}

    def target():
        try:
            box["results"] = cluster.infer_many(xs, window=window)
        except BaseException as exc:  # surfaced by the test
            box["error"] = exc

    th = threading.Thread(target=target, daemon=True)
    th.start()
    return th, box


def _wait(cond, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_9_of_an_edge_holding_stolen_tiles_loses_no_frame():
    xs = frames(6, seed=1)
    grid = (3, 3)
    with Cluster(spec(0.15), edges=3, grid=grid, schedule="wst", sources=1, hb_interval_s=0.1, hb_liveness=5) as c:
        observer = Cluster.connect(c.address, key=c.key)
        try:
            th, box = _run_in_thread(c, xs)
            # a non-source edge that the gateway knows holds a stolen task
            def thief_holding():
                assert "error" not in box, box.get("error")
                return next((e for e in observer.status()["edges"] if not e["source"] and e["held"] > 0), None)

            victim = _wait(thief_holding, 60, "a thief holding a stolen tile")
            index = int(victim["name"][4:])
            c.kill_edge(index)  # SIGKILL: no goodbye
            th.join(timeout=120)
            assert not th.is_alive(), "frames did not complete after the kill"
            assert "error" not in box, box.get("error")
            check(box["results"], xs, grid)
            stats = observer.status()["stats"]
            assert stats["reissued"] >= 1
            events = [e for r in box["results"] for e in r.trace.events]
            assert any(e[2] == "reissue" and f"holder {victim['id']}" in e[4] for e in events)
        finally:
            observer.close()


def test_kill_9_of_the_data_source_loses_no_handed_over_frame():
    """The gateway holds every frame it accepted: when the data source dies, its queued tasks are
    re-issued from there, and later frames are shared by the gateway itself."""
    xs = frames(5, seed=3)
    grid = (2, 2)
    with Cluster(spec(0.15), edges=2, grid=grid, schedule="wst", sources=1, hb_interval_s=0.1, hb_liveness=5) as c:
        observer = Cluster.connect(c.address, key=c.key)
        try:
            th, box = _run_in_thread(c, xs)
            _wait(lambda: any(e["source"] and e["pending"] > 0 for e in observer.status()["edges"]), 60,
                  "the data source queueing work")
            c.kill_edge(0)
            th.join(timeout=120)
            assert "error" not in box, box.get("error")
            check(box["results"], xs, grid)
            assert observer.status()["stats"]["reissued"] >= 1
        finally:
            observer.close()


def test_an_edge_joining_mid_stream_gets_work():
    xs = frames(12, seed=2)
    grid = (2, 3)
    with Cluster(spec(0.05), edges=1, grid=grid, schedule="wst", sources=1) as c:
        observer = Cluster.connect(c.address, key=c.key)
        try:
            th, box = _run_in_thread(c, xs, window=2)
            _wait(lambda: observer.status()["stats"]["frames_done"] >= 2, 60, "two frames done")
            c.add_edge(name="late-edge")
            th.join(timeout=120)
            assert "error" not in box, box.get("error")
            check(box["results"], xs, grid)
            late = next(e["id"] for e in observer.status()["edges"] if e["name"] == "late-edge")
            assert any(late in r.trace.devices().values() for r in box["results"]), "the new edge ran nothing"
            first = box["results"][0].trace.devices().values()
            assert late not in first
        finally:
            observer.close()


def test_wrong_or_missing_key_is_refused():
    with Cluster(spec(), edges=1, grid=(1, 2), schedule="wst") as c:
        with pytest.raises(ClusterError, match="cluster key"):
            Cluster.connect(c.address, key=ClusterKey.generate(), timeout_s=2)
        with pytest.raises(ClusterError, match="cluster key"):
            Cluster.connect(c.address, key=None, timeout_s=2)
        # a client that knows only the public key (not the secret) cannot pose as a member
        public_only = ClusterKey(c.key.public, ClusterKey.generate().secret)
        with pytest.raises(ClusterError, match="cluster key"):
            Cluster.connect(c.address, key=public_only, timeout_s=2)
        ok = Cluster.connect(c.address, key=c.key)
        try:
            check(ok.infer_many(frames(1)), frames(1), (1, 2))
        finally:
            ok.close()


# ----------------------------------------------------------------------------- malformed traffic
_TYPES = sorted(protocol.SCHEMAS)
_values = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 2**40), st.floats(allow_nan=True), st.text(max_size=6),
    st.lists(st.integers(-2, 3), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(-(2**62), 2**62), max_size=2),
)


@st.composite
def hostile_message(draw):
    """Mostly well-formed headers with wrong values (ids, shapes, types), plus raw garbage."""
    kind = draw(st.sampled_from(["typed", "typed", "typed", "raw"]))
    if kind == "raw":
        return draw(st.lists(st.binary(max_size=48), min_size=1, max_size=3))
    t = draw(st.sampled_from(_TYPES))
    required = protocol.SCHEMAS[t][0]
    header = {"v": protocol.PROTOCOL_VERSION, "t": t}
    for name in required:
        if draw(st.integers(0, 9)) > 0:
            header[name] = draw(_values)
    arrays = draw(st.lists(st.sampled_from([(1, 2, 2), (3, 12, 14), (3, 36, 44), (2,)]), max_size=2))
    header["a"] = [["f4", list(s)] for s in arrays]
    data = [np.random.default_rng(0).random(int(np.prod(s)), dtype=np.float32).tobytes() for s in arrays]
    if data and draw(st.booleans()):
        data[0] = data[0][:-4]  # size mismatch
    return [msgpack.packb(header, use_bin_type=True), *data]


@pytest.fixture(scope="module")
def fuzz_cluster():
    with Cluster(spec(0.0), edges=2, grid=(2, 2), schedule="wst-s", sources=1, hb_interval_s=0.1) as c:
        yield c


def _fuzz_socket(ctx, addr, key):
    return transport.client_socket(ctx, addr, key)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(hostile_message(), min_size=1, max_size=6), hello=st.booleans())
def test_hostile_messages_to_the_gateway_and_steal_servers(fuzz_cluster, batch, hello):
    """Garbage and wrong-valued messages at the gateway and at an edge's steal server: every
    process survives and the next frame is still answered correctly."""
    c = fuzz_cluster
    ctx = zmq.Context.instance()
    edges = c.status()["edges"]
    targets = [c.address] + [e["steal_addr"] for e in edges]
    socks = [_fuzz_socket(ctx, a, c.key) for a in targets]
    try:
        for sock in socks:
            if hello and sock is socks[0]:
                transport.send(sock, make("HELLO", role="edge", name="fuzz", source=True, steal_addr="tcp://127.0.0.1:1"))
            for frames_ in batch:
                sock.send_multipart(frames_)
        time.sleep(0.05)
        xs = frames(1, seed=len(batch))
        check(c.infer_many(xs), xs, (2, 2))
        assert all(p.is_alive() for p in [c.gateway_process, *c.edge_processes])
    finally:
        for sock in socks:
            sock.close(0)


def test_semantically_wrong_messages_are_ignored(fuzz_cluster):
    """Well-formed but wrong: results for unknown frames/tiles, wrong shapes, bogus MOVED/REUSE_REQ,
    work requests before READY, a SUBMIT of the wrong shape: all dropped, answers stay right."""
    c = fuzz_cluster
    ctx = zmq.Context.instance()
    sock = _fuzz_socket(ctx, c.address, c.key)
    try:
        transport.send(sock, make("HELLO", role="edge", name="liar", source=False, steal_addr="tcp://127.0.0.1:1"))
        assert sock.poll(5000)
        bad = [
            make("WORK_REQ"),
            make("RESULT", [np.zeros((3, 1, 1), np.float32)], frame=1, tile=0, stolen=False, compute_s=0.0, meta={}),
            make("RESULT", [np.zeros((3, 18, 22), np.float32)], frame=10**9, tile=0, stolen=True, compute_s=0.1, meta={}),
            make("RESULT", [np.zeros((3, 18, 22), np.float32)], frame=1, tile=77, stolen=True, compute_s=0.1, meta={"n_publish": 5}),
            make("MOVED", frame=1, tile=0, thief=123),
            make("REUSE_REQ", frame=10**6, tile=-1),
            make("QUEUE", pending=10**6, frames=[1, 2]),
            make("SUBMIT", [np.zeros((3, 4, 4), np.float32)], ref=1, keep=True),
            make("MODEL_REQ", sha="00" * 32, offset=0),
            make("DONE", [], frame=1, ref=1, trace={}, names=[]),
        ]
        for m in bad:
            transport.send(sock, m)
        xs = frames(3, seed=9)
        check(c.infer_many(xs), xs, (2, 2))
    finally:
        sock.close(0)


def test_8bit_frames_cross_every_link_as_codes_and_results_stay_exact():
    """Client -> gateway -> data source -> thieves: an 8-bit image moves as 1 byte per value
    (the steal traffic is exactly the crops' element counts), and the answer is unchanged."""
    rng = np.random.default_rng(5)
    xs = [rng.integers(0, 256, SHAPE, dtype=np.uint8).astype(np.float32) / np.float32(255) for _ in range(4)]
    grid = (4, 4)
    wl = SyntheticWorkload(SHAPE, grid, 3)
    with Cluster(spec(0.03), edges=3, grid=grid, schedule="wst", sources=1) as c:
        rs = c.infer_many(xs, window=2)
    check(rs, xs, grid)
    assert any(r.trace.stolen_tiles for r in rs)
    for r in rs:
        want = sum(int(np.prod(wl.crop(xs[0], t).shape)) for t in r.trace.stolen_tiles)
        assert r.trace.bytes["edge_to_edge"] == want  # 1 byte per value, not 4
        for t in r.trace.tiles:
            if t.get("stolen"):
                assert t["input_bytes"] * 4 == wl.crop(xs[0], t["tile"]).nbytes
