"""Link delay without sch_netem: a userspace delay line between two interfaces.

On kernels built without netem (and without fq/etf, which could hold packets until a BPF-set
departure time) nothing in tc can delay a packet. A delayed link then gets one more veth pair
in the bridge namespace (see network.connect)::

    node eth0 --veth-- P-w  [this process: + delay each way]  P-x --veth-- P (bridge port)

and this process, running in the bridge namespace, copies every frame from one side to the
other `delay` seconds after it arrived. The packet sockets use PACKET_VNET_HDR, so GSO
super-packets and checksum offload pass through whole (the kernel segments them after us, as
it would have without us), and a constant delay keeps every flow in order. htb (rate) and the
BPF loss filter stay on eth0 and the bridge port, as with netem.

Run by the testbed as ``python -m deepthings.testbed.delayline --run PREFIX W,X,UP_S,DOWN_S ...``
(PREFIX names the testbed run, so leftovers can be found); it prints
``ready`` once its sockets are bound, exits with the testbed's process (PR_SET_PDEATHSIG) and on
SIGTERM, and stops when an interface disappears.
"""

from __future__ import annotations

import ctypes
import errno
import heapq
import itertools
import select
import signal
import socket
import sys
import time
from typing import Sequence

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
MAX_FRAME = 256 * 1024  # a GSO super-packet (64 KB, or more with BIG TCP) + its vnet header


def open_port(ifname: str) -> socket.socket:
    """A non-blocking packet socket on `ifname` that sees only frames arriving there."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    try:
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)  # not the frames we send (Linux >= 4.20)
    except OSError:
        pass  # older kernels: recvfrom's packet type filters them below
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    s.bind((ifname, 0))
    s.setblocking(False)
    return s


class DelayLine:
    """Frames between pairs of interfaces, each direction delayed by its own constant."""

    def __init__(self, links: Sequence[tuple[str, str, float, float]]) -> None:
        # fd -> (socket it arrived on, socket to send on, delay)
        self.routes: dict[int, tuple[socket.socket, socket.socket, float]] = {}
        for wire, port, up_s, down_s in links:
            w, x = open_port(wire), open_port(port)
            self.routes[w.fileno()] = (w, x, up_s)  # from the node: towards the bridge
            self.routes[x.fileno()] = (x, w, down_s)  # from the bridge: towards the node
        self.queue: list[tuple[float, int, socket.socket, bytes]] = []
        self._seq = itertools.count()
        self.forwarded = 0
        self.dropped = 0

    def _receive(self, fd: int, now: float) -> None:
        src, dst, delay = self.routes[fd]
        while True:
            try:
                data, addr = src.recvfrom(MAX_FRAME)
            except BlockingIOError:
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            heapq.heappush(self.queue, (now + delay, next(self._seq), dst, data))

    def _send_due(self, now: float) -> None:
        while self.queue and self.queue[0][0] <= now:
            _, _, dst, data = heapq.heappop(self.queue)
            try:
                dst.send(data)
                self.forwarded += 1
            except OSError as exc:
                if exc.errno not in (errno.ENOBUFS, errno.EAGAIN):
                    raise
                self.dropped += 1  # a full device queue drops the frame, as a router's would

    def run(self) -> None:
        """Forward until an interface disappears."""
        poller = select.poll()
        for fd in self.routes:
            poller.register(fd, select.POLLIN)
        while True:
            now = time.monotonic()
            wait = max(0.0, self.queue[0][0] - now) if self.queue else 1.0
            for fd, ev in poller.poll(wait * 1000.0):
                if ev & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                    return  # the namespace and its interfaces are gone
                self._receive(fd, time.monotonic())
            self._send_due(time.monotonic())


def parse_link(text: str) -> tuple[str, str, float, float]:
    """'d0-w,d0-x,0.002,0.002' -> ('d0-w', 'd0-x', 0.002, 0.002)."""
    try:
        wire, port, up, down = text.split(",")
        return wire, port, float(up), float(down)
    except ValueError:
        raise SystemExit(f"delayline: bad link {text!r} (want WIRE,PORT,UP_S,DOWN_S)") from None


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: gone with the testbed, even after kill -9
    except (OSError, AttributeError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--run"]:
        args = args[2:]  # the run's prefix: only there to be seen in the process list
    if not args:
        raise SystemExit("usage: python -m deepthings.testbed.delayline [--run PREFIX] WIRE,PORT,UP_S,DOWN_S ...")
    _die_with_parent()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    line = DelayLine([parse_link(a) for a in args])
    print("ready", flush=True)
    try:
        line.run()
    except OSError as exc:
        if exc.errno not in (errno.ENODEV, errno.ENXIO, errno.ENETDOWN):
            raise
        # an interface went away: the testbed is being torn down
    finally:
        print(f"delayline: {line.forwarded} frames forwarded, {line.dropped} dropped on full queues",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
