"""Bounded soak: 200 frames through 4 edges on loopback; no frame lost or answered twice, every
answer right, and no process's memory grows after warm-up."""

from __future__ import annotations

import os

import numpy as np
import psutil
import pytest

from deepthings.darknet import load_darknet
from deepthings.runtime.cluster import Cluster

# A small detector (conv/maxpool/route/region) so 200 frames stay quick on a shared 2-core box.
SMALL_CFG = """
[net]
width=64
height=64
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=16
size=3
stride=1
pad=1
activation=leaky

[route]
layers=-1,-2

[convolutional]
filters=30
size=1
stride=1
pad=1
activation=linear

[region]
anchors = 1.08,1.19,  3.42,4.41
bias_match=1
classes=10
coords=4
num=2
softmax=1
thresh=.5
random=0
"""


def _rss(pids: dict[str, int]) -> dict[str, int]:
    pids = dict(pids, client=os.getpid())  # the caller's process too
    return {name: psutil.Process(pid).memory_info().rss for name, pid in pids.items()}


@pytest.mark.slow
def test_soak_200_frames_4_edges_flat_memory(tmp_path):
    cfg = tmp_path / "small.cfg"
    cfg.write_text(SMALL_CFG)
    net = load_darknet(cfg, random_seed=0)
    last = len(net.layers) - 1
    rng = np.random.default_rng(0)
    inputs = [rng.random(net.input_shape, dtype=np.float32) for _ in range(5)]
    refs = [net.forward(x) for x in inputs]
    total, warm = 200, 60
    stream = [inputs[i % len(inputs)] for i in range(total)]
    with Cluster(cfg, random_seed=0, edges=4, grid=(3, 3), fused_layers=5, schedule="wst-s", sources=2) as c:
        first = c.infer_many(stream[:warm], window=4)
        rss_warm = _rss(c.pids)
        rest = c.infer_many(stream[warm:], window=4)
        rss_end = _rss(c.pids)
        stats = c.status()["stats"]
    results = first + rest
    assert len(results) == total
    frame_ids = [r.trace.frame for r in results]
    assert len(set(frame_ids)) == total, "a frame was answered twice"
    for i, r in enumerate(results):
        np.testing.assert_allclose(r.outputs[last], refs[i % len(inputs)], rtol=0, atol=1e-4)
    assert stats["frames_done"] == total and stats["duplicates"] == 0
    for name, before in rss_warm.items():
        growth = rss_end[name] - before
        # 140 more frames must not grow any process by more than 8 MB (a leak of one tile
        # result per task would be > 10 MB).
        assert growth < 8 * 2**20, f"{name}: RSS grew by {growth / 2**20:.1f} MB after warm-up"
