"""The paper-experiments driver: cfg cutting, the report/CSV/plots from rows, MoDNN across
namespaces, and the --quick suite end to end (root)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deepthings.darknet import network_from_cfg_text
from deepthings.testbed import experiments as ex

from testbed_helpers import needs_root

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(__import__("os").environ.get("DEEPTHINGS_SHARED", REPO.parent / "shared"))
YOLOV2 = SHARED / "models" / "darknet" / "yolov2.cfg"
ALL_3X3 = [(sch, (3, 3)) for sch in ex.SCHEDULES]


def test_truncated_cfg():
    text = ex.truncated_cfg(str(YOLOV2), 16, 96)
    net = network_from_cfg_text(text, random_seed=None, name="cut.cfg")
    assert len(net.layers) == 16 and net.input_shape == (3, 96, 96)
    assert net.layers[-1].out_shape == (256, 6, 6)
    assert net.head_layers == []
    with pytest.raises(Exception, match="only"):
        ex.truncated_cfg(str(YOLOV2), 500, 96)


def _rows() -> list[dict]:
    # Invented inputs for the formatter: the numbers only need to be distinct and consistent.
    rows = [{"system": "single", "schedule": "", "grid": "", "devices": 1, "sources": 1, "latency_s": 2.0,
             "latency_max_s": 2.1, "frames": 2, "fps": 0.5, "bytes_per_frame": 0, "gflop": 26.0,
             "cgroup_mem_peak_bytes": 200e6}]
    for k in (1, 2):
        rows.append({"system": "modnn", "schedule": "bodp", "grid": "1d", "devices": k, "sources": 1,
                     "latency_s": 2.0 / (0.9 * k), "latency_max_s": 2.5, "frames": 2, "fps": 0.45 * k,
                     "bytes_per_frame": 1e6 * k, "compute_s": 1.0, "wait_s": 0.3, "gateway_s": 0.01,
                     "mem_peak_per_device": [150e6] * k})
        for sch, f in (("wst", 1.2), ("wst-s", 1.6), ("wst-sp", 2.1), ("wsh", 1.1)):
            rows.append({"system": "ftp", "schedule": sch, "grid": "3x3", "devices": k, "sources": 1,
                         "latency_s": 2.0 / (f * k), "latency_max_s": 2.0, "frames": 2, "fps": f * k / 2,
                         "bytes_per_frame": 3e6 if sch == "wsh" else 1.5e6, "compute_s": 0.8, "gateway_s": 0.02,
                         "stolen_fraction": 0.5, "cpu_s_per_frame": 1.0, "gateway_cpu_s_per_frame": 0.1,
                         "mem_peak_per_device": [120e6] * k})
    for s in (1, 2):
        rows.append({"system": "ftp-throughput", "schedule": "wst-s", "grid": "3x3", "devices": 2, "sources": s,
                     "latency_s": 1.0 * s, "latency_max_s": 1.2 * s, "frames": 2 * s, "fps": 1.5,
                     "bytes_per_frame": 1e6})
    rows.append({"system": "modnn-throughput", "schedule": "bodp", "grid": "1d", "devices": 2, "sources": 2,
                 "latency_s": 1.1, "latency_max_s": 1.2, "frames": 4, "fps": 0.9, "bytes_per_frame": 2e6})
    return rows


def test_outputs_from_rows(tmp_path):
    settings = ex.Settings(cfg=str(YOLOV2), devices=[1, 2], configs=ALL_3X3, sources=[1, 2], out=str(tmp_path))
    meta = {"settings": ex.asdict(settings), "errors": ["FTP wsh 3x3 k=1: boom"], "suite_s": 12.0,
            "loadavg_at_start": [1.0, 1.0, 1.0], "idle_rss_bytes": 90e6, "paper": ex.PAPER,
            "machine": {"cpus": 2, "kernel": "x", "python": "3.11", "loadavg_at_end": [1.0, 1.0, 1.0]},
            "cost_model": {"3x3": {"device_bytes": 30e6, "redundancy": 0.5, "redundancy_reuse": 0.07,
                                   "weight_bytes": 14e6, "peak_footprint_full": 40e6,
                                   "peak_footprint_tile": 10e6, "peak_footprint_tile_reuse": 9e6}}}
    rows = _rows()
    ex.write_outputs(rows, meta, tmp_path)
    with open(tmp_path / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    wsts2 = next(r for r in table if r["system"] == "ftp" and r["schedule"] == "wst-s" and r["devices"] == "2")
    assert float(wsts2["speedup"]) == pytest.approx(3.2)  # 2.0 s single / (2.0 / 3.2) s
    report = (tmp_path / "report.md").read_text()
    assert "| speedup FTP-WST-S (its fastest grid) | 3.5x (6 devices) | 3.20x (3x3) |" in report
    assert "| speedup MoDNN | 2.1x | 1.80x |" in report
    assert "| speedup FTP-WST-SP (ours: overlap data peer to peer) | n/a | 4.20x (3x3) |" in report
    # the goal names WST-S (3.2x: not met); the best data-reuse run (WST-SP 4.2x) is shown beside it
    assert "and above MoDNN's: NOT met (FTP-WST-S 3x3 3.20x; best data-reuse run: FTP-WST-SP 3x3 4.20x vs MoDNN 1.80x" in report
    rows = _rows()
    for r in rows:
        if r.get("schedule") == "wst-s":
            r["latency_s"] /= 1.5  # 4.8x
    ex.write_outputs(rows, meta, tmp_path)
    assert "and above MoDNN's: MET (FTP-WST-S 3x3 4.80x" in (tmp_path / "report.md").read_text()
    ex.write_outputs(_rows(), meta, tmp_path)
    assert "| communication WST-S / WSH (grid 3x3) | 0.50 | 0.50 |" in report
    assert "latency cut by data reuse (WST-S vs WST, grid 3x3) | 27% | 25% |" in report
    assert "FTP wsh 3x3 k=1: boom" in report
    for png in ("speedup_comm.png", "throughput.png", "memory.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "runs.json").read_text())["meta"]["suite_s"] == 12.0


@needs_root
def test_modnn_across_namespaces(tmp_path):
    """MoDNN gateway and workers in separate emulated devices give the single-device output."""
    from deepthings.testbed import Testbed, device_specs

    cfg = tmp_path / "y96.cfg"
    cfg.write_text(ex.truncated_cfg(str(YOLOV2), 16, 96))
    with Testbed(device_specs(2, cpu="0.5", rate="200mbit", device_cpu="0.5,0.3")) as tb:
        addr = f"{tb.address('gw')}:5601"
        mod = [sys.executable, "-m", "deepthings.baselines.modnn_net"]
        for i, speed in enumerate(("5", "3")):
            tb.spawn(i, mod + ["worker", "--gateway", addr, "--speed", speed], env=ex._env())
        r = tb.run("gw", mod + ["gateway", "--bind", addr, "--workers", "2", "--cfg", str(cfg), "--fused", "16",
                                "--frames", "1", "--engine", "reference", "--check"],
                   capture_output=True, text=True, env=ex._env(), timeout=240)
        assert r.returncode == 0, r.stderr
        res = json.loads(r.stdout.strip().splitlines()[-1])
        assert res["max_abs_err"] <= 1e-5 * res["max_abs_ref"]
        assert tb.link_bytes()["gw"]["down"] >= res["traces"][0]["bytes_received"]


@needs_root
@pytest.mark.slow
def test_quick_suite(tmp_path):
    from deepthings.testbed import leftovers

    before = set(leftovers().prefixes)
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "paper_experiments.py"), "--quick",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    with open(tmp_path / "results.csv") as f:
        table = list(csv.DictReader(f))
    systems = {(r["system"], r["schedule"], r["devices"]) for r in table}
    assert ("single", "", "1") in systems and ("modnn", "bodp", "2") in systems
    assert any(s[0] == "ftp" and s[2] == "2" for s in systems)
    single = next(r for r in table if r["system"] == "single")
    assert float(single["latency_s"]) > 0 and float(single["speedup"]) == pytest.approx(1.0)
    assert all(float(r["bytes_per_frame"]) > 0 for r in table if r["system"] != "single")
    # FTP latency ends at the gateway's merged output; at the source it also has the trip back
    ftp_rows = [r for r in table if r["system"] == "ftp"]
    assert ftp_rows and all(0 < float(r["latency_s"]) < float(r["latency_at_source_s"]) for r in ftp_rows)
    report = (tmp_path / "report.md").read_text()
    assert "Paper vs this run" in report and (tmp_path / "speedup_comm.png").exists()
    rounds = json.loads((tmp_path / "runs.json").read_text())["meta"]["rounds"]
    assert len(rounds) == 1 and rounds[0]["latency_s"]["single"] > 0
    assert any(k.startswith("ftp-") for k in rounds[0]["speedup"]) and "modnn" in rounds[0]["speedup"]
    assert "## Head to head: 1 rounds at 2 devices" in report
    # Every testbed of the suite is gone (its owner has exited, so anything left would be a
    # leftover; live runs of other processes on this machine are not).
    assert set(leftovers().prefixes) <= before


def test_busiest_link():
    link = {"gw": {"up": 1_000_000, "down": 4_000_000}, "d0": {"up": 3_000_000, "down": 500_000}}
    name, seconds = ex._busiest_link(link, frames=2, rate="8mbit")
    assert name == "gw down" and seconds == pytest.approx(2_000_000 * 8 / 8e6)
    assert ex._busiest_link(link, 1, None)[1] is None


def test_outputs_without_ftp_rows(tmp_path):
    """A suite run with --no-ftp (or whose FTP runs all failed) still renders, with n/a cells."""
    settings = ex.Settings(cfg=str(YOLOV2), devices=[1, 2], configs=ALL_3X3, sources=[1, 2], out=str(tmp_path))
    meta = {"settings": ex.asdict(settings), "errors": [], "suite_s": 1.0, "idle_rss_bytes": 0,
            "machine": {"cpus": 2, "kernel": "x", "python": "3.11", "loadavg_at_end": [0.0] * 3},
            "cost_model": {"3x3": {"device_bytes": 1, "redundancy": 0.5, "redundancy_reuse": 0.1, "weight_bytes": 1,
                                   "peak_footprint_full": 1, "peak_footprint_tile": 1,
                                   "peak_footprint_tile_reuse": 1, "output_bytes": 4}}}
    ex.write_outputs([r for r in _rows() if not r["system"].startswith("ftp")], meta, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "| speedup FTP-WST-S (its fastest grid) | 3.5x (6 devices) | n/a |" in report
    assert "| speedup MoDNN | 2.1x | 1.80x |" in report


def test_rounds_summary_and_report(tmp_path):
    """Rounds: speedups per round against that round's single run; the goal on the medians, and
    the count of rounds in which the best reuse configuration met it."""
    def rnd(i, one, mod, a, b):
        lat = {"single": one, "modnn": mod, "ftp-wst-s 12x1b": a, "ftp-wst-sp 6x2b": b}
        return {"round": i, "latency_s": lat, "speedup": {k: one / v for k, v in lat.items() if k != "single"}}

    rounds = [rnd(1, 1.2, 0.30, 0.28, 0.35), rnd(2, 1.6, 0.38, 0.36, 0.42), rnd(3, 1.0, 0.28, 0.27, 0.24)]
    summ = ex.rounds_summary(rounds)
    assert summ["n"] == 3 and summ["best"] == "ftp-wst-s 12x1b"
    assert summ["median"]["ftp-wst-s 12x1b"] == pytest.approx(1.2 / 0.28)
    assert summ["median"]["modnn"] == pytest.approx(1.2 / 0.30)  # 4.0x
    # round 1: 4.29x > 4.0x (MoDNN 4.0x); round 2: 4.44x > 4.21x; round 3: best is WST-SP 4.17x > 3.57x
    assert summ["met"] == 3
    rounds[2] = rnd(3, 1.0, 0.24, 0.27, 0.26)  # MoDNN 4.17x beats both
    assert ex.rounds_summary(rounds)["met"] == 2
    settings = ex.Settings(cfg=str(YOLOV2), devices=[1, 6], configs=[("wst-s", (12, 1, 1)), ("wst-sp", (6, 2, 1))],
                           sources=[1], out=str(tmp_path))
    meta = {"settings": ex.asdict(settings), "errors": [], "suite_s": 1.0, "idle_rss_bytes": 0, "rounds": rounds,
            "machine": {"cpus": 2, "kernel": "x", "python": "3.11", "loadavg_at_end": [0.0] * 3}}
    ex.write_outputs([r for r in _rows() if r["system"] == "single"], meta, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "## Head to head: 3 rounds at 6 devices" in report
    assert "| 1 | 1.200s | 4.00x | 4.29x | 3.43x |" in report
    assert ("Goal on the medians of the rounds, FTP-WST-S (the goal's schedule): MET (FTP-WST-S 12x1b 4.29x vs "
            "MoDNN 4.17x; >= 4.0x and above MoDNN in 2 of 3 rounds)") in report
    assert "the best data-reuse configuration (per round: either one): MET (FTP-WST-S 12x1b 4.29x" in report
    assert "vs MoDNN 4.17x; >= 4.0x and above MoDNN in 2 of 3 rounds)" in report
    assert ex.rounds_summary(rounds)["met_by"] == {"ftp-wst-s 12x1b": 2, "ftp-wst-sp 6x2b": 0}
    # The paper table gives the rounds' medians (no sweep rows here: the sweep's cells are n/a)
    assert "| speedup FTP-WST-S (its fastest grid) | 3.5x (6 devices) | 4.29x (12x1b, median of 3 rounds; sweep: n/a) |" in report
    assert "| speedup FTP-WST-SP (ours: overlap data peer to peer) | n/a | 3.81x (6x2b, median of 3 rounds; sweep: n/a) |" in report
    assert "| speedup MoDNN | 2.1x | 4.17x (median of 3 rounds; sweep: n/a) |" in report
    assert "| FTP-WST-S / MoDNN speedup ratio | 1.67 | 1.03 (rounds; sweep: n/a) |" in report


def test_default_points_and_cli_overrides():
    """The default sweep holds the paper's three schedules on 3x3, 4x4 and 5x5 and the data-reuse
    ones on the balanced strips; --schedules/--grids give every schedule on every grid."""
    parser = ex.build_parser()
    s = ex.settings_from_args(parser.parse_args(["--cfg", str(YOLOV2)]))
    for sch in ("wst", "wst-s", "wsh"):
        for g in ((3, 3), (4, 4), (5, 5)):
            assert (sch, g) in s.configs
    assert ("wst-sp", (12, 1, 1)) in s.configs and ("wst-s", (6, 2, 1)) in s.configs
    assert s.budget_s == 1140.0 and s.grids[:3] == [(3, 3), (4, 4), (5, 5)]
    s = ex.settings_from_args(parser.parse_args(["--cfg", str(YOLOV2), "--schedules", "wst-s,wsh", "--grids", "12x1b,3x3",
                                                 "--budget", "0"]))
    assert s.configs == [("wst-s", (12, 1, 1)), ("wst-s", (3, 3)), ("wsh", (12, 1, 1)), ("wsh", (3, 3))]
    assert s.budget_s is None and s.round_frames == 6
    s = ex.settings_from_args(parser.parse_args(["--cfg", str(YOLOV2), "--round-frames", "9"]))
    assert s.round_frames == 9
    with pytest.raises(SystemExit, match="round-frames"):
        ex.settings_from_args(parser.parse_args(["--cfg", str(YOLOV2), "--round-frames", "0"]))
    with pytest.raises(SystemExit, match="unknown schedule"):
        ex.settings_from_args(parser.parse_args(["--cfg", str(YOLOV2), "--schedules", "wst-x"]))
    rows = [{"system": "ftp", "schedule": sch, "grid": g, "devices": 6, "sources": 1, "latency_s": lat}
            for sch, g, lat in (("wst-s", "3x3", 0.5), ("wst-s", "12x1b", 0.4), ("wst-sp", "6x2b", 0.3),
                                ("wst-sp", "12x1b", 0.33), ("wst", "3x3", 0.2))]
    # the fastest of each schedule, and its runner-up when within ROUND_TIE of it
    assert ex.round_configs(rows, 6) == [("wst-s", (12, 1, 1)), ("wst-sp", (6, 2, 1)), ("wst-sp", (12, 1, 1))]


def test_suite_order_and_time_budget(tmp_path, monkeypatch):
    """The suite runs the largest device count, then the rounds and throughput, then the
    smaller counts (largest first); a run that would end past the budget is skipped and listed."""
    clock = [0.0]
    monkeypatch.setattr(ex, "time", type("T", (), {"monotonic": staticmethod(lambda: clock[0])}))
    done: list[str] = []
    frames: list[int] = []

    def row(system, k, lat, what, **kw):
        clock[0] += ex.RUN_START_S + 4 * lat
        done.append(what)
        return {"system": system, "devices": k, "sources": kw.pop("sources", 1), "latency_s": lat, **kw}

    def single(s, c, w):
        frames.append(s.frames)
        return row("single", 1, 2.0, "single", schedule="", grid="")

    monkeypatch.setattr(ex, "prepare_model", lambda s, d: (d / "c.cfg", d / "w"))
    monkeypatch.setattr(ex, "_cost_model", lambda cfg, s: {})
    monkeypatch.setattr(ex, "idle_rss", lambda s: 0)
    monkeypatch.setattr(ex, "write_outputs", lambda rows, meta, out: None)
    monkeypatch.setattr(ex, "run_single", single)
    # latencies grow as the suite's estimate assumes ((kmax / k) ** 0.8), so it never overshoots
    monkeypatch.setattr(ex, "run_modnn", lambda s, c, w, k: row("modnn", k, 0.6 * (3 / k) ** 0.8, f"modnn {k}", schedule="bodp",
                                                                  grid="1d"))
    monkeypatch.setattr(ex, "run_ftp", lambda s, c, w, k, sch, g, cache=None: row(
        "ftp", k, 0.5 * (3 / k) ** 0.8, f"{sch} {ex.grid_label(g)} {k}", schedule=sch, grid=ex.grid_label(g)))
    monkeypatch.setattr(ex, "_ftp_throughput", lambda s, c, w, k, sch, g, sources, **kw: row(
        "ftp-throughput", k, 0.5, f"throughput {sources}", schedule=sch, grid=ex.grid_label(g), sources=sources))
    monkeypatch.setattr(ex, "_modnn_throughput", lambda s, c, w, k, n: row("modnn-throughput", k, 0.5, "mod thr"))
    base = dict(cfg=str(YOLOV2), devices=[1, 2, 3], configs=[("wst-s", (3, 3)), ("wst-sp", (12, 1, 1))],
                sources=[1, 2], rounds=1, out=str(tmp_path))
    res = ex.run_suite(ex.Settings(**base, budget_s=None), progress=lambda m: None)
    assert done[:4] == ["single", "modnn 3", "wst-s 3x3 3", "wst-sp 12x1b 3"]
    assert done[4:8] == ["single", "modnn 3", "wst-s 3x3 3", "wst-sp 12x1b 3"]  # the round
    assert done[8:11] == ["throughput 1", "throughput 2", "mod thr"]
    assert done[11:] == ["modnn 2", "wst-s 3x3 2", "wst-sp 12x1b 2", "modnn 1", "wst-s 3x3 1", "wst-sp 12x1b 1"]
    assert res["meta"]["skipped"] == [] and len(res["meta"]["rounds"]) == 1
    assert frames == [3, 6]  # the sweep's frames per run, then the rounds' (round_frames)
    full = clock[0]
    clock[0], done[:] = 0.0, []
    res = ex.run_suite(ex.Settings(**base, budget_s=full - 10), progress=lambda m: None)
    assert res["meta"]["skipped"] and all(w.endswith("k=1") for w in res["meta"]["skipped"])
    assert res["meta"]["suite_s"] <= full - 10
    assert done[:11] == ["single", "modnn 3", "wst-s 3x3 3", "wst-sp 12x1b 3", "single", "modnn 3", "wst-s 3x3 3",
                         "wst-sp 12x1b 3", "throughput 1", "throughput 2", "mod thr"]


def test_ftp_latency_ends_at_the_gateways_merged_output():
    """_ftp_row: latency = merged_s - submitted_s (the gateway's clock reading, same host);
    latency_at_source_s = done_s - submitted_s; the warm-up frame is left out."""
    frames = [{"frame": i, "submitted_s": 10.0 * i, "merged_s": 10.0 * i + 0.3 + 0.01 * i,
               "done_s": 10.0 * i + 0.35 + 0.01 * i, "latency_s": 0.35 + 0.01 * i,
               "trace": {"tiles": [{"device": 1, "compute_s": 0.2, "cpu_s": 0.05}], "stages": {"merge_s": 0.001}}}
              for i in range(4)]
    usage = {n: {"cpu_s": 1.0, "throttled_s": 0.0, "memory_peak_bytes": 1} for n in ("gw", "d0")}
    link = {"gw": {"up": 10, "down": 10}, "d0": {"up": 5, "down": 5}}
    row = ex._ftp_row("wst-s", (3, 3), 1, 1, 3, [{"frames": frames}], link, usage, usage)
    assert row["latency_s"] == pytest.approx(0.32) and row["latency_max_s"] == pytest.approx(0.33)
    assert row["latency_at_source_s"] == pytest.approx(0.37)
    for f in frames:
        f["merged_s"] = None  # a gateway that does not report its clock: the source's latency
    assert ex._ftp_row("wst-s", (3, 3), 1, 1, 3, [{"frames": frames}], link, usage, usage)["latency_s"] == pytest.approx(0.37)


def _source(frames: int, period: float, offset: float, warmup: float, in_flight: int = 2) -> dict:
    """A source's frames in a pipeline finishing one every `period` seconds after a warm-up
    frame that takes `warmup`; frame i + in_flight is submitted when frame i finishes."""
    fin = [offset + warmup + period * i for i in range(frames)]
    sub = [offset if i < in_flight else fin[i - in_flight] for i in range(frames)]
    return {"frames": [{"frame": i, "submitted_s": sub[i], "done_s": fin[i] + 0.01, "merged_s": fin[i]}
                       for i in range(frames)]}


def test_steady_fps_counts_finishes_while_every_source_is_busy():
    """Three sources each finishing a frame every 0.5 s give 6 FPS, however long their warm-up
    frames took and however their starts are staggered; the whole-run span would count the
    warm-ups and the drain against them."""
    results = [_source(7, 0.5, 0.0, 2.0), _source(7, 0.5, 0.2, 1.0), _source(7, 0.5, 0.4, 1.5)]
    got = ex.steady_fps(results)
    assert got["fps"] == pytest.approx(6.0, rel=0.25) and got["fps_window_s"] > 0
    timed = [f for r in results for f in r["frames"][1:]]
    naive = len(timed) / (max(f["done_s"] for f in timed) - min(f["submitted_s"] for f in timed))
    assert naive < 0.8 * got["fps"]
    # A source with one period twice as long: the window sees the slower rate.
    slow = [_source(7, 0.5, 0.0, 1.0), _source(7, 1.0, 0.0, 1.0)]
    assert ex.steady_fps(slow)["fps"] == pytest.approx(3.0, rel=0.25)


def test_steady_fps_without_a_window_falls_back_to_the_timed_span():
    """Too few frames for a steady-state window (the --quick suite): timed frames over the span
    from the first timed submission to the last finish at the source."""
    results = [_source(3, 0.5, 0.0, 1.0)]
    got = ex.steady_fps(results)
    assert got["fps_window_s"] is None
    assert got["fps"] == pytest.approx(2 / (results[0]["frames"][2]["done_s"] - 0.0))
