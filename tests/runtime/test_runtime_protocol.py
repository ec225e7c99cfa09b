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


# ---------------------------------------------------------------- 8-bit coded images (q8)
def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)),
    seed=st.integers(0, 2**32 - 1),
    crop=st.tuples(st.integers(0, 8), st.integers(0, 8)),
)
def test_an_8bit_image_travels_as_codes_and_comes_back_bit_identical(shape, seed, crop):
    codes = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    x = codes.astype(np.float32) / np.float32(255.0)  # what Darknet's /255 gives
    packed = protocol.exact8(x)
    assert packed is not None and packed.nbytes * 4 == x.nbytes
    np.testing.assert_array_equal(packed.codes, codes)
    back = decode(_bytes(encode(make("SUBMIT", [packed], ref=1, keep=False))), "test")
    assert back.arrays[0].dtype == np.float32
    np.testing.assert_array_equal(_bits(back.arrays[0]), _bits(x))
    np.testing.assert_array_equal(back.codes[0].codes, codes)
    assert back.codes[0].to_float() is back.arrays[0]  # decoded once, shared
    # a crop of the codes is the codes of the crop
    r, c = min(crop[0], shape[1] - 1), min(crop[1], shape[2] - 1)
    sub = packed[:, r:, c:]
    t = decode(_bytes(encode(make("TASK", [sub], frame=1, tile=0, level=0, meta={}))), "test")
    np.testing.assert_array_equal(_bits(t.arrays[0]), _bits(x[:, r:, c:]))


@pytest.mark.parametrize(
    "values",
    [
        [0.5],  # not k/255
        [-0.0],  # equal to 0.0 but other bits
        [float("nan")],
        [256 / 255],  # out of 8 bits
        [-1 / 255],
        [np.nextafter(np.float32(3 / 255), np.float32(1))],  # one ulp off a code
    ],
)
def test_values_that_are_not_exact_8bit_codes_are_never_coded(values):
    x = np.array(values, np.float32).reshape(1, 1, -1)
    assert protocol.exact8(x) is None


def test_random_floats_stay_float32():
    x = np.random.default_rng(0).random((3, 8, 8), dtype=np.float32)
    assert protocol.exact8(x) is None


def test_coded_arrays_only_where_the_schema_allows_them():
    packed = protocol.exact8(np.zeros((1, 2, 2), np.float32))
    with pytest.raises(ProtocolError, match="8-bit"):
        make("RESULT", [packed], frame=1, tile=0, stolen=False, compute_s=0.0, meta={})
    # and a receiver refuses a q8 spec in a message type that has none
    frames = _bytes(encode(make("FRAME", [packed], frame=1)))
    header = msgpack.unpackb(frames[0])
    header["t"] = "REUSE"
    header.update(frame=1, tile=0, meta={})
    with pytest.raises(ProtocolError, match="bad spec"):
        decode([msgpack.packb(header)] + frames[1:], "test")
