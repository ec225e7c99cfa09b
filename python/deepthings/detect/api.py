"""``deepthings.detect(net, image)``: preprocess, forward, decode, NMS, in one call."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from deepthings.detect.decode import decode_outputs, head_specs
from deepthings.detect.detection import Detection
from deepthings.engine.preprocess import load_image


def network_input(net: Any, image: Any, *, letterbox: bool = False) -> tuple[np.ndarray, tuple[int, int]]:
    """The CHW float32 network input for ``image`` and the image's original ``(width, height)``.

    Images are converted to RGB here (grey, CMYK and alpha images work; broken ones raise
    ImageError); resizing and scaling are Darknet's, from deepthings.engine.preprocess.
    """
    from deepthings.engine.preprocess import preprocess

    rgb = load_image(image)
    h, w = rgb.shape[:2]
    _, net_h, net_w = net.input_shape
    x = preprocess(rgb, (int(net_w), int(net_h)), letterbox=letterbox)
    return np.ascontiguousarray(x, dtype=np.float32), (w, h)


def detect(
    net: Any,
    image: Any,
    thresh: float = 0.25,
    nms: float = 0.45,
    *,
    engine: Any = None,
    letterbox: bool = False,
    names: Sequence[str] | None = None,
) -> list[Detection]:
    """Objects found in ``image`` (path, PIL image or HxWx3 uint8 array) by ``net`` on one device.

    ``thresh`` is the class-probability threshold, ``nms`` the IoU above which a box of the same
    class with a lower score is dropped (0 disables NMS). ``engine`` is passed to
    ``net.forward`` ("native" by default, "reference" for the NumPy oracle). Boxes are in the
    original image's pixels, sorted by descending score.
    """
    specs = head_specs(net)
    x, image_wh = network_input(net, image, letterbox=letterbox)
    outputs = net.forward(x, engine=engine, outputs=sorted(specs))
    return decode_outputs(net, outputs, image_wh, thresh=thresh, nms=nms, letterbox=letterbox, names=names)
