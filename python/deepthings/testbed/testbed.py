"""An emulated edge cluster on one Linux machine: a Testbed is K device namespaces + a gateway
namespace on a shaped bridge, each with a cgroup CPU cap, and a way to run commands inside.

    with Testbed(device_specs(3, cpu=0.25, rate="20mbit")) as tb:
        gw = tb.spawn("gw", ["python", "-m", "http.server", "--bind", tb.address("gw")])
        tb.run(0, ["python", "-c", "..."])

Everything the run creates carries its unique prefix and is listed in a state file under
/run/deepthings-testbed/, written before the first namespace exists, so `cleanup_leftovers()`
(``deepthings emulate --cleanup``) can remove what a killed run left behind.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from deepthings.errors import EmulationError
from deepthings.testbed import cgroups, network
from deepthings.testbed.spec import DeviceSpec

log = logging.getLogger(__name__)

STATE_DIR = Path(os.environ.get("DEEPTHINGS_TESTBED_STATE", "/run/deepthings-testbed"))
PREFIX_RE = r"dt[0-9a-f]{6}"


class TestbedInterrupted(KeyboardInterrupt):
    """SIGTERM/SIGHUP arrived while a testbed was up; raised so `with` blocks tear down."""

    __test__ = False  # not a pytest test class

    def __init__(self, signum: int):
        super().__init__(f"signal {signal.Signals(signum).name}")
        self.signum = signum


def require_root() -> None:
    """Raise EmulationError unless this process is root."""
    if os.geteuid() != 0:
        raise EmulationError(
            "the emulated testbed needs root (network namespaces, tc and cgroups): "
            "run it as root or with sudo"
        )


def _new_prefix() -> str:
    existing = set(network.list_namespaces())
    for _ in range(100):
        prefix = f"dt{secrets.token_hex(3)}"
        if not any(ns.startswith(prefix + "-") for ns in existing) and not (STATE_DIR / f"{prefix}.json").exists():
            return prefix
    raise EmulationError("could not find an unused testbed prefix")


class Testbed:
    """K emulated devices and a gateway, each a network namespace with a shaped link and a CPU cap.

    Nodes are named ``"gw"`` (also ``"gateway"``) and ``"d0" .. "d{K-1}"`` (also plain ints).
    ``guarantee_cpu`` gives the testbed's cgroups priority over the rest of the machine, so a
    device gets its whole quota even when other work competes for the cores.
    """

    __test__ = False

    def __init__(
        self,
        devices: Sequence[DeviceSpec] | int,
        *,
        gateway: DeviceSpec | None = None,
        prefix: str | None = None,
        guarantee_cpu: bool = False,
        cpu_period_us: int = cgroups.CFS_PERIOD_US,
    ):
        if isinstance(devices, int):
            devices = [DeviceSpec()] * devices
        if not devices:
            raise EmulationError("a testbed needs at least one device")
        self.device_specs: list[DeviceSpec] = list(devices)
        self.gateway_spec: DeviceSpec = gateway if gateway is not None else DeviceSpec()
        self.guarantee_cpu = guarantee_cpu
        self.cpu_period_us = cpu_period_us
        self._requested_prefix = prefix
        self.prefix: str = ""
        self.delay_line: subprocess.Popen | None = None  # kernels without sch_netem
        self._procs: list[subprocess.Popen] = []
        self._cg: cgroups.CgroupBackend | None = None
        self._old_handlers: dict[int, Any] = {}
        self._up = False
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- names
    @property
    def nodes(self) -> list[str]:
        """All node names: the gateway first, then the devices."""
        return ["gw"] + [f"d{i}" for i in range(len(self.device_specs))]

    @property
    def devices(self) -> list[str]:
        return [f"d{i}" for i in range(len(self.device_specs))]

    def node(self, node: str | int) -> str:
        """Canonical node name for 'gw'/'gateway'/'dN'/N."""
        if isinstance(node, int):
            name = f"d{node}"
        else:
            name = "gw" if node in ("gw", "gateway") else node
        if name not in self.nodes:
            raise EmulationError(f"no node {node!r} in this testbed (nodes: {', '.join(self.nodes)})")
        return name

    def namespace(self, node: str | int) -> str:
        return f"{self.prefix}-{self.node(node)}"

    @property
    def bridge_namespace(self) -> str:
        return f"{self.prefix}-br"

    def cgroup(self, node: str | int) -> str:
        return f"{self.prefix}-{self.node(node)}"

    def address(self, node: str | int) -> str:
        """IPv4 address of a node inside the private subnet."""
        name = self.node(node)
        return network.GATEWAY_IP if name == "gw" else network.device_ip(int(name[1:]))

    def spec(self, node: str | int) -> DeviceSpec:
        name = self.node(node)
        return self.gateway_spec if name == "gw" else self.device_specs[int(name[1:])]

    @property
    def _state_file(self) -> Path:
        return STATE_DIR / f"{self.prefix}.json"

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> "Testbed":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close(raise_errors=exc[0] is None)

    def start(self) -> "Testbed":
        """Create namespaces, links, shaping and cgroups; on any failure undo what was made."""
        require_root()
        network.require_tools()
        self._cg = cgroups.detect(period_us=self.cpu_period_us)
        all_specs = [self.gateway_spec, *self.device_specs]
        # Without sch_netem a userspace delay line delays the links (testbed.delayline).
        use_line = any(s.link.delay_s > 0 for s in all_specs) and not network.netem_available()
        self.prefix = self._requested_prefix or _new_prefix()
        self._install_signal_handlers()
        try:
            self._write_state()
            self._up = True
            if self.guarantee_cpu:
                self._cg.set_priority(True)
            network.add_namespace(self.bridge_namespace)
            network.add_bridge(self.bridge_namespace)
            for name in self.nodes:
                spec = self.spec(name)
                ns = self.namespace(name)
                network.add_namespace(ns)
                network.connect(ns, self.bridge_namespace, name, self.address(name),
                                delay_line=use_line and spec.link.delay_s > 0)
                network.shape(ns, network.NODE_IF, spec.link)  # upload
                network.shape(self.bridge_namespace, name, spec.link)  # download
                self._cg.create(self.cgroup(name), spec.cpu)
            if use_line:
                self._start_delay_line()
        except BaseException:
            self.close(raise_errors=False)
            raise
        log.info("testbed %s up: %d devices", self.prefix, len(self.device_specs))
        return self

    def close(self, raise_errors: bool = True) -> None:
        """Stop every process of the run and remove namespaces, links and cgroups. Idempotent."""
        with self._lock:
            if not self._up:
                self._restore_signal_handlers()
                return
            self._defer_signals()  # a second Ctrl-C must not cut the teardown short
            errors: list[str] = []
            cg = self._cg
            assert cg is not None
            for name in self.nodes:
                try:
                    cg.kill_all(self.cgroup(name), reap=self._reap)
                except EmulationError as exc:
                    errors.append(str(exc))
            for proc in self._procs:
                _stop_process(proc)
            for ns in [self.namespace(n) for n in self.nodes] + [self.bridge_namespace]:
                try:
                    network.delete_namespace(ns)
                except EmulationError as exc:
                    errors.append(str(exc))
            for name in self.nodes:
                try:
                    cg.remove(self.cgroup(name))
                except OSError as exc:
                    errors.append(f"cannot remove cgroup {self.cgroup(name)}: {exc}")
            cg.remove_parent()  # type: ignore[attr-defined]
            if not errors:
                self._state_file.unlink(missing_ok=True)
            self._up = False
            self._restore_signal_handlers()
        if errors:
            msg = f"testbed {self.prefix} teardown incomplete: " + "; ".join(errors)
            if raise_errors:
                raise EmulationError(msg + " (run `deepthings emulate --cleanup`)")
            log.error("%s", msg)

    def _start_delay_line(self) -> None:
        """One delay line for all delayed links, in the bridge namespace; ready before any traffic."""
        links = []
        for n in self.nodes:
            delay = self.spec(n).link.delay_s  # each direction, as netem on both ends would
            if delay > 0:
                links.append(",".join([*network.delay_ends(n), f"{delay:.9f}", f"{delay:.9f}"]))
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.bridge_namespace, sys.executable, "-m", "deepthings.testbed.delayline",
             "--run", self.prefix, *links],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        self._procs.append(proc)
        self.delay_line = proc
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "ready", or EOF if it failed
        if line.strip() != "ready":
            _stop_process(proc)
            err = proc.stderr.read() if proc.stderr else ""
            raise EmulationError(f"the delay line (link delay without sch_netem) did not start: {err.strip()[-2000:]}")

    def _reap(self) -> None:
        for proc in self._procs:
            proc.poll()

    def _write_state(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        state = {
            "prefix": self.prefix,
            "owner_pid": os.getpid(),
            "created": time.time(),
            "namespaces": [self.bridge_namespace] + [self.namespace(n) for n in self.nodes],
            "cgroups": [self.cgroup(n) for n in self.nodes],
        }
        self._state_file.write_text(json.dumps(state))

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum: int, frame: Any) -> None:
            raise TestbedInterrupted(signum)

        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, handler)

    def _defer_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            old = signal.signal(sig, signal.SIG_IGN)
            self._old_handlers.setdefault(sig, old)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        self._old_handlers.clear()

    # ---------------------------------------------------------------- running things
    def environment(self, node: str | int) -> dict[str, str]:
        """Variables every process in the testbed sees (addresses of the gateway and devices)."""
        name = self.node(node)
        return {
            "DEEPTHINGS_TESTBED_PREFIX": self.prefix,
            "DEEPTHINGS_TESTBED_NODE": name,
            "DEEPTHINGS_TESTBED_ADDRESS": self.address(name),
            "DEEPTHINGS_TESTBED_GATEWAY": self.address("gw"),
            "DEEPTHINGS_TESTBED_DEVICES": ",".join(self.address(d) for d in self.devices),
        }

    def spawn(
        self,
        node: str | int,
        cmd: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        **popen_kwargs: Any,
    ) -> subprocess.Popen:
        """Start `cmd` inside a node's namespace and cgroup; the testbed stops it on close."""
        if not self._up:
            raise EmulationError("testbed is not running")
        name = self.node(node)
        cg, cg_name = self._cg, self.cgroup(name)
        assert cg is not None

        def enter_cgroup() -> None:
            # Runs in the child between fork and exec, so even its first instruction is capped.
            cg.add_pid(cg_name, os.getpid())

        full_env = dict(os.environ if env is None else env)
        full_env.update(self.environment(name))
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace(name), *cmd],
            env=full_env,
            preexec_fn=enter_cgroup,
            start_new_session=True,
            **popen_kwargs,
        )
        self._procs.append(proc)
        return proc

    def run(
        self,
        node: str | int,
        cmd: Sequence[str],
        *,
        timeout: float | None = None,
        check: bool = False,
        **popen_kwargs: Any,
    ) -> subprocess.CompletedProcess:
        """Run `cmd` in a node to completion (capped like spawn); returns its CompletedProcess."""
        capture = popen_kwargs.pop("capture_output", False)
        if capture:
            popen_kwargs.setdefault("stdout", subprocess.PIPE)
            popen_kwargs.setdefault("stderr", subprocess.PIPE)
        proc = self.spawn(node, cmd, **popen_kwargs)
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            _stop_process(proc)
            raise
        result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        if check and proc.returncode != 0:
            raise EmulationError(f"`{' '.join(cmd)}` on {self.node(node)} exited with {proc.returncode}")
        return result

    # ---------------------------------------------------------------- measurements
    def link_bytes(self) -> dict[str, dict[str, int]]:
        """Per node: bytes it sent ('up') and received ('down') over its link, read on the bridge."""
        counters = network.link_counters(self.bridge_namespace)
        out = {}
        for name in self.nodes:
            c = counters.get(name, {})
            # The bridge port receives what the node uploads and transmits what it downloads.
            out[name] = {"up": c.get("rx_bytes", 0), "down": c.get("tx_bytes", 0)}
        return out

    def usage(self) -> dict[str, dict[str, float | int | None]]:
        """Per node: CPU seconds used, seconds throttled by the quota, peak memory bytes."""
        cg = self._cg
        assert cg is not None
        return {
            name: {
                "cpu_s": cg.cpu_seconds(self.cgroup(name)),
                "throttled_s": cg.throttled_seconds(self.cgroup(name)),
                "memory_peak_bytes": cg.memory_peak_bytes(self.cgroup(name)),
            }
            for name in self.nodes
        }

    def set_cpu(self, node: str | int, cpu: float | None) -> None:
        """Change a node's CPU cap while it runs (None = uncapped; the spec is not changed).

        Experiments start processes uncapped so imports and model loading do not take minutes,
        then apply the device's cap before the first measured frame.
        """
        assert self._cg is not None
        self._cg.set_cpu(self.cgroup(node), cpu)

    def pids(self, node: str | int) -> list[int]:
        """Processes currently in a node's cgroup."""
        assert self._cg is not None
        return self._cg.pids(self.cgroup(node))

    def describe(self) -> str:
        """One line per node: name, address, CPU cap, link."""
        lines = [f"testbed {self.prefix} (bridge namespace {self.bridge_namespace})"]
        for name in self.nodes:
            s = self.spec(name)
            cpu = "uncapped" if s.cpu is None else f"{s.cpu:g} cores"
            link = ", ".join(
                p for p in (
                    s.link.rate and f"rate {s.link.rate}",
                    s.link.delay and f"delay {s.link.delay}",
                    s.link.loss and f"loss {s.link.loss}",
                ) if p
            ) or "unshaped"
            lines.append(f"  {name:>3}  {self.address(name):<13} ns {self.namespace(name):<12} cpu {cpu:<12} {link}")
        if self.delay_line is not None:
            lines.append("  (kernel lacks sch_netem: link delay by a userspace delay line in the bridge namespace)")
        return "\n".join(lines)


def _stop_process(proc: subprocess.Popen, grace_s: float = 2.0) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_any(procs: Sequence[subprocess.Popen], poll_s: float = 0.05,
             stop: Callable[[], bool] | None = None) -> subprocess.Popen | None:
    """Block until one of `procs` exits (returns it) or `stop()` is true (returns None)."""
    while True:
        for p in procs:
            if p.poll() is not None:
                return p
        if stop is not None and stop():
            return None
        time.sleep(poll_s)
