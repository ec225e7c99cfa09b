"""Parsing of device/link specs and the cgroup v2 backend on a fake hierarchy (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepthings.errors import EmulationError
from deepthings.testbed import DeviceSpec, LinkSpec, device_specs
from deepthings.testbed import cgroups
from deepthings.testbed.spec import parse_cpu, parse_loss, parse_rate, parse_time


def test_units():
    assert parse_rate("20mbit") == 20e6
    assert parse_rate("1gbit") == 1e9
    assert parse_rate("500kbit") == 5e5
    assert parse_rate("2mbps") == 16e6  # tc: bps are bytes per second
    assert parse_rate(None) is None and parse_rate("unlimited") is None
    assert parse_time("2ms") == pytest.approx(0.002)
    assert parse_time("500us") == pytest.approx(5e-4)
    assert parse_time("3") == pytest.approx(0.003)  # bare number = ms, as tc
    assert parse_loss("0.1%") == pytest.approx(0.001)
    assert parse_loss("0.02") == pytest.approx(0.02)
    assert parse_cpu("0.25") == 0.25 and parse_cpu("none") is None


@pytest.mark.parametrize("bad", ["20 mbits", "fast", "-3mbit", "1bit"])
def test_bad_rate(bad):
    with pytest.raises(EmulationError, match="rate"):
        parse_rate(bad)


@pytest.mark.parametrize("func,bad", [(parse_time, "2 hours"), (parse_loss, "150%"), (parse_cpu, "lots"), (parse_cpu, "0.001")])
def test_bad_values(func, bad):
    with pytest.raises(EmulationError):
        func(bad)


@settings(max_examples=40)
@given(st.integers(8, 10_000), st.sampled_from(["kbit", "mbit", "gbit"]))
def test_rate_roundtrip(value, unit):
    """A tc rate string parses to value x unit bits per second."""
    assert parse_rate(f"{value}{unit}") == pytest.approx(value * {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}[unit])


def test_heterogeneous_devices():
    specs = device_specs(3, cpu="0.25", rate="20mbit", device_cpu="0.5,0.25,0.1", device_delay="1ms,2ms,3ms")
    assert [s.cpu for s in specs] == [0.5, 0.25, 0.1]
    assert [s.link.rate for s in specs] == ["20mbit"] * 3
    assert [s.link.delay_s for s in specs] == pytest.approx([0.001, 0.002, 0.003])
    assert all(isinstance(s, DeviceSpec) for s in specs)
    with pytest.raises(EmulationError, match="2 values for 3 devices"):
        device_specs(3, device_rate="1mbit,2mbit")
    with pytest.raises(EmulationError, match="at least 1"):
        device_specs(0)


def test_link_needs_netem():
    assert not LinkSpec(rate="1mbit").needs_netem
    assert LinkSpec(delay="2ms").needs_netem and LinkSpec(loss="1%").needs_netem
    with pytest.raises(EmulationError):
        LinkSpec(rate="quick")


def _fake_v2(tmp_path: Path) -> Path:
    root = tmp_path / "unified"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    return root


def test_cgroup_v2_files(tmp_path, monkeypatch):
    """The v2 backend enables cpu+memory down the tree and writes cpu.max = 'quota period'."""
    root = _fake_v2(tmp_path)
    backend = cgroups.CgroupV2(root)
    parent = root / cgroups.PARENT
    # A real cgroupfs fills these in on mkdir; the fake needs them before create() reads them.
    real_mkdir = Path.mkdir

    def mkdir(self, *a, **k):
        real_mkdir(self, *a, **k)
        if not (self / "cgroup.controllers").exists():
            (self / "cgroup.controllers").write_text("cpu memory\n")
            (self / "cgroup.subtree_control").write_text("")

    monkeypatch.setattr(Path, "mkdir", mkdir)
    backend.create("dt000001-d0", 0.25)
    backend.create("dt000001-gw", None)
    assert (root / "cgroup.subtree_control").read_text() in ("+memory", "+cpu")  # last write wins in the fake
    assert (parent / "dt000001-d0" / "cpu.max").read_text() == "25000 100000"
    assert (parent / "dt000001-gw" / "cpu.max").read_text() == "max 100000"
    (parent / "dt000001-d0" / "cpu.stat").write_text("usage_usec 1500000\nthrottled_usec 250000\n")
    assert backend.cpu_seconds("dt000001-d0") == pytest.approx(1.5)
    assert backend.throttled_seconds("dt000001-d0") == pytest.approx(0.25)
    assert backend.existing() == ["dt000001-d0", "dt000001-gw"]


def test_detect_prefers_v2_with_cpu(tmp_path):
    root = _fake_v2(tmp_path)
    mounts = tmp_path / "mounts"
    mounts.write_text(f"cgroup2 {root} cgroup2 rw 0 0\n")
    assert cgroups.detect(str(mounts)).version == 2
    (root / "cgroup.controllers").write_text("memory pids\n")
    with pytest.raises(EmulationError, match="no cgroup CPU controller"):
        cgroups.detect(str(mounts))


def test_cgroup_period_is_configurable(tmp_path):
    """A short CFS period keeps the share and is written beside the quota; a too-small quota is refused."""
    root = _fake_v2(tmp_path)
    (root / cgroups.PARENT).mkdir()
    (root / cgroups.PARENT / "cgroup.controllers").write_text("cpu memory\n")
    (root / cgroups.PARENT / "cgroup.subtree_control").write_text("")
    backend = cgroups.CgroupV2(root, period_us=10_000)
    (root / cgroups.PARENT / "dt000002-d0").mkdir()
    backend.set_cpu("dt000002-d0", 0.25)
    assert (root / cgroups.PARENT / "dt000002-d0" / "cpu.max").read_text() == "2500 10000"
    with pytest.raises(EmulationError, match="minimum is 1000 us: use a longer --cpu-period"):
        backend.set_cpu("dt000002-d0", 0.05)
    assert cgroups.quota_us(0.05, 100_000) == 5000
    with pytest.raises(EmulationError, match="outside the kernel's"):
        cgroups.detect(period_us=500)
