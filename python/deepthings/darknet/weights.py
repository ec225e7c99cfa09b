"""Darknet .weights files: read (with BN folding via the layers), write, random weights.

Layout: int32 major, minor, revision; ``seen`` as uint64 if major*10+minor >= 2 else int32;
then, layer by layer in cfg order, the float32 arrays of ``Layer.param_layout()``.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Iterator, Sequence

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
        """Header size: 16 or 20 bytes (``seen`` is 32 or 64 bits)."""
        return 12 + (8 if self.major * 10 + self.minor >= 2 else 4)

    def pack(self) -> bytes:
        """The header as bytes."""
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
    data: bytes | memoryview | np.ndarray,
    source: str = "<bytes>",
    upto: int | None = None,
    file_size: int | None = None,
) -> WeightsHeader:
    """Fill layers [0, upto) from ``data`` (the .weights file's bytes) and fold batch-norm.

    With ``upto=None`` the file must hold exactly the parameters of every layer. With ``upto``
    the bytes of later layers may be absent (or present: they are ignored). ``file_size`` is
    the size of the whole file when ``data`` holds only its first bytes (for messages).

    ``data`` given as a private writable uint8 array (see ``read_weights_file``) is used
    without copying when no layer folds batch-norm (VGG/AlexNet: hundreds of MB).
    """
    header = parse_header(data, source)
    # AlexeyAB's darknet marks files whose connected weights are stored transposed.
    transpose = header.major > 1000 or header.minor > 1000
    stop = len(layers) if upto is None else max(0, min(upto, len(layers)))
    total = expected_bytes(layers, header, None if upto is None else stop)
    size = len(data) if file_size is None else file_size
    avail = len(data)
    # Views are safe only into a writable buffer nobody else holds, and only pay when nothing
    # is folded: folded layers get new arrays, and a view would pin the whole buffer.
    share = (
        isinstance(data, np.ndarray)
        and data.flags.writeable
        and not any(getattr(layer, "batch_normalize", False) for layer in layers[:stop])
    )
    offset = header.nbytes
    for layer in layers[:stop]:
        layout = layer.param_layout()
        if not layout:
            continue
        raw: dict[str, np.ndarray] = {}
        for name, shape in layout:
            count = int(np.prod(shape))
            nbytes = 4 * count
            if offset + nbytes > min(size, avail):
                raise WeightsError(
                    f"{source}: truncated: expected {total} bytes, file has {size}; ran out at "
                    f"layer {layer.index} [{layer.type}] ({layer.cfg_path}:{layer.line}) reading "
                    f"{name} {shape} at byte {offset}"
                )
            arr = np.frombuffer(data, dtype="<f4", count=count, offset=offset)
            if transpose and layer.type == "connected" and name == "weights":
                arr = np.ascontiguousarray(arr.reshape(shape[::-1]).T)
            raw[name] = (arr if share else np.array(arr, dtype=np.float32)).reshape(shape)
            offset += nbytes
        layer.set_params(raw)
    if upto is None and offset != size:
        raise WeightsError(
            f"{source}: oversized: expected {total} bytes for {len(layers)} layers, file has "
            f"{size} ({size - total} bytes too many: wrong cfg for these weights?)"
        )
    return header


def read_weights_file(
    path: str | os.PathLike[str], layers: Sequence[Layer], upto: int | None = None
) -> tuple[np.ndarray, int]:
    """(buffer, file size): the file's bytes as a writable uint8 array, read with one copy;
    with ``upto`` only the bytes layers < upto need (an edge skips the rest)."""
    source = str(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            want = size
            if upto is not None:
                head = f.read(20)
                header = parse_header(head, source)
                want = min(size, expected_bytes(layers, header, max(0, min(upto, len(layers)))))
                f.seek(0)
            buf = np.empty(want, dtype=np.uint8)
            got = f.readinto(memoryview(buf))
    except FileNotFoundError:
        raise WeightsError(f"{source}: weights file not found") from None
    except IsADirectoryError:
        raise WeightsError(f"{source}: is a directory, not a weights file") from None
    except OSError as exc:
        raise WeightsError(f"{source}: cannot read weights file: {exc.strerror}") from None
    return buf[:got], size


def serialize_layers(
    layers: Sequence[Layer], upto: int | None = None, header: WeightsHeader = DEFAULT_HEADER
) -> bytes:
    """A .weights file for layers [0, upto) that loads back to bit-identical parameters.

    Batch-norm layers are written already folded, with a neutral batch-norm (see
    ``Layer.file_params``); a file without batch-norm layers round-trips byte for byte.
    """
    stop = len(layers) if upto is None else upto
    parts = [header.pack()]
    for layer in layers[:stop]:
        if not layer.has_weights:
            continue
        if not layer.weights_loaded:
            raise WeightsError(
                f"layer {layer.index} [{layer.type}] has no weights to serialise (loaded with upto=?)"
            )
        params = layer.file_params()
        for name, _shape in layer.param_layout():
            parts.append(np.ascontiguousarray(params[name], dtype="<f4").tobytes())
    return b"".join(parts)


# E[act(y)^2] / E[y^2] for y ~ N(0, 1): how much of the second moment an activation keeps.
_ACT_GAIN = {
    "linear": 1.0, "leaky": 0.505, "relu": 0.5, "relu6": 0.5, "relie": 0.5, "elu": 0.65,
    "selu": 1.0, "mish": 0.6, "hard_mish": 0.55, "swish": 0.35, "gelu": 0.42,
    "logistic": 0.3, "tanh": 0.4, "loggy": 0.2, "softplus": 0.9,
}


def random_raw_params(
    layer: Layer, rng: np.random.Generator, in_m2: float = 1.0
) -> dict[str, np.ndarray]:
    """Deterministic random parameters for one layer, scaled so activations stay O(1).

    ``in_m2`` is the expected second moment E[x^2] of the layer's input. The weights get
    std sqrt(1 / (fan_in * in_m2)) divided by the RMS of the folded batch-norm factor, so the
    pre-activation second moment is about 1 whatever the depth (as batch-norm keeps it in a
    trained net). Batch-norm statistics are sane: variance near 1, small means, scales near 1.
    """
    layout = dict(layer.param_layout())
    raw: dict[str, np.ndarray] = {}
    n = layout["biases"][0] if "biases" in layout else 0
    raw["biases"] = rng.normal(0.0, 0.05, n).astype(np.float32)
    bn_rms = 1.0
    if "scales" in layout:
        raw["scales"] = rng.uniform(0.8, 1.2, n).astype(np.float32)
        raw["rolling_mean"] = rng.normal(0.0, 0.05, n).astype(np.float32)
        raw["rolling_variance"] = rng.uniform(0.6, 1.4, n).astype(np.float32)
        factor = raw["scales"].astype(np.float64) / (
            np.sqrt(raw["rolling_variance"].astype(np.float64)) + 1e-6
        )
        bn_rms = float(np.sqrt(np.mean(factor**2)))
    shape = layout["weights"]
    fan_in = int(np.prod(shape[1:]))
    std = np.sqrt(1.0 / (max(fan_in, 1) * max(in_m2, 1e-6))) / bn_rms
    raw["weights"] = (rng.standard_normal(shape) * std).astype(np.float32)
    return {name: raw[name] for name in layout}


def _out_m2(layer: Layer, in_m2: list[float]) -> float:
    """Expected second moment of a layer's output given its inputs' (rough, for scaling)."""
    t = layer.type
    if layer.has_weights:
        return _ACT_GAIN.get(layer.activation, 0.5)
    if t == "route":
        chans = [hi - lo for lo, hi in layer.channel_slices()]  # type: ignore[attr-defined]
        return float(np.dot(chans, in_m2) / max(sum(chans), 1))
    if t == "shortcut":
        a, b = layer.alpha, layer.beta  # type: ignore[attr-defined]
        m2 = a * a * in_m2[0] + b * b * sum(in_m2[1:])
        return m2 * _ACT_GAIN.get(layer.activation, 0.5)
    if t in ("softmax", "region", "yolo"):
        return 0.3
    return in_m2[0]


def _random_raws(
    layers: Sequence[Layer], seed: int, upto: int | None, input_m2: float
) -> Iterator[tuple[Layer, dict[str, np.ndarray]]]:
    """(layer, raw params) for the weighted layers < upto, deterministic in (seed, index)."""
    stop = len(layers) if upto is None else upto
    m2: dict[int, float] = {-1: input_m2}
    for layer in layers:
        ins = [m2[j] for j in layer.inputs]
        if layer.has_weights and layer.index < stop:
            if layer.param_count() > _MAX_RANDOM_PARAMS:
                raise WeightsError(
                    f"layer {layer.index} [{layer.type}] ({layer.cfg_path}:{layer.line}) would "
                    f"need {layer.param_count()} random parameters; refusing (> {_MAX_RANDOM_PARAMS})"
                )
            rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, layer.index])
            yield layer, random_raw_params(layer, rng, ins[0])
        m2[layer.index] = _out_m2(layer, ins)


# A cfg mistake (filters=99999999) should be an error, not an attempt to allocate terabytes.
_MAX_RANDOM_PARAMS = 1 << 28  # 1 GiB of float32; VGG-16's largest layer has 103M


def randomize_layers(layers: Sequence[Layer], seed: int = 0, upto: int | None = None,
                     input_m2: float = 1.0 / 3.0) -> None:
    """Give layers [0, upto) deterministic random weights (same seed -> same weights).

    Each layer's generator is derived from (seed, layer index), and the scale from the
    layers before it, so ``upto`` does not change the weights of the layers it keeps.
    ``input_m2`` is E[x^2] of the network input (1/3 for pixels uniform in [0, 1]).
    """
    for layer, raw in _random_raws(layers, seed, upto, input_m2):
        layer.set_params(raw)


def random_weights_bytes(layers: Sequence[Layer], seed: int = 0,
                         header: WeightsHeader = DEFAULT_HEADER) -> bytes:
    """A .weights file of the same random parameters ``randomize_layers`` gives, written raw
    (random batch-norm statistics included), so other tools (OpenCV) see a normal file."""
    parts = [header.pack()]
    for layer, raw in _random_raws(layers, seed, None, 1.0 / 3.0):
        for name, _shape in layer.param_layout():
            parts.append(np.ascontiguousarray(raw[name], dtype="<f4").tobytes())
    return b"".join(parts)
