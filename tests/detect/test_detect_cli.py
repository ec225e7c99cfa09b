"""`deepthings detect` as a user runs it: outputs, JSON, exit codes, bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import IMAGES, YOLO_FASTEST
from detect_opencv_ref import assert_same_detections
from PIL import Image

import deepthings

DOG = IMAGES / "dog.jpg"


def _run(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """`python -m deepthings ...` in ``cwd``, importing the same deepthings these tests import."""
    env = dict(os.environ)
    pkg_parent = str(Path(deepthings.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [pkg_parent, env.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "deepthings", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def dog_detections():
    return deepthings.detect(deepthings.default_model(), DOG)


def test_detect_writes_annotated_images_and_json(tmp_path, dog_detections):
    out = tmp_path / "out"
    proc = _run("detect", str(DOG), str(IMAGES / "eagle.jpg"), "--out", str(out), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert [Path(p["image"]).name for p in payload] == ["dog.jpg", "eagle.jpg"]
    assert_same_detections([deepthings.Detection(**d) for d in payload[0]["detections"]], dog_detections)
    assert "bird" in {d["label"] for d in payload[1]["detections"]}
    assert Image.open(out / "dog.jpg").size == (768, 576)
    assert json.loads((out / "dog.json").read_text())["detections"] == payload[0]["detections"]
    assert "deepthings detect: 2 image(s) on this device" in proc.stderr  # summary table


def test_detect_with_explicit_cfg_weights_names(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"thing{i}" for i in range(80)) + "\n")
    proc = _run("detect", str(DOG), "--model", str(YOLO_FASTEST / "yolo-fastest-1.1-xl.cfg"), "--weights",
                str(YOLO_FASTEST / "yolo-fastest-1.1-xl.weights"), "--names", str(names), "--out", str(tmp_path),
                "--json", "--no-images", "--thresh", "0.5", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    dets = json.loads(proc.stdout)[0]["detections"]
    assert dets and all(d["label"] == f"thing{d['class_id']}" and d["score"] > 0.5 for d in dets)
    assert not (tmp_path / "dog.jpg").exists()


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P"])
def test_grey_cmyk_alpha_palette_images_work(tmp_path, mode):
    path = tmp_path / ("in.jpg" if mode in ("L", "CMYK") else "in.png")
    Image.open(DOG).convert(mode).save(path)
    proc = _run("detect", str(path), "--out", str(tmp_path / "out"), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    labels = {d["label"] for d in json.loads(proc.stdout)[0]["detections"]}
    assert "dog" in labels or "car" in labels, labels


def _make_bad(tmp_path: Path, kind: str) -> Path:
    p = tmp_path / f"{kind}.jpg"
    if kind == "missing":
        return p
    if kind == "text":
        p.write_text("this is not an image\n")
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "zero-size":
        # A PNG header that declares a 0x0 image: Pillow refuses to decode it.
        import struct
        import zlib

        def chunk(tag: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

        p = tmp_path / "zero.png"
        p.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0))
                      + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    elif kind == "truncated":
        p.write_bytes(DOG.read_bytes()[:3000])
    return p


@pytest.mark.parametrize("kind", ["missing", "text", "empty", "zero-size", "truncated"])
def test_bad_images_fail_clearly(tmp_path, kind):
    bad = _make_bad(tmp_path, kind)
    proc = _run("detect", str(bad), str(DOG), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode != 0
    assert str(bad) in proc.stderr and "error" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "out" / "dog.jpg").exists()  # the good image is still processed


def test_bad_model_arguments_fail_clearly(tmp_path):
    proc = _run("detect", str(DOG), "--model", str(tmp_path / "nope.cfg"), cwd=tmp_path)
    assert proc.returncode != 0 and "nope.cfg" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run("detect", str(DOG), "--names", str(tmp_path / "nope.names"), cwd=tmp_path)
    assert proc.returncode != 0 and "nope.names" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run("detect", str(DOG), "--grid", "3by3", cwd=tmp_path)
    assert proc.returncode != 0 and "grid" in proc.stderr


def test_zero_size_array_is_an_image_error():
    with pytest.raises(deepthings.errors.ImageError, match="zero-size"):
        deepthings.detect(deepthings.default_model(), np.zeros((0, 10, 3), np.uint8))


@pytest.mark.slow
def test_detect_on_a_local_cluster_matches_one_device(tmp_path, dog_detections):
    proc = _run("detect", str(DOG), "--local-cluster", "2", "--grid", "2x2", "--fused", "10", "--out",
                str(tmp_path), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_same_detections([deepthings.Detection(**d) for d in json.loads(proc.stdout)[0]["detections"]], dog_detections)
    assert "local cluster, 2 edges, 2x2 tiles over layers 0..9" in proc.stderr


@pytest.mark.slow
def test_detect_through_a_running_gateway(tmp_path, dog_detections):
    """`detect --gateway HOST:PORT --key FILE` uses a cluster someone else started."""
    with deepthings.Cluster("default", edges=1, grid=(2, 2), fused_layers=8) as cluster:
        key_file = cluster.key.save(tmp_path / "cluster.key")
        address = cluster.address.removeprefix("tcp://")
        proc = _run("detect", str(DOG), "--gateway", address, "--key", str(key_file), "--out", str(tmp_path),
                    "--json", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert_same_detections([deepthings.Detection(**d) for d in json.loads(proc.stdout)[0]["detections"]],
                               dog_detections)
        # Without the key the gateway does not answer: a clear error, no traceback.
        from deepthings.runtime.keys import ClusterKey

        wrong = ClusterKey.generate().save(tmp_path / "wrong.key")
        proc = _run("detect", str(DOG), "--gateway", address, "--key", str(wrong), cwd=tmp_path)
        assert proc.returncode != 0 and "gateway" in proc.stderr and "Traceback" not in proc.stderr
