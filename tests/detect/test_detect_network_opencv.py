"""End to end: deepthings.detect (our preprocessing + forward + decoding) equals OpenCV DNN.

OpenCV reads the same cfg+weights with readNetFromDarknet and is fed the very blob our
preprocessing made; rows with class score > thresh go through cv2.dnn.NMSBoxes per class.
Classes must match one to one, scores within 0.01, boxes IoU >= 0.95.
"""

from __future__ import annotations

import pytest
from conftest import IMAGES, YOLO_FASTEST
from detect_opencv_ref import OpenCVYolo, match_detections

import deepthings
from deepthings.detect import network_input, read_names

MODELS = ["yolo-fastest-1.1", "yolo-fastest-1.1-xl"]
NAMES = read_names(YOLO_FASTEST / "coco.names")


@pytest.fixture(scope="module", params=MODELS)
def models(request):
    cfg, weights = YOLO_FASTEST / f"{request.param}.cfg", YOLO_FASTEST / f"{request.param}.weights"
    return deepthings.load_darknet(cfg, weights), OpenCVYolo(cfg, weights)


@pytest.mark.parametrize("image", sorted(p.name for p in IMAGES.glob("*.jpg")))
def test_detect_matches_opencv(models, image):
    net, cv_model = models
    x, image_wh = network_input(net, IMAGES / image)
    ours = deepthings.detect(net, IMAGES / image, 0.25, 0.45)
    theirs = cv_model.detect(x, image_wh, NAMES, thresh=0.25, nms=0.45)
    assert theirs, f"OpenCV finds nothing in {image}: the comparison would be vacuous"
    assert match_detections(ours, theirs) == []


@pytest.mark.parametrize("image", ["dog.jpg", "horses.jpg"])
def test_letterboxed_detect_matches_opencv(models, image):
    """Letterboxed input: same boxes after both sides undo the letterbox the Darknet way."""
    net, cv_model = models
    x, image_wh = network_input(net, IMAGES / image, letterbox=True)
    ours = deepthings.detect(net, IMAGES / image, 0.3, 0.45, letterbox=True)
    theirs = cv_model.detect(x, image_wh, NAMES, thresh=0.3, nms=0.45, letterbox=True)
    assert theirs
    assert match_detections(ours, theirs) == []


def test_default_model_finds_the_dog():
    """The embedded model on the shipped sample photo: a dog, a bicycle and a car, where they are."""
    from deepthings.data import sample_image_path

    dets = deepthings.detect(deepthings.default_model(), sample_image_path())
    best = {}
    for d in dets:
        best.setdefault(d.label, d)
    assert {"dog", "bicycle", "car"} <= set(best)
    dog = best["dog"]
    # Darknet's dog.jpg (768x576): the dog sits in the lower left.
    assert dog.x1 < 200 and dog.x2 < 420 and dog.y1 > 150 and dog.y2 > 450
    assert best["car"].x1 > 400 and best["car"].y2 < 250


@pytest.mark.slow
def test_reference_engine_gives_the_same_detections():
    """The NumPy oracle and the native engine agree on the final detections."""
    net = deepthings.default_model()
    native = deepthings.detect(net, IMAGES / "dog.jpg")
    reference = deepthings.detect(net, IMAGES / "dog.jpg", engine="reference")
    assert match_detections(native, reference, score_tol=1e-3, min_iou=0.99) == []
