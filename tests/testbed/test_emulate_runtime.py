"""`deepthings emulate` runs the real runtime: gateway in its namespace, one edge per emulated
device, a client next to the gateway; the detections equal the single-device ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from testbed_helpers import needs_root, prefix_from, traces

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(__import__("os").environ.get("DEEPTHINGS_SHARED", REPO.parent / "shared"))

CLIENT = r"""
import json, sys, time
import deepthings
from deepthings.errors import ClusterError
deadline = time.time() + 120
while True:
    try:
        c = deepthings.Cluster.connect(sys.argv[1], timeout_s=5)
        break
    except ClusterError:
        if time.time() > deadline:
            raise
        time.sleep(0.3)
while sum(1 for e in c.status()["edges"] if e.get("ready")) < int(sys.argv[3]):
    if time.time() > deadline:
        raise SystemExit("edges did not join")
    time.sleep(0.2)
r = c.infer(sys.argv[2])
print(json.dumps({"labels": sorted(d.label for d in r.detections),
                  "devices": sorted(set(r.trace.devices().values()))}))
c.close()
"""


def _emulated_detect(tmp_path: Path, rate: str) -> tuple[dict, str]:
    """Detections of dog.jpg by a gateway + 2 emulated edges on `rate` links (and the stderr)."""
    image = SHARED / "images" / "dog.jpg"
    client = tmp_path / "client.py"
    client.write_text(CLIENT)
    py = sys.executable
    edge = f"{py} -m deepthings edge --gateway {{gateway}}:5555 --insecure --threads 1 --cache {tmp_path}/cache"
    workload = (
        f"{py} -m deepthings gateway --model default --insecure --bind {{gateway}}:5555 --grid 2x2 & G=$!; "
        f"{py} {client} {{gateway}}:5555 {image} {{devices}}; S=$?; kill $G; wait $G; exit $S"
    )
    p = subprocess.run(
        [py, "-m", "deepthings", "emulate", "--devices", "2", "--cpu", "0.5", "--rate", rate,
         "--edge", edge, "--", "sh", "-c", workload],
        capture_output=True, text=True, timeout=300,
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    assert traces(prefix_from(p.stderr)) == []
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr


def _single_labels() -> list[str]:
    import deepthings

    return sorted(d.label for d in deepthings.detect(deepthings.default_model(), str(SHARED / "images" / "dog.jpg")))


@needs_root
@pytest.mark.slow
def test_emulate_runs_the_runtime(tmp_path):
    result, _ = _emulated_detect(tmp_path, "100mbit")
    single = _single_labels()
    assert result["labels"] == single and "dog" in single
    assert result["devices"]  # tiles ran on emulated devices


BIG_BLOCK_CFG = """[net]
width=48
height=48
channels=3

[convolutional]
filters=256
size=3
stride=1
pad=1
activation=leaky

[convolutional]
filters=640
size=3
stride=1
pad=1
activation=leaky
"""

EXACT_CLIENT = r"""
import json, sys, time
import numpy as np
import deepthings
from deepthings.errors import ClusterError
deadline = time.time() + 90
while True:
    try:
        c = deepthings.Cluster.connect(sys.argv[1], timeout_s=5)
        break
    except ClusterError:
        if time.time() > deadline:
            raise
        time.sleep(0.3)
while sum(1 for e in c.status()["edges"] if e.get("ready")) < int(sys.argv[3]):
    if time.time() > deadline:
        raise SystemExit("edges did not join")
    time.sleep(0.2)
x = np.random.default_rng(0).random((3, 48, 48), dtype=np.float32)
r = c.infer(x)
ref = deepthings.load_darknet(sys.argv[2], random_seed=0).forward(x)
print(json.dumps({"exact": bool(np.array_equal(r.output, ref)), "devices": sorted(set(r.trace.devices().values()))}))
c.close()
"""


@needs_root
@pytest.mark.slow
def test_edges_join_over_a_link_slower_than_the_model_transfer(tmp_path):
    """Shipping the model takes longer than the liveness timeout, and the edges still join once."""
    # 2 edges fetch the block's 5.9 MB of weights each through the gateway's 20 Mbit/s uplink:
    # ~4.7 s, against the default 3 s liveness timeout (0.5 s heartbeats x 6). Sent as one
    # message per file, the link was silent for longer than that and the edges rejoined forever.
    cfg = tmp_path / "big-block.cfg"
    cfg.write_text(BIG_BLOCK_CFG)
    client = tmp_path / "client.py"
    client.write_text(EXACT_CLIENT)
    py = sys.executable
    edge = f"{py} -m deepthings edge --gateway {{gateway}}:5555 --insecure --threads 1 --cache {tmp_path}/cache"
    workload = (
        f"{py} -m deepthings gateway --model {cfg} --insecure --bind {{gateway}}:5555 --grid 2x2 --fused 2 "
        f"--link-mbps 20 & G=$!; "
        f"{py} {client} {{gateway}}:5555 {cfg} {{devices}}; S=$?; kill $G; wait $G; exit $S"
    )
    p = subprocess.run(
        [py, "-m", "deepthings", "emulate", "--devices", "2", "--cpu", "0.5", "--rate", "20mbit",
         "--edge", edge, "--", "sh", "-c", workload],
        capture_output=True, text=True, timeout=300,
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    assert traces(prefix_from(p.stderr)) == []
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert result["exact"] and result["devices"], result
    assert "silent for" not in p.stderr and "reconnecting" not in p.stderr, p.stderr[-3000:]
