"""Class-wise non-maximum suppression with Darknet's do_nms_sort semantics.

For every class independently: candidates (score > 0) are visited in descending score order
(stable, so ties keep their decoding order, as OpenCV's NMSBoxes does) and each kept box removes
every later box whose IoU with it is strictly greater than the threshold. This is exactly what
Darknet's ``do_nms_sort`` and OpenCV's ``cv2.dnn.NMSBoxes`` (eta=1) compute per class.
"""

from __future__ import annotations

import numpy as np


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``boxes_a`` (N, 4) with every box in ``boxes_b`` (M, 4).

    Boxes are corner form ``(x1, y1, x2, y2)``. Degenerate boxes (zero area) have IoU 0.
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS for one class: indices of the kept boxes, best score first.

    ``boxes`` (N, 4) corner form, ``scores`` (N,); boxes with score <= 0 are never kept.
    A box is removed when its IoU with an already kept box is > ``iou_threshold``.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if boxes.shape[0] != scores.shape[0]:
        raise ValueError(f"nms: {boxes.shape[0]} boxes but {scores.shape[0]} scores")
    candidates = np.flatnonzero(scores > 0)
    # Stable descending sort: equal scores keep their original order.
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    if order.size == 0:
        return order.astype(np.int64)
    iou = iou_matrix(boxes[order], boxes[order])
    suppressed = np.zeros(order.size, dtype=bool)
    keep: list[int] = []
    for i in range(order.size):
        if suppressed[i]:
            continue
        keep.append(int(order[i]))
        suppressed[i + 1 :] |= iou[i, i + 1 :] > iou_threshold
    return np.asarray(keep, dtype=np.int64)


def nms_per_class(boxes: np.ndarray, probs: np.ndarray, iou_threshold: float) -> list[tuple[int, int]]:
    """Darknet's do_nms_sort over a (N, classes) probability matrix.

    Returns ``(box_index, class_id)`` pairs that survive, grouped by class (ascending), best score
    first within a class. ``iou_threshold <= 0`` disables suppression (every positive prob stays).
    """
    probs = np.asarray(probs)
    pairs: list[tuple[int, int]] = []
    for class_id in np.flatnonzero((probs > 0).any(axis=0)):
        scores = probs[:, class_id]
        if iou_threshold <= 0:
            kept = np.flatnonzero(scores > 0)
            kept = kept[np.argsort(-scores[kept], kind="stable")]
        else:
            kept = nms(boxes, scores, iou_threshold)
        pairs.extend((int(i), int(class_id)) for i in kept)
    return pairs
