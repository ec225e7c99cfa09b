"""Helpers for testbed tests: root gate and a check that a run left nothing behind."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None,
    reason="the emulated testbed needs root and iproute2 (ip, tc)",
)


def traces(prefix: str) -> list[str]:
    """Everything on this machine that still carries a testbed run's prefix."""
    from deepthings.testbed.cgroups import PARENT, _cgroup_mounts
    from deepthings.testbed.testbed import STATE_DIR

    found = []
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {line.split()[0]}" for line in out.splitlines() if line.startswith(prefix)]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found += [f"root-ns link {line}" for line in links.splitlines() if prefix in line]
    v1, v2 = _cgroup_mounts()
    for root in list(v1.values()) + ([v2] if v2 else []):
        parent = Path(root) / PARENT
        if parent.is_dir():
            found += [f"cgroup {p}" for p in parent.iterdir() if p.name.startswith(prefix)]
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"deepthings.testbed.delayline" in argv and prefix.encode() in argv:
            found.append(f"delay line process {cmdline.parent.name}")
    if (STATE_DIR / f"{prefix}.json").exists():
        found.append(f"state file {STATE_DIR / (prefix + '.json')}")
    return found


def prefix_from(stderr: str) -> str:
    m = re.search(r"testbed (dt[0-9a-f]{6})", stderr)
    assert m, f"no testbed prefix in output:\n{stderr}"
    return m.group(1)
