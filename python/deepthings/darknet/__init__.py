"""Darknet models: cfg parser, layer registry and .weights reader/writer -> ``Network``.

    net = load_darknet("yolov2.cfg", "yolov2.weights")       # real weights
    net = load_darknet("yolov2.cfg", random_seed=0)          # deterministic random weights
    net = network_from_cfg_text(text, random_seed=0)         # from cfg text (tests, runtime)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Union

from deepthings.darknet.cfg import Section, parse_cfg
from deepthings.darknet.layers import LAYER_TYPES, Layer, SpatialSpec, build_layer
from deepthings.darknet.weights import (
    WeightsHeader,
    expected_bytes,
    load_weights,
    random_weights_bytes,
    read_weights_file,
    randomize_layers,
    serialize_layers,
)
from deepthings.errors import CfgError, WeightsError

if TYPE_CHECKING:
    from deepthings.engine.network import Network

PathLike = Union[str, "os.PathLike[str]"]


def _read_text(path: PathLike) -> str:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise CfgError(f"{p}: cfg file not found") from None
    except IsADirectoryError:
        raise CfgError(f"{p}: is a directory, not a cfg file") from None
    except OSError as exc:
        raise CfgError(f"{p}: cannot read cfg file: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CfgError(f"{p}: not a text cfg file (byte {exc.start} is not UTF-8)") from None


def build_layers(
    sections: list[Section],
) -> tuple[list[Layer], tuple[int, int, int], dict[str, object]]:
    """Turn parsed sections into layers; returns (layers, input_shape, meta)."""
    net_sec = sections[0]
    width = net_sec.get_int("width", min_value=1)
    height = net_sec.get_int("height", min_value=1)
    channels = net_sec.get_int("channels", 3, min_value=1)
    meta: dict[str, object] = {k: v for k, (v, _line) in net_sec.options.items()}
    meta.update(width=width, height=height, channels=channels)
    input_shape = (channels, height, width)
    layers: list[Layer] = []
    shapes: list[tuple[int, int, int]] = []
    for index, sec in enumerate(sections[1:]):
        layer = build_layer(index, sec, shapes, input_shape)
        layers.append(layer)
        shapes.append(layer.out_shape)
    return layers, input_shape, meta


def network_from_cfg_text(
    text: str,
    *,
    random_seed: int | None = 0,
    name: str = "<string>",
    weights: bytes | None = None,
    upto: int | None = None,
) -> "Network":
    """Build a Network from cfg text. Random weights from ``random_seed`` unless ``weights``
    (the bytes of a .weights file) are given; ``random_seed=None`` and no weights leaves the
    parameters unloaded (shapes and costs only)."""
    from deepthings.engine.network import Network

    sections = parse_cfg(text, name)
    layers, input_shape, meta = build_layers(sections)
    header = None
    if weights is not None:
        header = load_weights(layers, weights, f"<weights for {name}>", upto)
    elif random_seed is not None:
        randomize_layers(layers, random_seed, upto)
    return Network(layers, input_shape, meta, cfg_text=text, cfg_path=name, weights_header=header)


def load_darknet(
    cfg_path: PathLike,
    weights_path: PathLike | bytes | None = None,
    *,
    random_seed: int | None = None,
    upto: int | None = None,
) -> "Network":
    """Load a Darknet network from a cfg file and (optionally) its weights.

    ``weights_path`` is a .weights file (or its bytes). Without it, ``random_seed`` gives
    deterministic random weights; with neither, layers have shapes but no parameters.
    ``upto=L`` loads weights only for layers < L (the rest of the file may be absent).
    """
    if weights_path is not None and random_seed is not None:
        raise WeightsError("give either weights_path or random_seed, not both")
    text = _read_text(cfg_path)
    name = str(cfg_path)
    sections = parse_cfg(text, name)
    layers, input_shape, meta = build_layers(sections)
    header = None
    if weights_path is not None:
        if isinstance(weights_path, (bytes, bytearray, memoryview)):
            header = load_weights(layers, weights_path, f"<weights bytes for {name}>", upto)
        else:
            buf, size = read_weights_file(weights_path, layers, upto)
            header = load_weights(layers, buf, str(weights_path), upto, file_size=size)
    elif random_seed is not None:
        randomize_layers(layers, random_seed, upto)
    from deepthings.engine.network import Network

    return Network(layers, input_shape, meta, cfg_text=text, cfg_path=name, weights_header=header)


def write_random_weights(cfg: PathLike, path: PathLike, seed: int = 0) -> int:
    """Write a deterministic random .weights file for ``cfg``; returns its size in bytes."""
    text = _read_text(cfg)
    layers, _shape, _meta = build_layers(parse_cfg(text, str(cfg)))
    data = random_weights_bytes(layers, seed)
    Path(path).write_bytes(data)
    return len(data)


def serialize_weights(net: "Network", upto: int | None = None) -> bytes:
    """The bytes of a .weights file with net's parameters for layers < upto (all if None).

    Loading them with the same cfg gives bit-identical (folded) parameters; batch-norm layers
    are stored folded with a neutral batch-norm, so the bytes differ from the original file.
    """
    header = net.weights_header or WeightsHeader(0, 2, 0, 0)
    return serialize_layers(net.layers, upto, header)


__all__ = [
    "LAYER_TYPES",
    "Layer",
    "SpatialSpec",
    "WeightsHeader",
    "build_layers",
    "expected_bytes",
    "load_darknet",
    "network_from_cfg_text",
    "parse_cfg",
    "serialize_weights",
    "write_random_weights",
]
