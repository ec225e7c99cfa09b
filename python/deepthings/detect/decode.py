"""Decoding of Darknet detection heads (region = YOLOv2, yolo = YOLOv3 / Yolo-Fastest) into boxes.

The head layers' forward output is their input with Darknet's in-place activations applied
(logistic on x, y, objectness and, for yolo, the classes; softmax over the classes for region),
so decoding only adds the cell offsets, the anchors and the class probabilities, as Darknet's
``get_yolo_detections`` / ``get_region_detections`` do, then maps boxes back to image pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from deepthings.detect.detection import Detection
from deepthings.detect.labels import class_names_for
from deepthings.detect.nms import nms_per_class
from deepthings.errors import ShapeError


@dataclass(frozen=True)
class HeadSpec:
    """What decoding needs to know about one region/yolo layer.

    ``anchors`` are the (w, h) pairs this head uses (already selected by ``mask`` for yolo):
    in network-input pixels for ``yolo``, in grid cells for ``region``.
    """

    kind: str  # "yolo" or "region"
    anchors: np.ndarray  # (A, 2) float64
    classes: int
    coords: int = 4
    scale_x_y: float = 1.0
    # True when the layer's forward already applied scale_x_y to x, y (AlexeyAB's darknet
    # does it in forward_yolo_layer, and so does our Yolo layer); then decoding must not
    # apply it a second time. HeadSpec.from_layer sets it for loaded layers.
    scale_applied: bool = False
    # Scaled-YOLOv4's new_coords=1: w = (2 * tw)^2 * anchor instead of exp(tw) * anchor.
    new_coords: bool = False
    index: int = -1  # layer index, for error messages

    @property
    def num_anchors(self) -> int:
        return int(self.anchors.shape[0])

    @property
    def channels(self) -> int:
        return self.num_anchors * (self.coords + 1 + self.classes)

    @classmethod
    def from_layer(cls, layer: Any) -> "HeadSpec":
        """Build the spec from a loaded region/yolo layer (see docs/ARCHITECTURE.md)."""
        kind = getattr(layer, "type", None)
        index = int(getattr(layer, "index", -1))
        if kind not in ("yolo", "region"):
            raise ShapeError(f"layer {index} ({kind}) is not a region/yolo detection head")
        anchors = np.asarray(getattr(layer, "anchors", ()), dtype=np.float64).reshape(-1, 2)
        classes = int(getattr(layer, "classes"))
        coords = int(getattr(layer, "coords", 4) or 4)
        if coords != 4:
            raise ShapeError(f"layer {index} ({kind}): coords={coords} is not supported (only 4)")
        if kind == "yolo":
            mask = getattr(layer, "mask", None)
            if mask is not None and len(mask) > 0:
                mask = [int(m) for m in mask]
                if max(mask) >= anchors.shape[0]:
                    raise ShapeError(
                        f"layer {index} (yolo): mask {mask} refers to anchor {max(mask)} "
                        f"but only {anchors.shape[0]} anchors are given"
                    )
                anchors = anchors[mask]
        else:
            num = int(getattr(layer, "num", anchors.shape[0]) or anchors.shape[0])
            if anchors.shape[0] < num:
                raise ShapeError(f"layer {index} (region): num={num} but {anchors.shape[0]} anchors")
            anchors = anchors[:num]
        if getattr(layer, "background", False):
            raise ShapeError(f"layer {index} (region): background=1 heads are not supported")
        scale = float(getattr(layer, "scale_x_y", 1.0) or 1.0)
        spec = cls(
            kind=kind,
            anchors=anchors,
            classes=classes,
            coords=coords,
            scale_x_y=scale,
            # The layer contract: a yolo layer's forward output already has scale_x_y applied.
            scale_applied=bool(getattr(layer, "scale_x_y_applied", kind == "yolo")),
            new_coords=bool(getattr(layer, "new_coords", False)),
            index=index,
        )
        out_shape = getattr(layer, "out_shape", None)
        if out_shape is not None and int(out_shape[0]) != spec.channels:
            raise ShapeError(
                f"layer {index} ({kind}): {out_shape[0]} channels, but {spec.num_anchors} anchors x "
                f"(4 + 1 + {classes} classes) = {spec.channels} expected"
            )
        return spec


@dataclass(frozen=True)
class RawBoxes:
    """Boxes of one or more heads before NMS: relative center form and per-class probabilities."""

    boxes: np.ndarray  # (N, 4) x, y, w, h relative to the network input (0..1)
    probs: np.ndarray  # (N, classes) objectness x class prob, 0 where <= thresh
    objectness: np.ndarray  # (N,)

    @staticmethod
    def concat(parts: Sequence["RawBoxes"], classes: int) -> "RawBoxes":
        if not parts:
            return RawBoxes(np.zeros((0, 4)), np.zeros((0, classes)), np.zeros(0))
        return RawBoxes(
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.probs for p in parts]),
            np.concatenate([p.objectness for p in parts]),
        )


def decode_head(spec: HeadSpec, output: np.ndarray, net_wh: tuple[int, int], thresh: float) -> RawBoxes:
    """Decode one head's activated output ``(A*(5+classes), H, W)`` into candidate boxes.

    Candidates are ordered cell by cell (row-major), anchors innermost, as Darknet and OpenCV
    enumerate them; only those with some class probability > ``thresh`` are returned.
    """
    out = np.asarray(output, dtype=np.float32)
    if out.ndim == 4 and out.shape[0] == 1:
        out = out[0]
    if out.ndim != 3 or out.shape[0] != spec.channels:
        raise ShapeError(
            f"layer {spec.index} ({spec.kind}): output shape {tuple(np.shape(output))}, expected "
            f"({spec.channels}, H, W) for {spec.num_anchors} anchors and {spec.classes} classes"
        )
    _, grid_h, grid_w = out.shape
    net_w, net_h = net_wh
    n_anchor = spec.num_anchors
    # (H, W, A, 5 + classes): the candidate order of Darknet's loops and OpenCV's permute.
    cells = out.reshape(n_anchor, 5 + spec.classes, grid_h, grid_w).transpose(2, 3, 0, 1)
    cells = cells.astype(np.float64).reshape(-1, 5 + spec.classes)

    objectness = cells[:, 4]
    probs = objectness[:, None] * cells[:, 5:]
    if spec.kind == "yolo":
        # Darknet's get_yolo_detections skips cells whose objectness is <= thresh.
        probs[objectness <= thresh] = 0.0
    probs[probs <= thresh] = 0.0
    keep = np.flatnonzero((probs > 0).any(axis=1))
    probs = probs[keep]
    cells = cells[keep]
    objectness = objectness[keep]

    rows, cols, anchor_ids = np.unravel_index(keep, (grid_h, grid_w, n_anchor))
    tx, ty, tw, th = cells[:, 0], cells[:, 1], cells[:, 2], cells[:, 3]
    if spec.kind == "yolo" and spec.scale_x_y != 1.0 and not spec.scale_applied:
        shift = -0.5 * (spec.scale_x_y - 1.0)
        tx = tx * spec.scale_x_y + shift
        ty = ty * spec.scale_x_y + shift
    anchors = spec.anchors[anchor_ids]
    x = (cols + tx) / grid_w
    y = (rows + ty) / grid_h
    with np.errstate(over="ignore"):
        if spec.kind == "yolo" and spec.new_coords:
            w = tw * tw * 4.0 * anchors[:, 0] / net_w
            h = th * th * 4.0 * anchors[:, 1] / net_h
        elif spec.kind == "yolo":
            w = np.exp(tw) * anchors[:, 0] / net_w
            h = np.exp(th) * anchors[:, 1] / net_h
        else:
            w = np.exp(tw) * anchors[:, 0] / grid_w
            h = np.exp(th) * anchors[:, 1] / grid_h
    boxes = np.stack([x, y, w, h], axis=1)
    return RawBoxes(boxes, probs, objectness)


def letterbox_geometry(image_wh: tuple[int, int], net_wh: tuple[int, int]) -> tuple[int, int]:
    """Size ``(new_w, new_h)`` of the image inside a letterboxed network input (Darknet's rule)."""
    img_w, img_h = image_wh
    net_w, net_h = net_wh
    # max(1, .): a 1-pixel-wide sliver still occupies one column (Darknet would divide by 0).
    if net_w / img_w < net_h / img_h:
        return net_w, max(1, (img_h * net_w) // img_w)
    return max(1, (img_w * net_h) // img_h), net_h


def correct_boxes(
    boxes: np.ndarray, image_wh: tuple[int, int], net_wh: tuple[int, int], letterbox: bool
) -> np.ndarray:
    """Darknet's correct_yolo_boxes: relative boxes on the net input -> relative to the image."""
    boxes = np.array(boxes, dtype=np.float64, copy=True).reshape(-1, 4)
    if not letterbox:
        return boxes
    net_w, net_h = net_wh
    new_w, new_h = letterbox_geometry(image_wh, net_wh)
    boxes[:, 0] = (boxes[:, 0] - (net_w - new_w) / 2.0 / net_w) / (new_w / net_w)
    boxes[:, 1] = (boxes[:, 1] - (net_h - new_h) / 2.0 / net_h) / (new_h / net_h)
    boxes[:, 2] *= net_w / new_w
    boxes[:, 3] *= net_h / new_h
    return boxes


def to_corners(boxes: np.ndarray, image_wh: tuple[int, int], *, clip: bool = True) -> np.ndarray:
    """Relative center-form boxes -> pixel corners ``(x1, y1, x2, y2)``, clipped to the image."""
    img_w, img_h = image_wh
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    corners = np.stack(
        [
            (b[:, 0] - b[:, 2] / 2) * img_w,
            (b[:, 1] - b[:, 3] / 2) * img_h,
            (b[:, 0] + b[:, 2] / 2) * img_w,
            (b[:, 1] + b[:, 3] / 2) * img_h,
        ],
        axis=1,
    )
    if clip:
        corners[:, 0::2] = np.clip(corners[:, 0::2], 0, img_w)
        corners[:, 1::2] = np.clip(corners[:, 1::2], 0, img_h)
    return corners


def head_specs(net: Any) -> dict[int, HeadSpec]:
    """The decoding spec of every region/yolo layer of ``net``, by layer index."""
    indices = getattr(net, "head_layers", None)
    if indices is None:
        indices = [l.index for l in net.layers if getattr(l, "type", None) in ("yolo", "region")]
    specs = {int(i): HeadSpec.from_layer(net.layers[int(i)]) for i in indices}
    if not specs:
        raise ShapeError("the network has no region/yolo layer: nothing to decode into detections")
    return specs


def net_input_wh(net: Any) -> tuple[int, int]:
    """``(width, height)`` of the network input."""
    _, h, w = net.input_shape
    return int(w), int(h)


def decode_raw(
    specs: Mapping[int, HeadSpec],
    outputs: Mapping[int, np.ndarray],
    net_wh: tuple[int, int],
    image_wh: tuple[int, int],
    *,
    thresh: float = 0.25,
    nms: float = 0.45,
    letterbox: bool = False,
    names: Sequence[str] | None = None,
) -> list[Detection]:
    """Decode head outputs given their specs (no Network needed): threshold, NMS, pixels."""
    image_wh = _check_wh(image_wh, "image")
    missing = [i for i in specs if i not in outputs]
    if missing:
        raise ShapeError(f"no output given for detection head layer(s) {missing}")
    classes = {s.classes for s in specs.values()}
    if len(classes) != 1:
        raise ShapeError(f"detection heads disagree on the number of classes: {sorted(classes)}")
    n_classes = classes.pop()
    if names is None:
        names = class_names_for(n_classes)
    if len(names) < n_classes:
        raise ShapeError(f"{len(names)} class names given for a {n_classes}-class network")
    parts = [decode_head(specs[i], outputs[i], net_wh, thresh) for i in sorted(specs)]
    raw = RawBoxes.concat(parts, n_classes)
    rel = correct_boxes(raw.boxes, image_wh, net_wh, letterbox)
    # NMS on unclipped boxes, as Darknet does; IoU is invariant under the per-axis scaling
    # to pixels, so relative or pixel corners give the same decisions.
    corners = to_corners(rel, image_wh, clip=False)
    kept = nms_per_class(corners, raw.probs, nms)
    clipped = to_corners(rel, image_wh, clip=True)
    detections = [
        Detection(
            label=str(names[c]),
            class_id=c,
            score=float(raw.probs[i, c]),
            x1=float(clipped[i, 0]),
            y1=float(clipped[i, 1]),
            x2=float(clipped[i, 2]),
            y2=float(clipped[i, 3]),
        )
        for i, c in kept
    ]
    detections.sort(key=lambda d: (-d.score, d.class_id))
    return detections


def decode_outputs(
    net: Any,
    outputs: Mapping[int, np.ndarray],
    image_wh: tuple[int, int],
    *,
    thresh: float = 0.25,
    nms: float = 0.45,
    letterbox: bool = False,
    names: Sequence[str] | None = None,
) -> list[Detection]:
    """Detections from the outputs of ``net``'s region/yolo layers.

    ``outputs`` maps each head layer index (``net.head_layers``) to that layer's forward output
    (CHW float32). ``image_wh`` is the original image's ``(width, height)``; ``letterbox`` says
    whether the network input was letterboxed. Class names come from ``names``, else
    ``net.meta["names"]``, else the COCO/VOC list matching the class count.
    Detections are sorted by descending score.
    """
    if names is None:
        meta = getattr(net, "meta", None) or {}
        names = meta.get("names") if isinstance(meta, Mapping) else None
    return decode_raw(
        head_specs(net),
        outputs,
        net_input_wh(net),
        image_wh,
        thresh=thresh,
        nms=nms,
        letterbox=letterbox,
        names=names,
    )


def _check_wh(wh: tuple[int, int], what: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in wh)
    except (TypeError, ValueError):
        raise ShapeError(f"{what} size must be (width, height), got {wh!r}") from None
    if w <= 0 or h <= 0:
        raise ShapeError(f"{what} size must be positive, got {w}x{h}")
    return w, h
