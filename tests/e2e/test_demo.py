"""`python -m deepthings demo`, exactly as the README tells a new user to run it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import deepthings


def _env() -> dict[str, str]:
    """The environment with the deepthings these tests import first on the path."""
    env = dict(os.environ)
    pkg_parent = str(Path(deepthings.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [pkg_parent, env.get("PYTHONPATH", "")]))
    env["COLUMNS"] = "120"
    return env


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    """Local cluster of 3 edges + one device: detections, tile map, timing, speedup, image."""
    proc = subprocess.run([sys.executable, "-m", "deepthings", "demo", "--frames", "2"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env=_env())
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "gateway + 3 edges" in out
    assert "distributed result identical to the single-device one: yes" in out
    assert re.search(r"\bdog\b\s+│\s+0\.\d\d", out), out
    assert "which device ran which tile" in out
    assert re.search(r"tiles per device: .*edge\d \d+", out)
    assert re.search(r"speedup of the cluster over one device: \d+\.\d\dx", out)
    annotated = tmp_path / "deepthings-demo" / "dog-detections.jpg"
    assert f"annotated image written to {annotated.resolve()}" in out.replace("\n", "")
    assert Image.open(annotated).size == (768, 576)
    dets = json.loads((tmp_path / "deepthings-demo" / "detections.json").read_text())["detections"]
    assert {"dog", "bicycle", "car"} <= {d["label"] for d in dets}
    trace = json.loads((tmp_path / "deepthings-demo" / "trace.json").read_text())
    assert len(trace["tiles"]) == 9 and all("device" in t for t in trace["tiles"])


def test_demo_bad_image_fails_clearly(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a picture")
    proc = subprocess.run([sys.executable, "-m", "deepthings", "demo", "--image", str(bad)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=_env())
    assert proc.returncode != 0
    assert str(bad) in proc.stderr and "not an image" in proc.stderr and "Traceback" not in proc.stderr
