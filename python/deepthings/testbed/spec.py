"""What an emulated device looks like: CPU share and link shaping, parsed from tc-style strings.

Pure functions and dataclasses only (no root needed), so the CLI and the tests share one parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from deepthings.errors import EmulationError

_RATE_UNITS = {
    "bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9,
    "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9,
}
_TIME_UNITS = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "msec": 1e-3, "us": 1e-6, "usec": 1e-6}


def parse_rate(text: str | None) -> float | None:
    """'20mbit' -> 20e6 bits/s (tc units: bit/kbit/mbit/gbit, bps/kbps/... are bytes/s).

    None, '', '0' and 'unlimited' mean no shaping.
    """
    if text is None:
        return None
    t = str(text).strip().lower()
    if t in ("", "0", "none", "unlimited", "inf"):
        return None
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([a-z]*)", t)
    if not m or m.group(2) not in _RATE_UNITS:
        raise EmulationError(f"bad link rate {text!r}: use tc units like 20mbit, 500kbit, 1gbit")
    bits = float(m.group(1)) * _RATE_UNITS[m.group(2)]
    if bits < 8e3:
        raise EmulationError(f"link rate {text!r} is below 8kbit: too slow to carry a TCP handshake")
    return bits


def parse_time(text: str | None) -> float:
    """'2ms' -> 0.002 s; a bare number is milliseconds (as in tc); None/'' -> 0."""
    if text is None:
        return 0.0
    t = str(text).strip().lower()
    if t == "":
        return 0.0
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([a-z]*)", t)
    if not m:
        raise EmulationError(f"bad delay {text!r}: use tc units like 2ms, 500us")
    unit = m.group(2) or "ms"
    if unit not in _TIME_UNITS:
        raise EmulationError(f"bad delay unit in {text!r}: use s, ms or us")
    return float(m.group(1)) * _TIME_UNITS[unit]


def parse_loss(text: str | None) -> float:
    """'0.1%' -> 0.001; a bare number <= 1 is a fraction; None/'' -> 0."""
    if text is None:
        return 0.0
    t = str(text).strip()
    if t == "":
        return 0.0
    try:
        value = float(t[:-1]) / 100.0 if t.endswith("%") else float(t)
    except ValueError:
        raise EmulationError(f"bad loss {text!r}: use a percentage like 0.1%") from None
    if not 0.0 <= value < 1.0:
        raise EmulationError(f"loss {text!r} must be in [0%, 100%)")
    return value


def parse_cpu(text: str | float | None) -> float | None:
    """'0.25' -> 0.25 cores (a CFS quota); None/'0'/'none' -> no cap."""
    if text is None:
        return None
    t = str(text).strip().lower()
    if t in ("", "0", "none", "unlimited"):
        return None
    try:
        value = float(t)
    except ValueError:
        raise EmulationError(f"bad CPU share {text!r}: use a number of cores like 0.25") from None
    if not 0.01 <= value <= 1024:
        raise EmulationError(f"CPU share {text!r} must be between 0.01 and 1024 cores")
    return value


@dataclass(frozen=True)
class LinkSpec:
    """Shaping of one node's link to the bridge, applied in both directions."""

    rate: str | None = None  # tc rate string, None = unshaped
    delay: str | None = None  # one-way delay per direction, tc time string
    loss: str | None = None  # per-direction packet loss, e.g. "0.1%"

    def __post_init__(self) -> None:
        # Validate early so a typo fails before any namespace exists.
        parse_rate(self.rate)
        parse_time(self.delay)
        parse_loss(self.loss)

    @property
    def rate_bps(self) -> float | None:
        """Rate in bits/s, None when unshaped."""
        return parse_rate(self.rate)

    @property
    def delay_s(self) -> float:
        return parse_time(self.delay)

    @property
    def loss_fraction(self) -> float:
        return parse_loss(self.loss)

    @property
    def needs_netem(self) -> bool:
        """Delay and loss use the netem qdisc (loss falls back to a BPF filter); rate is htb."""
        return self.delay_s > 0 or self.loss_fraction > 0


@dataclass(frozen=True)
class DeviceSpec:
    """One emulated node: a CPU cap (cores, None = uncapped) and its link."""

    cpu: float | None = None
    link: LinkSpec = LinkSpec()

    def __post_init__(self) -> None:
        parse_cpu(self.cpu)


def _split(text: str | None, count: int, what: str) -> list[str | None]:
    if text is None:
        return [None] * count
    items = [s.strip() for s in str(text).split(",")]
    if len(items) == 1:
        return items * count
    if len(items) != count:
        raise EmulationError(f"--device-{what} lists {len(items)} values for {count} devices")
    return items


def device_specs(
    count: int,
    *,
    cpu: str | float | None = None,
    rate: str | None = None,
    delay: str | None = None,
    loss: str | None = None,
    device_cpu: str | None = None,
    device_rate: str | None = None,
    device_delay: str | None = None,
    device_loss: str | None = None,
) -> list[DeviceSpec]:
    """Build `count` device specs from cluster-wide defaults and optional per-device lists.

    A per-device list is comma-separated with one value per device (or one value for all);
    it overrides the cluster-wide value.
    """
    if count < 1:
        raise EmulationError(f"--devices must be at least 1, got {count}")
    cpus = _split(device_cpu, count, "cpu")
    rates = _split(device_rate, count, "rate")
    delays = _split(device_delay, count, "delay")
    losses = _split(device_loss, count, "loss")
    specs = []
    for i in range(count):
        specs.append(
            DeviceSpec(
                cpu=parse_cpu(cpus[i] if cpus[i] is not None else cpu),
                link=LinkSpec(
                    rate=rates[i] if rates[i] is not None else rate,
                    delay=delays[i] if delays[i] is not None else delay,
                    loss=losses[i] if losses[i] is not None else loss,
                ),
            )
        )
    return specs

