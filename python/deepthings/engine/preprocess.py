"""Images in, network input out: load any image as RGB uint8, resize the way Darknet does.

``preprocess`` reproduces Darknet's ``resize_image`` (its own two-pass bilinear, corners
aligned) and ``letterbox_image`` (aspect kept, grey 0.5 border), giving CHW float32 in [0, 1].
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

import numpy as np

from PIL import Image, UnidentifiedImageError

from deepthings.errors import ImageError

ImageLike = Union[str, "os.PathLike[str]", np.ndarray, Any]  # Any: PIL.Image.Image


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
        raise ImageError(f"{p}: image file not found")
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
        return Image.fromarray(load_image(image))
    else:
        raise ImageError(f"unsupported image object {type(image).__name__}: give a path, PIL image or uint8 array")
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


def load_image(image: ImageLike) -> np.ndarray:
    """Return ``image`` as an HxWx3 uint8 RGB array (C-contiguous).

    Accepts a path, a PIL image (any mode) or a uint8 array. Grey, palette, CMYK, 16-bit and
    alpha images are converted to RGB (alpha dropped, as Darknet and OpenCV do); a missing
    file, something that is not an image, or a zero-size image raises ImageError.

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


def resize_darknet(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Darknet's resize_image on a CHW float32 image: horizontal then vertical bilinear pass
    with scale (in-1)/(out-1), the last row/column copied from the source's last."""
    c, ih, iw = img.shape
    img = img.astype(np.float32, copy=False)
    # Horizontal pass -> (c, ih, w).
    if iw == 1 or w == 1:
        # Darknet copies the source's last column (the only one when iw == 1).
        part = np.repeat(img[:, :, iw - 1 : iw], w, axis=2)
    else:
        w_scale = np.float32(iw - 1) / np.float32(w - 1)
        sx = np.arange(w, dtype=np.float32) * w_scale
        ix = sx.astype(np.int64)
        dx = (sx - ix).astype(np.float32)
        ix1 = np.minimum(ix + 1, iw - 1)
        part = (np.float32(1) - dx) * img[:, :, ix] + dx * img[:, :, ix1]
        part[:, :, w - 1] = img[:, :, iw - 1]
    # Vertical pass -> (c, h, w).
    if ih == 1 or h == 1:
        if h == 1:
            # Darknet: r == h-1 skips the second term: (1-dy) * part[iy] with sy = 0.
            return np.ascontiguousarray(part[:, 0:1, :], dtype=np.float32)
        return np.ascontiguousarray(np.repeat(part, h, axis=1), dtype=np.float32)
    h_scale = np.float32(ih - 1) / np.float32(h - 1)
    sy = np.arange(h, dtype=np.float32) * h_scale
    iy = sy.astype(np.int64)
    dy = (sy - iy).astype(np.float32)[None, :, None]
    iy1 = np.minimum(iy + 1, ih - 1)
    out = (np.float32(1) - dy) * part[:, iy, :]
    second = dy * part[:, iy1, :]
    second[:, h - 1, :] = 0  # Darknet skips the second term on the last row
    out = out + second
    return np.ascontiguousarray(out, dtype=np.float32)


def preprocess(
    image: ImageLike, size: tuple[int, int], letterbox: bool = False
) -> np.ndarray:
    """Image -> network input: CHW float32 in [0, 1], RGB, resized to ``size`` = (W, H).

    Like Darknet: pixels / 255, then ``resize_image`` (stretch), or with ``letterbox=True``
    ``letterbox_image``: scale to fit keeping the aspect ratio, centre on a 0.5 grey canvas.
    """
    w, h = int(size[0]), int(size[1])
    if w < 1 or h < 1:
        raise ImageError(f"network input size must be positive, got {size}")
    rgb = load_image(image)
    chw = rgb.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
    if not letterbox:
        return resize_darknet(chw, w, h)
    _, ih, iw = chw.shape
    # Darknet letterbox_image: integer new size from the limiting side.
    if w / iw < h / ih:
        new_w, new_h = w, (ih * w) // iw
    else:
        new_h, new_w = h, (iw * h) // ih
    new_w, new_h = max(new_w, 1), max(new_h, 1)
    resized = resize_darknet(chw, new_w, new_h)
    boxed = np.full((3, h, w), 0.5, dtype=np.float32)
    dx, dy = (w - new_w) // 2, (h - new_h) // 2
    boxed[:, dy : dy + new_h, dx : dx + new_w] = resized
    return boxed


__all__ = ["load_image", "to_pil_rgb", "describe", "preprocess", "resize_darknet"]
