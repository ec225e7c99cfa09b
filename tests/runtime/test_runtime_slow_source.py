"""A live-but-slow data source (its uplink saturated, so the gateway hears nothing from it for
longer than the liveness window) is declared dead and re-issued; it must rejoin and still get
every one of its frames answered exactly once (issue 5: a live peer never loses frames)."""

from __future__ import annotations

import threading
import time

import numpy as np

from deepthings.runtime import protocol, transport
from deepthings.runtime.edge import Edge, EdgeConfig
from deepthings.runtime.gateway import Gateway, GatewayConfig, ModelFiles
from deepthings.runtime.model import build_workload
from deepthings.runtime.workload import SyntheticWorkload

from runtime_helpers import serve_until_sourced

SHAPE = (3, 24, 28)
GRID = (2, 2)


def test_source_declared_dead_behind_a_saturated_link_loses_no_frame(tmp_path):
    wl = SyntheticWorkload(SHAPE, GRID, passes=2, compute_s=0.03)
    gw = Gateway(wl, ModelFiles(wl.spec()),
                 GatewayConfig(bind="tcp://127.0.0.1:0", schedule="wst", hb_interval_s=0.1, hb_liveness=3,
                               task_timeout_s=30.0), None)
    rng = np.random.default_rng(3)
    xs = [rng.random(SHAPE, dtype=np.float32) for _ in range(4)]
    answers: list[tuple[int, np.ndarray]] = []
    edge = Edge(
        EdgeConfig(gateway=gw.endpoint, name="slow-source", source=True, cache_dir=tmp_path, advertise_host="127.0.0.1",
                   max_frames_in_flight=2),
        None,
        build_workload,
        frames=[(i, x) for i, x in enumerate(xs)],
        on_done=lambda tag, msg: answers.append((tag, np.array(msg.arrays[0]))),
    )
    # Emulate the saturated uplink: after the first RESULT, everything the edge sends the gateway
    # for 1 s queues up on its connection (the gateway hears nothing and declares it dead after
    # 0.3 s), then arrives, in order, if that connection is still open.
    held: list = []
    state = {"mute_until": None}

    def slow_send(msg):
        now = time.monotonic()
        edge._last_gw_tx = now
        if state["mute_until"] is None and msg.type == "RESULT":
            state["mute_until"] = now + 1.0
        held.append((edge.gw, msg))
        if state["mute_until"] is not None and now < state["mute_until"]:
            return 0
        n = 0
        while held:
            sock, m = held.pop(0)
            if not sock.closed:
                n = transport.send(sock, m)
        return n

    edge._send_gw = slow_send  # type: ignore[method-assign]
    assert serve_until_sourced(gw, edge), f"the source hung: {len(answers)}/{len(xs)} frames answered"
    assert state["mute_until"] is not None and gw.stats["reissued"] > 0, "the gateway never declared the source dead"
    # the frames it had handed over were answered through the new connection, not started over
    assert gw.stats["reattached"] >= 1
    assert sorted(tag for tag, _ in answers) == list(range(len(xs))), "a frame was lost or answered twice"
    for tag, out in answers:
        np.testing.assert_array_equal(out, wl.reference(xs[tag]))


def test_silence_counts_only_once_the_link_has_drained_what_the_gateway_sent():
    """A peer receiving bulk data from the gateway (on a declared 100 kB/s link) may be silent
    while that data drains; once drained, the usual heartbeat window applies."""
    wl = SyntheticWorkload(SHAPE, GRID)
    gw = Gateway(wl, ModelFiles(wl.spec()),
                 GatewayConfig(bind="tcp://127.0.0.1:0", hb_interval_s=0.1, hb_liveness=3, link_bytes_per_s=1e5), None)
    try:
        now = time.monotonic()
        busy = gw.members.join(b"busy", "edge", "busy", True, None, now - 1.0)
        idle = gw.members.join(b"idle", "edge", "idle", True, None, now - 1.0)
        big = np.zeros((3, 128, 128), np.float32)  # 196 kB: about 2 s on this link
        gw._send(busy, protocol.make("FRAME", [big], frame=1))
        gw._tick(time.monotonic())
        assert busy.peer_id in gw.members.peers and idle.peer_id not in gw.members.peers
        gw._tick(time.monotonic() + 2.0 + 0.3 + 0.1)  # drained, then a whole window of silence
        assert busy.peer_id not in gw.members.peers
    finally:
        gw.sock.close(0)
        gw._wake_rx.close(0)
        gw._ctx.term()


def test_client_forgotten_by_the_gateway_gets_its_accepted_frames_on_the_new_connection(tmp_path):
    """The client side of the same rule: frames the gateway accepted but has not answered when
    it forgets the client (here: the client's connection said BYE) are re-attached on rejoin."""
    from deepthings.runtime.cluster import _Client

    wl = SyntheticWorkload(SHAPE, GRID, passes=2, compute_s=0.1)
    gw = Gateway(wl, ModelFiles(wl.spec()),
                 GatewayConfig(bind="tcp://127.0.0.1:0", schedule="wst", hb_interval_s=0.1, hb_liveness=5), None)
    edge = Edge(EdgeConfig(gateway=gw.endpoint, name="worker", cache_dir=tmp_path, advertise_host="127.0.0.1"),
                None, build_workload)
    stop = threading.Event()
    threads = [threading.Thread(target=gw.serve, args=(stop,), daemon=True),
               threading.Thread(target=edge.serve, args=(stop,), daemon=True)]
    client = None
    try:
        for t in threads:
            t.start()
        client = _Client(gw.endpoint, None, 10.0, name="forgetful")
        rng = np.random.default_rng(4)
        xs = [rng.random(SHAPE, dtype=np.float32) for _ in range(2)]
        refs = [client.submit(x) for x in xs]
        deadline = time.monotonic() + 10
        while client.pending and time.monotonic() < deadline:
            msg = client._recv(0.1)
            if msg is not None:
                client._handle(msg)
        assert not client.pending and not client.done, "frames should be accepted and still running"
        transport.send(client.sock, protocol.make("BYE"))  # the gateway forgets this connection
        got = {m["ref"]: np.array(m.arrays[0]) for m in client.wait(refs, 20.0)}
        assert sorted(got) == refs
        for ref, x in zip(refs, xs):
            np.testing.assert_array_equal(got[ref], wl.reference(x))
        # re-attached, not started over (frames_done is counted after DONE is sent: not read here)
        assert gw.stats["reattached"] == 2
    finally:
        if client is not None:
            client.close()
        stop.set()
        for t in threads:
            t.join(timeout=10)
