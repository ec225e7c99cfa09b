"""Helpers for comparing deepthings with OpenCV DNN's Darknet importer (opencv < 5)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromDarknet"):
    pytest.skip("this OpenCV has no Darknet importer (needs opencv-python-headless < 5)",
                allow_module_level=True)

# OpenCV names a Darknet layer's activation with the *next* layer's number (conv_0, bn_0,
# leaky_1); everything else carries its own Darknet index (pool_1, shortcut_8, yolo_121).
_ACTIVATION_PREFIXES = {
    "leaky", "relu", "logistic", "sigmoid", "mish", "swish", "tanh", "elu", "selu", "relu6",
    "hardswish",
}
_NAME = re.compile(r"^(.*)_(\d+)$")


def read_net(cfg: Path | str, weights: Path | str):
    """cv2.dnn.readNetFromDarknet, pytest.skip with OpenCV's reason if it cannot import."""
    try:
        return cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    except cv2.error as exc:  # pragma: no cover - depends on the cfg
        pytest.skip(f"OpenCV cannot import {Path(cfg).name}: {str(exc).strip()[:300]}")


def layer_map(cvnet) -> dict[int, str]:
    """Our layer index -> name of the last OpenCV layer that produces its output."""
    owner: dict[int, str] = {}
    for name in cvnet.getLayerNames():
        m = _NAME.match(name)
        if not m:
            continue
        prefix, k = m.group(1), int(m.group(2))
        if prefix in _ACTIVATION_PREFIXES:
            k -= 1
        owner[k] = name
    return owner


def cv_call(what: str, cfg: Path | str, fn):
    """Run an OpenCV call; skip (naming OpenCV's error) if OpenCV itself fails."""
    try:
        return fn()
    except cv2.error as exc:
        msg = " ".join(str(exc).split())
        pytest.skip(f"OpenCV fails on {Path(cfg).name} during {what}: {msg[:300]}")


def max_rel_err(ours: np.ndarray, theirs: np.ndarray) -> float:
    """max |ours - theirs| / max |ours| (theirs reshaped to ours)."""
    theirs = np.asarray(theirs).reshape(ours.shape)
    scale = max(float(np.abs(ours).max()), 1e-12)
    return float(np.abs(ours - theirs).max()) / scale
