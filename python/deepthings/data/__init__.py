"""The embedded default model (Yolo-Fastest 1.1, COCO, 320x320) and a sample image.

Shipped as package data so that ``deepthings demo`` and ``deepthings.Cluster("default")`` need
no download. Yolo-Fastest and Darknet are public domain (see LICENSE in this directory).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from deepthings.engine.network import Network

_DIR = Path(__file__).resolve().parent

DEFAULT_CFG = "yolo-fastest-1.1.cfg"
DEFAULT_WEIGHTS = "yolo-fastest-1.1.weights"
DEFAULT_NAMES = "coco.names"
SAMPLE_IMAGE = "dog.jpg"


def data_path(name: str) -> Path:
    """Absolute path of a file shipped in ``deepthings/data``."""
    path = _DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not shipped with this deepthings installation")
    return path


def default_cfg_path() -> Path:
    """The default model's Darknet cfg (Yolo-Fastest 1.1, input 320x320, 80 COCO classes)."""
    return data_path(DEFAULT_CFG)


def default_weights_path() -> Path:
    """The default model's trained Darknet weights."""
    return data_path(DEFAULT_WEIGHTS)


def default_names_path() -> Path:
    """The COCO class names, one per line."""
    return data_path(DEFAULT_NAMES)


def sample_image_path() -> Path:
    """The sample photo used by ``deepthings demo`` (Darknet's dog.jpg)."""
    return data_path(SAMPLE_IMAGE)


def sample_frame(shape: tuple[int, int, int]) -> "np.ndarray":
    """The sample photo as a camera would deliver it at the network's size: resized in 8 bits
    (Pillow, bilinear), then Darknet's ``/255`` -- a CHW float32 ``shape`` frame whose values
    are exact ``k/255`` (so the runtime carries it as 8-bit codes). Used by the experiments."""
    import numpy as np
    from PIL import Image

    c, h, w = (int(v) for v in shape)
    if c != 3:
        raise ValueError(f"sample_frame: {c} channels asked, the photo is RGB")
    with Image.open(sample_image_path()) as im:
        rgb = np.asarray(im.convert("RGB").resize((w, h), Image.BILINEAR), dtype=np.uint8)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)).astype(np.float32) / np.float32(255.0)


def camera_frame(shape: tuple[int, ...]) -> "np.ndarray":
    """The experiments' frame for an input of ``shape``: :func:`sample_frame` for RGB inputs,
    else deterministic random data in [0, 1)."""
    import numpy as np

    if len(shape) == 3 and int(shape[0]) == 3:
        return sample_frame(tuple(int(v) for v in shape))  # type: ignore[arg-type]
    return np.random.default_rng(0).random(tuple(int(v) for v in shape), dtype=np.float32)


@lru_cache(maxsize=1)
def default_names() -> tuple[str, ...]:
    """The 80 COCO class names of the default model."""
    from deepthings.detect.labels import read_names

    return tuple(read_names(default_names_path()))


def default_model(*, upto: int | None = None) -> "Network":
    """Load the embedded Yolo-Fastest 1.1 network with its trained weights.

    ``upto=L`` loads weights only for layers ``< L`` (an edge device needs only the fused
    block). The class names are stored in ``net.meta["names"]`` for decoding.
    """
    from deepthings.darknet import load_darknet

    net = load_darknet(default_cfg_path(), default_weights_path(), upto=upto)
    _attach_names(net, list(default_names()))
    return net


def _attach_names(net: object, names: list[str]) -> None:
    meta = getattr(net, "meta", None)
    if isinstance(meta, dict):
        meta["names"] = names
