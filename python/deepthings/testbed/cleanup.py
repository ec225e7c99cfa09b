"""Find and remove what crashed testbed runs left behind (`deepthings emulate --cleanup`).

A run is live while the process named in its state file exists; everything carrying the
prefix of a run that is not live (namespaces, the veths and qdiscs inside them, cgroups and
their processes) is a leftover.
"""

from __future__ import annotations

import json
import os
import signal
import re
from dataclasses import dataclass, field

from deepthings.errors import EmulationError
from deepthings.testbed import cgroups, network
from deepthings.testbed.testbed import PREFIX_RE, STATE_DIR, require_root


@dataclass
class Leftovers:
    """Resources of testbed runs that are no longer live."""

    prefixes: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    state_files: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.namespaces or self.cgroups or self.state_files)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_prefixes() -> set[str]:
    """Prefixes of runs whose owner process is still alive."""
    live: set[str] = set()
    if not STATE_DIR.is_dir():
        return live
    for path in STATE_DIR.glob("dt*.json"):
        try:
            state = json.loads(path.read_text())
            if _pid_alive(int(state["owner_pid"])):
                live.add(state["prefix"])
        except (OSError, ValueError, KeyError):
            continue
    return live


def leftovers(all_runs: bool = False) -> Leftovers:
    """What `cleanup_leftovers` would remove; `all_runs` includes runs whose owner still lives."""
    keep = set() if all_runs else live_prefixes()
    pattern = re.compile(rf"^({PREFIX_RE})-")
    found = Leftovers()
    prefixes: set[str] = set()
    for ns in network.list_namespaces():
        m = pattern.match(ns)
        if m and m.group(1) not in keep:
            found.namespaces.append(ns)
            prefixes.add(m.group(1))
    try:
        backend = cgroups.detect()
        names = backend.existing()
    except EmulationError:
        names = []
    for name in names:
        m = pattern.match(name)
        if m and m.group(1) not in keep:
            found.cgroups.append(name)
            prefixes.add(m.group(1))
    if STATE_DIR.is_dir():
        for path in sorted(STATE_DIR.glob("dt*.json")):
            prefix = path.stem
            if prefix not in keep:
                found.state_files.append(str(path))
                prefixes.add(prefix)
    found.prefixes = sorted(prefixes)
    return found


def cleanup_leftovers(all_runs: bool = False) -> Leftovers:
    """Remove leftovers of dead runs (or of every run with `all_runs`); returns what was removed."""
    require_root()
    found = leftovers(all_runs)
    errors: list[str] = []
    backend = None
    if found.cgroups:
        backend = cgroups.detect()
        for name in found.cgroups:
            try:
                backend.kill_all(name)
            except EmulationError as exc:
                errors.append(str(exc))
    for ns in found.namespaces:
        # processes outside the cgroups (the delay line) would keep a deleted namespace alive
        for pid in network.sh(["ip", "netns", "pids", ns], check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        try:
            network.delete_namespace(ns)
        except EmulationError as exc:
            errors.append(str(exc))
    if backend is not None:
        for name in found.cgroups:
            try:
                backend.remove(name)
            except OSError as exc:
                errors.append(f"cannot remove cgroup {name}: {exc}")
        backend.remove_parent()  # type: ignore[attr-defined]
    for path in found.state_files:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    if errors:
        raise EmulationError("cleanup incomplete: " + "; ".join(errors))
    return found
