"""Preprocessing: Darknet's resize_image / letterbox_image exactly; images of every kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import IMAGES
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from deepthings.engine.preprocess import load_image, preprocess, resize_darknet
from deepthings.errors import ImageError

F32 = np.float32


def _dn_resize(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """image.c resize_image, loop for loop, in float32."""
    c, ih, iw = im.shape
    part = np.zeros((c, ih, w), F32)
    w_scale = F32(iw - 1) / F32(w - 1) if w > 1 else F32(0)
    h_scale = F32(ih - 1) / F32(h - 1) if h > 1 else F32(0)
    for k in range(c):
        for r in range(ih):
            for cc in range(w):
                if cc == w - 1 or iw == 1:
                    val = im[k, r, iw - 1]
                else:
                    sx = F32(cc) * w_scale
                    ix = int(sx)
                    dx = F32(sx - ix)
                    val = (F32(1) - dx) * im[k, r, ix] + dx * im[k, r, ix + 1]
                part[k, r, cc] = val
    out = np.zeros((c, h, w), F32)
    for k in range(c):
        for r in range(h):
            sy = F32(r) * h_scale
            iy = int(sy)
            dy = F32(sy - iy)
            out[k, r, :] = (F32(1) - dy) * part[k, iy, :]
            if r == h - 1 or ih == 1:
                continue
            out[k, r, :] += dy * part[k, iy + 1, :]
    return out


@settings(max_examples=30)
@given(ih=st.integers(1, 12), iw=st.integers(1, 12), h=st.integers(2, 12), w=st.integers(1, 12),
       seed=st.integers(0, 1000))
def test_resize_matches_darknet(ih, iw, h, w, seed):
    im = np.random.default_rng(seed).random((3, ih, iw), dtype=F32)
    np.testing.assert_allclose(resize_darknet(im, w, h), _dn_resize(im, w, h), rtol=0, atol=1e-6)


def test_preprocess_stretch_is_rgb_over_255_resized():
    rgb = load_image(IMAGES / "dog.jpg")
    x = preprocess(IMAGES / "dog.jpg", (64, 48))
    assert x.shape == (3, 48, 64) and x.dtype == F32 and x.flags.c_contiguous
    chw = rgb.transpose(2, 0, 1).astype(F32) / F32(255)
    np.testing.assert_allclose(x[:, 0, 0], chw[:, 0, 0], atol=1e-6)  # corners align
    np.testing.assert_allclose(x[:, -1, -1], chw[:, -1, -1], atol=1e-6)
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_letterbox_keeps_aspect_and_pads_grey():
    img = np.zeros((40, 100, 3), np.uint8)  # wide: 100x40 -> 50x20 inside 50x50
    img[:, :, 0] = 255
    x = preprocess(img, (50, 50), letterbox=True)
    assert x.shape == (3, 50, 50)
    # Darknet: new_h = 40 * 50 // 100 = 20, placed at (50 - 20) // 2 = 15.
    np.testing.assert_array_equal(x[:, :15, :], 0.5)
    np.testing.assert_array_equal(x[:, 35:, :], 0.5)
    np.testing.assert_allclose(x[0, 15:35, :], 1.0)
    np.testing.assert_allclose(x[1:, 15:35, :], 0.0)


def test_same_result_for_path_pil_and_array():
    path = IMAGES / "eagle.jpg"
    a = preprocess(path, (32, 32))
    b = preprocess(Image.open(path), (32, 32))
    c = preprocess(load_image(path), (32, 32))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "LA", "I;16", "1"])
def test_image_modes_become_rgb(tmp_path: Path, mode: str):
    base = Image.open(IMAGES / "horses.jpg").resize((31, 17))
    im = base.convert(mode)
    ext = "tiff" if mode in ("CMYK", "I;16") else "png"
    path = tmp_path / f"img.{ext}"
    im.save(path)
    for src in (path, im):
        arr = load_image(src)
        assert arr.shape == (17, 31, 3) and arr.dtype == np.uint8


def test_grey_and_rgba_arrays():
    grey = np.full((5, 6), 7, np.uint8)
    assert load_image(grey).shape == (5, 6, 3)
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., 3] = 255
    assert load_image(rgba).shape == (5, 6, 3)


def test_bad_images_raise_image_error(tmp_path: Path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "missing.jpg")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not a jpeg")
    with pytest.raises(ImageError, match=f"{junk}.*not an image"):
        load_image(junk)
    with pytest.raises(ImageError, match="zero-size"):
        load_image(np.zeros((0, 4, 3), np.uint8))
    with pytest.raises(ImageError, match="zero-size"):
        load_image(Image.new("RGB", (0, 0)))
    with pytest.raises(ImageError, match="uint8"):
        load_image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ImageError, match="HxWx3"):
        load_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)
    with pytest.raises(ImageError, match="unsupported image object"):
        load_image(42)
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes((IMAGES / "dog.jpg").read_bytes()[:2000])
    with pytest.raises(ImageError, match=str(truncated)):
        load_image(truncated)
