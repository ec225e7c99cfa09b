"""`deepthings emulate`: run a workload on an emulated edge cluster (netns + tc + cgroups).

    deepthings emulate --devices 4 --cpu 0.25 --rate 20mbit --delay 2ms \
        --edge 'python -m deepthings edge --gateway {gateway}:5555' \
        -- python -m deepthings gateway --bind {gateway}:5555

The command after `--` runs in the gateway namespace; its exit status is ours. The --edge
command runs in every device namespace. Placeholders: {gateway} (gateway address), {address}
(the node's own), {index} (device index), {devices} (device count), {prefix} (run prefix).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from typing import Any

from deepthings.errors import EmulationError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "emulate",
        help="run a workload on an emulated edge cluster (network namespaces, tc, cgroups; root)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--devices", "-k", type=int, default=None, help="number of emulated edge devices")
    p.add_argument("--cpu", default=None, help="CPU cap of each device in cores, e.g. 0.25 (default: none)")
    p.add_argument("--rate", default=None, help="link rate of each node, tc units (20mbit)")
    p.add_argument("--delay", default=None, help="one-way link delay per direction (2ms); netem, else a userspace delay line")
    p.add_argument("--loss", default=None, help="packet loss per direction (0.1%%); netem, else a BPF filter")
    p.add_argument("--cpu-period", type=float, default=100.0, metavar="MS",
                   help="CFS period of the CPU caps in ms (default 100, the kernel's): a capped device "
                        "runs a cap-sized share of each period at full speed, then waits; shorter is "
                        "closer to a uniformly slow CPU")
    p.add_argument("--device-cpu", default=None, help="per-device CPU caps, comma-separated (0.5,0.25,...)")
    p.add_argument("--device-rate", default=None, help="per-device link rates, comma-separated")
    p.add_argument("--device-delay", default=None, help="per-device delays, comma-separated")
    p.add_argument("--device-loss", default=None, help="per-device losses, comma-separated")
    p.add_argument("--gateway-cpu", default=None, help="CPU cap of the gateway (default: none)")
    p.add_argument("--gateway-rate", default=None, help="gateway link rate (default: --rate)")
    p.add_argument("--gateway-delay", default=None, help="gateway link delay (default: --delay)")
    p.add_argument("--gateway-loss", default=None, help="gateway link loss (default: --loss)")
    p.add_argument("--edge", default=None, metavar="CMD",
                   help="command started in every device namespace (placeholders as above)")
    p.add_argument("--guarantee-cpu", action="store_true",
                   help="give the emulated devices CPU priority over other work on this machine, so each "
                        "gets its whole quota (the quota still caps it)")
    p.add_argument("--stats", default=None, metavar="JSON",
                   help="write per-node bytes sent/received, CPU seconds, throttling and peak memory")
    p.add_argument("--timeout", type=float, default=None, help="stop the workload after this many seconds")
    p.add_argument("--cleanup", action="store_true",
                   help="remove leftovers of crashed runs (namespaces, cgroups, state files) and exit")
    p.add_argument("--all", action="store_true", help="with --cleanup: also runs whose owner still lives")
    p.add_argument("workload", nargs=argparse.REMAINDER, help="-- command run in the gateway namespace")
    p.set_defaults(func=run)


def _fill(template: list[str], values: dict[str, Any]) -> list[str]:
    try:
        return [part.format(**values) for part in template]
    except (KeyError, IndexError) as exc:
        raise EmulationError(f"unknown placeholder {exc} in command {' '.join(template)!r}") from None


def run(args: argparse.Namespace) -> int:
    from deepthings.testbed import DeviceSpec, LinkSpec, Testbed, cleanup_leftovers, device_specs
    from deepthings.testbed.spec import parse_cpu
    from deepthings.testbed.testbed import TestbedInterrupted, wait_any

    if args.cleanup:
        removed = cleanup_leftovers(all_runs=args.all)
        if not removed:
            print("no testbed leftovers")
        for kind in ("namespaces", "cgroups", "state_files"):
            for item in getattr(removed, kind):
                print(f"removed {kind[:-1].replace('_', ' ')} {item}")
        return 0

    workload = list(args.workload)
    if workload and workload[0] == "--":
        workload = workload[1:]
    if args.devices is None:
        raise EmulationError("--devices K is required (or --cleanup)")
    if not workload and args.edge is None:
        raise EmulationError("nothing to run: give --edge CMD and/or a workload after --")
    specs = device_specs(
        args.devices, cpu=args.cpu, rate=args.rate, delay=args.delay, loss=args.loss,
        device_cpu=args.device_cpu, device_rate=args.device_rate,
        device_delay=args.device_delay, device_loss=args.device_loss,
    )
    gateway = DeviceSpec(
        cpu=parse_cpu(args.gateway_cpu),
        link=LinkSpec(
            rate=args.gateway_rate if args.gateway_rate is not None else args.rate,
            delay=args.gateway_delay if args.gateway_delay is not None else args.delay,
            loss=args.gateway_loss if args.gateway_loss is not None else args.loss,
        ),
    )
    edge_template = shlex.split(args.edge) if args.edge else None
    # SIGINT reaches us as KeyboardInterrupt; the Testbed turns SIGTERM/SIGHUP into one too.
    tb = Testbed(specs, gateway=gateway, guarantee_cpu=args.guarantee_cpu, cpu_period_us=int(round(args.cpu_period * 1000)))
    status = 0
    with tb:
        print(tb.describe(), file=sys.stderr)
        common = {"gateway": tb.address("gw"), "devices": len(specs), "prefix": tb.prefix}
        edges = []
        if edge_template:
            for i in range(len(specs)):
                cmd = _fill(edge_template, {**common, "address": tb.address(i), "index": i})
                edges.append(tb.spawn(i, cmd))
        started = time.monotonic()
        try:
            if workload:
                cmd = _fill(workload, {**common, "address": tb.address("gw"), "index": -1})
                main = tb.spawn("gw", cmd)
                while True:
                    try:
                        status = main.wait(timeout=0.2)
                        break
                    except subprocess.TimeoutExpired:
                        pass
                    if args.timeout is not None and time.monotonic() - started > args.timeout:
                        print(f"deepthings emulate: workload timed out after {args.timeout}s", file=sys.stderr)
                        status = 124
                        break
            else:
                # Only edges: run until one exits, the timeout passes, or we are interrupted.
                stop = (lambda: time.monotonic() - started > args.timeout) if args.timeout else None
                first = wait_any(edges, stop=stop)
                status = 124 if first is None else (first.returncode or 0)
        except TestbedInterrupted as exc:
            status = 128 + exc.signum
            print(f"deepthings emulate: {exc}, tearing down", file=sys.stderr)
        if args.stats:
            stats = {"prefix": tb.prefix, "wall_s": time.monotonic() - started,
                     "link_bytes": tb.link_bytes(), "usage": tb.usage()}
            with open(args.stats, "w") as f:
                json.dump(stats, f, indent=1)
    return status if status >= 0 else 128 - status  # negative = killed by a signal
