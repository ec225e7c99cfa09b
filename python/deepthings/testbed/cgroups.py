"""CPU caps and accounting for emulated devices: cgroup v1 (cpu.cfs_quota_us) or v2 (cpu.max).

Every testbed cgroup lives under one parent named ``deepthings-testbed`` so leftovers of
crashed runs are easy to find and remove. A cgroup's ``cgroup.procs`` lists every process of
the device, including children the workload forked, which is what makes teardown complete.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Callable, Iterable

from deepthings.errors import EmulationError

PARENT = "deepthings-testbed"
# The CFS period is how often a capped device's quota is refilled. A device at 0.25 cores
# runs at full speed for a quarter of each period and is then frozen for the rest, so a
# message that arrives in the frozen part waits. A slow board is slow but never frozen:
# a short period comes closer to one (10 ms: frozen 7.5 ms at a time instead of 75 ms).
CFS_PERIOD_US = 100_000
MIN_QUOTA_US = 1000  # the kernel's lower bound on a quota
_V1_CONTROLLERS = ("cpu", "cpuacct", "memory")


def quota_us(cpu: float, period_us: int) -> int:
    """The CFS quota that gives `cpu` cores in `period_us`; refuses a cap the kernel cannot set."""
    quota = int(round(cpu * period_us))
    if quota < MIN_QUOTA_US:
        raise EmulationError(
            f"a CPU cap of {cpu} cores needs a quota of {quota} us in a {period_us} us period; "
            f"the kernel's minimum is {MIN_QUOTA_US} us: use a longer --cpu-period"
        )
    return quota


def _cgroup_mounts(mounts_file: str = "/proc/mounts") -> tuple[dict[str, Path], Path | None]:
    """(v1 controller -> mount point, v2 mount point or None)."""
    v1: dict[str, Path] = {}
    v2: Path | None = None
    try:
        lines = Path(mounts_file).read_text().splitlines()
    except OSError:
        return v1, v2
    for line in lines:
        parts = line.split()
        if len(parts) < 4:
            continue
        _, mount, fstype, options = parts[:4]
        if fstype == "cgroup2":
            v2 = v2 or Path(mount)
        elif fstype == "cgroup":
            for opt in options.split(","):
                if opt in _V1_CONTROLLERS and opt not in v1:
                    v1[opt] = Path(mount)
    return v1, v2


class CgroupBackend:
    """Creates, fills, reads and removes the cgroups of one testbed run."""

    version: int = 0
    period_us: int = CFS_PERIOD_US

    def create(self, name: str, cpu: float | None) -> None:
        raise NotImplementedError

    def set_cpu(self, name: str, cpu: float | None) -> None:
        """Change the group's CPU cap (cores; None = uncapped) while it runs."""
        raise NotImplementedError

    def set_priority(self, high: bool) -> None:
        """Weight of all testbed groups against the rest of the machine (CFS shares/weight).

        High priority makes each emulated device get its whole quota on a busy machine; the
        quota still caps it, so the testbed never takes more than the sum of its quotas
        (plus whatever uncapped nodes use).
        """
        raise NotImplementedError

    def add_pid(self, name: str, pid: int) -> None:
        raise NotImplementedError

    def pids(self, name: str) -> list[int]:
        raise NotImplementedError

    def cpu_seconds(self, name: str) -> float:
        """CPU time consumed by the group's processes so far."""
        raise NotImplementedError

    def throttled_seconds(self, name: str) -> float:
        """Time the group was held back by its quota."""
        raise NotImplementedError

    def memory_peak_bytes(self, name: str) -> int | None:
        """Peak memory charged to the group (None when the memory controller is absent)."""
        raise NotImplementedError

    def remove(self, name: str) -> None:
        raise NotImplementedError

    def existing(self) -> list[str]:
        """Names of all testbed cgroups that exist now (any run)."""
        raise NotImplementedError

    def dirs(self, name: str) -> list[Path]:
        raise NotImplementedError

    def kill_all(self, name: str, grace_s: float = 2.0, reap: "Callable[[], None] | None" = None) -> None:
        """SIGTERM every process in the group, SIGKILL what is left after grace_s.

        `reap` is called while waiting so the caller can collect its own exited children
        (a zombie may still be listed in cgroup.procs until its parent waits for it).
        """
        # A killed process can take seconds to leave the group on a loaded machine (freeing a
        # large heap, closing sockets in a dying namespace): wait generously after SIGKILL.
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 15.0)):
            pids = self.pids(name)
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self.pids(name):
                if reap is not None:
                    reap()
                time.sleep(0.02)
        left = self.pids(name)
        if left:
            raise EmulationError(f"cgroup {name}: processes {left} survived SIGKILL")


def _read_int(path: Path, default: int = 0) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def _read_kv(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in path.read_text().splitlines():
            k, _, v = line.partition(" ")
            if v.strip().lstrip("-").isdigit():
                out[k] = int(v)
    except OSError:
        pass
    return out


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise EmulationError(f"cannot write {value!r} to {path}: {exc}") from exc


def _rmdir_retry(path: Path) -> None:
    # A cgroup is removable only once its last task is gone; exit is asynchronous.
    for _ in range(250):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)
    path.rmdir()


class CgroupV1(CgroupBackend):
    """Legacy hierarchy: one directory per controller (cpu, cpuacct, memory)."""

    version = 1

    def __init__(self, mounts: dict[str, Path], period_us: int = CFS_PERIOD_US):
        if "cpu" not in mounts:
            raise EmulationError("cgroup v1 cpu controller is not mounted")
        self.mounts = mounts
        self.period_us = period_us

    def dirs(self, name: str) -> list[Path]:
        seen: set[Path] = set()
        out = []
        for ctl in _V1_CONTROLLERS:
            if ctl in self.mounts:
                d = self.mounts[ctl] / PARENT / name
                if d not in seen:  # cpu and cpuacct may share one mount
                    seen.add(d)
                    out.append(d)
        return out

    def create(self, name: str, cpu: float | None) -> None:
        for d in self.dirs(name):
            d.mkdir(parents=True, exist_ok=True)
        _write(self.mounts["cpu"] / PARENT / name / "cpu.cfs_period_us", str(self.period_us))
        self.set_cpu(name, cpu)

    def set_cpu(self, name: str, cpu: float | None) -> None:
        quota = -1 if cpu is None else quota_us(cpu, self.period_us)
        _write(self.mounts["cpu"] / PARENT / name / "cpu.cfs_quota_us", str(quota))

    def set_priority(self, high: bool) -> None:
        parent = self.mounts["cpu"] / PARENT
        parent.mkdir(exist_ok=True)
        _write(parent / "cpu.shares", str(100 * 1024 if high else 1024))

    def add_pid(self, name: str, pid: int) -> None:
        for d in self.dirs(name):
            _write(d / "cgroup.procs", str(pid))

    def pids(self, name: str) -> list[int]:
        found: set[int] = set()
        for d in self.dirs(name):
            try:
                found.update(int(p) for p in (d / "cgroup.procs").read_text().split())
            except OSError:
                pass
        return sorted(found)

    def cpu_seconds(self, name: str) -> float:
        ctl = self.mounts.get("cpuacct")
        if ctl is None:
            return float("nan")
        return _read_int(ctl / PARENT / name / "cpuacct.usage") / 1e9

    def throttled_seconds(self, name: str) -> float:
        stat = _read_kv(self.mounts["cpu"] / PARENT / name / "cpu.stat")
        return stat.get("throttled_time", 0) / 1e9

    def memory_peak_bytes(self, name: str) -> int | None:
        ctl = self.mounts.get("memory")
        if ctl is None:
            return None
        return _read_int(ctl / PARENT / name / "memory.max_usage_in_bytes")

    def remove(self, name: str) -> None:
        for d in self.dirs(name):
            _rmdir_retry(d)

    def existing(self) -> list[str]:
        names: set[str] = set()
        for ctl in self.mounts.values():
            parent = ctl / PARENT
            if parent.is_dir():
                names.update(p.name for p in parent.iterdir() if p.is_dir())
        return sorted(names)

    def remove_parent(self) -> None:
        for ctl in set(self.mounts.values()):
            parent = ctl / PARENT
            try:
                parent.rmdir()
            except OSError:
                pass  # still in use by a parallel run, or absent


class CgroupV2(CgroupBackend):
    """Unified hierarchy: one directory, cpu.max = 'quota period'."""

    version = 2

    def __init__(self, root: Path, period_us: int = CFS_PERIOD_US):
        self.root = root
        self.period_us = period_us

    def dirs(self, name: str) -> list[Path]:
        return [self.root / PARENT / name]

    def _enable(self, directory: Path, controllers: Iterable[str]) -> None:
        available = (directory / "cgroup.controllers").read_text().split()
        wanted = [c for c in controllers if c in available]
        enabled = (directory / "cgroup.subtree_control").read_text().split()
        for c in wanted:
            if c not in enabled:
                _write(directory / "cgroup.subtree_control", f"+{c}")

    def create(self, name: str, cpu: float | None) -> None:
        parent = self.root / PARENT
        self._enable(self.root, ("cpu", "memory"))
        parent.mkdir(exist_ok=True)
        self._enable(parent, ("cpu", "memory"))
        (parent / name).mkdir(exist_ok=True)
        self.set_cpu(name, cpu)

    def set_cpu(self, name: str, cpu: float | None) -> None:
        quota = "max" if cpu is None else str(quota_us(cpu, self.period_us))
        _write(self.root / PARENT / name / "cpu.max", f"{quota} {self.period_us}")

    def set_priority(self, high: bool) -> None:
        parent = self.root / PARENT
        if not parent.is_dir():
            self._enable(self.root, ("cpu", "memory"))
            parent.mkdir(exist_ok=True)
        _write(parent / "cpu.weight", "10000" if high else "100")

    def add_pid(self, name: str, pid: int) -> None:
        _write(self.root / PARENT / name / "cgroup.procs", str(pid))

    def pids(self, name: str) -> list[int]:
        try:
            return sorted(int(p) for p in (self.root / PARENT / name / "cgroup.procs").read_text().split())
        except OSError:
            return []

    def cpu_seconds(self, name: str) -> float:
        return _read_kv(self.root / PARENT / name / "cpu.stat").get("usage_usec", 0) / 1e6

    def throttled_seconds(self, name: str) -> float:
        return _read_kv(self.root / PARENT / name / "cpu.stat").get("throttled_usec", 0) / 1e6

    def memory_peak_bytes(self, name: str) -> int | None:
        path = self.root / PARENT / name / "memory.peak"
        return _read_int(path) if path.exists() else None

    def remove(self, name: str) -> None:
        _rmdir_retry(self.root / PARENT / name)

    def existing(self) -> list[str]:
        parent = self.root / PARENT
        if not parent.is_dir():
            return []
        return sorted(p.name for p in parent.iterdir() if p.is_dir())

    def remove_parent(self) -> None:
        try:
            (self.root / PARENT).rmdir()
        except OSError:
            pass


def detect(mounts_file: str = "/proc/mounts", period_us: int = CFS_PERIOD_US) -> CgroupBackend:
    """The cgroup backend that controls CPU on this machine (v2 when it owns cpu, else v1).

    `period_us` is the CFS period of the groups it creates (1 ms .. 1 s, the kernel's range).
    """
    if not 1000 <= period_us <= 1_000_000:
        raise EmulationError(f"CFS period {period_us} us is outside the kernel's 1000..1000000 us")
    v1, v2 = _cgroup_mounts(mounts_file)
    if v2 is not None:
        try:
            if "cpu" in (v2 / "cgroup.controllers").read_text().split():
                return CgroupV2(v2, period_us)
        except OSError:
            pass
    if "cpu" in v1 and (v1["cpu"] / "cpu.cfs_quota_us").exists():
        return CgroupV1(v1, period_us)
    raise EmulationError(
        "no cgroup CPU controller found (need cgroup v1 cpu.cfs_quota_us or v2 cpu.max); "
        "is /sys/fs/cgroup mounted?"
    )
