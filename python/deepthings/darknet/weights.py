"""Darknet .weights files: read (with BN folding via the layers), write, random weights.

Layout: int32 major, minor, revision; ``seen`` as uint64 if major*10+minor >= 2 else int32;
then, layer by layer in cfg order, the float32 arrays of ``Layer.param_layout()``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from deepthings.darknet.layers import Layer
from deepthings.errors import WeightsError


@dataclass(frozen=True)
class WeightsHeader:
    """The header of a .weights file."""

    major: int
    minor: int
    revision: int
    seen: int

    @property
    def nbytes(self) -> int:
        return 12 + (8 if self.major * 10 + self.minor >= 2 else 4)

    def pack(self) -> bytes:
        head = struct.pack("<iii", self.major, self.minor, self.revision)
        if self.major * 10 + self.minor >= 2:
            return head + struct.pack("<Q", self.seen)
        return head + struct.pack("<i", self.seen)


DEFAULT_HEADER = WeightsHeader(0, 2, 0, 0)


def parse_header(data: bytes | memoryview, source: str) -> WeightsHeader:
    """Read the header; WeightsError if the file is too short to hold one."""
    if len(data) < 12:
        raise WeightsError(
            f"{source}: {len(data)} bytes is too short for a Darknet weights header (>= 16 bytes)"
        )
    major, minor, revision = struct.unpack_from("<iii", data, 0)
    if major * 10 + minor >= 2:
        if len(data) < 20:
            raise WeightsError(
                f"{source}: header version {major}.{minor} needs 20 bytes, file has {len(data)}"
            )
        (seen,) = struct.unpack_from("<Q", data, 12)
    else:
        if len(data) < 16:
            raise WeightsError(
                f"{source}: header version {major}.{minor} needs 16 bytes, file has {len(data)}"
            )
        (seen,) = struct.unpack_from("<i", data, 12)
    return WeightsHeader(major, minor, revision, seen)


def expected_bytes(layers: Sequence[Layer], header: WeightsHeader = DEFAULT_HEADER,
                   upto: int | None = None) -> int:
    """Size of a weights file holding the parameters of layers [0, upto)."""
    stop = len(layers) if upto is None else upto
    return header.nbytes + 4 * sum(layer.param_count() for layer in layers[:stop])


def load_weights(
    layers: Sequence[Layer],
    data: bytes | memoryview,
    source: str = "<bytes>",
    upto: int | None = None,
) -> WeightsHeader:
    """Fill layers [0, upto) from ``data`` (the whole .weights file) and fold batch-norm.

    With ``upto=None`` the file must hold exactly the parameters of every layer. With ``upto``
    the bytes of later layers may be absent (or present: they are ignored).
    """
    header = parse_header(data, source)
    # AlexeyAB's darknet marks files whose connected weights are stored transposed.
    transpose = header.major > 1000 or header.minor > 1000
    stop = len(layers) if upto is None else max(0, min(upto, len(layers)))
    total = expected_bytes(layers, header, None if upto is None else stop)
    size = len(data)
    offset = header.nbytes
    for layer in layers[:stop]:
        layout = layer.param_layout()
        if not layout:
            continue
        raw: dict[str, np.ndarray] = {}
        for name, shape in layout:
            count = int(np.prod(shape))
            nbytes = 4 * count
            if offset + nbytes > size:
                raise WeightsError(
                    f"{source}: truncated: expected {total} bytes, file has {size}; ran out at "
                    f"layer {layer.index} [{layer.type}] ({layer.cfg_path}:{layer.line}) reading "
                    f"{name} {shape} at byte {offset}"
                )
            arr = np.frombuffer(data, dtype="<f4", count=count, offset=offset)
            if transpose and layer.type == "connected" and name == "weights":
                arr = arr.reshape(shape[::-1]).T
            raw[name] = np.array(arr, dtype=np.float32).reshape(shape)
            offset += nbytes
        layer.set_params(raw)
    if upto is None and offset != size:
        raise WeightsError(
            f"{source}: oversized: expected {total} bytes for {len(layers)} layers, file has "
            f"{size} ({size - total} bytes too many: wrong cfg for these weights?)"
        )
    return header


def serialize_layers(
    layers: Sequence[Layer], upto: int | None = None, header: WeightsHeader = DEFAULT_HEADER
) -> bytes:
    """A .weights file holding the raw parameters of layers [0, upto) (exact round trip)."""
    stop = len(layers) if upto is None else upto
    parts = [header.pack()]
    for layer in layers[:stop]:
        if not layer.has_weights:
            continue
        if layer.raw_params is None:
            raise WeightsError(
                f"layer {layer.index} [{layer.type}] has no weights to serialise (loaded with upto=?)"
            )
        for name, _shape in layer.param_layout():
            parts.append(np.ascontiguousarray(layer.raw_params[name], dtype="<f4").tobytes())
    return b"".join(parts)


def random_raw_params(layer: Layer, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Deterministic random parameters for one layer, scaled so activations stay O(1).

    He-style weights (std sqrt(2 / fan_in)) keep the second moment through leaky/relu stacks;
    batch-norm statistics are sane (variance near 1, small means, scales near 1).
    """
    raw: dict[str, np.ndarray] = {}
    for name, shape in layer.param_layout():
        n = shape[0]
        if name == "weights":
            fan_in = int(np.prod(shape[1:]))
            arr = rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))
        elif name == "biases":
            arr = rng.normal(0.0, 0.05, n)
        elif name == "scales":
            arr = rng.uniform(0.8, 1.2, n)
        elif name == "rolling_mean":
            arr = rng.normal(0.0, 0.05, n)
        elif name == "rolling_variance":
            arr = rng.uniform(0.6, 1.4, n)
        else:  # pragma: no cover - every layout name is listed above
            raise AssertionError(name)
        raw[name] = arr.astype(np.float32)
    return raw


def randomize_layers(layers: Sequence[Layer], seed: int = 0, upto: int | None = None) -> None:
    """Give layers [0, upto) deterministic random weights (same seed -> same weights).

    Each layer's generator is derived from (seed, layer index), so ``upto`` does not change
    the weights of the layers it keeps.
    """
    stop = len(layers) if upto is None else upto
    for layer in layers[:stop]:
        if layer.has_weights:
            rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, layer.index])
            layer.set_params(random_raw_params(layer, rng))
