"""FTP on a small net under the native engine: stitched tiles equal the unpartitioned
forward; and a 2-edge loopback cluster (gateway + 2 edge processes, CURVE on) returns the
single-device result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import deepthings
from deepthings.ftp import FTP

from arm_env import TINY_CFG

SEED = 7
_NET = deepthings.load_darknet(TINY_CFG, random_seed=SEED)
# Layers 0..10 are tileable; 11 (global avgpool) is not.
_TILEABLE = 11


def _scale(y: np.ndarray) -> float:
    return float(np.abs(y).max()) + 1.0


@settings(max_examples=20)
@given(seed=st.integers(0, 2**16), fused=st.integers(1, _TILEABLE), n=st.integers(1, 4), m=st.integers(1, 4))
def test_stitched_tiles_equal_full_forward(seed, fused, n, m):
    """Stitched tiles of the first `fused` layers == net.forward(end=fused), native engine."""
    shape = _NET.layers[fused - 1].out_shape
    n, m = min(n, shape[1]), min(m, shape[2])
    plan = FTP(_NET, grid=(n, m), fused_layers=fused)
    x = np.random.default_rng(seed).standard_normal(_NET.input_shape).astype(np.float32)
    want = _NET.forward(x, end=fused, engine="native")
    outs = [plan.run_tile(t.tile_id, x, "native") for t in plan.tiles]
    got = plan.stitch(outs)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * _scale(want))
    # A tile also runs from exactly its own input crop, as an edge device receives it.
    last = plan.tiles[-1].tile_id
    outs[-1] = plan.run_tile(last, plan.crop_input(last, x), "native")
    np.testing.assert_array_equal(plan.stitch(outs), got)


def test_native_equals_reference_on_the_tiny_net():
    """The whole tiny net (incl. the global layer) agrees with the NumPy oracle."""
    x = np.random.default_rng(3).standard_normal(_NET.input_shape).astype(np.float32)
    want = _NET.forward(x, engine="reference")
    got = _NET.forward(x, engine="native")
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * _scale(want))


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("schedule", ["wst-s"])
def test_two_edge_loopback_cluster(schedule: str, tmp_path: Path):
    """Gateway + 2 edges on 127.0.0.1 run a 2x2 FTP grid; every frame equals one device's output."""
    x = [np.random.default_rng(s).standard_normal(_NET.input_shape).astype(np.float32) for s in (1, 2)]
    want = [_NET.forward(xi, engine="native") for xi in x]
    with deepthings.Cluster(str(TINY_CFG), edges=2, grid=(2, 2), fused_layers=8, schedule=schedule,
                            random_seed=SEED, cache_dir=tmp_path / "cache", start_timeout_s=300,
                            frame_timeout_s=300) as cluster:
        results = cluster.infer_many(x, window=2)
    assert len(results) == 2
    for r, w in zip(results, want):
        np.testing.assert_allclose(r.output, w, rtol=0, atol=1e-5 * _scale(w))
    # Every tile of the 2x2 grid was computed by some edge (the trace names it).
    assert sorted(results[0].trace.devices()) == [0, 1, 2, 3]
