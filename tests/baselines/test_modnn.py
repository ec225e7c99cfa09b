"""MoDNN baseline: the biased partition, and its strip-by-strip execution with per-layer
boundary exchange equals the single-device forward pass (in process and over ZeroMQ)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepthings.baselines import bodp_rows, modnn_plan
from deepthings.darknet import network_from_cfg_text
from deepthings.errors import PlanError

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
YOLOV2 = Path(__import__("os").environ.get("DEEPTHINGS_SHARED", SHARED)) / "models" / "darknet" / "yolov2.cfg"
ENGINE = "reference"  # the oracle; the partition logic is engine-independent


def _sized(cfg: Path, size: int) -> str:
    text = cfg.read_text()
    text = re.sub(r"(?m)^width=\d+", f"width={size}", text)
    return re.sub(r"(?m)^height=\d+", f"height={size}", text)


@settings(max_examples=60)
@given(st.integers(0, 700), st.lists(st.floats(0.1, 10), min_size=1, max_size=8))
def test_bodp_rows_partition(height, speeds):
    """Strips are consecutive, cover every row once, and are within one row of proportional."""
    rows = bodp_rows(height, speeds)
    assert rows[0][0] == 0 and rows[-1][1] == height
    assert all(a[1] == b[0] for a, b in zip(rows, rows[1:]))
    total = sum(speeds)
    for (lo, hi), s in zip(rows, speeds):
        assert abs((hi - lo) - height * s / total) < 1.0 + 1e-9


def test_bodp_rows_biased():
    assert bodp_rows(608, [1, 1]) == [(0, 304), (304, 608)]
    assert bodp_rows(10, [3, 1, 1]) == [(0, 6), (6, 8), (8, 10)]
    with pytest.raises(PlanError):
        bodp_rows(10, [1, 0])


def _chain_cfg(size: int, layers: list[tuple[str, int, int, int]]) -> str:
    parts = [f"[net]\nwidth={size}\nheight={size}\nchannels=3\n"]
    for kind, k, s, filters in layers:
        if kind == "conv":
            parts.append(
                f"[convolutional]\nbatch_normalize=1\nfilters={filters}\nsize={k}\nstride={s}\npad=1\nactivation=leaky\n"
            )
        else:
            parts.append(f"[maxpool]\nsize={k}\nstride={s}\n")
    return "\n".join(parts)


layer_st = st.one_of(
    st.tuples(st.just("conv"), st.integers(1, 5), st.integers(1, 2), st.integers(1, 6)),
    st.tuples(st.just("pool"), st.integers(1, 3), st.integers(1, 2), st.just(0)),
)


@settings(max_examples=25)
@given(st.integers(9, 40), st.lists(layer_st, min_size=1, max_size=5),
       st.lists(st.floats(0.2, 5), min_size=1, max_size=7), st.integers(0, 2**16))
def test_run_local_equals_forward(size, layers, speeds, seed):
    """Stitched MoDNN strips equal the unpartitioned output, for any chain and device speeds."""
    net = network_from_cfg_text(_chain_cfg(size, layers), random_seed=seed, name="chain.cfg")
    if min(net.layers[-1].out_shape[1:]) < 1:
        return
    x = np.random.default_rng(seed).random(net.input_shape, dtype=np.float32)
    ref = net.forward(x, engine=ENGINE)
    plan = modnn_plan(net, len(net.layers), speeds)
    out, moved = plan.run_local(x, engine=ENGINE)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5 * max(1.0, float(np.abs(ref).max())))
    assert moved == plan.exchange_bytes()
    if len(speeds) == 1:
        assert moved["boundary_up"] == 0 and moved["boundary_down"] == 0


def test_yolov2_first_16_layers():
    net = network_from_cfg_text(_sized(YOLOV2, 128), random_seed=3, name="yolov2-128.cfg")
    x = np.random.default_rng(1).random(net.input_shape, dtype=np.float32)
    ref = net.forward(x, end=16, engine=ENGINE)
    for speeds in ([1.0], [1, 1, 1, 1, 1, 1], [0.5, 0.25, 0.25, 1.0]):
        plan = modnn_plan(net, 16, speeds)
        out, moved = plan.run_local(x, engine=ENGINE)
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5 * float(np.abs(ref).max()))
        # Faster devices get proportionally more rows, and so more work.
        flops = [plan.flops(d) for d in range(len(speeds))]
        assert sum(flops) == pytest.approx(net.flops(0, 16), rel=0.01)
        fastest, slowest = int(np.argmax(speeds)), int(np.argmin(speeds))
        assert flops[fastest] >= flops[slowest]


def test_refuses_dags_and_heads(yolo_fastest_paths):
    from deepthings.darknet import load_darknet

    net = load_darknet(yolo_fastest_paths[0])
    with pytest.raises(PlanError, match=r"layer \d+ \[(route|shortcut)"):
        modnn_plan(net, len(net.layers), 2)
    yolo = network_from_cfg_text(_sized(YOLOV2, 64), random_seed=None, name="yolov2.cfg")
    with pytest.raises(PlanError, match="fused_layers"):
        modnn_plan(yolo, 0, 2)
    with pytest.raises(PlanError, match="reads layers"):
        modnn_plan(yolo, len(yolo.layers), 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_networked_equals_single_device(tmp_path):
    """Gateway + 3 workers of different speeds over ZeroMQ on loopback give the exact output."""
    import json

    cfg = tmp_path / "yolov2-96.cfg"
    cfg.write_text(_sized(YOLOV2, 96))
    port = _free_port()
    mod = [sys.executable, "-m", "deepthings.baselines.modnn_net"]
    workers = [
        subprocess.Popen(mod + ["worker", "--gateway", f"127.0.0.1:{port}", "--speed", str(s)])
        for s in (1.0, 2.0, 0.5)
    ]
    try:
        p = subprocess.run(
            mod + ["gateway", "--bind", f"127.0.0.1:{port}", "--workers", "3", "--cfg", str(cfg),
                   "--fused", "16", "--frames", "2", "--engine", ENGINE, "--check"],
            capture_output=True, text=True, timeout=240,
        )
        assert p.returncode == 0, p.stderr
        result = json.loads(p.stdout.strip().splitlines()[-1])
        assert result["max_abs_err"] <= 1e-5 * result["max_abs_ref"]
        assert sorted(result["speeds"]) == [0.5, 1.0, 2.0]
        trace = result["traces"][-1]
        assert len(trace["devices"]) == 3 and trace["bytes_received"] > 0
        for w in workers:
            assert w.wait(timeout=30) == 0  # the gateway's stop ends every worker
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
