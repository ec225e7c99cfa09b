"""The DeepThings paper's experiments on the emulated testbed (`deepthings bench paper`,
`python benchmarks/paper_experiments.py`).

YOLOv2's first 16 layers (random weights) on 1..K emulated devices (network namespaces on a
shaped bridge, CPU-capped by cgroups): latency and speedup over one emulated device of
FTP-WST, FTP-WST-S and FTP-WSH (several grids) and of MoDNN; bytes on the wire per frame;
throughput and worst latency with 1..K data sources; peak memory per device against the FTP
cost model. Writes ``results.csv``, ``runs.json``, PNG plots and ``report.md``.

The block is cut out of the cfg (layers 0..15 become the whole network), so the gateway's
merge is the stitch only and every measured second belongs to the fused block.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from deepthings.errors import EmulationError
from deepthings.testbed.spec import DeviceSpec, LinkSpec, device_specs, parse_rate
from deepthings.testbed.testbed import Testbed

log = logging.getLogger(__name__)

# The paper's figures (Zhao, Mirzazad Barijough, Gerstlauer, TCAD 2018; Raspberry Pi 3 over WLAN).
PAPER = {
    "speedup_6_ftp_wst_s": 3.5,
    "speedup_6_modnn": 2.1,
    "reuse_latency_cut": 0.27,
    "wsts_vs_wsh_comm": 0.5,
    "fps_6_sources_deepthings": 0.29,
    "fps_6_sources_modnn": 0.12,
}

PORT = 5600

PAPER_GRIDS: tuple[tuple[int, ...], ...] = ((3, 3), (4, 4), (5, 5))
STRIP_GRIDS: tuple[tuple[int, ...], ...] = ((6, 2, 1), (12, 1, 1))
DEFAULT_CONFIGS: tuple[tuple[str, tuple[int, ...]], ...] = (
    tuple((sch, g) for sch in ("wst", "wst-s", "wsh") for g in PAPER_GRIDS)
    + tuple((sch, g) for sch in ("wst-s", "wst-sp") for g in STRIP_GRIDS)
)
SCHEDULES = ("wst", "wst-s", "wst-sp", "wsh")


@dataclass
class Settings:
    """One experiment suite."""

    cfg: str
    size: int = 608
    fused: int = 16
    devices: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6])
    # The FTP points of the sweep, (schedule, grid): the paper's (WST, WST-S, WSH on 3x3, 4x4,
    # 5x5) and ours (the data-reuse schedules on strips). A grid is (n, m) or (n, m, 1): cuts
    # balanced for the run's device count (label "NxMb"). 12x1b: row strips, which keep every
    # tile's rows whole (the kernels' best shape) and give a level-1 strip just two neighbours.
    configs: list[tuple[str, tuple[int, ...]]] = field(default_factory=lambda: list(DEFAULT_CONFIGS))
    sources: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6])
    frames: int = 3  # timed frames per run (after one warm-up frame)
    frames_per_source: int = 6  # throughput runs: enough for a steady-state window (steady_fps)
    cpu: float = 0.25
    cpu_period_ms: float = 100.0  # CFS period of the caps (see testbed.cgroups)
    gateway_cpu: float | None = None
    # 100 Mbit/s against 0.25 of a Zen 4 core keeps roughly the Pi 3 + WLAN ratio of transfer
    # time (one 608x608 input + the block's output) to single-device compute time.
    rate: str | None = "100mbit"
    delay: str | None = None
    loss: str | None = None
    out: str = "benchmarks/results/paper"
    seed: int = 1
    modnn: bool = True
    ftp: bool = True
    # Emulated devices get their whole quota even when the machine is busy (CFS priority).
    guarantee_cpu: bool = True
    timeout_s: float = 120.0  # per run; a hung run is recorded as failed, the suite goes on
    # Head-to-head rounds after the sweep at the largest device count: one device, MoDNN and the
    # fastest WST-S and WST-SP configurations there, measured back to back, `rounds` times. Each
    # round's speedups are against its own single-device run, so the machine's drift (other
    # tenants) cancels, and the goal is judged on their medians.
    rounds: int = 5
    # Timed frames per run in the rounds: more than the sweep's, because the goal is judged on
    # the rounds and a run of a few sub-second frames catches the shared machine's swings.
    round_frames: int = 6
    # The suite stops starting runs that would end past this (seconds from its start; None: no
    # limit): the points at the largest device count and the rounds run first, then the
    # throughput runs, then the smaller device counts, largest first. Skipped points are listed
    # in the report.
    budget_s: float | None = 1140.0

    @property
    def max_devices(self) -> int:
        return max(self.devices)

    @property
    def grids(self) -> list[tuple[int, ...]]:
        """The grids of the FTP points, in first-use order."""
        return list(dict.fromkeys(tuple(g) for _, g in self.configs))


# ----------------------------------------------------------------------------- model files
def truncated_cfg(cfg_path: str, layers: int, size: int) -> str:
    """cfg text with only the first `layers` layer sections and the input resized to size x size."""
    import re

    text = Path(cfg_path).read_text()
    sections = re.split(r"(?m)^(?=\[)", text)
    head = [s for s in sections if s.strip()]
    if not head or not head[0].lstrip().startswith("[net]"):
        raise EmulationError(f"{cfg_path}: first section is not [net]")
    net = re.sub(r"(?m)^width\s*=.*$", f"width={size}", head[0])
    net = re.sub(r"(?m)^height\s*=.*$", f"height={size}", net)
    body = [s for s in head[1:] if not s.lstrip().startswith("#")][:layers]
    if len(body) < layers:
        raise EmulationError(f"{cfg_path} has only {len(body)} layers, {layers} requested")
    return net + "".join(body)


def prepare_model(settings: Settings, workdir: Path) -> tuple[Path, Path]:
    """Write the cut cfg and its deterministic random weights; returns (cfg, weights)."""
    from deepthings.darknet import write_random_weights

    name = Path(settings.cfg).stem
    cfg = workdir / f"{name}-{settings.fused}l-{settings.size}.cfg"
    cfg.write_text(truncated_cfg(settings.cfg, settings.fused, settings.size))
    weights = workdir / f"{cfg.stem}.weights"
    write_random_weights(cfg, weights, seed=settings.seed)
    return cfg, weights


def _env() -> dict[str, str]:
    """Environment for processes in the testbed: they import this very deepthings package."""
    import deepthings

    env = dict(os.environ)
    root = str(Path(deepthings.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env


def _testbed(settings: Settings, k: int) -> Testbed:
    specs = device_specs(k, cpu=settings.cpu, rate=settings.rate, delay=settings.delay, loss=settings.loss)
    gateway = DeviceSpec(cpu=settings.gateway_cpu, link=LinkSpec(settings.rate, settings.delay, settings.loss))
    return Testbed(specs, gateway=gateway, guarantee_cpu=settings.guarantee_cpu,
                   cpu_period_us=int(round(settings.cpu_period_ms * 1000)))


def _json_line(out: str, what: str) -> dict:
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise EmulationError(f"{what} printed no JSON result:\n{out[-2000:]}")


def _sum_up(link: dict[str, dict[str, int]]) -> int:
    return sum(v["up"] for v in link.values())


def _busiest_link(link: dict[str, dict[str, int]], frames: int, rate: str | None) -> tuple[str, float | None]:
    """The link direction that carried the most bytes per frame, and its time at the shaped rate."""
    name, nbytes = max(((f"{n} {d}", v[d]) for n, v in link.items() for d in ("up", "down")), key=lambda p: p[1])
    bps = parse_rate(rate)
    return name, (nbytes / frames * 8 / bps if bps else None)


def _link_fields(link: dict[str, dict[str, int]], frames: int, rate: str | None) -> dict:
    name, seconds = _busiest_link(link, frames, rate)
    return {"busiest_link": name, "busiest_link_s": seconds,
            "link_bytes_per_frame": {n: {d: v[d] / frames for d in ("up", "down")} for n, v in link.items()}}


def _delta(after: dict, before: dict) -> dict[str, dict[str, int]]:
    return {n: {k: after[n][k] - before.get(n, {}).get(k, 0) for k in after[n]} for n in after}


# ----------------------------------------------------------------------------- runs
def _gated_run(tb: Testbed, node: str, cmd: list[str], timeout_s: float, tmp: Path) -> tuple[dict, Any]:
    """Run `cmd` (which takes --ready-file/--start-file) uncapped until it is ready, then cap every
    device at its spec and let it go; returns (its JSON result, usage counters at the go)."""
    ready, start = tmp / "ready", tmp / "start"
    for d in tb.devices:
        tb.set_cpu(d, None)
    proc = tb.spawn(node, cmd + ["--ready-file", str(ready), "--start-file", str(start)], env=_env(),
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout_s
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            raise EmulationError(f"`{' '.join(cmd[:5])} ...` did not get ready:\n{err[-3000:]}")
        time.sleep(0.02)
    for d in tb.devices:
        tb.set_cpu(d, tb.spec(d).cpu)
    marks = (tb.link_bytes(), tb.usage())
    start.touch()
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise EmulationError(f"`{' '.join(cmd[:5])} ...` timed out after {timeout_s:.0f}s:\n{err[-3000:]}") from None
    if proc.returncode != 0:
        raise EmulationError(f"`{' '.join(cmd[:5])} ...` failed:\n{err[-3000:]}")
    return _json_line(out, cmd[2]), marks


# What a failed run raises: recorded in the report, and the suite goes on.
RUN_ERRORS = (EmulationError, subprocess.SubprocessError, OSError, ValueError, KeyError)


def run_single(settings: Settings, cfg: Path, weights: Path) -> dict:
    """The fused block on one emulated device: the reference for every speedup."""
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="dt-single-") as tmp, _testbed(settings, 1) as tb:
        res, _ = _gated_run(tb, "d0", [py, "-m", "deepthings.testbed.probes", "single", "--cfg", str(cfg),
                                       "--weights", str(weights), "--fused", str(settings.fused),
                                       "--frames", str(settings.frames)], settings.timeout_s, Path(tmp))
        usage = tb.usage()["d0"]
    lat = res["latencies_s"]
    return {"system": "single", "schedule": "", "grid": "", "devices": 1, "sources": 1,
            "latency_s": statistics.median(lat), "latency_max_s": max(lat), "frames": len(lat),
            "fps": 1.0 / statistics.median(lat), "bytes_per_frame": 0,
            "peak_rss_bytes": res["peak_rss_bytes"], "cgroup_mem_peak_bytes": usage["memory_peak_bytes"],
            "gflop": res["flops"] / 1e9}


def run_modnn(settings: Settings, cfg: Path, weights: Path, k: int, frames: int | None = None) -> dict:
    """MoDNN (BODP + per-layer boundary exchange through the gateway) on k devices."""
    py = sys.executable
    frames = settings.frames if frames is None else frames
    env = _env()
    with tempfile.TemporaryDirectory(prefix="dt-modnn-") as tmp, _testbed(settings, k) as tb:
        addr = f"{tb.address('gw')}:{PORT}"
        for d in tb.devices:
            tb.set_cpu(d, None)  # workers start uncapped; _gated_run caps them before frame 0
        for i in range(k):
            tb.spawn(i, [py, "-m", "deepthings.baselines.modnn_net", "worker", "--gateway", addr],
                     env=env, stdout=subprocess.DEVNULL)
        t0 = time.monotonic()
        res, (before, usage_before) = _gated_run(
            tb, "gw", [py, "-m", "deepthings.baselines.modnn_net", "gateway", "--bind", addr, "--workers", str(k),
                       "--cfg", str(cfg), "--weights", str(weights), "--fused", str(settings.fused),
                       "--frames", str(frames + 1)], settings.timeout_s, Path(tmp))
        wall = time.monotonic() - t0
        link = _delta(tb.link_bytes(), before)
        usage = tb.usage()
    cpu = {n: usage[n]["cpu_s"] - usage_before[n]["cpu_s"] for n in usage}
    traces = res["traces"][1:]  # frame 0 is the warm-up
    lat = [t["latency_s"] for t in traces]
    compute = [max(d["compute_s"] for d in t["devices"]) for t in traces]
    wait = [statistics.mean(d["wait_s"] for d in t["devices"]) for t in traces]
    return {"system": "modnn", "schedule": "bodp", "grid": "1d", "devices": k, "sources": 1,
            "latency_s": statistics.median(lat), "latency_max_s": max(lat), "frames": len(lat),
            "fps": len(lat) / sum(lat), "bytes_per_frame": _sum_up(link) / (frames + 1),
            "app_bytes_per_frame": statistics.mean(t["bytes_sent"] + t["bytes_received"] for t in traces),
            "compute_s": statistics.median(compute), "wait_s": statistics.median(wait),
            "gateway_s": statistics.median(t["gateway_s"] for t in traces),
            "cpu_s_per_frame": sum(cpu.values()) / (frames + 1), "gateway_cpu_s_per_frame": cpu["gw"] / (frames + 1),
            "mem_peak_per_device": [usage[d]["memory_peak_bytes"] for d in tb.devices],
            "latencies_s": lat, "wall_s": wall,
            **_link_fields(link, frames + 1, settings.rate)}


def run_ftp(settings: Settings, cfg: Path, weights: Path, k: int, schedule: str, grid: tuple[int, int],
            sources: int = 1, frames: int | None = None, in_flight: int = 1, cache: Path | None = None) -> dict:
    """The deepthings runtime on k devices: gateway in its namespace, one edge per device, the
    first `sources` devices make frames (one warm-up frame each, then `frames` timed ones)."""
    py = sys.executable
    frames = settings.frames if frames is None else frames
    env = _env()
    rate = parse_rate(settings.rate)
    with tempfile.TemporaryDirectory(prefix="dt-ftp-") as tmp, _testbed(settings, k) as tb, \
            open(Path(tmp) / "gateway.log", "w") as gw_log:  # a file, not a pipe nobody drains
        start = Path(tmp) / "start"
        cache_dir = cache or Path(tmp) / "cache"
        addr = f"{tb.address('gw')}:{PORT}"
        tb.spawn("gw", [py, "-m", "deepthings.testbed.probes", "ftp-gateway", "--bind", addr,
                             "--cfg", str(cfg), "--weights", str(weights), "--fused", str(settings.fused),
                             "--grid", f"{grid[0]}x{grid[1]}", "--schedule", schedule,
                             "--balance", str(k if _balanced(grid) else 0),
                             "--link-bytes-per-s", str((rate or 8e9) / 8)],
                      env=env, stdout=subprocess.DEVNULL, stderr=gw_log)
        c, h, w = 3, settings.size, settings.size
        for d in tb.devices:
            tb.set_cpu(d, None)  # fast start-up; the cap applies from the first frame on
        procs = []
        for i in range(k):
            src = i < sources
            cmd = [py, "-m", "deepthings.testbed.probes", "ftp-edge", "--gateway", addr,
                   "--advertise", tb.address(i), "--cache-dir", str(cache_dir),
                   "--shape", str(c), str(h), str(w)]
            if src:
                cmd += ["--frames", str(frames + 1), "--start-file", str(start), "--in-flight", str(in_flight)]
            procs.append(tb.spawn(i, cmd, env=env, stdout=subprocess.PIPE if src else subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True))
        wait = tb.run("gw", [py, "-m", "deepthings.testbed.probes", "ftp-wait", "--gateway", addr,
                             "--ready", str(k), "--timeout", str(settings.timeout_s)],
                      capture_output=True, text=True, env=env, timeout=settings.timeout_s + 30)
        if wait.returncode != 0:
            gw_err = (Path(tmp) / "gateway.log").read_text()
            raise EmulationError(f"FTP {schedule} {grid} on {k} devices: edges did not join:\n"
                                 f"{wait.stderr[-2000:]}\n{gw_err[-2000:]}")
        for d in tb.devices:
            tb.set_cpu(d, tb.spec(d).cpu)
        before = tb.link_bytes()
        usage_before = tb.usage()
        start.touch()
        results = []
        for i in range(sources):
            try:
                out, err = procs[i].communicate(timeout=settings.timeout_s)
            except subprocess.TimeoutExpired:
                procs[i].kill()
                _, err = procs[i].communicate()
                gw_err = (Path(tmp) / "gateway.log").read_text()
                raise EmulationError(f"FTP {schedule} {grid} on {k} devices: source d{i} timed out after "
                                     f"{settings.timeout_s:.0f}s\nsource stderr:\n{err[-1500:]}\n"
                                     f"gateway stderr:\n{gw_err[-1500:]}") from None
            if procs[i].returncode != 0:
                raise EmulationError(f"FTP source d{i} failed:\n{err[-3000:]}")
            results.append(_json_line(out, f"FTP source d{i}"))
            results[-1]["stderr"] = err[-200_000:] if os.environ.get("DEEPTHINGS_EXPERIMENT_TRACES") else ""
        link = _delta(tb.link_bytes(), before)
        usage = tb.usage()
    dump = os.environ.get("DEEPTHINGS_EXPERIMENT_TRACES")
    if dump:  # every frame's trace (tiles, devices, events), to see where the time went
        Path(dump).mkdir(parents=True, exist_ok=True)
        name = f"ftp-{schedule}-{grid_label(grid)}-k{k}-s{sources}-f{in_flight}.json"
        (Path(dump) / name).write_text(json.dumps(results))
    row = _ftp_row(schedule, grid, k, sources, frames, results, link, usage, usage_before)
    row.update(_link_fields(link, sum(len(r["frames"]) for r in results), settings.rate))
    return row


def steady_fps(results: list[dict]) -> dict:
    """Frames per second of several sources' frames sharing the devices, in steady state.

    The window opens when every source's warm-up frame is done and closes when the first
    source has submitted its last frame: in between every source keeps its frames in flight,
    so no pipeline fill (a warm-up frame still running beside timed ones) or drain (sources
    that ran out of frames) counts. FPS = frames finished in the window / its length (a
    frame finishes when the gateway holds its block output, or at its source if that is
    unknown; CLOCK_MONOTONIC is system-wide, so the namespaces share it). With too few frames
    for such a window, timed frames over the span from the first timed submission to the
    last finish (which counts the pipeline's fill and drain against it)."""
    def finished(f: dict) -> float:
        return f["merged_s"] if f.get("merged_s") is not None else f["done_s"]

    per_source = [sorted(r["frames"], key=lambda f: f["frame"]) for r in results if r["frames"]]
    t_open = max(finished(fs[0]) for fs in per_source)
    t_close = min(fs[-1]["submitted_s"] for fs in per_source)
    done = [finished(f) for fs in per_source for f in fs]
    n = sum(t_open < t <= t_close for t in done)
    if n >= 2 * len(per_source):  # at least two finishes per source: the window is meaningful
        return {"fps": n / (t_close - t_open), "fps_window_s": t_close - t_open}
    timed = [f for fs in per_source for f in fs[1:]]
    t_first = min(f["submitted_s"] for f in timed)
    t_last = max(f["done_s"] for f in timed)
    return {"fps": len(timed) / (t_last - t_first) if t_last > t_first else 0.0, "fps_window_s": None}


def _ftp_row(schedule: str, grid: tuple[int, int], k: int, sources: int, frames: int, results: list[dict],
             link: dict, usage: dict, usage_before: dict) -> dict:
    timed = [f for r in results for f in sorted(r["frames"], key=lambda f: f["frame"])[1:]]
    allf = [f for r in results for f in r["frames"]]
    if not timed:
        raise EmulationError(f"FTP {schedule} {grid} on {k} devices returned no timed frames")
    # Latency ends when the gateway holds the merged block output, as in DeepThings (whose
    # gateway goes on with the remaining layers there and never sends the block back) and as
    # MoDNN's is measured; at_source adds the output's trip back to the data source.
    at_source = [f["latency_s"] for f in timed]
    if all(f.get("merged_s") is not None for f in timed):
        lat = [f["merged_s"] - f["submitted_s"] for f in timed]
    else:
        lat = at_source
    per_dev_compute: list[float] = []
    stolen, tiles, merge, local_share, max_queue, tile_cpu = 0, 0, [], [], [], []
    for f in timed:
        tr = f["trace"]
        by_dev: dict[Any, float] = {}
        local = 0.0
        for t in tr.get("tiles", []):
            by_dev[t.get("device")] = by_dev.get(t.get("device"), 0.0) + float(t.get("compute_s", 0.0))
            stolen += bool(t.get("stolen"))
            tiles += 1
            if t.get("origin") == "local" and not t.get("stolen"):
                local += float(t.get("compute_s", 0.0))
        per_dev_compute.append(max(by_dev.values()) if by_dev else 0.0)
        total = sum(by_dev.values())
        local_share.append(local / total if total else 0.0)
        max_queue.append(max((float(t.get("queue_s", 0.0)) for t in tr.get("tiles", [])), default=0.0))
        merge.append(float(tr.get("stages", {}).get("merge_s", 0.0)))
        tile_cpu.append(sum(float(t.get("cpu_s", 0.0)) for t in tr.get("tiles", [])))
    cpu = {n: usage[n]["cpu_s"] - usage_before[n]["cpu_s"] for n in usage}
    throttled = {n: usage[n]["throttled_s"] - usage_before[n]["throttled_s"] for n in usage}
    return {"system": "ftp", "schedule": schedule, "grid": grid_label(grid), "devices": k,
            "sources": sources, "latency_s": statistics.median(lat), "latency_max_s": max(lat),
            "latency_at_source_s": statistics.median(at_source),
            "frames": len(timed), **steady_fps(results),
            "bytes_per_frame": _sum_up(link) / len(allf),
            "gateway_bytes_per_frame": (link["gw"]["up"] + link["gw"]["down"]) / len(allf),
            "compute_s": statistics.median(per_dev_compute), "gateway_s": statistics.median(merge),
            "stolen_fraction": stolen / tiles if tiles else 0.0,
            # Tile compute the data source did itself, and the longest a tile waited in a queue.
            "source_compute_share": statistics.median(local_share), "max_queue_s": statistics.median(max_queue),
            "cpu_s_per_frame": sum(cpu.values()) / len(allf),
            "tile_cpu_s_per_frame": statistics.median(tile_cpu),  # the tiles' own CPU (edge-measured)
            "gateway_cpu_s_per_frame": cpu["gw"] / len(allf),
            "throttled_s_per_frame": sum(v for n, v in throttled.items() if n != "gw") / len(allf),
            "mem_peak_per_device": [usage[n]["memory_peak_bytes"] for n in usage if n != "gw"],
            "source_peak_rss_bytes": max(r.get("peak_rss_bytes", 0) for r in results)}


def idle_rss(settings: Settings) -> int:
    """Peak RSS of a process that imported the runtime and nothing else (the floor of every device)."""
    code = ("import resource, deepthings.runtime.edge, deepthings.engine.native, numpy, zmq\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    return int(r.stdout.strip() or 0)


# ----------------------------------------------------------------------------- the suite
def _estimate_s(settings: Settings, rows: list[dict], system: str, schedule: str, grid: str, k: int,
                frames: int) -> float:
    """A run's expected wall time from the same point at the largest device count (latency
    grows about as (kmax / k) ** 0.8 in the suites measured) or the one-device run."""
    kmax = settings.max_devices
    ref = _find(rows, system=system, schedule=schedule, grid=grid, devices=kmax, sources=1)
    if ref is None:
        ref = _find(rows, system="single")
        lat = ref["latency_s"] * 1.5 if ref else 10.0
    else:
        lat = ref["latency_s"] * (kmax / k) ** 0.8
    return RUN_START_S + (frames + 1) * lat


RUN_START_S = 3.0  # namespaces, processes, plan and model set-up per run, measured


def run_suite(settings: Settings, progress: Any = print) -> dict:
    """Run every experiment; returns {"rows": [...], "meta": {...}} and writes the outputs."""
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    load_start = os.getloadavg()
    rows: list[dict] = []
    errors: list[str] = []
    skipped: list[str] = []
    kmax = settings.max_devices

    def stamp(msg: str) -> None:
        progress(f"[{time.monotonic() - t_start:6.0f}s] {msg}")

    def fits(what: str, est_s: float) -> bool:
        """False (and the point is listed as skipped) if it would end past the budget."""
        if settings.budget_s is None or time.monotonic() - t_start + est_s <= settings.budget_s:
            return True
        skipped.append(what)
        stamp(f"{what}: skipped (about {est_s:.0f} s, past the {settings.budget_s:.0f} s budget)")
        return False

    with tempfile.TemporaryDirectory(prefix="dt-paper-") as tmp:
        cfg, weights = prepare_model(settings, Path(tmp))
        cache = Path(tmp) / "edge-cache"  # edges fetch the model once per suite, not per run

        def attempt(what: str, fn: Any, *a: Any, **kw: Any) -> None:
            t = time.monotonic()
            try:
                row = fn(*a, **kw)
                rows.append(row)
                stamp(f"{what}: latency {row['latency_s']:.3f}s ({time.monotonic() - t:.0f}s)")
            except RUN_ERRORS as exc:
                errors.append(f"{what}: {exc}")
                stamp(f"{what}: FAILED {str(exc).splitlines()[0]}")

        def sweep(k: int) -> None:
            if settings.modnn and fits(f"MoDNN k={k}", _estimate_s(settings, rows, "modnn", "bodp", "1d", k,
                                                                    settings.frames)):
                attempt(f"MoDNN k={k}", run_modnn, settings, cfg, weights, k)
            if settings.ftp:
                for schedule, grid in settings.configs:
                    what = f"FTP {schedule} {grid_label(grid)} k={k}"
                    if fits(what, _estimate_s(settings, rows, "ftp", schedule, grid_label(grid), k, settings.frames)):
                        attempt(what, run_ftp, settings, cfg, weights, k, schedule, grid, cache=cache)

        attempt("single device", run_single, settings, cfg, weights)
        sweep(kmax)
        rounds = run_rounds(settings, cfg, weights, rows, cache, errors, stamp, fits)
        # Throughput runs use the fastest data-reuse configuration measured at kmax devices
        # (DeepThings used its best grid); WST-S on the largest grid if none was measured.
        reuse = [r for r in rows if r["system"] == "ftp" and r["schedule"] in ("wst-s", "wst-sp")
                 and r["devices"] == kmax and r["sources"] == 1]
        best = min(reuse, key=lambda r: r["latency_s"], default=None)
        thr_schedule = best["schedule"] if best else "wst-s"
        best_grid = parse_grid_label(best["grid"]) if best else settings.grids[-1]
        lat = best["latency_s"] if best else 2.0
        for n in settings.sources:
            if n > kmax or not settings.ftp:
                continue
            what = f"throughput FTP {thr_schedule} {grid_label(best_grid)} sources={n}"
            # S sources' frames share the devices: about one frame's latency of work each
            if fits(what, RUN_START_S + (settings.frames_per_source + 1) * lat * n):
                attempt(what, _ftp_throughput, settings, cfg, weights, kmax, thr_schedule, best_grid, sources=n,
                        frames=settings.frames_per_source, in_flight=2, cache=cache)
        if settings.modnn:
            # MoDNN runs one frame at a time over all devices: S sources' frames queue up.
            n = max(settings.sources) * settings.frames_per_source
            mod = _find(rows, system="modnn", devices=kmax)
            if fits(f"throughput MoDNN k={kmax}", RUN_START_S + (n + 1) * (mod["latency_s"] if mod else 2.0)):
                attempt(f"throughput MoDNN k={kmax}", _modnn_throughput, settings, cfg, weights, kmax, n)
        for k in sorted(settings.devices, reverse=True):
            if k != kmax:
                sweep(k)
        model = _cost_model(cfg, settings)
    meta = {"settings": asdict(settings), "errors": errors, "skipped": skipped, "loadavg_at_start": load_start,
            "suite_s": time.monotonic() - t_start, "rounds": rounds,
            "idle_rss_bytes": idle_rss(settings), "cost_model": model, "paper": PAPER,
            "machine": _machine()}
    write_outputs(rows, meta, out)
    return {"rows": rows, "meta": meta}


# Configurations within this factor of a schedule's fastest sweep run also go into the rounds:
# one run of a few frames cannot tell near-ties apart (6x2b and 12x1b were 0.200 s and 0.201 s).
ROUND_TIE = 1.15


def round_configs(rows: list[dict], kmax: int) -> list[tuple[str, tuple[int, ...]]]:
    """The configurations (schedule, grid) of each data-reuse schedule (DeepThings' WST-S, the
    goal's, and ours, WST-SP) that the rounds measure: the sweep's fastest at kmax and the one
    nearest to it if within ROUND_TIE (two at most per schedule); the rounds' medians decide."""
    out = []
    for sch in ("wst-s", "wst-sp"):
        runs = sorted((r for r in rows if r["system"] == "ftp" and r.get("schedule") == sch
                       and r.get("devices") == kmax and r.get("sources") == 1 and r.get("latency_s")),
                      key=lambda r: r["latency_s"])
        out += [(sch, parse_grid_label(r["grid"])) for r in runs[:2] if r["latency_s"] <= ROUND_TIE * runs[0]["latency_s"]]
    return out


def run_rounds(settings: Settings, cfg: Path, weights: Path, rows: list[dict], cache: Path, errors: list[str],
               progress: Any = print, fits: Any = None) -> list[dict]:
    """``settings.rounds`` rounds of: one device, MoDNN and the best data-reuse configurations
    at the largest device count, back to back; each round's speedups use its own single run.
    ``fits(what, seconds)`` may stop the rounds early (the suite's time budget)."""
    kmax = settings.max_devices
    configs = round_configs(rows, kmax) if settings.ftp else []
    out: list[dict] = []
    settings = replace(settings, frames=max(settings.frames, settings.round_frames))
    # one round: the single run, MoDNN and the configurations, each (frames + 1) frames
    lats = [r["latency_s"] for r in rows if r["devices"] == kmax and r["sources"] == 1
            and (r["system"] == "modnn" or (r["system"] == "ftp" and (r["schedule"], parse_grid_label(r["grid"])) in configs))]
    single = _find(rows, system="single")
    est = sum(RUN_START_S + (settings.frames + 1) * v for v in lats + ([single["latency_s"]] if single else []))
    for i in range(settings.rounds):
        if fits is not None and not fits(f"round {i + 1}", est):
            continue
        rec: dict[str, Any] = {"round": i + 1, "latency_s": {}}
        runs: list[tuple[str, Any]] = [("single", partial(run_single, settings, cfg, weights))]
        if settings.modnn:
            runs.append(("modnn", partial(run_modnn, settings, cfg, weights, kmax)))
        for sch, grid in configs:
            runs.append((f"ftp-{sch} {grid_label(grid)}",
                         partial(run_ftp, settings, cfg, weights, kmax, sch, grid, cache=cache)))
        for name, run in runs:
            try:
                rec["latency_s"][name] = run()["latency_s"]
            except RUN_ERRORS as exc:
                errors.append(f"round {i + 1} {name}: {exc}")
        one = rec["latency_s"].get("single")
        rec["speedup"] = {k: one / v for k, v in rec["latency_s"].items() if one and v and k != "single"}
        out.append(rec)
        progress(f"round {i + 1}/{settings.rounds}: " + ", ".join(f"{k} {v:.2f}x" for k, v in rec["speedup"].items()))
    return out


def rounds_summary(rounds: list[dict]) -> dict[str, Any]:
    """Median speedup per system over the rounds, and in how many rounds the best data-reuse
    configuration reached 4.0x and beat MoDNN."""
    names = sorted({k for r in rounds for k in r.get("speedup", {})})
    med = {k: statistics.median(v) for k in names
           if (v := [r["speedup"][k] for r in rounds if k in r.get("speedup", {})])}
    met = 0
    met_by = {k: 0 for k in names if k.startswith("ftp-")}
    for r in rounds:
        sp = r.get("speedup", {})
        ok = [k for k, v in sp.items() if k.startswith("ftp-") and "modnn" in sp and v >= 4.0 and v > sp["modnn"]]
        met += bool(ok)
        for k in ok:
            met_by[k] += 1
    ftp_names = [k for k in med if k.startswith("ftp-")]
    best = max(ftp_names, key=lambda k: med[k], default=None)
    # the goal names DeepThings' WST-S (overlap data through the gateway)
    wsts = max((k for k in ftp_names if k.startswith("ftp-wst-s ")), key=lambda k: med[k], default=None)
    return {"median": med, "met": met, "met_by": met_by, "n": len(rounds), "best": best, "best_wst_s": wsts}


def grid_label(grid: Sequence[int]) -> str:
    """'6x2', or '6x2b' for a grid whose cuts are balanced for the run's device count."""
    return f"{grid[0]}x{grid[1]}" + ("b" if _balanced(grid) else "")


def parse_grid_label(text: str) -> tuple[int, ...]:
    """'5x5' -> (5, 5); '6x2b' -> (6, 2, 1): balanced (uneven) cuts."""
    from deepthings.cli._args import parse_grid

    t = text.strip().lower()
    balanced = t.endswith("b")
    n, m = parse_grid(t[:-1] if balanced else t)
    return (n, m, 1) if balanced else (n, m)


def _balanced(grid: Sequence[int]) -> bool:
    return len(grid) > 2 and bool(grid[2])


def _ftp_throughput(*args: Any, **kwargs: Any) -> dict:
    row = run_ftp(*args, **kwargs)
    row["system"] = "ftp-throughput"
    return row


def _modnn_throughput(settings: Settings, cfg: Path, weights: Path, k: int, n: int) -> dict:
    row = run_modnn(settings, cfg, weights, k, frames=n)
    sources = max(settings.sources)
    # One frame at a time: S frames arriving together finish after S back-to-back frame times.
    row.update(system="modnn-throughput", sources=sources, latency_max_s=sum(row["latencies_s"][:sources]))
    return row


def _cost_model(cfg: Path, settings: Settings) -> dict:
    from deepthings.darknet import load_darknet
    from deepthings.ftp import FTP
    from deepthings.ftp.balance import SOURCE_LOAD, balanced_cuts

    net = load_darknet(cfg)
    out = {}
    for g in settings.grids:
        # the cuts the gateway makes for the data-source schedules (runtime.model.prepare)
        cuts = balanced_cuts(net, g[:2], settings.fused, settings.max_devices, source=SOURCE_LOAD) if _balanced(g) else None
        plan = FTP(net, grid=g[:2], fused_layers=settings.fused, cuts=cuts)
        c, cr = plan.cost(reuse=False), plan.cost(reuse=True)
        c_last, h_last, w_last = net.layers[settings.fused - 1].out_shape
        out[grid_label(g)] = {"device_bytes": c.device_bytes, "output_bytes": 4 * c_last * h_last * w_last, "redundancy": c.redundancy,
                                 "redundancy_reuse": cr.redundancy_reuse, "weight_bytes": c.weight_bytes,
                                 "peak_footprint_full": c.peak_footprint_full,
                                 "peak_footprint_tile": c.peak_footprint_tile,
                                 "peak_footprint_tile_reuse": cr.peak_footprint_tile_reuse}
    return out


def _machine() -> dict:
    import platform

    return {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "loadavg_at_end": os.getloadavg()}


# ----------------------------------------------------------------------------- outputs
CSV_FIELDS = ["system", "schedule", "grid", "devices", "sources", "latency_s", "latency_max_s", "latency_at_source_s", "speedup", "fps",
              "frames", "bytes_per_frame", "gateway_bytes_per_frame", "app_bytes_per_frame", "busiest_link",
              "busiest_link_s", "compute_s", "wait_s", "source_compute_share", "max_queue_s",
              "gateway_s", "stolen_fraction", "cpu_s_per_frame", "gateway_cpu_s_per_frame",
              "throttled_s_per_frame", "peak_mem_device_bytes"]


def write_outputs(rows: list[dict], meta: dict, out: Path) -> None:
    single = next((r for r in rows if r["system"] == "single"), None)
    for r in rows:
        r["speedup"] = single["latency_s"] / r["latency_s"] if single and r.get("latency_s") else None
        mems = [m for m in r.get("mem_peak_per_device", []) if m]
        r["peak_mem_device_bytes"] = max(mems) if mems else r.get("cgroup_mem_peak_bytes")
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items() if k in CSV_FIELDS})
    (out / "runs.json").write_text(json.dumps({"rows": rows, "meta": meta}, indent=1, default=str))
    plots = _plots(rows, meta, out)
    (out / "report.md").write_text(report_markdown(rows, meta, plots))


def _plots(rows: list[dict], meta: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    lat_rows = [r for r in rows if r["system"] in ("ftp", "modnn") and r["sources"] == 1]
    series: dict[str, list[tuple[int, dict]]] = {}
    for r in lat_rows:
        name = "MoDNN" if r["system"] == "modnn" else f"FTP-{r['schedule'].upper()} {r['grid']}"
        series.setdefault(name, []).append((r["devices"], r))
    if series:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for name, pts in sorted(series.items()):
            pts.sort(key=lambda p: p[0])
            style = "k-o" if name == "MoDNN" else ("-s" if "WST-S" in name else "--^" if "WSH" in name else ":o")
            axes[0].plot([p[0] for p in pts], [p[1]["speedup"] or 0 for p in pts], style, label=name, ms=4)
            axes[1].plot([p[0] for p in pts], [p[1]["bytes_per_frame"] / 1e6 for p in pts], style, label=name, ms=4)
        kmax = max(r["devices"] for r in lat_rows)
        axes[0].plot([1, kmax], [1, kmax], color="0.8", lw=1, label="linear")
        axes[0].set(xlabel="emulated devices", ylabel="speedup over one device", title="Latency speedup")
        axes[1].set(xlabel="emulated devices", ylabel="MB on the wire per frame", title="Communication")
        axes[0].legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(out / "speedup_comm.png", dpi=110)
        plt.close(fig)
        made.append("speedup_comm.png")
    thr = sorted((r for r in rows if r["system"] == "ftp-throughput"), key=lambda r: r["sources"])
    if thr:
        fig, ax = plt.subplots(1, 2, figsize=(11, 4))
        ax[0].plot([r["sources"] for r in thr], [r["fps"] for r in thr], "-s", label="FTP-WST-S")
        ax[1].plot([r["sources"] for r in thr], [r["latency_max_s"] for r in thr], "-s", label="FTP-WST-S")
        mod = next((r for r in rows if r["system"] == "modnn-throughput"), None)
        if mod:
            ax[0].axhline(mod["fps"], color="k", ls="--", label="MoDNN (one frame at a time)")
            ax[1].plot([mod["sources"]], [mod["latency_max_s"]], "ko", label=f"MoDNN, {mod['sources']} sources")
        ax[0].set(xlabel="data sources", ylabel="frames per second", title="Throughput")
        ax[1].set(xlabel="data sources", ylabel="worst latency (s)", title="Worst-case latency")
        ax[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "throughput.png", dpi=110)
        plt.close(fig)
        made.append("throughput.png")
    model = meta.get("cost_model", {})
    mem_rows = [r for r in rows if r["system"] == "ftp" and r["sources"] == 1 and r.get("peak_mem_device_bytes")]
    if mem_rows and model:
        fig, ax = plt.subplots(figsize=(7, 4))
        grids = sorted({r["grid"] for r in mem_rows})
        meas = [statistics.median(r["peak_mem_device_bytes"] for r in mem_rows if r["grid"] == g) / 1e6 for g in grids]
        idle = meta.get("idle_rss_bytes", 0) / 1e6
        pred = [model.get(g, {}).get("device_bytes", 0) / 1e6 for g in grids]
        x = range(len(grids))
        ax.bar([i - 0.2 for i in x], meas, 0.4, label="measured peak (cgroup)")
        ax.bar([i + 0.2 for i in x], [p + idle for p in pred], 0.4, label=f"cost model + idle process ({idle:.0f} MB)")
        ax.set_xticks(list(x), grids)
        ax.set(ylabel="MB per device", title="Peak memory per device")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "memory.png", dpi=110)
        plt.close(fig)
        made.append("memory.png")
    return made


def _find(rows: list[dict], **kw: Any) -> dict | None:
    for r in rows:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def _fmt(v: Any, spec: str = ".2f", unit: str = "") -> str:
    # Callers pass `a and b` chains: anything that is not a number means "not measured".
    return format(v, spec) + unit if isinstance(v, (int, float)) and not isinstance(v, bool) else "n/a"


def _analysis(rows: list[dict], meta: dict, kmax: int, points: list[tuple[str, str]]) -> list[str]:
    """Measured overheads against what the cost model says the work should be, for the
    (schedule, grid) ``points`` at kmax devices."""
    s = meta["settings"]
    single = _find(rows, system="single")
    out: list[str] = []
    if single is None:
        return out
    cpu_single = single["latency_s"] * s["cpu"]  # the device was busy the whole frame at its quota
    c, h, w = 3, s["size"], s["size"]
    for sch, grid in points:
        model = meta.get("cost_model", {}).get(grid, {})
        r = _find(rows, system="ftp", schedule=sch, grid=grid, devices=kmax, sources=1)
        if r is None or not r.get("cpu_s_per_frame"):
            continue
        red = model.get("redundancy_reuse" if sch in ("wst-s", "wst-sp") else "redundancy")
        out.append(
            f"- FTP-{sch.upper()} {grid}, {kmax} devices: all processes used {r['cpu_s_per_frame']:.2f} CPU s per frame, "
            f"{r['cpu_s_per_frame'] / cpu_single:.1f}x the single device's {cpu_single:.2f} s"
            + (f" (the cost model's redundancy predicts {1 + red:.2f}x)" if red is not None else "")
            + (f", of which the tiles themselves {r['tile_cpu_s_per_frame']:.2f} s (the rest is the runtime, "
               "messaging, the network stack and the gateway)" if r.get("tile_cpu_s_per_frame") else "")
            + f"; {r['bytes_per_frame'] / 1e6:.1f} MB crossed the links per frame "
            # the frames are 8-bit camera frames: the input crosses as 1 byte per value (q8)
            f"(the 8-bit input + the block's output alone: {(c * h * w + _out_bytes(meta)) / 1e6:.1f} MB)."
        )
    mod = _find(rows, system="modnn", devices=kmax)
    if mod and mod.get("cpu_s_per_frame"):
        out.append(f"- MoDNN, {kmax} devices: {mod['cpu_s_per_frame']:.2f} CPU s per frame "
                   f"(incl. the warm-up frame), {mod['bytes_per_frame'] / 1e6:.1f} MB per frame, "
                   f"{s['fused'] - 1} layer barriers per frame.")
    return (["## Where the overhead is", ""] + out + [""]) if out else []


def _rounds_section(meta: dict, kmax: int) -> list[str]:
    rounds = meta.get("rounds") or []
    if not rounds:
        return []
    summ = rounds_summary(rounds)
    names = ["modnn"] + sorted(k for k in summ["median"] if k.startswith("ftp-"))
    label = {"modnn": "MoDNN"} | {k: "FTP-" + k[4:].split()[0].upper() + " " + k.split()[1] for k in names[1:]}
    lines = [f"## Head to head: {summ['n']} rounds at {kmax} devices", "",
             "One device, MoDNN and the sweep's fastest FTP-WST-S and FTP-WST-SP configurations (with the next "
             f"fastest of each when within {round((ROUND_TIE - 1) * 100)}% of it), run back to back in each round; every "
             "speedup is against the same round's one-device run"
             + (f" ({meta['settings']['round_frames']} timed frames per run)."
                if meta.get("settings", {}).get("round_frames") else "."), "",
             "| round | one device | " + " | ".join(label[k] for k in names) + " |",
             "| --- | --- | " + " | ".join("---" for _ in names) + " |"]
    for r in rounds:
        one = r["latency_s"].get("single")
        cells = [_fmt(r["speedup"].get(k), unit="x") for k in names]
        lines.append(f"| {r['round']} | {_fmt(one, '.3f', 's')} | " + " | ".join(cells) + " |")
    lines.append("| median | | " + " | ".join(_fmt(summ["median"].get(k), unit="x") for k in names) + " |")
    mod = summ["median"].get("modnn")
    lines.append("")
    for key, what in (("best_wst_s", "FTP-WST-S (the goal's schedule)"),
                      ("best", "the best data-reuse configuration (per round: either one)")):
        name = summ.get(key)
        if name is None:
            lines += [f"Goal on the medians of the rounds, {what}: not measured in the rounds.", ""]
            continue
        b = summ["median"].get(name)
        ok = b is not None and mod is not None and b >= 4.0 and b > mod
        rounds_ok = summ["met"] if key == "best" else summ.get("met_by", {}).get(name, 0)
        lines.append(f"Goal on the medians of the rounds, {what}: {'MET' if ok else 'NOT met'} "
                     f"({label.get(name, 'n/a')} {_fmt(b, unit='x')} vs MoDNN {_fmt(mod, unit='x')}; "
                     f">= 4.0x and above MoDNN in {rounds_ok} of {summ['n']} rounds).")
        lines.append("")
    return lines


def _out_bytes(meta: dict) -> int:
    m = meta.get("cost_model", {})
    return int(next(iter(m.values()), {}).get("output_bytes", 0)) if m else 0


def _configs_of(s: dict) -> list[tuple[str, str]]:
    """(schedule, grid label) of a suite's FTP points (also from a runs.json of before configs)."""
    if "configs" in s:
        return [(sch, grid_label(g)) for sch, g in s["configs"]]
    return [(sch, grid_label(g)) for sch in s.get("schedules", []) for g in s.get("grids", [])]


def _fastest(rows: list[dict], schedule: str, k: int) -> dict | None:
    runs = [r for r in rows if r["system"] == "ftp" and r.get("schedule") == schedule and r.get("devices") == k
            and r.get("sources") == 1 and r.get("latency_s")]
    return min(runs, key=lambda r: r["latency_s"], default=None)


def _paper_grid(rows: list[dict], kmax: int) -> str | None:
    """The grid of the paper's comparisons (reuse vs none, WST-S vs WSH): among the grids with
    WST, WST-S and WSH measured at kmax, the one where WST-S was fastest."""
    cands = []
    for r in rows:
        if r["system"] == "ftp" and r.get("schedule") == "wst-s" and r.get("devices") == kmax and r.get("sources") == 1:
            if all(_find(rows, system="ftp", schedule=o, grid=r["grid"], devices=kmax, sources=1) for o in ("wst", "wsh")):
                cands.append(r)
    return min(cands, key=lambda r: r["latency_s"])["grid"] if cands else None


def report_markdown(rows: list[dict], meta: dict, plots: list[str]) -> str:
    s = meta["settings"]
    kmax = max(s["devices"])
    configs = _configs_of(s)
    grids = list(dict.fromkeys(g for _, g in configs))
    lines = [
        "# DeepThings' experiments on the emulated testbed",
        "",
        f"YOLOv2 layers 0..{s['fused'] - 1} at {s['size']}x{s['size']} (random weights; the frame is the sample "
        "photo resized to the input size in 8 bits, as a camera delivers it, so it travels as 8-bit codes), "
        f"devices emulated as network namespaces, each capped at {s['cpu']} cores (cgroup CFS quota, "
        f"{s.get('cpu_period_ms', 100.0):g} ms period), "
        f"links {s['rate'] or 'unshaped'}{' + ' + s['delay'] if s['delay'] else ''} per direction (tc htb"
        f"{'; delay and loss: netem, or a delay line and a BPF filter' if s['delay'] or s['loss'] else ''}), gateway "
        f"{'uncapped' if s['gateway_cpu'] is None else str(s['gateway_cpu']) + ' cores'}"
        f"{'; testbed cgroups have CPU priority over other work' if s.get('guarantee_cpu') else ''}. "
        f"{s['frames']} timed frames per point after a warm-up frame; median latency, from the moment the "
        "data source has the frame until the gateway holds the merged block output (where DeepThings' gateway "
        "runs the remaining layers; it never sends the block back), as MoDNN's latency is measured "
        "(its gateway holds the frame and the result); the table of where the time goes also gives FTP's "
        "latency at the source, with the block output's trip back. "
        f"Machine: {meta['machine']['cpus']} CPUs, kernel {meta['machine']['kernel']}; "
        f"suite took {meta['suite_s']:.0f} s; load average {meta.get('loadavg_at_start', [0])[0]:.1f} at the start, "
        f"{meta['machine']['loadavg_at_end'][0]:.1f} at the end (CPU quotas are upper bounds: other load on the "
        "machine slows the emulated devices further).",
        "",
    ]
    single = _find(rows, system="single")
    if single:
        lines += [f"One emulated device: {single['latency_s']:.3f} s per frame "
                  f"({single['gflop']:.1f} GFLOP, {single['gflop'] / single['latency_s']:.1f} GFLOP/s at "
                  f"{s['cpu']} cores).", ""]
    # Paper vs ours: each data-reuse schedule on its fastest grid; the paper's ratios on one grid.
    wsts = _fastest(rows, "wst-s", kmax)
    wstsp = _fastest(rows, "wst-sp", kmax)
    pg = _paper_grid(rows, kmax)
    wsts_pg = _find(rows, system="ftp", schedule="wst-s", grid=pg, devices=kmax, sources=1) if pg else None
    wst = _find(rows, system="ftp", schedule="wst", grid=pg, devices=kmax, sources=1) if pg else None
    wsh = _find(rows, system="ftp", schedule="wsh", grid=pg, devices=kmax, sources=1) if pg else None
    mod = _find(rows, system="modnn", devices=kmax)
    thr = sorted((r for r in rows if r["system"] == "ftp-throughput"), key=lambda r: r["sources"])
    thr_max = thr[-1] if thr else None
    mod_thr = _find(rows, system="modnn-throughput")
    reuse_cut = (1 - wsts_pg["latency_s"] / wst["latency_s"]) if wsts_pg and wst else None
    # The goal is judged on the best data-reuse run at kmax devices over the grids measured:
    # DeepThings' WST-S (overlap data via the gateway) or ours, WST-SP (peer to peer).
    reuse_runs = [r for r in rows if r["system"] == "ftp" and r.get("schedule") in ("wst-s", "wst-sp")
                  and r.get("devices") == kmax and r.get("sources") == 1 and r.get("speedup")]
    top = max(reuse_runs, key=lambda r: r["speedup"], default=None)
    top_name = f"FTP-{top['schedule'].upper()} {top['grid']}" if top else "FTP-WST-S"
    comm = (wsts_pg["bytes_per_frame"] / wsh["bytes_per_frame"]) if wsts_pg and wsh and wsh["bytes_per_frame"] else None
    # Speedups: the rounds' medians where there are rounds (each against its own round's one
    # device), the sweep's single run beside them (against the sweep's one single-device run).
    summ = rounds_summary(meta.get("rounds") or [])
    med = summ["median"] if summ["n"] else {}

    def best_round(prefix: str) -> str | None:
        return max((k for k in med if k.startswith(prefix)), key=lambda k: med[k], default=None)

    def speedup_cell(round_key: str | None, run: dict | None) -> str:
        grid = f" ({run['grid']})" if run and run.get("system") == "ftp" else ""
        sweep = f"{_fmt(run and run['speedup'], unit='x')}{grid}"
        if round_key is None or round_key not in med:
            return sweep
        where = f"{round_key.split()[1]}, " if " " in round_key else ""
        return f"{med[round_key]:.2f}x ({where}median of {summ['n']} rounds; sweep: {sweep})"

    r_wsts, r_wstsp = best_round("ftp-wst-s "), best_round("ftp-wst-sp ")
    r_ratio = med[r_wsts] / med["modnn"] if r_wsts and "modnn" in med else None
    lines += [
        f"## Paper vs this run ({kmax} devices)",
        "",
        "| metric | paper (Pi 3, WLAN) | this run |",
        "| --- | --- | --- |",
        f"| speedup FTP-WST-S (its fastest grid) | {PAPER['speedup_6_ftp_wst_s']}x (6 devices) | "
        f"{speedup_cell(r_wsts, wsts)} |",
        f"| speedup FTP-WST-SP (ours: overlap data peer to peer) | n/a | {speedup_cell(r_wstsp, wstsp)} |",
        f"| speedup MoDNN | {PAPER['speedup_6_modnn']}x | "
        f"{speedup_cell('modnn', mod)} |",
        f"| FTP-WST-S / MoDNN speedup ratio | {PAPER['speedup_6_ftp_wst_s'] / PAPER['speedup_6_modnn']:.2f} | "
        + (f"{r_ratio:.2f} (rounds; sweep: {_fmt(wsts and mod and wsts['speedup'] / mod['speedup'])})"
           if r_ratio is not None else _fmt(wsts and mod and wsts['speedup'] / mod['speedup'])) + " |",
        f"| latency cut by data reuse (WST-S vs WST, grid {pg or 'n/a'}) | {PAPER['reuse_latency_cut']:.0%} | "
        f"{_fmt(reuse_cut * 100 if reuse_cut is not None else None, '.0f', '%')} |",
        f"| communication WST-S / WSH (grid {pg or 'n/a'}) | {PAPER['wsts_vs_wsh_comm']:.2f} | {_fmt(comm)} |",
        f"| throughput, {max(s['sources'])} sources: DeepThings / MoDNN (FPS) | "
        f"{PAPER['fps_6_sources_deepthings']} / {PAPER['fps_6_sources_modnn']} "
        f"(ratio {PAPER['fps_6_sources_deepthings'] / PAPER['fps_6_sources_modnn']:.2f}) | "
        f"{_fmt(thr_max and thr_max['fps'])} / {_fmt(mod_thr and mod_thr['fps'])} (ratio "
        f"{_fmt(thr_max and mod_thr and thr_max['fps'] / mod_thr['fps'])}) |",
        "",
        "Compare ratios, not absolute times: a Pi 3 core and its WLAN are not this machine's.",
        "",
        *_rounds_section(meta, kmax),
        f"Goal in the sweep (one run per point): FTP-WST-S speedup at {kmax} devices >= 4.0x and above MoDNN's: "
        f"{'MET' if wsts and mod and wsts['speedup'] >= 4.0 and wsts['speedup'] > mod['speedup'] else 'NOT met'}"
        f" (FTP-WST-S {wsts['grid'] if wsts else ''} {_fmt(wsts and wsts['speedup'], unit='x')}; "
        f"best data-reuse run: {top_name} {_fmt(top and top['speedup'], unit='x')} vs MoDNN "
        f"{_fmt(mod and mod['speedup'], unit='x')}; WST-S = DeepThings' overlap exchange through the gateway, "
        "WST-SP = ours, peer to peer).",
        "",
        *_analysis(rows, meta, kmax, [(r["schedule"], r["grid"]) for r in (wsts, wstsp, wst, wsh) if r]),
        "## Latency and speedup (1 data source)",
        "",
        "| system | grid | " + " | ".join(f"{k} dev" for k in s["devices"]) + " |",
        "| --- | --- | " + " | ".join("---" for _ in s["devices"]) + " |",
    ]
    combos = [("modnn", "bodp", "1d")] + [("ftp", sch, g) for sch, g in configs]
    for system, sch, g in combos:
        cells = []
        for k in s["devices"]:
            r = _find(rows, system=system, schedule=sch, grid=g, devices=k, sources=1)
            cells.append("-" if r is None else f"{r['latency_s']:.3f}s ({_fmt(r['speedup'], unit='x')})")
        name = "MoDNN" if system == "modnn" else f"FTP-{sch.upper()}"
        lines.append(f"| {name} | {g} | " + " | ".join(cells) + " |")
    lines += ["", "## Bytes on the wire per frame (all links, measured on the bridge ports)", "",
              "| system | grid | " + " | ".join(f"{k} dev" for k in s["devices"]) + " |",
              "| --- | --- | " + " | ".join("---" for _ in s["devices"]) + " |"]
    for system, sch, g in combos:
        cells = []
        for k in s["devices"]:
            r = _find(rows, system=system, schedule=sch, grid=g, devices=k, sources=1)
            cells.append("-" if r is None else f"{r['bytes_per_frame'] / 1e6:.2f} MB")
        name = "MoDNN" if system == "modnn" else f"FTP-{sch.upper()}"
        lines.append(f"| {name} | {g} | " + " | ".join(cells) + " |")
    lines += ["", f"## Where the time goes ({kmax} devices, median per frame)", "",
              "| system | grid | latency | at the source | busiest device compute | gateway merge | transfer + waiting | "
              "busiest link: bytes/rate | stolen tiles | source's share of tile compute | longest tile queue wait | "
              "CPU s/frame (all) | gateway CPU s/frame |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for system, sch, g in combos:
        r = _find(rows, system=system, schedule=sch, grid=g, devices=kmax, sources=1)
        if r is None:
            continue
        comp = r.get("compute_s")
        rest = r["latency_s"] - (comp or 0) - (r.get("gateway_s") or 0)
        name = "MoDNN" if system == "modnn" else f"FTP-{sch.upper()}"
        lines.append(f"| {name} | {g} | {r['latency_s']:.3f}s | {_fmt(r.get('latency_at_source_s'), '.3f', 's')} | "
                     f"{_fmt(comp, '.3f', 's')} | "
                     f"{_fmt(r.get('gateway_s'), '.3f', 's')} | {rest:.3f}s | "
                     f"{r.get('busiest_link', '?')}: {_fmt(r.get('busiest_link_s'), '.3f', 's')} | "
                     f"{_fmt(r.get('stolen_fraction'), '.0%')} | {_fmt(r.get('source_compute_share'), '.0%')} | "
                     f"{_fmt(r.get('max_queue_s'), '.3f', 's')} | "
                     f"{_fmt(r.get('cpu_s_per_frame'), '.2f')} | {_fmt(r.get('gateway_cpu_s_per_frame'), '.2f')} |")
    if thr or mod_thr:
        cfg_name = f"FTP-{thr[0]['schedule'].upper()} {thr[0]['grid']}" if thr else "FTP-WST-S"
        lines += ["", f"## Throughput with several data sources ({kmax} devices, {cfg_name})", "",
                  "FPS in steady state: frames finished between every source's warm-up frame being done and "
                  "the first source submitting its last frame, over that window (two frames in flight per "
                  "source); MoDNN's: frames over the sum of their latencies.", "",
                  "| sources | FPS | worst latency | median latency |", "| --- | --- | --- | --- |"]
        for r in thr:
            lines.append(f"| {r['sources']} | {r['fps']:.3f} | {r['latency_max_s']:.2f}s | {r['latency_s']:.2f}s |")
        if mod_thr:
            lines.append(f"| MoDNN, {mod_thr['sources']} (frames one at a time) | {mod_thr['fps']:.3f} | "
                         f"{mod_thr['latency_max_s']:.2f}s | {mod_thr['latency_s']:.2f}s |")
    model = meta.get("cost_model", {})
    if model:
        lines += ["", "## Memory per device: measured vs the FTP cost model", "",
                  f"Idle process with the runtime imported: {meta.get('idle_rss_bytes', 0) / 1e6:.0f} MB.", "",
                  "| grid | cost model (weights + largest tile layer) | measured peak per device (median over runs, "
                  "cgroup) | unpartitioned peak layer footprint | redundancy (FLOPs) | with reuse |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for g in grids:
            m = model.get(g)
            if not m:
                continue
            meas = [r["peak_mem_device_bytes"] for r in rows
                    if r["system"] == "ftp" and r["grid"] == g and r.get("peak_mem_device_bytes")]
            lines.append(f"| {g} | {m['device_bytes'] / 1e6:.1f} MB | "
                         f"{_fmt(meas and statistics.median(meas) / 1e6, '.0f', ' MB')} | "
                         f"{m['peak_footprint_full'] / 1e6:.1f} MB | {m['redundancy']:.1%} | {m['redundancy_reuse']:.1%} |")
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    if meta.get("skipped"):
        lines += ["", f"## Skipped to stay within the {s.get('budget_s') or 0:.0f} s time budget", ""] + \
                 [f"- {w}" for w in meta["skipped"]]
    if meta.get("errors"):
        lines += ["", "## Runs that failed", ""] + [f"- {e.splitlines()[0]}" for e in meta["errors"]]
    lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- entry point
def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="paper_experiments", description=__doc__,
                                          formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small CI version (224x224, 1..2 devices, one grid)")
    p.add_argument("--cfg", default=None, help="Darknet cfg (default: ../shared/models/darknet/yolov2.cfg)")
    p.add_argument("--size", type=int, default=None, help="input size (default 608; 224 with --quick)")
    p.add_argument("--devices", default=None, help="device counts, e.g. 1,2,3,4,5,6")
    p.add_argument("--schedules", default=None,
                   help="wst,wst-s,wst-sp,wsh: run these on every grid (default: the paper's three on "
                        "3x3,4x4,5x5 and the data-reuse ones on 6x2b,12x1b)")
    p.add_argument("--grids", default=None, help="3x3,5x5,6x2,6x2b (NxMb: cuts balanced for the device count)")
    p.add_argument("--sources", default=None, help="data-source counts for the throughput runs")
    p.add_argument("--frames", type=int, default=None, help="timed frames per latency point")
    p.add_argument("--cpu", type=float, default=None, help="CPU cap per device in cores (default 0.25)")
    p.add_argument("--cpu-period", type=float, default=None, metavar="MS",
                   help="CFS period of the CPU caps in ms (default 100)")
    p.add_argument("--gateway-cpu", type=float, default=None, help="CPU cap of the gateway (default none)")
    p.add_argument("--rate", default=None, help="link rate per direction (default 100mbit)")
    p.add_argument("--delay", default=None, help="one-way link delay per direction (netem, else a delay line)")
    p.add_argument("--out", default=None, help="output directory (default benchmarks/results/paper)")
    p.add_argument("--no-guarantee-cpu", action="store_true",
                   help="do not give the emulated devices CPU priority over other work on the machine")
    p.add_argument("--report-only", default=None, metavar="DIR",
                   help="re-render DIR/report.md, CSV and plots from DIR/runs.json (no root, no runs)")
    p.add_argument("--rounds", type=int, default=None,
                   help="head-to-head rounds after the sweep (one device, MoDNN, the best WST-S and WST-SP configs)")
    p.add_argument("--round-frames", type=int, default=None,
                   help="timed frames per run in the rounds (default 6, at least --frames)")
    p.add_argument("--budget", type=float, default=None, metavar="MIN",
                   help="start no run that would end past this many minutes (default 19; 0: no limit)")
    p.add_argument("--no-modnn", action="store_true")
    p.add_argument("--no-ftp", action="store_true")
    return p


def _default_cfg() -> str:
    here = Path(__file__).resolve()
    for base in [Path(os.environ.get("DEEPTHINGS_SHARED", "")), here.parents[3].parent / "shared",
                 Path.cwd().parent / "shared", Path("/work/shared")]:
        cfg = base / "models" / "darknet" / "yolov2.cfg"
        if cfg.is_file():
            return str(cfg)
    raise EmulationError("yolov2.cfg not found: pass --cfg or set DEEPTHINGS_SHARED")


def settings_from_args(args: argparse.Namespace) -> Settings:
    s = Settings(cfg=args.cfg or _default_cfg())
    if args.quick:
        s.size, s.devices, s.sources = 224, [1, 2], [1, 2]
        s.configs = [(sch, (3, 3)) for sch in SCHEDULES]
        s.frames, s.frames_per_source = 2, 2
        s.rounds, s.round_frames = 1, 2
        s.timeout_s = 90.0
        s.out = "benchmarks/results/paper-quick"
    if args.size:
        s.size = args.size
    if args.devices:
        s.devices = [int(v) for v in args.devices.split(",")]
    if args.schedules or args.grids:
        # every schedule on every grid (the defaults for whichever is not given)
        schedules = args.schedules.split(",") if args.schedules else list(dict.fromkeys(c[0] for c in s.configs))
        for sch in schedules:
            if sch not in SCHEDULES:
                raise SystemExit(f"--schedules: unknown schedule {sch!r} (choose from {', '.join(SCHEDULES)})")
        grids = [parse_grid_label(g) for g in args.grids.split(",")] if args.grids else s.grids
        s.configs = [(sch, g) for sch in schedules for g in grids]
    if args.budget is not None:
        s.budget_s = None if args.budget <= 0 else args.budget * 60.0
    if args.sources:
        s.sources = [int(v) for v in args.sources.split(",")]
    if args.frames:
        s.frames = args.frames
    if args.cpu:
        s.cpu = args.cpu
    if args.cpu_period:
        s.cpu_period_ms = args.cpu_period
    s.gateway_cpu = args.gateway_cpu
    if args.rate:
        s.rate = args.rate
    s.delay = args.delay
    if args.out:
        s.out = args.out
    s.guarantee_cpu = not args.no_guarantee_cpu
    if args.round_frames is not None:
        if args.round_frames < 1:
            raise SystemExit("--round-frames must be >= 1")
        s.round_frames = args.round_frames
    if args.rounds is not None:
        if args.rounds < 0:
            raise SystemExit("--rounds must be >= 0")
        s.rounds = args.rounds
    s.modnn = not args.no_modnn
    s.ftp = not args.no_ftp
    return s


def main(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    args = build_parser(parser).parse_args(argv)
    return run_from_args(args)


def rerender(directory: str | Path) -> None:
    """Rewrite the CSV, plots and report of a finished suite from its runs.json."""
    d = Path(directory)
    data = json.loads((d / "runs.json").read_text())
    meta = data["meta"]
    for g, m in meta.get("cost_model", {}).items():
        if "output_bytes" not in m:  # runs.json from before output_bytes was recorded
            s = meta["settings"]
            from deepthings.darknet import network_from_cfg_text

            net = network_from_cfg_text(truncated_cfg(s["cfg"], s["fused"], s["size"]), random_seed=None)
            c, h, w = net.layers[-1].out_shape
            m["output_bytes"] = 4 * c * h * w
    write_outputs(data["rows"], meta, d)


def run_from_args(args: argparse.Namespace) -> int:
    from deepthings.testbed.testbed import require_root

    if args.report_only:
        rerender(args.report_only)
        print(f"re-rendered {Path(args.report_only) / 'report.md'}")
        return 0
    require_root()
    settings = settings_from_args(args)
    result = run_suite(settings, progress=lambda m: print(m, flush=True))
    out = Path(settings.out)
    print(f"wrote {out / 'results.csv'}, {out / 'report.md'} and plots; {len(result['meta']['errors'])} runs failed")
    return 0 if result["rows"] else 1
