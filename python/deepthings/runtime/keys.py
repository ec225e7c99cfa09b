"""The cluster's CURVE key pair: one pair per cluster, held by every member.

A member (gateway, edge, client) proves it belongs to the cluster by completing the CURVE
handshake with the cluster key pair as its own client key; servers accept exactly that public
key (a ZAP handler), so a peer without the cluster's secret key is refused. Local clusters use
a throwaway pair made in memory.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from deepthings.errors import ClusterError

log = logging.getLogger("deepthings.runtime.keys")
ZAP_DOMAIN = "deepthings"


@dataclass(frozen=True)
class ClusterKey:
    """A CURVE key pair in Z85 text (40 bytes each)."""

    public: bytes
    secret: bytes

    @classmethod
    def generate(cls) -> "ClusterKey":
        """A fresh random pair (throwaway keys of a local cluster, or `deepthings keys`)."""
        public, secret = zmq.curve_keypair()
        return cls(public, secret)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the pair in ZeroMQ's certificate format, readable only by the owner."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = (
            "#   deepthings cluster key (ZeroMQ CURVE certificate); keep it secret\n"
            "metadata\n"
            "curve\n"
            f'    public-key = "{self.public.decode()}"\n'
            f'    secret-key = "{self.secret.decode()}"\n'
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "ClusterKey":
        """Read a pair written by :meth:`save` (or by zmq.auth.create_certificates)."""
        path = Path(path)
        if not path.is_file():
            raise ClusterError(f"{path}: key file not found (make one with `deepthings keys`)")
        try:
            public, secret = zmq.auth.load_certificate(str(path))
        except Exception as exc:
            raise ClusterError(f"{path}: not a CURVE key file ({exc})") from None
        if not secret:
            raise ClusterError(f"{path}: holds only a public key; the cluster key needs the secret key too")
        return cls(public, secret)

    @classmethod
    def coerce(cls, key: "ClusterKey | str | os.PathLike[str] | None") -> "ClusterKey | None":
        """Accept a ClusterKey, a key file path, or None (no encryption)."""
        if key is None or isinstance(key, ClusterKey):
            return key
        return cls.load(key)


class _OnlyClusterKey:
    """ZAP credentials provider: admit exactly the cluster's public key."""

    def __init__(self, public: bytes) -> None:
        self._public = bytes(public)

    def callback(self, domain: str, key: bytes) -> bool:
        ok = key == self._public
        if not ok:
            log.warning("refused a peer whose CURVE key is not the cluster key (domain %r)", domain)
        return ok


def start_authenticator(ctx: zmq.Context, key: ClusterKey) -> "zmq.auth.thread.ThreadAuthenticator":
    """Run a ZAP handler in ``ctx`` admitting only ``key``; stop it with ``.stop()``."""
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(ctx, log=logging.getLogger("deepthings.runtime.zap"))
    auth.start()
    auth.configure_curve_callback(ZAP_DOMAIN, credentials_provider=_OnlyClusterKey(key.public))
    return auth


def secure_server(sock: zmq.Socket, key: ClusterKey | None) -> None:
    """Make ``sock`` a CURVE server with the cluster key (before bind)."""
    if key is None:
        return
    sock.curve_secretkey = key.secret
    sock.curve_publickey = key.public
    sock.curve_server = True
    sock.zap_domain = ZAP_DOMAIN.encode()


def secure_client(sock: zmq.Socket, key: ClusterKey | None) -> None:
    """Make ``sock`` a CURVE client presenting the cluster key (before connect)."""
    if key is None:
        return
    sock.curve_serverkey = key.public
    sock.curve_publickey = key.public
    sock.curve_secretkey = key.secret
