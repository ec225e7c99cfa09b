"""Serialisable FTP tasks: what a device needs to run one tile (ids, plan key, input crop).

``Task.to_frames()`` gives ``[msgpack metadata, raw float32 bytes]`` for zero-copy transport
(ZeroMQ multipart); ``Task.from_frames`` validates and rebuilds it. ``to_dict``/``from_dict``
give one msgpack-able dict (array as bytes) when a single message is simpler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import msgpack
import numpy as np

from ..errors import ProtocolError

_MAX_DIM = 1 << 16


@dataclass
class Task:
    """One tile of one frame: ``input`` is the tile's CHW float32 input crop."""

    tile_id: int
    frame_id: int
    input: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def header(self) -> dict[str, Any]:
        """The metadata dict (msgpack-able) without the array data."""
        return {
            "tile_id": int(self.tile_id),
            "frame_id": int(self.frame_id),
            "shape": [int(v) for v in self.input.shape],
            "dtype": "float32",
            "meta": self.meta,
        }

    def to_frames(self) -> list[Any]:
        """[msgpack header, buffer of the C-contiguous float32 crop]."""
        data = np.ascontiguousarray(self.input, dtype=np.float32)
        return [msgpack.packb(self.header(), use_bin_type=True), memoryview(data).cast("B")]

    @classmethod
    def from_frames(cls, frames: Sequence[Any]) -> "Task":
        """Rebuild a task from ``to_frames()`` output; ProtocolError if malformed."""
        if len(frames) != 2:
            raise ProtocolError(f"task message has {len(frames)} frames, expected 2")
        try:
            header = msgpack.unpackb(bytes(frames[0]), raw=False)
        except Exception as exc:  # msgpack raises several unrelated types
            raise ProtocolError(f"task header is not valid msgpack: {exc}") from None
        return cls._build(header, frames[1])

    def to_dict(self) -> dict[str, Any]:
        """One msgpack-able dict (the crop as bytes under 'data')."""
        d = self.header()
        d["data"] = np.ascontiguousarray(self.input, dtype=np.float32).tobytes()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Task":
        if not isinstance(d, dict) or "data" not in d:
            raise ProtocolError("task dict has no 'data'")
        return cls._build(d, d["data"])

    @classmethod
    def _build(cls, header: Any, data: Any) -> "Task":
        if not isinstance(header, dict):
            raise ProtocolError("task header is not a map")
        try:
            tile_id = header["tile_id"]
            frame_id = header["frame_id"]
            shape = header["shape"]
            dtype = header.get("dtype", "float32")
            meta = header.get("meta", {})
        except KeyError as exc:
            raise ProtocolError(f"task header lacks {exc}") from None
        if not isinstance(tile_id, int) or not isinstance(frame_id, int) or tile_id < 0 or frame_id < 0:
            raise ProtocolError(f"task ids must be non-negative integers (tile {tile_id!r}, frame {frame_id!r})")
        if dtype != "float32":
            raise ProtocolError(f"task {tile_id}: dtype {dtype!r}, expected float32")
        if (
            not isinstance(shape, list)
            or len(shape) != 3
            or not all(isinstance(v, int) and 0 < v <= _MAX_DIM for v in shape)
        ):
            raise ProtocolError(f"task {tile_id}: bad shape {shape!r}")
        if not isinstance(meta, dict):
            raise ProtocolError(f"task {tile_id}: meta is not a map")
        buf = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else data
        expected = 4 * shape[0] * shape[1] * shape[2]
        if len(buf) != expected:
            raise ProtocolError(f"task {tile_id}: {len(buf)} data bytes, shape {shape} needs {expected}")
        arr = np.frombuffer(buf, dtype=np.float32).reshape(shape)
        return cls(tile_id=tile_id, frame_id=frame_id, input=arr, meta=meta)
