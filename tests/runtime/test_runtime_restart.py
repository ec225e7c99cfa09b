"""A gateway that restarts (same address, new process state): edges and clients rejoin by
themselves and the next frames are answered right."""

from __future__ import annotations

import socket
import threading

import numpy as np

from deepthings.runtime.cluster import Cluster
from deepthings.runtime.edge import Edge, EdgeConfig
from deepthings.runtime.gateway import Gateway, GatewayConfig, ModelFiles
from deepthings.runtime.keys import ClusterKey
from deepthings.runtime.model import build_workload
from deepthings.runtime.workload import SyntheticWorkload


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_gateway(addr: str, key: ClusterKey) -> tuple[Gateway, threading.Thread]:
    wl = SyntheticWorkload((2, 12, 12), (2, 2), passes=2)
    gw = Gateway(wl, ModelFiles(wl.spec()), GatewayConfig(bind=addr, schedule="wsh", hb_interval_s=0.1, hb_liveness=5), key)
    th = threading.Thread(target=gw.serve, daemon=True)
    th.start()
    return gw, th


def test_edges_and_clients_rejoin_a_restarted_gateway(tmp_path):
    key = ClusterKey.generate()
    addr = f"tcp://127.0.0.1:{_free_port()}"
    ref = SyntheticWorkload((2, 12, 12), (2, 2), passes=2)
    gw, gw_thread = _start_gateway(addr, key)
    edge = Edge(EdgeConfig(gateway=addr, name="e", cache_dir=tmp_path, advertise_host="127.0.0.1"), key, build_workload)
    edge_thread = threading.Thread(target=edge.serve, daemon=True)
    edge_thread.start()
    client = None
    try:
        client = Cluster.connect(addr, key=key)
        client.wait_for_edges(1, 30)
        x = np.random.default_rng(0).random((2, 12, 12), dtype=np.float32)
        np.testing.assert_array_equal(client.infer(x).output, ref.reference(x))
        gw.stop()
        gw_thread.join(timeout=10)
        gw, gw_thread = _start_gateway(addr, key)  # a fresh gateway: it knows nobody
        y = np.random.default_rng(1).random((2, 12, 12), dtype=np.float32)
        np.testing.assert_array_equal(client.infer(y).output, ref.reference(y))
        assert edge.stats["tiles"] >= 8  # the same edge served both gateways
    finally:
        if client is not None:
            client.close()
        edge.stop()
        edge_thread.join(timeout=10)
        gw.stop()
        gw_thread.join(timeout=10)
