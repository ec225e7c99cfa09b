"""Model files cross the gateway's link in MODEL chunks, one asked for at a time, so a slow
link never hides heartbeats behind one huge message (a 14 MB block at 20 Mbit/s is 5.6 s of
silence, more than the liveness timeout) and the gateway's uplink stays shared with frames."""

from __future__ import annotations

import hashlib

import numpy as np

from deepthings.errors import ProtocolError
from deepthings.runtime.protocol import Message, make

# 64 KiB: 26 ms at 20 Mbit/s, so a download queues little ahead of other traffic on a shared
# link (a new TCP flow's slow start crawls behind a deep queue); one round trip per chunk
# still moves tens of MB/s on a LAN.
MODEL_CHUNK_BYTES = 64 * 1024


def model_chunk(sha: str, name: str, data: bytes, offset: int, peer: str) -> Message:
    """The gateway's answer to MODEL_REQ(sha, offset): the chunk of `data` starting at offset."""
    if not 0 <= offset < max(1, len(data)):
        raise ProtocolError(f"peer {peer}: MODEL_REQ offset {offset} outside {name} ({len(data)} bytes)")
    chunk = np.frombuffer(data, np.uint8)[offset:offset + MODEL_CHUNK_BYTES]
    return make("MODEL", [chunk], sha=sha, name=name, offset=offset, total=len(data))


class FileDownload:
    """One model file being received: checks every chunk's place and size, then the SHA-256."""

    def __init__(self, sha: str, name: str, size: int | None = None, peer: str = "gateway") -> None:
        self.sha, self.name, self.size, self.peer = sha, name, size, peer
        self._data = bytearray()

    def request(self) -> Message:
        """The MODEL_REQ for the next chunk."""
        return make("MODEL_REQ", sha=self.sha, offset=len(self._data))

    def add(self, msg: Message) -> bytes | None:
        """Take one MODEL chunk; returns the whole file once complete (SHA-256 checked)."""
        if msg["sha"] != self.sha:
            raise ProtocolError(f"{self.peer}: unexpected MODEL {msg['sha'][:16]} (waiting for {self.name})")
        total, offset = msg["total"], msg["offset"]
        if self.size is None:
            self.size = total
        chunk = msg.arrays[0]
        if total != self.size or offset != len(self._data) or chunk.size == 0 or offset + chunk.size > total:
            raise ProtocolError(f"{self.peer}: MODEL chunk of {self.name} at {offset} (+{chunk.size} of {total} "
                                f"bytes) does not follow the {len(self._data)} bytes received (size {self.size})")
        self._data += chunk.tobytes()
        if len(self._data) < total:
            return None
        data = bytes(self._data)
        if hashlib.sha256(data).hexdigest() != self.sha:
            raise ProtocolError(f"{self.peer}: MODEL {self.name} fails its SHA-256 check")
        return data
