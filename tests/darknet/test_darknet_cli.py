"""`deepthings info` and `deepthings run` as a user runs them (subprocesses)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import DARKNET_CFGS, IMAGES, YOLO_FASTEST

from deepthings.darknet import load_darknet

YF_CFG = YOLO_FASTEST / "yolo-fastest-1.1.cfg"
YF_W = YOLO_FASTEST / "yolo-fastest-1.1.weights"


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deepthings", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def test_help_everywhere():
    for cmd in (["info", "--help"], ["run", "--help"]):
        r = _cli(*cmd)
        assert r.returncode == 0 and "usage:" in r.stdout, r.stderr


def test_info_table_and_totals():
    r = _cli("info", DARKNET_CFGS / "yolov2.cfg")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(l.split()[:2] == ["27", "reorg"] and "64x38x38" in l and "256x19x19" in l for l in lines)
    assert any(l.split()[:2] == ["31", "region"] for l in lines)
    assert "32 layers, input 3x608x608, 62.9" in r.stdout
    assert "heads: 31 [region]" in r.stdout


def test_info_with_weights_checks_them(tmp_path: Path):
    r = _cli("info", YF_CFG, YF_W)
    assert r.returncode == 0 and "weights: version" in r.stdout, r.stderr
    bad = tmp_path / "short.weights"
    bad.write_bytes(YF_W.read_bytes()[:5000])
    r = _cli("info", YF_CFG, bad)
    assert r.returncode == 1 and "truncated" in r.stderr and str(bad) in r.stderr


def test_info_bad_cfg_exit_code(tmp_path: Path):
    cfg = tmp_path / "x.cfg"
    cfg.write_text("[net]\nwidth=8\nheight=8\n[wat]\n")
    r = _cli("info", cfg)
    assert r.returncode == 1 and f"{cfg}:4" in r.stderr and "unknown layer type [wat]" in r.stderr


def test_run_reference_saves_output(tmp_path: Path):
    out = tmp_path / "out.npy"
    r = _cli("run", YF_CFG, YF_W, "--image", IMAGES / "dog.jpg", "--engine", "reference",
             "--out", out)
    assert r.returncode == 0, r.stderr
    assert "output: layer 130 [yolo] shape (255, 20, 20)" in r.stdout and "time:" in r.stdout
    from deepthings.engine.preprocess import preprocess

    net = load_darknet(YF_CFG, YF_W)
    want = net.forward(preprocess(IMAGES / "dog.jpg", (320, 320)), engine="reference")
    np.testing.assert_array_equal(np.load(out), want)


def test_run_random_weights_partial(tmp_path: Path):
    r = _cli("run", DARKNET_CFGS / "yolov2-tiny.cfg", "--random-weights", "3", "--end", "4",
             "--engine", "reference")
    assert r.returncode == 0, r.stderr
    assert "layers: 0..3 of 16" in r.stdout and "shape (32, 104, 104)" in r.stdout


def test_run_needs_weights():
    r = _cli("run", DARKNET_CFGS / "yolov2-tiny.cfg", "--engine", "reference")
    assert r.returncode == 1 and "--random-weights" in r.stderr
    r = _cli("run", YF_CFG, YF_W, "--image", "/nonexistent.jpg", "--engine", "reference")
    assert r.returncode == 1 and "not found" in r.stderr


def test_info_ftp_cost_report_options():
    """--grid/--fused append the FTP cost report; one without the other is an error."""
    plain = _cli("info", DARKNET_CFGS / "yolov2-tiny.cfg")
    r = _cli("info", DARKNET_CFGS / "yolov2-tiny.cfg", "--grid", "2x2", "--fused", "6")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(plain.stdout) and len(r.stdout) > len(plain.stdout) + 100
    r = _cli("info", DARKNET_CFGS / "yolov2-tiny.cfg", "--grid", "2x2")
    assert r.returncode == 1 and "--fused" in r.stderr
    r = _cli("info", DARKNET_CFGS / "yolov2-tiny.cfg", "--grid", "2by2", "--fused", "3")
    assert r.returncode == 2 and "grid must look like 3x3" in r.stderr
