"""The thread pool under concurrent callers and resizing: results never change."""

from __future__ import annotations

import threading

import numpy as np

from deepthings import _core
from kernel_fixtures import threads  # noqa: F401 (fixture)


def test_concurrent_callers_and_resizes(threads: None) -> None:
    """Python threads calling kernels at once (the GIL is released) while another thread
    resizes the pool: every result equals the single-threaded one."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 30, 30), dtype=np.float32)
    cw = _core.ConvWeights(rng.standard_normal((32, 16, 3, 3), dtype=np.float32))
    dw = _core.ConvWeights(rng.standard_normal((16, 1, 3, 3), dtype=np.float32), 16)
    _core.set_num_threads(1)
    want = _core.conv2d(x, cw, None, (1, 1), [1, 1, 1, 1], "leaky")
    want_dw = _core.conv2d(x, dw, None, (2, 2), [0, 0, 1, 1], "relu")
    want_pool = _core.maxpool2d(x, (3, 3), (1, 1), [1, 1, 1, 1])
    _core.set_num_threads(2)
    errors: list[str] = []

    def worker(k: int) -> None:
        for _ in range(15):
            if not np.array_equal(_core.conv2d(x, cw, None, (1, 1), [1, 1, 1, 1], "leaky"), want):
                errors.append(f"conv in thread {k}")
            if not np.array_equal(_core.conv2d(x, dw, None, (2, 2), [0, 0, 1, 1], "relu"), want_dw):
                errors.append(f"depthwise in thread {k}")
            if not np.array_equal(_core.maxpool2d(x, (3, 3), (1, 1), [1, 1, 1, 1]), want_pool):
                errors.append(f"maxpool in thread {k}")

    def resizer() -> None:
        for n in (3, 1, 2, 4, 2):
            _core.set_num_threads(n)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(3)] + [threading.Thread(target=resizer)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in ts), "a kernel call hung"
    assert not errors, errors


def test_many_small_calls_terminate(threads: None) -> None:
    """Thousands of back-to-back tiny parallel calls (spin/sleep hand-offs) all complete."""
    _core.set_num_threads(2)
    a = np.ones((8, 64), np.float32)
    b = np.ones((64, 600), np.float32)
    for _ in range(2000):
        c = _core.gemm(a, b)
    np.testing.assert_array_equal(c, np.full((8, 600), 64.0, np.float32))


def _child_conv(x: np.ndarray, w: np.ndarray, q) -> None:  # runs in a forked child
    q.put(_core.conv2d_weights(x, w, None, (1, 1), [1, 1, 1, 1], 1, "leaky"))


def test_pool_survives_fork(threads: None) -> None:
    """A child forked after the pool ran (multiprocessing's fork) gets a working pool."""
    import multiprocessing as mp

    _core.set_num_threads(2)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 40, 40), dtype=np.float32)
    w = rng.standard_normal((32, 16, 3, 3), dtype=np.float32)
    want = _core.conv2d_weights(x, w, None, (1, 1), [1, 1, 1, 1], 1, "leaky")
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_conv, args=(x, w, q))
    p.start()
    try:
        got = q.get(timeout=60)
    finally:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
            p.join()
    assert p.exitcode == 0
    np.testing.assert_array_equal(got, want)
