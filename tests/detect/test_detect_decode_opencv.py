"""Decoding + NMS of yolo heads equals OpenCV DNN's, with OpenCV's own head inputs.

This isolates decode/NMS from our forward pass: OpenCV computes the heads' raw conv outputs,
we apply Darknet's activations and decode; OpenCV decodes the same tensors itself.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import IMAGES, YOLO_FASTEST
from detect_opencv_ref import OpenCVYolo, blob_like_darknet, match_detections

from deepthings.detect import HeadSpec, decode_raw, read_names
from deepthings.engine.preprocess import load_image

ANCHORS = np.array([12, 18, 37, 49, 52, 132, 115, 73, 119, 199, 242, 238], dtype=np.float64).reshape(-1, 2)
NAMES = read_names(YOLO_FASTEST / "coco.names")


def _activate_yolo(raw: np.ndarray, classes: int) -> np.ndarray:
    """Darknet's forward_yolo_layer: logistic on x, y, objectness and classes, not on w, h."""
    a = raw.reshape(-1, 5 + classes, *raw.shape[1:]).astype(np.float64).copy()
    idx = [0, 1] + list(range(4, 5 + classes))
    a[:, idx] = 1.0 / (1.0 + np.exp(-a[:, idx]))
    return a.reshape(raw.shape).astype(np.float32)


@pytest.fixture(scope="module", params=["yolo-fastest-1.1", "yolo-fastest-1.1-xl"])
def cv_model(request):
    name = request.param
    return OpenCVYolo(YOLO_FASTEST / f"{name}.cfg", YOLO_FASTEST / f"{name}.weights")


@pytest.mark.parametrize("image", sorted(p.name for p in IMAGES.glob("*.jpg")))
@pytest.mark.parametrize("thresh,nms", [(0.25, 0.45), (0.5, 0.3)])
def test_decode_matches_opencv(cv_model, image, thresh, nms):
    rgb = load_image(IMAGES / image)
    h, w = rgb.shape[:2]
    chw = blob_like_darknet(rgb, (320, 320))
    raws = cv_model.raw_heads(chw)
    # yolo-fastest: the first head (layer order) uses mask 3,4,5 on the 10x10 map, the second 0,1,2.
    specs, outputs = {}, {}
    for i, raw in enumerate(raws):
        mask = [3, 4, 5] if raw.shape[1] == 10 else [0, 1, 2]
        specs[i] = HeadSpec("yolo", ANCHORS[mask], classes=80, index=i)
        outputs[i] = _activate_yolo(raw, 80)
    ours = decode_raw(specs, outputs, (320, 320), (w, h), thresh=thresh, nms=nms, names=NAMES)
    theirs = cv_model.detect(chw, (w, h), NAMES, thresh=thresh, nms=nms)
    assert theirs, f"OpenCV finds nothing in {image}: the comparison would be vacuous"
    assert match_detections(ours, theirs) == []
