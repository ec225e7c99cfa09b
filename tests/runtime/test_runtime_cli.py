"""The runtime's command line: keys, gateway, edge (--source), start, and DeepThings' -mode syntax."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import deepthings
from conftest import IMAGES
from deepthings.cli._legacy import translate
from deepthings.runtime.keys import ClusterKey


def _env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(deepthings.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def dt(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepthings", *args], capture_output=True, text=True, env=_env(), **kw)


def test_legacy_syntax_maps_to_subcommands():
    assert translate("-mode gateway -total_edge 2 -n 5 -m 5 -l 16".split()) == [
        "gateway", "--bind", "0.0.0.0:5555", "--grid", "5x5", "--fused", "16", "--expect-edges", "2"]
    src = translate("-mode data_src -edge_id 0 -gateway 10.0.0.1:6000 -source /imgs".split())
    assert src == ["edge", "--gateway", "10.0.0.1:6000", "--name", "edge0", "--source", "/imgs"]
    assert translate("-mode non_data_src -edge_id 1".split())[:4] == ["edge", "--gateway", "127.0.0.1:5555", "--name"]
    assert translate("-mode start -total_edge 3 -n 2 -m 4".split()) == ["start", "--grid", "2x4", "--edges", "3"]


def test_legacy_syntax_errors_are_clear():
    res = dt("-mode", "warp")
    assert res.returncode == 2 and "-mode 'warp'" in res.stderr and "Traceback" not in res.stderr
    res = dt("-mode", "gateway", "-total_edge", "x")
    assert res.returncode == 2 and "not an integer" in res.stderr


def test_keys_writes_a_private_key_and_refuses_to_overwrite(tmp_path):
    path = tmp_path / "k.key"
    res = dt("keys", "--out", str(path))
    assert res.returncode == 0, res.stderr
    key = ClusterKey.load(path)
    assert len(key.public) == 40 and len(key.secret) == 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = dt("keys", "--out", str(path))
    assert again.returncode == 1 and "--force" in again.stderr
    assert ClusterKey.load(path) == key


def test_gateway_without_a_key_refuses_to_start(tmp_path):
    res = dt("gateway", "--bind", "127.0.0.1:0", cwd=tmp_path)
    assert res.returncode == 1 and "deepthings keys" in res.stderr


def _wait_line(proc: subprocess.Popen, needle: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if needle in line:
            return line
        if proc.poll() is not None:
            break
    raise AssertionError(f"{needle!r} not printed (exit code {proc.poll()})")


@pytest.mark.slow
def test_gateway_edges_and_a_data_source_from_the_command_line(tmp_path):
    key = tmp_path / "k.key"
    assert dt("keys", "--out", str(key)).returncode == 0
    procs: list[subprocess.Popen] = []
    thief_log = None
    try:
        # the gateway in DeepThings' own syntax, on a free port
        gw = subprocess.Popen([sys.executable, "-m", "deepthings", "-mode", "gateway", "-total_edge", "2", "-n", "3",
                               "-m", "3", "-l", "16", "-bind", "127.0.0.1:0", "-key", str(key)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
        procs.append(gw)
        line = _wait_line(gw, "gateway ready on", 120)
        address = line.split("ready on ")[1].split()[0].replace("tcp://", "")
        thief_log = open(tmp_path / "thief.log", "w")
        thief = subprocess.Popen([sys.executable, "-m", "deepthings", "-v", "edge", "--gateway", address, "--key", str(key),
                                  "--name", "thief", "--threads", "1", "--cache", str(tmp_path / "cache")],
                                 stdout=subprocess.DEVNULL, stderr=thief_log, env=_env())
        procs.append(thief)
        src = dt("-mode", "data_src", "-edge_id", "0", "-gateway", address, "-key", str(key), "-source", str(IMAGES),
                 "-frames", "3", "-threads", "1", timeout=240)
        assert src.returncode == 0, src.stderr[-2000:]
        records = [json.loads(l) for l in src.stdout.splitlines() if l.startswith("{")]
        assert [r["index"] for r in records] == [0, 1, 2]
        assert len({r["frame"] for r in records}) == 3
        first = sorted(IMAGES.glob("*.jpg"))[0]
        assert records[0]["image"] == str(first)
        single = deepthings.detect(deepthings.default_model(), str(first))
        assert [d["label"] for d in records[0]["detections"]] == [d.label for d in single]
        thief_log.flush()
        assert "event=steal_request" in (tmp_path / "thief.log").read_text()  # --verbose shows steal traffic
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=10)
        if thief_log is not None:
            thief_log.close()


@pytest.mark.slow
def test_start_runs_a_local_cluster(tmp_path):
    res = dt("start", "--edges", "2", "--grid", "2x2", "--fused", "16", "--json", timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    rec = json.loads(res.stdout.strip().splitlines()[-1])
    assert "dog" in [d["label"] for d in rec["detections"]]
    assert rec["bytes"]["gateway_in"] > 0
