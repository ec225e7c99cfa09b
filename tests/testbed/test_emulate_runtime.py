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


@needs_root
@pytest.mark.slow
def test_emulate_runs_the_runtime(tmp_path):
    import deepthings

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
        [py, "-m", "deepthings", "emulate", "--devices", "2", "--cpu", "0.5", "--rate", "100mbit",
         "--edge", edge, "--", "sh", "-c", workload],
        capture_output=True, text=True, timeout=300,
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    result = json.loads(p.stdout.strip().splitlines()[-1])
    single = sorted(d.label for d in deepthings.detect(deepthings.default_model(), str(image)))
    assert result["labels"] == single and "dog" in single
    assert result["devices"]  # tiles ran on emulated devices
    assert traces(prefix_from(p.stderr)) == []
