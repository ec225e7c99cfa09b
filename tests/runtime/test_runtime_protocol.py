"""Protocol codec: round trips, and every malformed message is rejected with ProtocolError."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepthings.errors import ProtocolError
from deepthings.runtime import protocol
from deepthings.runtime.protocol import PROTOCOL_VERSION, SCHEMAS, decode, encode, make


def _bytes(frames):
    return [bytes(memoryview(f).cast("B")) if not isinstance(f, bytes) else f for f in frames]


def test_round_trip_task_with_arrays():
    crop = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    extra = np.ones((1, 2, 2), np.float32)
    msg = make("TASK", [crop, extra], frame=7, tile=3, level=1, meta={"origin": "local"})
    back = decode(_bytes(encode(msg)), "test")
    assert back.type == "TASK" and back["frame"] == 7 and back["tile"] == 3 and back["meta"] == {"origin": "local"}
    np.testing.assert_array_equal(back.arrays[0], crop)
    np.testing.assert_array_equal(back.arrays[1], extra)
    assert back.nbytes == crop.nbytes + extra.nbytes


def test_non_contiguous_arrays_are_sent_correctly():
    base = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    view = base[:, 1:3, ::2]
    back = decode(_bytes(encode(make("FRAME", [view], frame=1))), "test")
    np.testing.assert_array_equal(back.arrays[0], view)


@pytest.mark.parametrize(
    "frames, why",
    [
        ([], "empty"),
        ([b"\xc1garbage"], "undecodable"),
        ([msgpack.packb([1, 2])], "not a map"),
        ([msgpack.packb({"v": PROTOCOL_VERSION, "t": "NOPE", "a": []})], "unknown message type"),
        ([msgpack.packb({"v": 99, "t": "HEARTBEAT", "a": []})], "protocol version"),
        ([msgpack.packb({"v": PROTOCOL_VERSION, "t": "ACCEPT", "a": [], "ref": 1})], "lacks field"),
        ([msgpack.packb({"v": PROTOCOL_VERSION, "t": "ACCEPT", "a": [], "ref": "1", "frame": 1, "keep": True})], "type str"),
        ([msgpack.packb({"v": PROTOCOL_VERSION, "t": "ACCEPT", "a": [], "ref": True, "frame": 1, "keep": True})], "type bool"),
        ([msgpack.packb({"v": PROTOCOL_VERSION, "t": "FRAME", "a": [["f4", [2, 2]]], "frame": 1}), b"\0" * 15], "bytes"),
        ([msgpack.packb({"v": PROTOCOL_VERSION, "t": "FRAME", "a": [["f8", [2]]], "frame": 1}), b"\0" * 16], "bad spec"),
        ([msgpack.packb({"v": PROTOCOL_VERSION, "t": "FRAME", "a": [["f4", [0]]], "frame": 1}), b""], "bad shape"),
        ([msgpack.packb({"v": PROTOCOL_VERSION, "t": "FRAME", "a": [["f4", [-1, -4]]], "frame": 1}), b"\0" * 16], "bad shape"),
        ([msgpack.packb({"v": PROTOCOL_VERSION, "t": "FRAME", "a": [], "frame": 1})], "carries 0 arrays"),
        ([msgpack.packb({"v": PROTOCOL_VERSION, "t": "HEARTBEAT", "a": [["f4", [1]]]}), b"\0" * 4], "carries 1 arrays"),
        ([msgpack.packb({"v": PROTOCOL_VERSION, "t": "HEARTBEAT", "a": []}), b"extra"], "do not match"),
        ([msgpack.packb({"v": PROTOCOL_VERSION, "t": "HELLO", "a": [], "role": "king", "name": "x", "source": False, "steal_addr": None})], "role"),
        ([msgpack.packb({"v": PROTOCOL_VERSION, "t": "RESULT", "a": [["f4", [1]]], "frame": 1, "tile": 0, "stolen": False, "compute_s": float("nan"), "meta": {}}), b"\0" * 4], "sane number"),
    ],
)
def test_malformed_messages_are_rejected(frames, why):
    with pytest.raises(ProtocolError, match=why):
        decode(frames, "peer-x")


def test_try_decode_logs_and_returns_none(caplog):
    assert protocol.try_decode([b"junk"], "peer-y") is None
    assert "peer-y" in caplog.text


_json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=True) | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60)
@given(
    type_=st.sampled_from(sorted(SCHEMAS) + ["JUNK"]),
    fields=st.dictionaries(st.sampled_from(["v", "t", "a", "frame", "tile", "ref", "meta", "role", "name", "level", "keep"]), _json_like, max_size=6),
    data=st.lists(st.binary(max_size=64), max_size=3),
    version=st.sampled_from([PROTOCOL_VERSION, PROTOCOL_VERSION, 0, None]),
)
def test_random_headers_never_crash_the_decoder(type_, fields, data, version):
    """Any header + any frames: decode returns a valid message or raises ProtocolError, nothing else."""
    header = dict(fields)
    header.setdefault("t", type_)
    header.setdefault("v", version)
    header.setdefault("a", [["f4", [len(d) // 4 or 1]] for d in data])
    try:
        frames = [msgpack.packb(header, use_bin_type=True), *data]
    except (TypeError, ValueError, OverflowError):
        return
    try:
        msg = decode(frames, "fuzz")
    except ProtocolError:
        return
    assert msg.type in SCHEMAS
    for a in msg.arrays:
        assert a.dtype in (np.float32, np.uint8)


@settings(max_examples=40)
@given(raw=st.lists(st.binary(max_size=40), min_size=1, max_size=4))
def test_random_bytes_never_crash_the_decoder(raw):
    """Arbitrary byte frames: ProtocolError or a valid message."""
    try:
        decode(raw, "fuzz")
    except ProtocolError:
        pass
