"""Images in, network input out: load any image as RGB uint8, resize the way Darknet does.

``preprocess`` reproduces Darknet's ``resize_image`` (its own two-pass bilinear, corners
aligned) and ``letterbox_image`` (aspect kept, grey 0.5 border), giving CHW float32 in [0, 1].
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

import numpy as np

from deepthings.errors import ImageError

ImageLike = Union[str, "os.PathLike[str]", np.ndarray, Any]  # Any: PIL.Image.Image


def load_image(image: ImageLike) -> np.ndarray:
    """Return ``image`` as an HxWx3 uint8 RGB array.

    Accepts a path, a PIL image, or an HxWx3 (or HxW grey, HxWx4 RGBA) uint8 array. Grey,
    palette, CMYK and alpha images are converted to RGB (alpha is dropped). Raises ImageError
    for a missing file, something that is not an image, or a zero-size image.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, np.ndarray):
        return _array_to_rgb(image)
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image, "<PIL image>")
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.exists():
            raise ImageError(f"{path}: image file not found")
        if path.is_dir():
            raise ImageError(f"{path}: is a directory, not an image")
        try:
            with Image.open(path) as im:
                im.load()
                return _pil_to_rgb(im, str(path))
        except UnidentifiedImageError:
            raise ImageError(f"{path}: not an image (unrecognised format)") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageError(f"{path}: cannot decode image: {exc}") from None
    raise ImageError(
        f"unsupported image object {type(image).__name__}: give a path, a PIL image or an "
        "HxWx3 uint8 array"
    )


def _pil_to_rgb(im: Any, source: str) -> np.ndarray:
    if im.width == 0 or im.height == 0:
        raise ImageError(f"{source}: zero-size image ({im.width}x{im.height})")
    if im.mode != "RGB":
        # Palette/LA/RGBA images may carry transparency; convert via RGBA and drop alpha.
        if im.mode in ("P", "PA", "LA", "La", "RGBa") or "A" in im.mode:
            im = im.convert("RGBA")
        im = im.convert("RGB")
    arr = np.asarray(im, dtype=np.uint8)
    return np.ascontiguousarray(arr)


def _array_to_rgb(a: np.ndarray) -> np.ndarray:
    if a.dtype != np.uint8:
        raise ImageError(f"image array must be uint8 (HxWx3 RGB), got {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ImageError(f"image array must be HxWx3 (RGB), HxWx4 or HxW, got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageError(f"zero-size image array {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    return np.ascontiguousarray(a)


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


__all__ = ["load_image", "preprocess", "resize_darknet"]
