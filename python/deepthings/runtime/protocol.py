"""The wire protocol of the deepthings runtime: every message type, its fields, and the codec.

Every role (gateway, edge, edge steal server, client) encodes and validates with this module
only. A message is one ZeroMQ multipart message::

    [ header , array_0 , array_1 , ... ]

``header`` is a msgpack map ``{"v": PROTOCOL_VERSION, "t": TYPE, "a": [[dtype, shape], ...],
...fields}`` and each following frame is the raw C-order bytes of one array (``float32``
tensors, or ``uint8`` blobs for model files). Arrays travel without copies: the sender hands
numpy buffers to ZeroMQ, the receiver wraps the frame with ``np.frombuffer``.

Images travel as 8-bit codes (dtype code ``q8``): a float32 array whose every value is exactly
``k / 255`` for a uint8 ``k`` (an 8-bit photo after Darknet's ``/255``, before any resize) is
sent as its codes, a quarter of the bytes, and decoded back to the *same* float32 bits
(:class:`Exact8`; :func:`exact8` checks the round trip bit for bit, so nothing is ever
approximated). The receiver gets float32 as usual, plus the codes in ``Message.codes`` so it
can forward crops without growing them again. Allowed for the input arrays of SUBMIT, FRAME,
TASK and CROP.

Message types (direction: fields; arrays)
------------------------------------------
HELLO        peer -> gateway: role ("edge"|"client"), name, source (bool), steal_addr (str|None);
             an edge or client introduces itself (again after a reconnect).
WELCOME      gateway -> peer: peer_id, model (dict: cfg_sha, weights_sha, workload spec),
             schedule, hb_interval_s, hb_liveness, link_bytes_per_s (for cost-aware stealing).
MODEL_REQ    edge/client -> gateway: sha, offset; asks for the chunk of a model file the peer
             has not cached that starts at byte `offset` (one chunk at a time: runtime/filetransfer.py).
MODEL        gateway -> edge/client: sha, name, offset, total (file bytes); [uint8 chunk bytes].
READY        edge -> gateway: the model is loaded, the edge may receive work.
HEARTBEAT    both ways: nothing; liveness only (Paranoid Pirate).
BYE          peer -> gateway: leaving cleanly.
SUBMIT       client/source edge -> gateway: ref (client's own id), keep (bool: the submitting
             source edge partitions the frame itself); optional frame (the gateway id an earlier
             ACCEPT gave it: a peer that rejoined submits again and the gateway re-attaches the
             frame to the new connection if it still has it); [input CHW float32]. A data
             source may leave the input out (lazy: no array, shape [c, h, w] instead): it keeps
             the frame, partitions it itself, and sends it only if the gateway asks (FRAME_REQ),
             to re-issue a tile whose thief died; the frame then never crosses its uplink.
FRAME_REQ    gateway -> submitter: frame; send the input of this lazy frame.
FRAME_DATA   submitter -> gateway: frame; [input] (the answer to FRAME_REQ).
ACCEPT       gateway -> submitter: ref, frame, keep (the submitting source edge partitions it);
             the frame now has a gateway id. Optional idle (int): edges waiting for work, which
             will come to steal at once (the source serves them before starting its own tile).
FRAME        gateway -> data-source edge: frame; [input]; optional idle (as in ACCEPT);
             partition it into the local queue.
QUEUE        edge -> gateway: pending (int), frames (list[int]); what the edge's queue holds,
             sent when it changes; the gateway's victim list is built from it. Optional level0
             (int): how many of them are level-0 tiles (WST-S victims are chosen by level).
WORK_REQ     edge -> gateway: the edge is idle and wants a task (or a victim to steal from);
             optional empty (the victim that just answered NO_WORK: the gateway's view of
             its queue is stale until it reports QUEUE again); optional prefetch (true: the
             edge is busy and wants a level-1 tile ahead, so a victim holding those); optional
             want ([frame, tile]: the level-1 partner of the level-0 tile it runs, so the
             victim holding that one).
TASK         gateway -> edge, or victim -> thief: frame, tile, level, meta (dict);
             [tile input crop, *reuse arrays]. With meta.crop = [top, left, bottom, right] the
             crop holds only that part of the network input (a stolen WST-S level-1 tile: what
             it reads with all its neighbours' data in), and none at all if that is empty;
             meta.source_addr then names the data source's steal server for CROP_REQ.
VICTIM       gateway -> edge: victim (peer id), addr (str); steal from there.
NO_WORK      gateway -> edge, or victim -> thief: nothing to do now (wait to be woken).
STEAL_REQ    thief -> victim: thief (peer id); two-step steal, step 1; optional prefetch
             (true: the thief is still busy with a level-0 tile and takes a level-1 tile only);
             optional want ([frame, tile]: that task first, if the victim still holds it).
MOVED        victim -> gateway: frame, tile, thief; step 2 (confirm): the task left the victim's
             queue for the thief, so the gateway knows who holds it.
REUSE_REQ    edge -> gateway: frame, tile; a level-1 WST-S tile asks for its neighbours'
             overlap data; optional have ([[src, [layer, ...]], ...]: pieces the edge holds
             itself, from the level-0 tile it ran, whose partner this tile is: not sent again).
REUSE        gateway -> edge: frame, tile, meta (dict); [overlap arrays] (may be empty: fallback):
             the pieces the tile reads with the neighbours that have published (not the rest
             of their publications). Under ``wst-sp`` no arrays: meta.peers says which edge
             holds each neighbour's data.
PIECES_REQ   edge -> edge (steal server): frame, src, dest; ``wst-sp``: the overlap data level-0
             tile src computed for level-1 tile dest, from the edge that computed it; optional
             layers (list[int]): only those (the ones dest reads with the neighbours listed).
PIECES       edge -> edge: frame, src, dest, meta {layers: [int, ...]}; [one array per layer]
             (no arrays: not held any more, the asker computes that side itself).
CROP_REQ     edge -> data source (steal server): frame, tile, region [top, left, bottom,
             right]; a lean level-1 task whose neighbour's data is missing needs more input.
CROP         data source -> edge: frame, tile, region; [that part of the frame] (no array:
             the frame is gone, the asker drops the task and the gateway re-issues it).
RESULT       edge -> gateway: frame, tile, stolen, compute_s, meta (dict); [tile outputs...,
             published overlap arrays...]. Under ``wst-s`` the pieces for the tile's partner
             stay on the edge when it holds that partner task. A level-0 tile publishes its core
             (model spec ``publish: "core"``): the pieces each neighbour reads with all of its
             neighbours in; a neighbour short of pieces is left out of REUSE (fallback side).
DONE         gateway -> submitter: frame, ref, trace (dict), names (list[str]); [outputs...].
ERROR        gateway -> peer: message (str).
STATUS_REQ   client -> gateway: asks for the cluster's state.

Open dicts (``meta``, ``model``, ``trace``) are checked by their consumer, not here:
TASK.meta    origin ("local"|"gateway"), victim (peer id, stolen tasks), reuse (WST-S: the
             REUSE meta of the attached arrays, None = compute in full), crop and
             source_addr (a lean crop, see TASK).
REUSE.meta   pieces: [[src_tile, layer], ...], one per array; or (wst-sp) peers:
             [[src_tile, peer_id, steal_addr], ...].
RESULT.meta  n_publish (trailing arrays that are WST-S overlap data), publish: [[dest_tile,
             layer], ...], held (wst-sp: the edge keeps the published data and serves it
             with PIECES; n_publish is then 0), queue_s, cpu_s (the tile's own CPU time),
             input_bytes (what reached the edge for the tile), crop_bytes (of it, the input
             crop), origin, reused.
WELCOME.model  the workload spec: kind ("darknet"|"synthetic"), grid, cuts (null or [row
             boundaries, column boundaries] of an uneven grid), fused_layers, reuse,
             input_shape, files: [{sha, name, for: [roles], bytes}].
STATUS       gateway -> client: edges (list of {id, name, source, ready, pending, held,
             steal_addr}), stats (dict),
             frames_in_flight.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import msgpack
import numpy as np

from deepthings.errors import ProtocolError

PROTOCOL_VERSION = 2  # 2: model files in chunks (MODEL_REQ.offset, MODEL.offset/total)

# Hard limits a malformed or hostile message cannot exceed.
MAX_HEADER_BYTES = 1 << 20
MAX_ARRAYS = 64
MAX_NDIM = 4
MAX_ARRAY_BYTES = 1 << 30
MAX_ID = (1 << 62)

_DTYPES = {"f4": np.dtype("<f4"), "u1": np.dtype("u1"), "q8": np.dtype("u1")}
_Q8_SCALE = np.float32(255.0)


class Exact8:
    """A float32 tensor carried as the uint8 codes ``k`` of its values ``k / 255`` (see the
    module docstring). Build one with :func:`exact8`, which refuses anything not exact."""

    __slots__ = ("codes", "_float")

    def __init__(self, codes: np.ndarray) -> None:
        if codes.dtype != np.uint8:
            raise ProtocolError(f"Exact8 codes must be uint8, got {codes.dtype}")
        self.codes = codes
        self._float: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.codes.shape)

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes)

    def to_float(self) -> np.ndarray:
        """The float32 tensor, bit-identical to the one :func:`exact8` packed (decoded once)."""
        if self._float is None:
            self._float = self.codes.astype(np.float32) / _Q8_SCALE
        return self._float

    def __getitem__(self, index: Any) -> "Exact8":
        return Exact8(np.ascontiguousarray(self.codes[index]))


def exact8(x: np.ndarray) -> Exact8 | None:
    """``x`` (float32) as 8-bit codes if every value round-trips bit for bit, else None."""
    x = np.asarray(x)
    if x.dtype != np.float32 or x.size == 0:
        return None
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = np.rint(x * _Q8_SCALE)
        if not (np.all(scaled >= 0) and np.all(scaled <= 255)):  # also False for NaN
            return None
    packed = Exact8(scaled.astype(np.uint8))
    # compare bits, not values: -0.0 == 0.0 but would not round-trip
    if not np.array_equal(packed.to_float().view(np.uint32), np.ascontiguousarray(x).view(np.uint32)):
        return None
    return packed


def as_float(x: "np.ndarray | Exact8") -> np.ndarray:
    """The float32 tensor behind an array or an :class:`Exact8`."""
    return x.to_float() if isinstance(x, Exact8) else x

log = logging.getLogger("deepthings.runtime.protocol")

_INT = (int,)
_STR = (str,)
_BOOL = (bool,)
_NUM = (int, float)
_DICT = (dict,)
_LIST = (list,)
_OPT_STR = (str, type(None))

# type -> (required fields {name: python types}, allowed array count (min, max), dtypes)
SCHEMAS: dict[str, tuple[dict[str, tuple[type, ...]], tuple[int, int], frozenset[str]]] = {
    "HELLO": ({"role": _STR, "name": _STR, "source": _BOOL, "steal_addr": _OPT_STR}, (0, 0), frozenset()),
    "WELCOME": (
        {
            "peer_id": _INT,
            "model": _DICT,
            "schedule": _STR,
            "hb_interval_s": _NUM,
            "hb_liveness": _INT,
            "link_bytes_per_s": _NUM,
        },
        (0, 0),
        frozenset(),
    ),
    "MODEL_REQ": ({"sha": _STR, "offset": _INT}, (0, 0), frozenset()),
    "MODEL": ({"sha": _STR, "name": _STR, "offset": _INT, "total": _INT}, (1, 1), frozenset({"u1"})),
    "READY": ({}, (0, 0), frozenset()),
    "HEARTBEAT": ({}, (0, 0), frozenset()),
    "BYE": ({}, (0, 0), frozenset()),
    "SUBMIT": ({"ref": _INT, "keep": _BOOL}, (0, 1), frozenset({"f4", "q8"})),
    "FRAME_REQ": ({"frame": _INT}, (0, 0), frozenset()),
    "FRAME_DATA": ({"frame": _INT}, (1, 1), frozenset({"f4", "q8"})),
    "ACCEPT": ({"ref": _INT, "frame": _INT, "keep": _BOOL}, (0, 0), frozenset()),
    "FRAME": ({"frame": _INT}, (1, 1), frozenset({"f4", "q8"})),
    "QUEUE": ({"pending": _INT, "frames": _LIST}, (0, 0), frozenset()),
    "WORK_REQ": ({}, (0, 0), frozenset()),
    "TASK": ({"frame": _INT, "tile": _INT, "level": _INT, "meta": _DICT}, (0, MAX_ARRAYS), frozenset({"f4", "q8"})),
    "VICTIM": ({"victim": _INT, "addr": _STR}, (0, 0), frozenset()),
    "NO_WORK": ({}, (0, 0), frozenset()),
    "STEAL_REQ": ({"thief": _INT}, (0, 0), frozenset()),
    "MOVED": ({"frame": _INT, "tile": _INT, "thief": _INT}, (0, 0), frozenset()),
    "REUSE_REQ": ({"frame": _INT, "tile": _INT}, (0, 0), frozenset()),
    "REUSE": ({"frame": _INT, "tile": _INT, "meta": _DICT}, (0, MAX_ARRAYS), frozenset({"f4"})),
    "PIECES_REQ": ({"frame": _INT, "src": _INT, "dest": _INT}, (0, 0), frozenset()),
    "CROP_REQ": ({"frame": _INT, "tile": _INT, "region": _LIST}, (0, 0), frozenset()),
    "CROP": ({"frame": _INT, "tile": _INT, "region": _LIST}, (0, 1), frozenset({"f4", "q8"})),
    "PIECES": ({"frame": _INT, "src": _INT, "dest": _INT, "meta": _DICT}, (0, MAX_ARRAYS), frozenset({"f4"})),
    "RESULT": (
        {"frame": _INT, "tile": _INT, "stolen": _BOOL, "compute_s": _NUM, "meta": _DICT},
        (1, MAX_ARRAYS),
        frozenset({"f4"}),
    ),
    "DONE": ({"frame": _INT, "ref": _INT, "trace": _DICT, "names": _LIST}, (0, MAX_ARRAYS), frozenset({"f4"})),
    "ERROR": ({"message": _STR}, (0, 0), frozenset()),
    "STATUS_REQ": ({}, (0, 0), frozenset()),
    "STATUS": ({"edges": _LIST, "stats": _DICT, "frames_in_flight": _INT}, (0, 0), frozenset()),
}

ROLES = ("edge", "client")


@dataclass
class Message:
    """One decoded message: its type, header fields and arrays (read-only views on receive)."""

    type: str
    fields: dict[str, Any] = field(default_factory=dict)
    arrays: list[Any] = field(default_factory=list)  # np.ndarray, or Exact8 when sending
    codes: dict[int, "Exact8"] = field(default_factory=dict)  # received q8 arrays, as sent

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    @property
    def nbytes(self) -> int:
        """Payload bytes of the arrays (what the transfer costs, headers excluded)."""
        return int(sum(a.nbytes for a in self.arrays))


def make(type_: str, arrays: Sequence[np.ndarray] = (), **fields: Any) -> Message:
    """Build a message; fails early (ProtocolError) if it would not pass :func:`validate`."""
    msg = Message(type_, dict(fields), list(arrays))
    _check_fields(msg, "local")
    if any(isinstance(a, Exact8) for a in msg.arrays) and "q8" not in SCHEMAS[type_][2]:
        raise ProtocolError(f"{type_} cannot carry 8-bit coded arrays")
    return msg


def encode(msg: Message) -> list[Any]:
    """Frames for ``send_multipart(copy=False)``: the header, then each array's buffer."""
    arrays: list[Any] = []
    specs = []
    for a in msg.arrays:
        if isinstance(a, Exact8):
            codes = np.ascontiguousarray(a.codes)
            arrays.append(codes)
            specs.append(["q8", list(codes.shape)])
            continue
        if a.dtype == np.float32:
            code = "f4"
        elif a.dtype == np.uint8:
            code = "u1"
        else:
            raise ProtocolError(f"{msg.type}: cannot send dtype {a.dtype}")
        if not a.flags.c_contiguous:
            a = np.ascontiguousarray(a)
        arrays.append(a)
        specs.append([code, list(a.shape)])
    header = dict(msg.fields)
    header["v"] = PROTOCOL_VERSION
    header["t"] = msg.type
    header["a"] = specs
    return [msgpack.packb(header, use_bin_type=True)] + arrays


def _buffer(frame: Any) -> memoryview:
    if isinstance(frame, (bytes, bytearray)):
        return memoryview(frame)
    buf = getattr(frame, "buffer", None)  # zmq.Frame
    if buf is not None:
        return memoryview(buf)
    return memoryview(frame)


def decode(frames: Sequence[Any], peer: str = "?") -> Message:
    """Parse and validate one multipart message; raise ProtocolError naming ``peer`` if bad."""
    if not frames:
        raise ProtocolError(f"peer {peer}: empty message")
    head = _buffer(frames[0])
    if head.nbytes > MAX_HEADER_BYTES:
        raise ProtocolError(f"peer {peer}: header of {head.nbytes} bytes is too large")
    try:
        header = msgpack.unpackb(head, raw=False, strict_map_key=True, max_bin_len=MAX_HEADER_BYTES)
    except Exception as exc:  # msgpack raises many unrelated types on garbage
        raise ProtocolError(f"peer {peer}: undecodable header ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"peer {peer}: header is not a map")
    version = header.pop("v", None)
    type_ = header.pop("t", None)
    specs = header.pop("a", None)
    if not isinstance(type_, str) or type_ not in SCHEMAS:
        raise ProtocolError(f"peer {peer}: unknown message type {type_!r}")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"peer {peer}: {type_} has protocol version {version!r}, expected {PROTOCOL_VERSION}")
    if not isinstance(specs, list) or len(specs) != len(frames) - 1:
        raise ProtocolError(f"peer {peer}: {type_} array specs do not match {len(frames) - 1} data frames")
    _, (amin, amax), dtypes = SCHEMAS[type_]
    if not amin <= len(specs) <= amax:
        raise ProtocolError(f"peer {peer}: {type_} carries {len(specs)} arrays, expected {amin}..{amax}")
    arrays = []
    codes: dict[int, Exact8] = {}
    for i, (spec, frame) in enumerate(zip(specs, frames[1:])):
        if not (isinstance(spec, list) and len(spec) == 2 and spec[0] in dtypes and isinstance(spec[1], list)):
            raise ProtocolError(f"peer {peer}: {type_} array {i} has a bad spec {spec!r}")
        shape = spec[1]
        if not (1 <= len(shape) <= MAX_NDIM) or not all(type(d) is int and 0 < d <= MAX_ARRAY_BYTES for d in shape):
            raise ProtocolError(f"peer {peer}: {type_} array {i} has a bad shape {shape!r}")
        dtype = _DTYPES[spec[0]]
        count = int(np.prod(shape, dtype=np.int64))
        buf = _buffer(frame)
        if count * dtype.itemsize > MAX_ARRAY_BYTES or buf.nbytes != count * dtype.itemsize:
            raise ProtocolError(
                f"peer {peer}: {type_} array {i} has {buf.nbytes} bytes, shape {shape} needs {count * dtype.itemsize}"
            )
        arr = np.frombuffer(buf, dtype=dtype).reshape(shape)
        if spec[0] == "q8":
            codes[i] = Exact8(arr)
            arr = codes[i].to_float()  # decoded once: arrays[i] and codes[i] share it
        arrays.append(arr)
    msg = Message(type_, header, arrays, codes)
    _check_fields(msg, peer)
    return msg


def _check_fields(msg: Message, peer: str) -> None:
    schema = SCHEMAS.get(msg.type)
    if schema is None:
        raise ProtocolError(f"peer {peer}: unknown message type {msg.type!r}")
    required, _, _ = schema
    for name, types in required.items():
        if name not in msg.fields:
            raise ProtocolError(f"peer {peer}: {msg.type} lacks field {name!r}")
        value = msg.fields[name]
        # bool is an int subclass: an int field must not accept True, a num field neither.
        if isinstance(value, bool) and bool not in types:
            raise ProtocolError(f"peer {peer}: {msg.type}.{name} has type bool")
        if not isinstance(value, types):
            raise ProtocolError(f"peer {peer}: {msg.type}.{name} has type {type(value).__name__}")
        if types is _INT and not -1 <= value <= MAX_ID:
            raise ProtocolError(f"peer {peer}: {msg.type}.{name}={value} is out of range")
        if types is _NUM and not (value == value and abs(value) < 1e12):
            raise ProtocolError(f"peer {peer}: {msg.type}.{name}={value} is not a sane number")
    if msg.type == "HELLO" and msg.fields["role"] not in ROLES:
        raise ProtocolError(f"peer {peer}: HELLO role {msg.fields['role']!r} is not one of {ROLES}")
    if msg.type == "QUEUE" and not all(type(f) is int for f in msg.fields["frames"]):
        raise ProtocolError(f"peer {peer}: QUEUE.frames must be a list of ints")
    if msg.type == "DONE" and not all(isinstance(n, str) for n in msg.fields["names"]):
        raise ProtocolError(f"peer {peer}: DONE.names must be strings")


def try_decode(frames: Sequence[Any], peer: str, logger: logging.Logger = log) -> Message | None:
    """Decode, or log why the message is dropped and return None (a bad message never crashes a role)."""
    try:
        return decode(frames, peer)
    except ProtocolError as exc:
        logger.warning("dropped message: %s", exc)
        return None


def frames_nbytes(frames: Iterable[Any]) -> int:
    """Bytes on the wire of an encoded message (header + data frames)."""
    return int(sum(_buffer(f).nbytes for f in frames))
