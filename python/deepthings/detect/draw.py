"""Annotated images: detection boxes and labels drawn with Pillow."""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from deepthings.detect.detection import Detection
from deepthings.engine.preprocess import to_pil_rgb


def class_color(class_id: int) -> tuple[int, int, int]:
    """A stable, well separated RGB colour per class (golden-ratio hue walk)."""
    hue = (class_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)  # scalable with Pillow >= 10.1
    except TypeError:  # older Pillow: fixed bitmap font
        return ImageFont.load_default()


def draw(image: Any, detections: Iterable[Detection], *, line_width: int | None = None) -> Image.Image:
    """A copy of ``image`` (path, PIL image or HxWx3 uint8 array) with boxes and labels drawn.

    Returns an RGB PIL image of the original size; the input is never modified.
    """
    canvas = to_pil_rgb(image).copy()
    w, h = canvas.size
    width = line_width or max(2, round(min(w, h) / 200))
    font = _font(max(11, round(min(w, h) / 35)))
    pen = ImageDraw.Draw(canvas)
    # Lowest score first, so the labels of the most confident objects end up on top.
    for det in sorted(detections, key=lambda d: d.score):
        color = class_color(det.class_id)
        box = [det.x1, det.y1, max(det.x1, det.x2), max(det.y1, det.y2)]
        pen.rectangle(box, outline=color, width=width)
        text = f"{det.label} {det.score:.2f}"
        left, top, right, bottom = pen.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        # Label above the box if there is room, else inside its top edge.
        ty = det.y1 - th - 2 * width if det.y1 - th - 2 * width >= 0 else det.y1
        tx = min(det.x1, max(0, w - tw - 2 * width))
        pen.rectangle([tx, ty, tx + tw + 2 * width, ty + th + 2 * width], fill=color)
        pen.text((tx + width - left, ty + width - top), text, fill=(0, 0, 0), font=font)
    return canvas


def save_annotated(image: Any, detections: Iterable[Detection], path: str | Path) -> Path:
    """Draw ``detections`` on ``image`` and write it to ``path`` (format from the suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    annotated = draw(image, detections)
    annotated.save(path)
    return path


def as_array(image: Image.Image) -> np.ndarray:
    """HxWx3 uint8 RGB array of a PIL image."""
    return np.asarray(image.convert("RGB"), dtype=np.uint8)
