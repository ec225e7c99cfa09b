"""The start gate of an experiment's programs: announce readiness, then wait for the go.

Between the two the driver caps every device's CPU, so set-up (imports, model loading) runs
uncapped and every measured second is spent under the cap. Used by the FTP probes and MoDNN."""

from __future__ import annotations

import os
import time

from deepthings.errors import EmulationError


def wait_for_go(ready_file: str | None, start_file: str | None, timeout_s: float = 300.0, who: str = "probe") -> None:
    """Touch ``ready_file`` (if given), then wait until ``start_file`` (if given) exists."""
    if ready_file:
        open(ready_file, "w").close()
    if start_file:
        deadline = time.monotonic() + timeout_s
        while not os.path.exists(start_file):
            if time.monotonic() > deadline:
                raise EmulationError(f"{who}: start file {start_file} did not appear within {timeout_s:.0f}s")
            time.sleep(0.02)
