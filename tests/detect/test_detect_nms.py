"""Class-wise NMS: equals OpenCV's NMSBoxes per class and a literal do_nms_sort transcription."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepthings.detect.nms import iou_matrix, nms, nms_per_class

cv2 = pytest.importorskip("cv2")


def _boxes(draw, n):
    xy = np.array(draw(st.lists(st.floats(0, 90, width=32), min_size=2 * n, max_size=2 * n))).reshape(n, 2)
    wh = np.array(draw(st.lists(st.floats(1, 40, width=32), min_size=2 * n, max_size=2 * n))).reshape(n, 2)
    return np.concatenate([xy, xy + wh], axis=1)


@st.composite
def detections(draw):
    n = draw(st.integers(1, 30))
    classes = draw(st.integers(1, 4))
    boxes = _boxes(draw, n)
    # Distinct scores: tie order is implementation-defined in Darknet (qsort is not stable).
    scores = np.array(draw(st.lists(st.integers(1, 10_000), min_size=n * classes, max_size=n * classes, unique=True)))
    probs = (scores / 10_000.0).reshape(n, classes)
    zero = np.array(draw(st.lists(st.booleans(), min_size=n * classes, max_size=n * classes))).reshape(n, classes)
    probs[zero] = 0.0
    return boxes, probs, draw(st.sampled_from([0.3, 0.45, 0.5, 0.7]))


def _darknet_do_nms_sort(boxes, probs, thresh):
    """Darknet's do_nms_sort, loop for loop (box_iou on the same corner boxes)."""
    probs = probs.copy()
    n, classes = probs.shape
    for k in range(classes):
        order = sorted(range(n), key=lambda i: -probs[i, k])
        for a in range(n):
            i = order[a]
            if probs[i, k] == 0:
                continue
            for b in range(a + 1, n):
                j = order[b]
                if iou_matrix(boxes[i], boxes[j])[0, 0] > thresh:
                    probs[j, k] = 0
    return {(i, k) for i in range(n) for k in range(classes) if probs[i, k] > 0}


@settings(max_examples=60)
@given(detections())
def test_nms_equals_darknet_do_nms_sort(case):
    """Surviving (box, class) pairs are exactly Darknet's."""
    boxes, probs, thresh = case
    assert set(nms_per_class(boxes, probs, thresh)) == _darknet_do_nms_sort(boxes, probs, thresh)


@settings(max_examples=60)
@given(detections())
def test_nms_equals_opencv_nmsboxes(case):
    """Per class, the kept indices and their order equal cv2.dnn.NMSBoxes'."""
    boxes, probs, thresh = case
    for k in range(probs.shape[1]):
        idx = np.flatnonzero(probs[:, k] > 0)
        rects = [(float(x1), float(y1), float(x2 - x1), float(y2 - y1)) for x1, y1, x2, y2 in boxes[idx]]
        theirs = [int(idx[i]) for i in np.asarray(cv2.dnn.NMSBoxes(rects, probs[idx, k].tolist(), 0.0, thresh)).reshape(-1)]
        assert nms(boxes, probs[:, k], thresh).tolist() == theirs


def test_iou_known_values():
    a = np.array([[0, 0, 10, 10]])
    assert iou_matrix(a, [[0, 0, 10, 10]])[0, 0] == pytest.approx(1.0)
    assert iou_matrix(a, [[5, 0, 15, 10]])[0, 0] == pytest.approx(50 / 150)
    assert iou_matrix(a, [[20, 20, 30, 30]])[0, 0] == 0.0
    assert iou_matrix(a, [[3, 3, 3, 3]])[0, 0] == 0.0  # degenerate box


def test_nms_threshold_boundary_and_disable():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 110, 110]], dtype=float)
    probs = np.array([[0.9], [0.8], [0.7]])
    # IoU(0, 1) = 1/3: suppressed only when the threshold is below it.
    assert nms_per_class(boxes, probs, 0.3) == [(0, 0), (2, 0)]
    assert nms_per_class(boxes, probs, 1 / 3 + 1e-9) == [(0, 0), (1, 0), (2, 0)]
    assert nms_per_class(boxes, probs, 0.0) == [(0, 0), (1, 0), (2, 0)]


def test_nms_is_per_class():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], dtype=float)
    probs = np.array([[0.9, 0.0], [0.0, 0.8]])
    assert nms_per_class(boxes, probs, 0.45) == [(0, 0), (1, 1)]
