"""deepthings' native engine vs ONNX Runtime and OpenCV DNN, measured in ONE run.

    python benchmarks/compare_peers.py [--rounds 7] [--models yolov2-16,yolov2,yolo-fastest]

For each model and 1 and 2 threads it prints the best latency of our engine, ONNX Runtime
(graph built from the same cfg + weights, see onnx_graph.py) and OpenCV DNN (readNetFromDarknet
on the same cfg + weights file), the ratios, our GFLOP/s and its share of a measured SGEMM peak
(NumPy/OpenBLAS matmul with the same thread count, in a subprocess). Outputs are checked to
agree before anything is timed. Runs of the three engines are interleaved round by round, so
load from other processes hits all of them alike. If YOLOv2-608 layers 0..15 on one thread is
slower than ONNX Runtime, a per-layer table shows where our time goes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
if (REPO / "python" / "deepthings").is_dir() and "deepthings" not in sys.modules:
    sys.path.insert(0, str(REPO / "python"))

import cv2  # noqa: E402
import onnxruntime as ort  # noqa: E402

import deepthings  # noqa: E402
from deepthings.darknet import write_random_weights  # noqa: E402
from deepthings.engine import get_engine  # noqa: E402
from deepthings.engine import native  # noqa: E402
from onnx_graph import network_to_onnx  # noqa: E402

SHARED = Path(os.environ.get("DEEPTHINGS_SHARED", REPO.parent / "shared"))
YOLOV2 = SHARED / "models" / "darknet" / "yolov2.cfg"
FASTEST = SHARED / "models" / "yolo-fastest-1.1"


class _HeadlessEngine:
    """The native engine with region/yolo heads passed through: the peers' graphs end at the
    heads' inputs, so all three engines do the same work."""

    def __init__(self) -> None:
        self.inner = get_engine("native")

    def run_layer(self, layer: Any, inputs: list[np.ndarray], pad: Any = None) -> np.ndarray:
        if layer.type in ("region", "yolo"):
            return inputs[0]
        return self.inner.run_layer(layer, inputs, pad)


def _truncated_cfg(cfg: Path, n_layers: int, out: Path) -> Path:
    """[net] plus the first n_layers sections of cfg."""
    lines = cfg.read_text().splitlines()
    kept: list[str] = []
    sections = -1
    for line in lines:
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            sections += 1
            if sections > n_layers:
                break
        kept.append(line)
    out.write_text("\n".join(kept) + "\n")
    return out


def sgemm_peak(threads: int) -> float:
    """GFLOP/s of NumPy's (OpenBLAS) float32 matmul with `threads` threads, in a subprocess."""
    code = (
        "import numpy as np, time\n"
        "n = 1024\n"
        "a = np.random.rand(n, n).astype(np.float32); b = np.random.rand(n, n).astype(np.float32)\n"
        "a @ b\n"
        "best = 1e9\n"
        "for _ in range(30):  # best of many: other load on the machine only slows runs down\n"
        "    t = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t)\n"
        "print(2 * n ** 3 / best / 1e9)\n"
    )
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


class Case:
    """One model: our network, the ORT sessions, the OpenCV net, and the input."""

    def __init__(self, label: str, cfg: Path, weights: Path, end: int | None) -> None:
        self.label = label
        self.net = deepthings.load_darknet(cfg, weights)
        self.end = end if end is not None else len(self.net.layers)
        layers = self.net.layers[: self.end]
        self.gflop = sum(l.flops() for l in layers if l.type not in ("region", "yolo")) / 1e9
        self.model, self.out_ids = network_to_onnx(self.net, self.end)
        self.x = np.random.default_rng(0).random(self.net.input_shape, dtype=np.float32)
        self.engine = _HeadlessEngine()
        self.cv = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
        self.cv.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.cv.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        self.cv_names = self.cv.getUnconnectedOutLayersNames()
        self.cv_comparable = all(self.net.layers[i].type not in ("region", "yolo")
                                 for i in range(self.end - 1, self.end)) and len(self.out_ids) == 1
        self.sessions: dict[int, ort.InferenceSession] = {}

    def session(self, threads: int) -> ort.InferenceSession:
        if threads not in self.sessions:
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self.sessions[threads] = ort.InferenceSession(self.model.SerializeToString(), so,
                                                          providers=["CPUExecutionProvider"])
        return self.sessions[threads]

    def ours(self) -> list[np.ndarray]:
        res = self.net.forward(self.x, 0, self.end, engine=self.engine, outputs=self.out_ids)
        return [res[i] for i in self.out_ids]

    def ort(self, threads: int) -> list[np.ndarray]:
        return [o[0] for o in self.session(threads).run(None, {"x": self.x[None]})]

    def opencv(self) -> list[np.ndarray]:
        self.cv.setInput(self.x[None])
        outs = self.cv.forward(self.cv_names)
        return [np.asarray(o) for o in outs]

    def check(self) -> str:
        ours = self.ours()
        notes = []
        for name, theirs in [("ORT", self.ort(1))] + ([("OpenCV", self.opencv())] if self.cv_comparable else []):
            for a, b in zip(ours, theirs):
                b = b.reshape(a.shape)
                err = float(np.abs(a - b).max())
                scale = max(1.0, float(np.abs(b).max()))
                if err > 1e-3 * scale:
                    raise SystemExit(f"{self.label}: our output and {name}'s disagree: max abs err {err:g} "
                                     f"(scale {scale:g})")
                notes.append(f"{name} max|diff| {err:.2e} (scale {scale:.1f})")
        if not self.cv_comparable:
            self.opencv()  # at least runs; its outputs are decoded detections, not feature maps
            notes.append("OpenCV ends in yolo layers: timed, not compared")
        return "; ".join(notes)


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Best (minimum) seconds per function over interleaved rounds, after one warm-up each.

    Other processes on the machine can only add time to a run, so the minimum is the least
    disturbed estimate; interleaving makes the engines share whatever disturbance there is.
    Fast models get more rounds (about 2 s per engine at least, at most 60 rounds) and run
    three times in a row per round: an engine's worker threads spin on for a while after its
    call (ONNX Runtime's do), which would otherwise slow the next engine's first run."""
    t0 = time.perf_counter()
    for f in fns.values():
        f()
    warm = (time.perf_counter() - t0) / len(fns)
    rounds = max(rounds, min(60, int(2.0 / max(warm, 1e-4))))
    burst = 3 if warm < 0.05 else 1
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            for _ in range(burst):
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)
    return {k: min(v) for k, v in times.items()}


def per_layer_table(case: Case, repeats: int = 3) -> None:
    eng = get_engine("native")
    every = list(range(case.end))
    outs = case.net.forward(case.x, 0, case.end, engine=case.engine, outputs=every)
    outs[-1] = case.x
    print(f"\nwhere the time goes: {case.label}, {native.get_num_threads()} thread(s)")
    print(f"{'layer':>5} {'type':<14} {'in -> out':<34} {'GFLOP':>7} {'ms':>8} {'GFLOP/s':>8}")
    total = 0.0
    for layer in case.net.layers[: case.end]:
        ins = [outs[j] for j in layer.inputs]
        best = 1e9
        for _ in range(repeats):
            t = time.perf_counter()
            eng.run_layer(layer, ins)
            best = min(best, time.perf_counter() - t)
        total += best
        gf = layer.flops() / 1e9
        rate = gf / best if layer.type == "convolutional" else float("nan")
        shapes = f"{layer.in_shapes[0]}->{layer.out_shape}"
        kind = layer.type + (f" {layer.kernel[0]}x{layer.kernel[1]}/{layer.stride[0]}"
                             if layer.type == "convolutional" else "")
        print(f"{layer.index:>5} {kind:<14} {shapes:<34} {gf:7.2f} {best * 1e3:8.2f} {rate:8.1f}")
    print(f"{'':>5} {'sum':<14} {'':<34} {case.gflop:7.2f} {total * 1e3:8.2f} {case.gflop / total:8.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds per engine")
    ap.add_argument("--models", default="yolov2-16,yolov2,yolo-fastest")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--per-layer", action="store_true", help="always print the per-layer table")
    args = ap.parse_args(argv)
    thread_counts = [int(t) for t in args.threads.split(",")]
    wanted = args.models.split(",")

    print(f"deepthings native: {native.active_isa()} ({deepthings._core.active_kernel()[0]}), "
          f"ONNX Runtime {ort.__version__}, OpenCV {cv2.__version__}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    peaks = {t: sgemm_peak(t) for t in thread_counts}
    print("SGEMM peak (NumPy/OpenBLAS 1024^3, best of 30): " +
          ", ".join(f"{t} thread(s) {p:.1f} GFLOP/s" for t, p in peaks.items()))

    tmp = Path(tempfile.mkdtemp(prefix="dt-bench-"))
    cases: list[Case] = []
    if "yolov2-16" in wanted or "yolov2" in wanted:
        full_w = tmp / "yolov2.weights"
        write_random_weights(YOLOV2, full_w, seed=0)
    if "yolov2-16" in wanted:
        cfg16 = _truncated_cfg(YOLOV2, 16, tmp / "yolov2-16.cfg")
        w16 = tmp / "yolov2-16.weights"
        write_random_weights(cfg16, w16, seed=0)
        cases.append(Case("YOLOv2-608 layers 0..15", cfg16, w16, None))
    if "yolov2" in wanted:
        # Everything up to the region head's input (the region layer itself is decoding).
        cfg31 = _truncated_cfg(YOLOV2, 31, tmp / "yolov2-31.cfg")
        w31 = tmp / "yolov2-31.weights"
        write_random_weights(cfg31, w31, seed=0)
        cases.append(Case("YOLOv2-608 full (to region)", cfg31, w31, None))
    if "yolo-fastest" in wanted:
        cases.append(Case("Yolo-Fastest-1.1-320", FASTEST / "yolo-fastest-1.1.cfg",
                          FASTEST / "yolo-fastest-1.1.weights", None))

    for c in cases:
        print(f"check {c.label} ({c.gflop:.2f} GFLOP): {c.check()}")

    rows = []
    results: dict[tuple[str, int], dict[str, float]] = {}
    for t in thread_counts:
        native.set_num_threads(t)
        cv2.setNumThreads(t)
        for c in cases:
            r = interleaved({"ours": c.ours, "ort": lambda c=c, t=t: c.ort(t), "opencv": c.opencv}, args.rounds)
            results[(c.label, t)] = r
            rows.append((c, t, r))

    print()
    hdr = (f"{'model':<28} {'thr':>3} {'ours ms':>8} {'ORT ms':>8} {'OpenCV ms':>9} {'us/ORT':>7} "
           f"{'us/OCV':>7} {'GFLOP/s':>8} {'%peak':>6} {'2thr x':>6}")
    note = ("GFLOP/s = the network's direct-convolution FLOPs / our time (3x3 stride-1 convs run "
            "as Winograd F(2x2,3x3), which needs 2.25x fewer multiplies, so this can exceed the SGEMM peak)")
    print(hdr)
    print("-" * len(hdr))
    for c, t, r in rows:
        gfs = c.gflop / r["ours"]
        base = results.get((c.label, 1))
        speed = f"{base['ours'] / r['ours']:6.2f}" if base and t != 1 else f"{'':>6}"
        print(f"{c.label:<28} {t:>3} {r['ours'] * 1e3:8.1f} {r['ort'] * 1e3:8.1f} {r['opencv'] * 1e3:9.1f} "
              f"{r['ours'] / r['ort']:7.2f} {r['ours'] / r['opencv']:7.2f} {gfs:8.1f} "
              f"{100 * gfs / peaks[t]:5.0f}% {speed}")
    print(note)
    for t in thread_counts:
        if t == 1:
            continue
        for c in cases:
            o1, ot = results[(c.label, 1)], results[(c.label, t)]
            print(f"{t}-thread speedup {c.label}: ours {o1['ours'] / ot['ours']:.2f}x, "
                  f"ORT {o1['ort'] / ot['ort']:.2f}x, OpenCV {o1['opencv'] / ot['opencv']:.2f}x")

    key = [c for c in cases if c.label.startswith("YOLOv2-608 layers")]
    if key:
        r1 = results.get((key[0].label, 1))
        if args.per_layer or (r1 and r1["ours"] > r1["ort"]):
            native.set_num_threads(1)
            per_layer_table(key[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
