"""ZeroMQ plumbing shared by every role: socket set-up (CURVE), addresses, send/receive of
:mod:`protocol` messages with byte accounting. No framing of our own: ZeroMQ multipart does it."""

from __future__ import annotations

import logging
import socket as _socket
from typing import Any

import zmq

from deepthings.errors import ClusterError
from deepthings.runtime import protocol
from deepthings.runtime.keys import ClusterKey, secure_client, secure_server
from deepthings.runtime.protocol import Message

log = logging.getLogger("deepthings.runtime.transport")

# Large tensors go zero-copy; tiny messages are cheaper to copy than to track.
_ZERO_COPY_MIN = 64 * 1024


def tcp_address(address: str, default_host: str = "127.0.0.1") -> str:
    """'host:port', ':port', 'port' or 'tcp://host:port' -> 'tcp://host:port'."""
    if address.startswith("tcp://"):
        return address
    host, _, port = address.rpartition(":")
    host = host or default_host
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ClusterError(f"bad address {address!r}: expected HOST:PORT")
    return f"tcp://{host}:{port}"


def local_ip_towards(address: str) -> str:
    """The local IP address the kernel would use to reach ``address`` (what peers can dial)."""
    host = tcp_address(address)[len("tcp://") :].rpartition(":")[0]
    with _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM) as s:
        try:
            s.connect((host, 9))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def _tune(sock: zmq.Socket) -> None:
    sock.linger = 0
    sock.sndhwm = 1000
    sock.rcvhwm = 1000
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    sock.maxmsgsize = protocol.MAX_ARRAY_BYTES  # a peer cannot make us buffer more than this per frame


def server_socket(ctx: zmq.Context, kind: int, bind: str, key: ClusterKey | None) -> tuple[zmq.Socket, str]:
    """A bound ROUTER (or other) socket; ``bind`` may use port 0 for a free port.
    Returns the socket and the endpoint actually bound."""
    sock = ctx.socket(kind)
    _tune(sock)
    if kind == zmq.ROUTER:
        sock.router_mandatory = False  # unroutable replies (peer gone) are dropped, not raised
    secure_server(sock, key)
    addr = tcp_address(bind)
    host, _, port = addr.rpartition(":")
    try:
        if port == "0":
            port_num = sock.bind_to_random_port(host)
            endpoint = f"{host}:{port_num}"
        else:
            sock.bind(addr)
            endpoint = sock.last_endpoint.decode()
    except zmq.ZMQError as exc:
        sock.close()
        raise ClusterError(f"cannot bind {addr}: {exc}") from None
    return sock, endpoint


def client_socket(ctx: zmq.Context, connect: str, key: ClusterKey | None, identity: bytes | None = None) -> zmq.Socket:
    """A DEALER connected to ``connect`` (reconnects are ZeroMQ's job)."""
    sock = ctx.socket(zmq.DEALER)
    _tune(sock)
    sock.reconnect_ivl = 100
    sock.reconnect_ivl_max = 2000
    if identity is not None:
        sock.identity = identity
    secure_client(sock, key)
    sock.connect(tcp_address(connect))
    return sock


def send(sock: zmq.Socket, msg: Message, identity: bytes | None = None) -> int:
    """Send one message (to ``identity`` on a ROUTER); returns the bytes put on the wire."""
    frames: list[Any] = protocol.encode(msg)
    if identity is not None:
        frames.insert(0, identity)
    nbytes = protocol.frames_nbytes(frames[1:] if identity is not None else frames)
    try:
        sock.send_multipart(frames, copy=nbytes < _ZERO_COPY_MIN, flags=zmq.NOBLOCK)
    except zmq.Again:
        log.warning("send queue full: dropped %s", msg.type)
        return 0
    except zmq.ZMQError as exc:  # e.g. host unreachable on a ROUTER: the peer is gone
        log.info("could not send %s: %s", msg.type, exc)
        return 0
    return nbytes


def recv(sock: zmq.Socket, router: bool, peer: str, logger: logging.Logger = log) -> tuple[bytes | None, Message | None, int]:
    """Receive one message without blocking. Returns (identity, message or None if it was
    malformed and dropped, bytes received)."""
    frames = sock.recv_multipart(copy=False, flags=zmq.NOBLOCK)
    identity = None
    if router:
        identity = bytes(frames[0].bytes)
        frames = frames[1:]
        peer = f"{peer}:{identity.hex()[:8]}"
    nbytes = protocol.frames_nbytes(frames)
    return identity, protocol.try_decode(frames, peer, logger), nbytes
