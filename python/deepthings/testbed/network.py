"""Namespaces, veth pairs, the bridge and tc shaping, driven through iproute2 (`ip`, `tc`).

Layout of one run with prefix P (e.g. ``dt3fa2c1``)::

    P-gw   (gateway)  eth0 10.200.0.1  --veth--  port "gw" \
    P-d0   (device 0) eth0 10.200.0.10 --veth--  port "d0"  >-- bridge br0 in namespace P-br
    P-d1   ...                                             /

Every interface is created directly inside its namespace, so nothing of a run ever appears
in the root namespace and deleting the namespaces deletes the veths and their qdiscs.
Each direction of a link is shaped on the sending side: uploads on the node's eth0, downloads
on the bridge port (htb for the rate, netem below it for delay and loss). Kernels without
sch_netem get loss from a BPF filter and delay from a userspace delay line (testbed.delayline)
on an extra veth pair per delayed link.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from typing import Sequence

from deepthings.errors import EmulationError
from deepthings.testbed.spec import LinkSpec

SUBNET = "10.200.0"
GATEWAY_IP = f"{SUBNET}.1"
BRIDGE = "br0"
NODE_IF = "eth0"


def device_ip(index: int) -> str:
    """Address of device `index` (0-based) inside the run's private subnet."""
    if not 0 <= index < 200:
        raise EmulationError(f"device index {index} out of range (at most 200 devices)")
    return f"{SUBNET}.{10 + index}"


def sh(args: Sequence[str], *, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run one iproute2 command; a failure raises EmulationError with the command and stderr."""
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise EmulationError(f"{args[0]} not found: install iproute2") from exc
    except subprocess.TimeoutExpired as exc:
        raise EmulationError(f"`{' '.join(args)}` timed out after {timeout}s") from exc
    if check and proc.returncode != 0:
        raise EmulationError(f"`{' '.join(args)}` failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def require_tools() -> None:
    """Raise EmulationError unless `ip` and `tc` are installed."""
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None and shutil.which(f"/usr/sbin/{tool}") is None:
            raise EmulationError(f"`{tool}` not found: the testbed needs iproute2 (apt-get install iproute2)")


def list_namespaces() -> list[str]:
    out = sh(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def add_namespace(ns: str) -> None:
    sh(["ip", "netns", "add", ns])
    sh(["ip", "-n", ns, "link", "set", "lo", "up"])


def delete_namespace(ns: str) -> None:
    proc = sh(["ip", "netns", "del", ns], check=False)
    if proc.returncode != 0 and ns in list_namespaces():
        raise EmulationError(f"cannot delete namespace {ns}: {proc.stderr.strip()}")


def add_bridge(ns: str) -> None:
    sh(["ip", "-n", ns, "link", "add", BRIDGE, "type", "bridge"])
    # No STP and no forwarding delay: ports forward as soon as they are up.
    sh(["ip", "-n", ns, "link", "set", BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0"])
    sh(["ip", "-n", ns, "link", "set", BRIDGE, "up"])


def delay_ends(port: str) -> tuple[str, str]:
    """The two interfaces a delay line joins for bridge port `port` (see testbed.delayline)."""
    return f"{port}-w", f"{port}-x"


def connect(node_ns: str, bridge_ns: str, port: str, address: str, *, delay_line: bool = False) -> None:
    """veth from node_ns (eth0, with `address`/24) to a port of the bridge in bridge_ns.

    With `delay_line`, eth0's peer is the wire end `<port>-w` and the bridge port is the peer of
    `<port>-x`, both in bridge_ns, for a delay line to join (kernels without sch_netem)."""
    if delay_line:
        wire, inner = delay_ends(port)
        sh(["ip", "link", "add", NODE_IF, "netns", node_ns, "type", "veth", "peer", "name", wire, "netns", bridge_ns])
        sh(["ip", "-n", bridge_ns, "link", "add", inner, "type", "veth", "peer", "name", port])
        for dev in (wire, inner):
            # the delay line's ends carry no addresses: no IPv6 autoconfiguration chatter either
            sh(["ip", "netns", "exec", bridge_ns, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1"], check=False)
            sh(["ip", "-n", bridge_ns, "link", "set", dev, "up"])
    else:
        sh(["ip", "link", "add", NODE_IF, "netns", node_ns, "type", "veth", "peer", "name", port, "netns", bridge_ns])
    sh(["ip", "-n", bridge_ns, "link", "set", port, "master", BRIDGE])
    sh(["ip", "-n", bridge_ns, "link", "set", port, "up"])
    sh(["ip", "-n", node_ns, "addr", "add", f"{address}/24", "dev", NODE_IF])
    sh(["ip", "-n", node_ns, "link", "set", NODE_IF, "up"])


@functools.lru_cache(maxsize=1)
def netem_available() -> bool:
    """True if the kernel has sch_netem (probed once in a scratch namespace)."""
    import secrets

    ns = f"dtprobe{secrets.token_hex(3)}"
    try:
        add_namespace(ns)
        proc = sh(["tc", "-n", ns, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"], check=False)
        return proc.returncode == 0
    finally:
        delete_namespace(ns)


def _burst_bytes(rate_bps: float) -> int:
    # htb needs a bucket that covers at least one timer tick at full rate and a GSO super-packet.
    return max(64 * 1024, int(rate_bps / 8 / 250))


def shape(ns: str, dev: str, link: LinkSpec) -> list[str]:
    """Shape the egress of `dev` in `ns` per `link`; returns the qdisc kinds installed."""
    kinds: list[str] = []
    parent = ["root"]
    if link.rate_bps is not None:
        rate = str(int(link.rate_bps))
        burst = str(_burst_bytes(link.rate_bps))
        sh(["tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10"])
        sh([
            "tc", "-n", ns, "class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb",
            "rate", f"{rate}bit", "ceil", f"{rate}bit", "burst", str(burst), "cburst", str(burst),
            "quantum", "60000",
        ])
        kinds.append("htb")
        parent = ["parent", "1:10", "handle", "10:"]
    if link.needs_netem and not netem_available():
        # no netem: loss by a BPF filter; the delay (if any) by the run's delay line
        if link.loss_fraction > 0:
            add_loss_filter(ns, dev, link.loss_fraction)
            kinds.append("bpf-loss")
        if link.delay_s > 0:
            kinds.append("delayline")
    elif link.needs_netem:
        args = ["tc", "-n", ns, "qdisc", "add", "dev", dev, *parent, "netem", "limit", "100000"]
        if link.delay_s > 0:
            args += ["delay", f"{link.delay_s * 1e6:.0f}us"]
        if link.loss_fraction > 0:
            args += ["loss", f"{link.loss_fraction * 100:.6f}%"]
        proc = sh(args, check=False)
        if proc.returncode != 0:
            raise EmulationError(f"cannot add netem on {ns}/{dev}: {proc.stderr.strip()}")
        kinds.append("netem")
    return kinds


def loss_bytecode(loss: float) -> str:
    """Classic BPF for tc direct-action: drop a packet with probability `loss`.

    ``A = random u32; if A >= (1 - loss) * 2^32 -> TC_ACT_SHOT (2) else TC_ACT_OK (0)``. The
    random number is the cBPF ancillary load SKF_AD_OFF + SKF_AD_RANDOM.
    """
    if not 0.0 < loss < 1.0:
        raise EmulationError(f"loss {loss} must be in (0, 1)")
    threshold = min(2**32 - 1, int(round((1.0 - loss) * 2**32)))
    ld_rand = "32 0 0 4294963256"  # BPF_LD|BPF_W|BPF_ABS, k = 0xfffff038
    jge = f"53 1 0 {threshold}"  # BPF_JMP|BPF_JGE|BPF_K: true -> skip to the drop
    return f"4,{ld_rand},{jge},6 0 0 0,6 0 0 2"


def add_loss_filter(ns: str, dev: str, loss: float) -> None:
    """Random packet loss on the egress of `dev` without netem (a cBPF tc filter on clsact).

    Used on kernels built without sch_netem; the filter sees whole GSO packets, so a loss
    drops a burst of segments, as netem's loss does.
    """
    sh(["tc", "-n", ns, "qdisc", "add", "dev", dev, "clsact"])
    sh(["tc", "-n", ns, "filter", "add", "dev", dev, "egress", "bpf", "da", "bytecode", loss_bytecode(loss)])


def qdiscs(ns: str, dev: str) -> list[str]:
    """Kinds of the qdiscs on `dev` in `ns` (e.g. ['htb', 'netem'])."""
    out = sh(["tc", "-n", ns, "-j", "qdisc", "show", "dev", dev], check=False).stdout
    try:
        return [q.get("kind", "") for q in json.loads(out or "[]")]
    except json.JSONDecodeError:
        return []


def link_counters(ns: str) -> dict[str, dict[str, int]]:
    """Interface name -> {'rx_bytes', 'tx_bytes', 'rx_packets', 'tx_packets', 'tx_dropped'} in `ns`."""
    out = sh(["ip", "-n", ns, "-s", "-j", "link", "show"]).stdout
    counters: dict[str, dict[str, int]] = {}
    for entry in json.loads(out or "[]"):
        stats = entry.get("stats64", {})
        rx, tx = stats.get("rx", {}), stats.get("tx", {})
        counters[entry["ifname"]] = {
            "rx_bytes": int(rx.get("bytes", 0)),
            "tx_bytes": int(tx.get("bytes", 0)),
            "rx_packets": int(rx.get("packets", 0)),
            "tx_packets": int(tx.get("packets", 0)),
            "tx_dropped": int(tx.get("dropped", 0)),
        }
    return counters
