"""The emulated cluster: connectivity, CPU caps, rate shaping, and no trace left behind,
after a clean exit, a failing workload, SIGINT, SIGTERM, and (with --cleanup) SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepthings.errors import EmulationError
from deepthings.testbed import Testbed, cleanup_leftovers, device_specs, leftovers, network
from deepthings.testbed.testbed import STATE_DIR

from testbed_helpers import needs_root, prefix_from, traces

CLI = [sys.executable, "-m", "deepthings", "emulate"]


def test_refuses_without_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(EmulationError, match="needs root"):
        Testbed(1).start()
    from deepthings.cli import main

    assert main(["emulate", "--devices", "1", "--", "true"]) == 1


@needs_root
def test_cluster_up_and_torn_down():
    specs = device_specs(3, cpu="0.25", rate="50mbit", device_cpu="0.5,0.25,0.2")
    with Testbed(specs) as tb:
        prefix = tb.prefix
        assert {f"{prefix}-{n}" for n in ["br", "gw", "d0", "d1", "d2"]} <= set(network.list_namespaces())
        assert traces(prefix)  # sanity: the checker sees a live run
        for node in tb.devices:
            assert network.qdiscs(tb.namespace(node), "eth0")[0] == "htb"
            assert network.qdiscs(tb.bridge_namespace, node)[0] == "htb"
        quotas = [
            Path(f"/sys/fs/cgroup/cpu/deepthings-testbed/{tb.cgroup(d)}/cpu.cfs_quota_us").read_text().strip()
            for d in tb.devices
        ] if tb._cg.version == 1 else [
            Path(tb._cg.dirs(tb.cgroup(d))[0] / "cpu.max").read_text().split()[0] for d in tb.devices
        ]
        assert quotas == ["50000", "25000", "20000"]
        # Every device reaches the gateway, and nothing outside the subnet is routable.
        code = (
            "import socket,sys\n"
            "s=socket.create_connection((sys.argv[1], 7777), timeout=5); s.sendall(sys.argv[2].encode()); s.close()"
        )
        server = (
            "import socket\n"
            "l=socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"l.bind(('{tb.address('gw')}', 7777)); l.listen(8); got=[]\n"
            "while len(got) < 3:\n"
            "    c,_=l.accept(); got.append(c.recv(100).decode()); c.close()\n"
            "print(','.join(sorted(got)))"
        )
        srv = tb.spawn("gw", [sys.executable, "-c", server], stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        for i in range(3):
            for attempt in range(20):
                r = tb.run(i, [sys.executable, "-c", code, tb.address("gw"), f"d{i}"], timeout=30)
                if r.returncode == 0:
                    break
                time.sleep(0.1)  # the server may not listen yet
            assert r.returncode == 0
        out, _ = srv.communicate(timeout=30)
        assert out.strip() == "d0,d1,d2"
        r = tb.run(0, ["ip", "route", "get", "8.8.8.8"], capture_output=True, text=True)
        assert r.returncode != 0  # private subnet only: no way out
        assert tb.link_bytes()["d0"]["up"] > 0
    assert traces(prefix) == []


@needs_root
def test_cpu_cap_and_rate_shaping():
    """A busy loop gets at most its quota; 2 MB over a 8 mbit link takes at least ~2 s."""
    specs = device_specs(1, cpu="0.2", rate="8mbit")
    with Testbed(specs, gateway=device_specs(1, rate="8mbit")[0]) as tb:
        busy = "import time\nt=time.time()\nwhile time.time()-t<1.5: pass\nprint(time.process_time())"
        t0 = time.monotonic()
        r = tb.run(0, [sys.executable, "-c", busy], capture_output=True, text=True, timeout=60)
        wall = time.monotonic() - t0
        cpu = tb.usage()["d0"]["cpu_s"]
        # A cap can only lower CPU time (a busy machine lowers it further, never raises it).
        assert float(r.stdout) <= cpu + 0.01
        assert cpu < 0.2 * wall * 1.25 + 0.05, (cpu, wall)
        server = (
            "import socket,time\n"
            f"l=socket.socket(); l.bind(('{tb.address('gw')}', 7778)); l.listen(1)\n"
            "c,_=l.accept(); n=0; t=None\n"
            "while True:\n"
            "    b=c.recv(1<<16)\n"
            "    if t is None: t=time.time()\n"
            "    if not b: break\n"
            "    n+=len(b)\n"
            "print(n, time.time()-t)"
        )
        srv = tb.spawn("gw", [sys.executable, "-c", server], stdout=subprocess.PIPE, text=True)
        client = (
            "import socket,sys,time\n"
            "for _ in range(50):\n"
            "    try: s=socket.create_connection((sys.argv[1], 7778)); break\n"
            "    except OSError: time.sleep(0.1)\n"
            "s.sendall(b'x'*2_000_000); s.close()"
        )
        tb.run(0, [sys.executable, "-c", client, tb.address("gw")], timeout=60, check=True)
        out, _ = srv.communicate(timeout=60)
        nbytes, seconds = out.split()
        assert int(nbytes) == 2_000_000
        # Lower bound only: shaping guarantees the transfer cannot be faster than the rate.
        assert float(seconds) > 0.75 * 2_000_000 * 8 / 8e6, seconds
        up = tb.link_bytes()["d0"]["up"]
        assert up >= 2_000_000


@needs_root
def test_short_cpu_period_caps_the_same_share():
    """A 10 ms CFS period is written to the group and still gives the device its share only."""
    with Testbed(device_specs(1, cpu="0.25"), cpu_period_us=10_000) as tb:
        cg = tb._cg
        d = cg.dirs(tb.cgroup(0))[0]
        if cg.version == 1:
            assert (d / "cpu.cfs_period_us").read_text().strip() == "10000"
            assert (d / "cpu.cfs_quota_us").read_text().strip() == "2500"
        else:
            assert (d / "cpu.max").read_text().split() == ["2500", "10000"]
        busy = "import time\nt=time.time()\nwhile time.time()-t<1.0: pass"
        t0 = time.monotonic()
        tb.run(0, [sys.executable, "-c", busy], timeout=60)
        wall = time.monotonic() - t0
        assert tb.usage()["d0"]["cpu_s"] < 0.25 * wall * 1.25 + 0.05


@needs_root
def test_delay_is_applied_with_or_without_netem():
    """20 ms per direction on d0's and the gateway's links: SYN + RST between them cross four
    delayed hops. Without sch_netem (this project's machine) the delay line does it."""
    specs = device_specs(1, delay="20ms")
    with Testbed(specs, gateway=device_specs(1, delay="20ms")[0]) as tb:
        if network.netem_available():
            assert "netem" in network.qdiscs(tb.namespace(0), "eth0")
        else:
            assert tb.delay_line is not None and tb.delay_line.poll() is None
            assert "delay line" in tb.describe()
        probe = (
            "import socket,sys,time\n"
            "t=time.time()\n"
            "try: socket.create_connection((sys.argv[1], 9), timeout=5)\n"
            "except OSError: pass\n"
            "print(time.time()-t)"
        )
        r = tb.run(0, [sys.executable, "-c", probe, tb.address("gw")], capture_output=True, text=True, timeout=30)
        assert 0.075 <= float(r.stdout) < 0.5, r.stdout


@needs_root
def test_delay_line_per_device_delays_and_bulk_data():
    """Heterogeneous delays (d0 25 ms, d1 none, gateway none): d0's round trip to the gateway
    is 50 ms, d1's under 10; 20 MB each way through d0's delayed, rate-shaped link arrive
    intact (GSO packets and checksum offload pass the delay line whole). Then the delay line
    is gone with the testbed."""
    specs = device_specs(2, rate="200mbit")
    specs[0] = device_specs(1, rate="200mbit", delay="25ms")[0]
    rtt = (
        "import socket,sys,time\n"
        "c=socket.create_connection((sys.argv[1], 7000), timeout=10)\n"
        "c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)\n"
        "rt=[]\n"
        "for _ in range(5):\n"
        "    t=time.perf_counter(); c.sendall(b'p'); c.recv(1); rt.append(time.perf_counter()-t)\n"
        "print(min(rt))"
    )
    echo = (
        "import socket,hashlib\n"
        "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('0.0.0.0', 7000)); s.listen(); print('ready', flush=True)\n"
        "for _ in range(3):\n"
        "    c,_=s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1); n=0; h=hashlib.sha256()\n"
        "    while True:\n"
        "        d=c.recv(1<<20)\n"
        "        if not d: break\n"
        "        if d==b'p': c.sendall(b'x'); continue\n"
        "        h.update(d); n+=len(d)\n"
        "        if n>=20_000_000: c.sendall(h.digest()+bytes(range(256))*78125); break\n"
        "    c.close()\n"
    )
    bulk = (
        "import socket,sys,hashlib\n"
        "c=socket.create_connection((sys.argv[1], 7000), timeout=30)\n"
        "data=hashlib.sha256(b'x').digest()*625000\n"
        "c.sendall(data); got=b''\n"
        "while len(got)<32+20_000_000:\n"
        "    d=c.recv(1<<20)\n"
        "    if not d: break\n"
        "    got+=d\n"
        "print(got[:32]==hashlib.sha256(data).digest() and got[32:]==bytes(range(256))*78125)"
    )
    with Testbed(specs) as tb:
        prefix = tb.prefix
        assert tb.delay_line is not None or network.netem_available()
        server = tb.spawn("gw", [sys.executable, "-c", echo], stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "ready"
        gw = tb.address("gw")
        slow = tb.run(0, [sys.executable, "-c", rtt, gw], capture_output=True, text=True, timeout=30)
        fast = tb.run(1, [sys.executable, "-c", rtt, gw], capture_output=True, text=True, timeout=30)
        assert 0.049 <= float(slow.stdout) < 0.2, slow.stderr
        assert float(fast.stdout) < 0.01, fast.stderr
        ok = tb.run(0, [sys.executable, "-c", bulk, gw], capture_output=True, text=True, timeout=60)
        assert ok.stdout.strip() == "True", ok.stderr
    assert traces(prefix) == []


@needs_root
def test_cli_workload_failure_leaves_nothing():
    p = subprocess.run(
        CLI + ["--devices", "2", "--cpu", "0.3", "--rate", "100mbit",
               "--edge", "sleep 60", "--", "sh", "-c", "echo gw={gateway} me=$DEEPTHINGS_TESTBED_NODE; exit 7"],
        capture_output=True, text=True, timeout=120,
    )
    assert p.returncode == 7, p.stderr
    assert "gw=10.200.0.1 me=gw" in p.stdout
    assert traces(prefix_from(p.stderr)) == []


@needs_root
def test_cli_stats_file(tmp_path):
    stats = tmp_path / "stats.json"
    p = subprocess.run(
        CLI + ["--devices", "1", "--stats", str(stats), "--", sys.executable, "-c", "print(sum(range(10**6)))"],
        capture_output=True, text=True, timeout=120,
    )
    assert p.returncode == 0, p.stderr
    data = json.loads(stats.read_text())
    assert set(data["usage"]) == {"gw", "d0"} and data["usage"]["gw"]["cpu_s"] > 0
    assert traces(data["prefix"]) == []


@needs_root
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_signal_tears_down(sig):
    # The edge ignores SIGTERM and forks a grandchild: teardown must still reach both.
    edge = "sh -c \"trap '' TERM; sleep 300 & sleep 300\""
    proc = subprocess.Popen(
        CLI + ["--devices", "2", "--cpu", "0.25", "--edge", edge, "--", "sleep", "300"],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stderr.readline()
        prefix = prefix_from(line)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(_cgroup_pids(prefix, "d1")) < 2:
            time.sleep(0.05)
        pids = _cgroup_pids(prefix, "d1") + _cgroup_pids(prefix, "gw")
        assert len(pids) >= 3
        proc.send_signal(sig)
        time.sleep(0.5)  # teardown is waiting for the edge that ignores SIGTERM...
        if proc.poll() is None:
            proc.send_signal(sig)  # ...and an impatient second signal must not cut it short
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read()
    assert proc.returncode == 128 + sig or proc.returncode == 130, err
    assert traces(prefix) == []
    assert not any(os.path.exists(f"/proc/{p}") and _state(p) != "Z" for p in pids)


@needs_root
def test_cleanup_after_sigkill():
    # with a delay: where the kernel lacks netem a delay line runs outside the cgroups
    proc = subprocess.Popen(CLI + ["--devices", "1", "--delay", "1ms", "--edge", "sleep 300", "--", "sleep", "300"],
                            stderr=subprocess.PIPE, text=True)
    try:
        prefix = prefix_from(proc.stderr.readline())
        proc.kill()  # no chance to tear down
        proc.wait(timeout=30)
        assert traces(prefix)
        assert prefix in leftovers().prefixes
        p = subprocess.run(CLI + ["--cleanup"], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        assert f"{prefix}-d0" in p.stdout
        assert traces(prefix) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        cleanup_leftovers()


def test_cleanup_keeps_live_runs():
    """A run whose owner is alive (this process) is not a leftover unless --all."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with Testbed(1) as tb:
        assert tb.prefix not in leftovers().prefixes
        assert tb.prefix in leftovers(all_runs=True).prefixes
        assert (STATE_DIR / f"{tb.prefix}.json").exists()


def _cgroup_pids(prefix: str, node: str) -> list[int]:
    from deepthings.testbed import cgroups

    return cgroups.detect().pids(f"{prefix}-{node}")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "gone"


def test_loss_bytecode():
    """The cBPF loss filter compares a random u32 against (1 - loss) * 2^32."""
    code = network.loss_bytecode(0.25)
    assert code.startswith("4,32 0 0 4294963256,53 1 0 3221225472,")
    with pytest.raises(EmulationError):
        network.loss_bytecode(0.0)


@needs_root
def test_packet_loss_is_emulated():
    """~30% loss on the device's uplink (netem, or the BPF filter where netem is missing)."""
    specs = device_specs(1, loss="30%")
    with Testbed(specs) as tb:
        kinds = network.qdiscs(tb.namespace(0), "eth0")
        assert "netem" in kinds or "clsact" in kinds
        receiver = (
            "import socket\n"
            f"s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('{tb.address('gw')}', 7779))\n"
            # ARP itself crosses the lossy link and retries once a second, so the first
            # datagram may take several seconds; only then does silence mean "done".
            "s.settimeout(30); got=set(); print('ready', flush=True)\n"
            "try:\n"
            "    while True:\n"
            "        data, peer = s.recvfrom(64); got.add(int(data)); s.settimeout(3)\n"
            "        if int(data) < 0: s.sendto(b'ack', peer)\n"
            "except socket.timeout: pass\n"
            "print(len([g for g in got if g >= 0]))"
        )
        srv = tb.spawn("gw", [sys.executable, "-c", receiver], stdout=subprocess.PIPE, text=True)
        sender = (
            "import socket,sys,time\n"
            "s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.settimeout(0.1)\n"
            "for _ in range(200):\n"  # until ARP made it through the lossy link both ways
            "    s.sendto(b'-1', (sys.argv[1], 7779))\n"
            "    try:\n"
            "        s.recv(8); break\n"
            "    except socket.timeout: pass\n"
            "else: sys.exit('no ack')\n"
            "for i in range(2000):\n"
            "    s.sendto(str(i).encode(), (sys.argv[1], 7779))\n"
            "    if i % 50 == 0: time.sleep(0.005)\n"
        )
        assert srv.stdout.readline().strip() == "ready"  # bound before the first datagram
        tb.run(0, [sys.executable, "-c", sender, tb.address("gw")], timeout=60, check=True)
        out, _ = srv.communicate(timeout=60)
        delivered = int(out) / 2000
        assert 0.55 < delivered < 0.85, delivered  # binomial sd ~1%: generous bounds


@needs_root
def test_guarantee_cpu_raises_priority():
    with Testbed(device_specs(1, cpu="0.3"), guarantee_cpu=True) as tb:
        cg = tb._cg
        if cg.version == 1:
            assert int((cg.mounts["cpu"] / "deepthings-testbed" / "cpu.shares").read_text()) >= 10 * 1024
        else:
            assert int((cg.root / "deepthings-testbed" / "cpu.weight").read_text()) >= 1000
        busy = "import time\nt=time.time()\nwhile time.time()-t<1.0: pass"
        t0 = time.monotonic()
        tb.run(0, [sys.executable, "-c", busy], timeout=60, check=True)
        assert tb.usage()["d0"]["cpu_s"] < 0.3 * (time.monotonic() - t0) * 1.25 + 0.05  # still capped
