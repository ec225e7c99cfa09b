"""pytest-benchmark suite for the native engine, each case beside its NumPy/OpenBLAS peer.

    python -m pytest benchmarks/bench_engine.py --benchmark-only [--benchmark-group-by=group]

Groups put our kernel next to a peer measured in the same run (NumPy matmul for the GEMM,
the reference engine for whole layers), so the report reads as ratios. For the comparison with
ONNX Runtime and OpenCV use benchmarks/compare_peers.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")

from deepthings import _core  # noqa: E402
from deepthings.darknet import load_darknet  # noqa: E402
from deepthings.engine import get_engine  # noqa: E402
from deepthings.engine import reference as ref  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DEEPTHINGS_SHARED", REPO.parent / "shared"))
FASTEST = SHARED / "models" / "yolo-fastest-1.1"


@pytest.fixture(params=[1, 2], ids=["1thr", "2thr"])
def threads(request: pytest.FixtureRequest):
    before = _core.get_num_threads()
    _core.set_num_threads(request.param)
    yield request.param
    _core.set_num_threads(before)


@pytest.mark.parametrize("n", [256, 1024])
def test_sgemm_ours(benchmark, threads: int, n: int) -> None:
    benchmark.group = f"sgemm {n}^3 {threads}thr"
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = benchmark(_core.gemm, a, b)
    np.testing.assert_allclose(c, a @ b, rtol=1e-3, atol=1e-2)


@pytest.mark.parametrize("n", [256, 1024])
def test_sgemm_numpy(benchmark, n: int) -> None:
    benchmark.group = f"sgemm {n}^3 numpy"
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    benchmark(np.matmul, a, b)


# (C, H, O, k, stride): YOLOv2-608 layer shapes (reduced maps to stay quick) + a depthwise one.
CONVS = [(32, 152, 64, 3, 1), (128, 76, 256, 3, 1), (256, 38, 128, 1, 1), (3, 304, 32, 3, 1), (96, 40, 96, 3, 1)]


@pytest.mark.parametrize("shape", CONVS, ids=lambda s: "c{}h{}o{}k{}s{}".format(*s))
@pytest.mark.parametrize("engine", ["native", "reference"])
def test_conv_layer(benchmark, shape: tuple[int, int, int, int, int], engine: str) -> None:
    c, h, o, k, s = shape
    depthwise = c == o == 96
    benchmark.group = "conv " + ("dw " if depthwise else "") + "c{}h{}o{}k{}s{}".format(*shape)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((c, h, h), dtype=np.float32)
    groups = c if depthwise else 1
    w = rng.standard_normal((o, c // groups, k, k), dtype=np.float32)
    p = k // 2
    if engine == "native":
        cw = _core.ConvWeights(w, groups)
        benchmark(_core.conv2d, x, cw, None, (s, s), [p, p, p, p], "leaky")
    else:
        benchmark(ref.conv2d, x, w, None, (s, s), (p, p, p, p), groups, "leaky")


@pytest.mark.parametrize("engine", ["native", "reference"])
def test_yolo_fastest_forward(benchmark, engine: str) -> None:
    benchmark.group = "yolo-fastest-1.1 forward"
    net = load_darknet(FASTEST / "yolo-fastest-1.1.cfg", FASTEST / "yolo-fastest-1.1.weights")
    x = np.random.default_rng(2).random(net.input_shape, dtype=np.float32)
    eng = get_engine(engine)
    benchmark(net.forward, x, engine=eng)
