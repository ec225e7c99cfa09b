"""Model files in MODEL chunks: every chunk is checked for its place and size, the whole for its SHA-256."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from deepthings.errors import ProtocolError
from deepthings.runtime.filetransfer import MODEL_CHUNK_BYTES, FileDownload, model_chunk
from deepthings.runtime.protocol import decode, encode, make


def _serve(data: bytes, req) -> "object":
    """The gateway's answer to one MODEL_REQ, through the real codec."""
    sha = hashlib.sha256(data).hexdigest()
    return decode(encode(model_chunk(sha, "f.bin", data, decode(encode(req))["offset"], "edge")), "gateway")


@pytest.mark.parametrize("size", [1, MODEL_CHUNK_BYTES - 1, MODEL_CHUNK_BYTES, 3 * MODEL_CHUNK_BYTES + 17])
def test_download_reassembles_the_file(size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    dl = FileDownload(hashlib.sha256(data).hexdigest(), "f.bin", size)
    chunks = 0
    while True:
        got = dl.add(_serve(data, dl.request()))
        chunks += 1
        if got is not None:
            break
    assert got == data and chunks == -(-size // MODEL_CHUNK_BYTES)


def test_download_refuses_chunks_out_of_place_and_bad_files():
    data = bytes(range(256)) * 1024  # 4 chunks
    sha = hashlib.sha256(data).hexdigest()
    with pytest.raises(ProtocolError, match="does not follow"):
        FileDownload(sha, "f.bin", len(data)).add(model_chunk(sha, "f.bin", data, MODEL_CHUNK_BYTES, "e"))
    with pytest.raises(ProtocolError, match="does not follow"):  # the gateway claims another size
        FileDownload(sha, "f.bin", len(data) + 1).add(model_chunk(sha, "f.bin", data, 0, "e"))
    with pytest.raises(ProtocolError, match="unexpected MODEL"):
        FileDownload("ab" * 32, "f.bin").add(model_chunk(sha, "f.bin", data, 0, "e"))
    with pytest.raises(ProtocolError, match="does not follow"):  # an empty chunk would never end
        FileDownload(sha, "f.bin").add(make("MODEL", [np.zeros(0, np.uint8)], sha=sha, name="f.bin", offset=0, total=4))
    wrong = FileDownload("cd" * 32, "f.bin")
    msg = model_chunk("cd" * 32, "f.bin", b"tiny", 0, "e")
    with pytest.raises(ProtocolError, match="SHA-256"):
        wrong.add(msg)


@pytest.mark.parametrize("offset", [-1, 4, 10**9])
def test_gateway_refuses_offsets_outside_the_file(offset):
    with pytest.raises(ProtocolError, match="outside f.bin"):
        model_chunk("00" * 32, "f.bin", b"four", offset, "peer 7")
