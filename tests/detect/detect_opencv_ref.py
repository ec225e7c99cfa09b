"""OpenCV DNN as the independent reference for detection (readNetFromDarknet, opencv < 5).

OpenCV decodes yolo heads itself; we feed it the very blob our preprocessing produced, keep
rows whose class score > thresh, and run cv2.dnn.NMSBoxes per class, as the issue specifies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepthings.detect import Detection
from deepthings.detect.decode import correct_boxes, to_corners

cv2 = __import__("pytest").importorskip("cv2")


class OpenCVYolo:
    """A Darknet cfg+weights loaded in OpenCV DNN, with access to the heads' raw inputs."""

    def __init__(self, cfg: Path, weights: Path) -> None:
        self.net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.out_names = list(self.net.getUnconnectedOutLayersNames())
        names = list(self.net.getLayerNames())
        # OpenCV's yolo layer is preceded by a permute whose input is the head's raw conv output.
        self.head_inputs = [names[names.index(n) - 2] for n in self.out_names]

    def forward(self, chw: np.ndarray) -> list[np.ndarray]:
        """Decoded rows ``[x, y, w, h, objectness, class scores...]`` of every yolo head."""
        self.net.setInput(np.ascontiguousarray(chw[None], dtype=np.float32))
        return [np.asarray(o) for o in self.net.forward(self.out_names)]

    def raw_heads(self, chw: np.ndarray) -> list[np.ndarray]:
        """The un-activated head inputs ``(A*(5+C), H, W)``, in head order."""
        self.net.setInput(np.ascontiguousarray(chw[None], dtype=np.float32))
        return [np.asarray(o)[0] for o in self.net.forward(self.head_inputs)]

    def detect(
        self,
        chw: np.ndarray,
        image_wh: tuple[int, int],
        names: list[str],
        *,
        thresh: float,
        nms: float,
        letterbox: bool = False,
    ) -> list[Detection]:
        rows = np.concatenate(self.forward(chw), axis=0).astype(np.float64)
        _, net_h, net_w = chw.shape
        rel = correct_boxes(rows[:, :4], image_wh, (net_w, net_h), letterbox)
        corners = to_corners(rel, image_wh, clip=False)
        clipped = to_corners(rel, image_wh, clip=True)
        scores = rows[:, 5:]
        out: list[Detection] = []
        for c in np.flatnonzero((scores > thresh).any(axis=0)):
            idx = np.flatnonzero(scores[:, c] > thresh)
            boxes = [
                (float(x1), float(y1), float(x2 - x1), float(y2 - y1))
                for x1, y1, x2, y2 in corners[idx]
            ]
            kept = cv2.dnn.NMSBoxes(boxes, [float(s) for s in scores[idx, c]], thresh, nms)
            for k in np.asarray(kept).reshape(-1):
                i = idx[int(k)]
                out.append(Detection(names[c], int(c), float(scores[i, c]), *map(float, clipped[i])))
        out.sort(key=lambda d: (-d.score, d.class_id))
        return out


def blob_like_darknet(image_rgb: np.ndarray, net_wh: tuple[int, int]) -> np.ndarray:
    """A plain resize + /255 CHW blob (cv2 bilinear), for tests that only need *some* input."""
    resized = cv2.resize(image_rgb, net_wh, interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(resized.transpose(2, 0, 1), dtype=np.float32) / 255.0


def match_detections(
    ours: list[Detection], theirs: list[Detection], *, score_tol: float = 0.01, min_iou: float = 0.95
) -> list[str]:
    """Problems found pairing two detection lists one-to-one (empty list = they agree)."""
    from deepthings.detect.nms import iou_matrix

    problems: list[str] = []
    if len(ours) != len(theirs):
        problems.append(f"{len(ours)} detections vs {len(theirs)}: {ours} vs {theirs}")
    used: set[int] = set()
    for d in ours:
        best, best_iou = None, -1.0
        for j, t in enumerate(theirs):
            if j in used or t.class_id != d.class_id:
                continue
            iou = float(iou_matrix([[d.x1, d.y1, d.x2, d.y2]], [[t.x1, t.y1, t.x2, t.y2]])[0, 0])
            if iou > best_iou:
                best, best_iou = j, iou
        if best is None:
            problems.append(f"no {d.label} in the reference for {d}")
            continue
        used.add(best)
        t = theirs[best]
        if abs(t.score - d.score) > score_tol:
            problems.append(f"score {d.score:.4f} vs {t.score:.4f} for {d}")
        if best_iou < min_iou:
            problems.append(f"IoU {best_iou:.3f} < {min_iou} for {d} vs {t}")
    return problems


def assert_same_detections(ours: list[Detection], theirs: list[Detection], *, score_tol: float = 1e-5,
                           px_tol: float = 1e-3) -> None:
    """Identical detections up to float rounding: same objects in the same order, scores within
    ``score_tol`` and corners within ``px_tol`` pixels (tiles may sum in another order)."""
    assert [(d.label, d.class_id) for d in ours] == [(d.label, d.class_id) for d in theirs], (ours, theirs)
    for a, b in zip(ours, theirs):
        assert abs(a.score - b.score) <= score_tol, (a, b)
        assert np.allclose([a.x1, a.y1, a.x2, a.y2], [b.x1, b.y1, b.x2, b.y2], rtol=0, atol=px_tol), (a, b)
