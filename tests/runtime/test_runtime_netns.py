"""Across hosts: gateway, edges and a client each in their own network namespace with their own
address (veth pairs on a bridge in a namespace of its own), CURVE on, created and removed here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

import deepthings
from conftest import YOLO_FASTEST

pytestmark = [pytest.mark.root, pytest.mark.slow]

CLIENT_SCRIPT = r'''
import sys, json, numpy as np
from deepthings.runtime.cluster import Cluster
addr, key, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
c = Cluster.connect(addr, key=key, timeout_s=60)
try:
    c.wait_for_edges(int(sys.argv[5]), 120)
    rng = np.random.default_rng(0)
    shape = tuple(c.spec["input_shape"])
    xs = [rng.random(shape, dtype=np.float32) for _ in range(n)]
    rs = c.infer_many(xs, window=2)
    np.savez(out, **{f"x{i}": x for i, x in enumerate(xs)}, **{f"f{i}_{k}": v for i, r in enumerate(rs) for k, v in r.outputs.items()})
    devices = sorted({d for r in rs for d in r.trace.devices().values()})
    print(json.dumps({"devices": devices, "stolen": sum(len(r.trace.stolen_tiles) for r in rs)}))
finally:
    c.close()
'''


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@pytest.fixture
def namespaces():
    if os.geteuid() != 0:
        pytest.skip("needs root for ip netns")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (ip) not installed")
    tag = uuid.uuid4().hex[:5]
    bridge_ns = f"dtbr{tag}"
    names = {role: f"dt{role}{tag}" for role in ("gw", "e1", "e2", "cl")}
    created: list[str] = []
    try:
        probe = _ip("netns", "add", bridge_ns, check=False)
        if probe.returncode != 0:
            pytest.skip(f"ip netns does not work here: {probe.stderr.strip()}")
        created.append(bridge_ns)
        _ip("-n", bridge_ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", bridge_ns, "link", "set", "br0", "up")
        addrs = {}
        for i, (role, ns) in enumerate(names.items(), start=1):
            _ip("netns", "add", ns)
            created.append(ns)
            _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"p{role}", "netns", bridge_ns)
            _ip("-n", bridge_ns, "link", "set", f"p{role}", "master", "br0", "up")
            addrs[role] = f"10.213.{int(tag[:2], 16)}.{i}"
            _ip("-n", ns, "addr", "add", f"{addrs[role]}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield names, addrs
    finally:
        for ns in reversed(created):
            _ip("netns", "pids", ns, check=False)
            pids = _ip("netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            _ip("netns", "del", ns, check=False)
        left = _ip("netns", "list", check=False).stdout
        assert not any(ns in left for ns in created), f"namespaces left behind: {left}"


def test_gateway_and_edges_in_separate_namespaces(namespaces, tmp_path):
    names, addrs = namespaces
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(deepthings.__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    key = tmp_path / "cluster.key"
    subprocess.run([sys.executable, "-m", "deepthings", "keys", "--out", str(key)], check=True, env=env, capture_output=True)
    cfg, weights = YOLO_FASTEST / "yolo-fastest-1.1.cfg", YOLO_FASTEST / "yolo-fastest-1.1.weights"
    port = 5600
    procs = []

    def start(ns: str, *args: str, log: str) -> subprocess.Popen:
        fh = open(tmp_path / log, "w")
        p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "deepthings", *args],
                             env=env, stdout=fh, stderr=subprocess.STDOUT)
        procs.append((p, fh))
        return p

    try:
        start(names["gw"], "gateway", "--model", str(cfg), "--weights", str(weights), "--bind", f"{addrs['gw']}:{port}",
              "--key", str(key), "--grid", "3x3", "--fused", "16", "--schedule", "wst-s", "--hb-interval", "0.2",
              log="gateway.log")
        for i, role in enumerate(("e1", "e2")):
            start(names[role], "edge", "--gateway", f"{addrs['gw']}:{port}", "--key", str(key), "--name", role,
                  "--threads", "1", "--cache", str(tmp_path / f"cache-{role}"), log=f"{role}.log")
        script = tmp_path / "client.py"
        script.write_text(CLIENT_SCRIPT)
        out = tmp_path / "out.npz"
        res = subprocess.run(["ip", "netns", "exec", names["cl"], sys.executable, str(script), f"{addrs['gw']}:{port}",
                              str(key), "3", str(out), "2"], env=env, capture_output=True, text=True, timeout=240)
        logs = "\n".join((tmp_path / f).read_text() for f in ("gateway.log", "e1.log", "e2.log"))
        assert res.returncode == 0, res.stderr[-3000:] + logs[-3000:]
        info = json.loads(res.stdout.strip().splitlines()[-1])
        assert len(info["devices"]) == 2, info  # both edges (in their own namespaces) ran tiles
        data = np.load(out)
        net = deepthings.load_darknet(cfg, weights)
        layers = sorted(set(net.head_layers) | {len(net.layers) - 1})
        for i in range(3):
            ref = net.forward(data[f"x{i}"], outputs=layers)
            for k in layers:
                assert np.array_equal(data[f"f{i}_{k}"], ref[k]), f"frame {i} layer {k}"
        # the edges cached the shipped model files, SHA-256 named
        assert any((tmp_path / "cache-e1").iterdir())
    finally:
        for p, fh in procs:
            p.kill()
            p.wait(timeout=10)
            fh.close()
