"""Head decoding against loop-for-loop transcriptions of Darknet's C, and hand-computed boxes."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepthings.detect.decode import HeadSpec, correct_boxes, decode_head, decode_raw, letterbox_geometry
from deepthings.errors import ShapeError


def _logistic(x):
    return 1.0 / (1.0 + np.exp(-x))


def _yolo_activated(rng, anchors, classes, h, w):
    raw = rng.normal(0, 2, size=(anchors * (5 + classes), h, w))
    a = raw.reshape(anchors, 5 + classes, h, w)
    idx = [0, 1] + list(range(4, 5 + classes))
    a[:, idx] = _logistic(a[:, idx])
    return a.reshape(raw.shape).astype(np.float32)


def _region_activated(rng, anchors, classes, h, w):
    raw = rng.normal(0, 2, size=(anchors * (5 + classes), h, w))
    a = raw.reshape(anchors, 5 + classes, h, w)
    a[:, [0, 1, 4]] = _logistic(a[:, [0, 1, 4]])
    e = np.exp(a[:, 5:] - a[:, 5:].max(axis=1, keepdims=True))
    a[:, 5:] = e / e.sum(axis=1, keepdims=True)
    return a.reshape(raw.shape).astype(np.float32)


def _darknet_loops(kind, out, anchors, classes, net_wh, thresh, scale_x_y=1.0):
    """get_yolo_detections / get_region_detections, written as Darknet's C loops."""
    c_per = 5 + classes
    _, lh, lw = out.shape
    flat = out.reshape(-1).astype(np.float64)

    def entry(n, loc, e):
        return n * lw * lh * c_per + e * lw * lh + loc

    boxes, probs = [], []
    for i in range(lw * lh):
        row, col = divmod(i, lw)
        for n in range(len(anchors)):
            objectness = flat[entry(n, i, 4)]
            if kind == "yolo" and not objectness > thresh:
                continue
            tx, ty = flat[entry(n, i, 0)], flat[entry(n, i, 1)]
            if kind == "yolo":
                tx = tx * scale_x_y - 0.5 * (scale_x_y - 1)
                ty = ty * scale_x_y - 0.5 * (scale_x_y - 1)
                bw = math.exp(flat[entry(n, i, 2)]) * anchors[n][0] / net_wh[0]
                bh = math.exp(flat[entry(n, i, 3)]) * anchors[n][1] / net_wh[1]
            else:
                bw = math.exp(flat[entry(n, i, 2)]) * anchors[n][0] / lw
                bh = math.exp(flat[entry(n, i, 3)]) * anchors[n][1] / lh
            p = [objectness * flat[entry(n, i, 5 + j)] for j in range(classes)]
            p = [v if v > thresh else 0.0 for v in p]
            if any(v > 0 for v in p):
                boxes.append(((col + tx) / lw, (row + ty) / lh, bw, bh))
                probs.append(p)
    return np.array(boxes).reshape(-1, 4), np.array(probs).reshape(-1, classes)


@settings(max_examples=40)
@given(
    kind=st.sampled_from(["yolo", "region"]),
    n_anchors=st.integers(1, 4),
    classes=st.integers(1, 6),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    thresh=st.sampled_from([0.05, 0.25, 0.5]),
    scale=st.sampled_from([1.0, 1.05, 1.2, 2.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_decode_head_equals_darknet_loops(kind, n_anchors, classes, h, w, thresh, scale, seed):
    """Vectorised decoding = Darknet's loops: same candidates, same order, same boxes and probs."""
    rng = np.random.default_rng(seed)
    anchors = rng.uniform(1, 60, size=(n_anchors, 2))
    make = _yolo_activated if kind == "yolo" else _region_activated
    out = make(rng, n_anchors, classes, h, w)
    scale = scale if kind == "yolo" else 1.0
    spec = HeadSpec(kind, anchors, classes, scale_x_y=scale)
    got = decode_head(spec, out, (320, 256), thresh)
    boxes, probs = _darknet_loops(kind, out, anchors, classes, (320, 256), thresh, scale)
    np.testing.assert_allclose(got.boxes, boxes, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.probs, probs, rtol=1e-9, atol=1e-12)


def test_single_cell_box_in_pixels():
    """One confident cell: the box is where the formula puts it, in original-image pixels."""
    classes, h, w = 3, 4, 5
    anchors = np.array([[40.0, 80.0], [100.0, 50.0]])
    out = np.zeros((2 * (5 + classes), h, w), dtype=np.float32)
    a = out.reshape(2, 5 + classes, h, w)
    a[:, 4] = 0.01  # objectness everywhere: below thresh
    a[1, 0, 2, 3] = 0.5  # anchor 1, row 2, col 3: x offset
    a[1, 1, 2, 3] = 0.25
    a[1, 2, 2, 3] = math.log(2.0)  # w = 2 x anchor
    a[1, 3, 2, 3] = 0.0
    a[1, 4, 2, 3] = 0.9
    a[1, 5 + 2, 2, 3] = 0.8  # class 2
    spec = HeadSpec("yolo", anchors, classes, index=7)
    dets = decode_raw({7: spec}, {7: out}, (160, 128), (640, 480), thresh=0.25, nms=0.45, names=["a", "b", "c"])
    assert len(dets) == 1
    d = dets[0]
    assert (d.label, d.class_id) == ("c", 2)
    assert d.score == pytest.approx(0.72)
    cx, cy = (3 + 0.5) / 5 * 640, (2 + 0.25) / 4 * 480
    bw, bh = 200.0 / 160 * 640, 50.0 / 128 * 480
    assert (d.x1, d.y1, d.x2, d.y2) == pytest.approx((cx - bw / 2, cy - bh / 2, min(640, cx + bw / 2), cy + bh / 2))


@settings(max_examples=40)
@given(
    img_w=st.integers(1, 2000),
    img_h=st.integers(1, 2000),
    net=st.sampled_from([(320, 320), (416, 416), (608, 608), (320, 256)]),
    box=st.tuples(st.floats(0.05, 0.95), st.floats(0.05, 0.95), st.floats(0.01, 1), st.floats(0.01, 1)),
)
def test_letterbox_correction_inverts_letterboxing(img_w, img_h, net, box):
    """A box placed on the letterboxed net input maps back to the same place on the image."""
    new_w, new_h = letterbox_geometry((img_w, img_h), net)
    assert 0 < new_w <= net[0] and 0 < new_h <= net[1]
    assert new_w == net[0] or new_h == net[1]
    x, y, bw, bh = box  # relative to the image
    dx, dy = (net[0] - new_w) / 2, (net[1] - new_h) / 2
    on_net = np.array([[(dx + x * new_w) / net[0], (dy + y * new_h) / net[1], bw * new_w / net[0], bh * new_h / net[1]]])
    np.testing.assert_allclose(correct_boxes(on_net, (img_w, img_h), net, True), [[x, y, bw, bh]], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(correct_boxes(on_net, (img_w, img_h), net, False), on_net)


def test_head_spec_from_layer_applies_mask_and_checks_channels():
    anchors = [12, 18, 37, 49, 52, 132, 115, 73, 119, 199, 242, 238]
    layer = SimpleNamespace(type="yolo", index=30, anchors=anchors, mask=[3, 4, 5], classes=80, num=6, coords=4,
                            scale_x_y=1.0, out_shape=(255, 10, 10))
    spec = HeadSpec.from_layer(layer)
    np.testing.assert_array_equal(spec.anchors, [[115, 73], [119, 199], [242, 238]])
    region = SimpleNamespace(type="region", index=31, anchors=anchors[:10], classes=20, num=5, coords=4,
                             out_shape=(125, 13, 13))
    assert HeadSpec.from_layer(region).num_anchors == 5
    bad = SimpleNamespace(**{**vars(layer), "out_shape": (254, 10, 10)})
    with pytest.raises(ShapeError, match="layer 30"):
        HeadSpec.from_layer(bad)
    with pytest.raises(ShapeError, match="layer 30"):
        decode_head(spec, np.zeros((254, 10, 10), np.float32), (320, 320), 0.25)
    with pytest.raises(ShapeError, match="not a region/yolo"):
        HeadSpec.from_layer(SimpleNamespace(type="convolutional", index=3))


@pytest.mark.parametrize("image_wh", [(768, 576), (300, 900), (320, 320), (1, 500), (641, 17)])
def test_letterbox_geometry_matches_preprocess(image_wh):
    """The decoder undoes exactly the letterbox that engine.preprocess made (grey 0.5 outside)."""
    from deepthings.engine.preprocess import preprocess

    w, h = image_wh
    rgb = np.full((h, w, 3), 255, dtype=np.uint8)  # white image: 1.0 inside, 0.5 border
    x = preprocess(rgb, (320, 256), letterbox=True)
    new_w, new_h = letterbox_geometry((w, h), (320, 256))
    dx, dy = (320 - new_w) // 2, (256 - new_h) // 2
    inside = np.zeros((256, 320), dtype=bool)
    inside[dy : dy + new_h, dx : dx + new_w] = True
    assert np.all(x[:, inside] == 1.0) and np.all(x[:, ~inside] == 0.5)


@settings(max_examples=40)
@given(
    n_anchors=st.integers(1, 3),
    classes=st.integers(1, 5),
    size=st.integers(2, 8),
    thresh=st.sampled_from([0.1, 0.25, 0.5]),
    nms_t=st.sampled_from([0.3, 0.45, 0.7]),
    image_wh=st.tuples(st.integers(1, 1500), st.integers(1, 1500)),
    letterbox=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_decoded_detections_invariants(n_anchors, classes, size, thresh, nms_t, image_wh, letterbox, seed):
    """Every detection is above thresh, inside the image, and no two of one class overlap > nms."""
    from deepthings.detect.nms import iou_matrix

    rng = np.random.default_rng(seed)
    spec = HeadSpec("yolo", rng.uniform(5, 200, size=(n_anchors, 2)), classes, index=0)
    out = _yolo_activated(rng, n_anchors, classes, size, size)
    dets = decode_raw({0: spec}, {0: out}, (256, 256), image_wh, thresh=thresh, nms=nms_t, letterbox=letterbox,
                      names=[f"c{i}" for i in range(classes)])
    w, h = image_wh
    scores = [d.score for d in dets]
    assert scores == sorted(scores, reverse=True)
    for d in dets:
        assert thresh < d.score <= 1.0 and d.label == f"c{d.class_id}"
        assert 0 <= d.x1 <= d.x2 <= w and 0 <= d.y1 <= d.y2 <= h
    # NMS decisions are made on unclipped boxes; redo them from the raw candidates to check.
    raw = decode_head(spec, out, (256, 256), thresh)
    assert len(dets) <= int((raw.probs > 0).sum())
    for c in range(classes):
        kept = [d for d in dets if d.class_id == c]
        cand = raw.probs[:, c] > 0
        assert len(kept) <= int(cand.sum())
        if len(kept) > 1:
            from deepthings.detect.decode import correct_boxes, to_corners

            boxes = to_corners(correct_boxes(raw.boxes[cand], image_wh, (256, 256), letterbox), image_wh, clip=False)
            probs = raw.probs[cand, c]
            kept_idx = [int(np.flatnonzero(np.isclose(probs, d.score, rtol=0, atol=1e-12))[0]) for d in kept]
            iou = iou_matrix(boxes[kept_idx], boxes[kept_idx])
            np.fill_diagonal(iou, 0)
            assert iou.max() <= nms_t + 1e-12
