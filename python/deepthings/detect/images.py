"""Turning what users pass as an image (path, PIL image, array) into RGB pixels, with clear errors.

Grey, palette, CMYK and alpha images are converted to RGB (alpha is dropped, as Darknet's and
OpenCV's loaders do); missing files, non-images and zero-size images raise ImageError.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from deepthings.errors import ImageError


def describe(image: Any) -> str:
    """A short name for an image argument, for messages and reports."""
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    if isinstance(image, Image.Image):
        return f"<PIL {image.mode} {image.width}x{image.height}>"
    if isinstance(image, np.ndarray):
        return f"<array {image.dtype} {'x'.join(map(str, image.shape))}>"
    return f"<{type(image).__name__}>"


def open_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open and fully decode an image file; ImageError names the file and what is wrong."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{p}: no such file")
    if p.is_dir():
        raise ImageError(f"{p}: is a directory, not an image")
    if p.stat().st_size == 0:
        raise ImageError(f"{p}: empty file (0 bytes), not an image")
    try:
        with Image.open(p) as im:
            im.load()  # decode now, so truncated files fail here and not later
            return im.copy()
    except UnidentifiedImageError:
        raise ImageError(f"{p}: not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{p}: cannot decode image ({exc})") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{p}: image too large ({exc})") from None


def to_pil_rgb(image: Any) -> Image.Image:
    """An RGB PIL image from a path, a PIL image (any mode) or an HxW / HxWxC uint8 array."""
    if isinstance(image, (str, os.PathLike)):
        im = open_image(image)
        name = str(image)
    elif isinstance(image, Image.Image):
        im = image
        name = describe(image)
    elif isinstance(image, np.ndarray):
        return Image.fromarray(to_rgb_array(image))
    else:
        raise ImageError(f"unsupported image type {type(image).__name__}: give a path, PIL image or uint8 array")
    if im.width == 0 or im.height == 0:
        raise ImageError(f"{name}: zero-size image ({im.width}x{im.height})")
    if im.mode == "RGB":
        return im
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grey: scale to 8 bits instead of clipping everything to white.
        arr = np.asarray(im, dtype=np.float64)
        top = arr.max() if arr.size and arr.max() > 0 else 1.0
        im = Image.fromarray((arr * (255.0 / top)).round().astype(np.uint8))
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(arr * 255.0 if arr.max() <= 1.0 else arr, 0, 255).round().astype(np.uint8))
    try:
        return im.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageError(f"{name}: cannot convert {im.mode} image to RGB ({exc})") from None


def to_rgb_array(image: Any) -> np.ndarray:
    """HxWx3 uint8 RGB array (C-contiguous) from a path, PIL image or array.

    Arrays may be HxW (grey), HxWx1, HxWx3 (RGB) or HxWx4 (RGBA: alpha dropped), uint8.
    """
    if not isinstance(image, np.ndarray):
        return np.asarray(to_pil_rgb(image), dtype=np.uint8).copy()
    arr = image
    name = describe(arr)
    if arr.dtype != np.uint8:
        raise ImageError(f"{name}: image arrays must be uint8 (0..255), got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ImageError(f"{name}: expected an HxWx3 (or HxW, HxWx1, HxWx4) array")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"{name}: zero-size image")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr)
