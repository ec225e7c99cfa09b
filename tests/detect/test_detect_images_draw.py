"""Image inputs (modes, arrays, broken files), drawing and JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import IMAGES
from PIL import Image

from deepthings.detect import Detection, draw, from_json, save_annotated, to_json
from deepthings.engine.preprocess import load_image, to_pil_rgb
from deepthings.errors import ImageError

DOG = IMAGES / "dog.jpg"


@pytest.fixture(scope="module")
def dog_rgb() -> np.ndarray:
    return load_image(DOG)


def test_path_pil_and_array_agree(dog_rgb):
    assert dog_rgb.shape == (576, 768, 3) and dog_rgb.dtype == np.uint8
    np.testing.assert_array_equal(load_image(Image.open(DOG)), dog_rgb)
    np.testing.assert_array_equal(load_image(dog_rgb), dog_rgb)
    assert to_pil_rgb(DOG).mode == "RGB" and to_pil_rgb(DOG).size == (768, 576)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "CMYK", "P", "I;16", "1"])
def test_other_modes_are_converted(tmp_path, dog_rgb, mode):
    img = Image.fromarray(dog_rgb).convert(mode)
    suffix = ".jpg" if mode in ("L", "CMYK") else ".png"  # JPEG stores CMYK and grey natively
    if mode == "1":
        suffix = ".png"
    path = tmp_path / f"x{suffix}"
    img.save(path)
    assert Image.open(path).mode == (mode if mode != "I;16" else Image.open(path).mode)
    for source in (path, img):
        rgb = load_image(source)
        assert rgb.shape == dog_rgb.shape and rgb.dtype == np.uint8
    if mode == "RGBA":
        np.testing.assert_array_equal(load_image(path), dog_rgb)  # alpha dropped, colours kept
    if mode in ("L", "LA"):
        rgb = load_image(path)
        assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()


def test_arrays_grey_and_alpha(dog_rgb):
    grey = dog_rgb[..., 0]
    np.testing.assert_array_equal(load_image(grey)[..., 2], grey)
    rgba = np.concatenate([dog_rgb, np.full(dog_rgb.shape[:2] + (1,), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(load_image(rgba), dog_rgb)


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p / "missing.jpg", "not found"),
        (lambda p: p, "directory"),
        (lambda p: _write(p / "empty.jpg", b""), "empty file"),
        (lambda p: _write(p / "text.jpg", b"hello, not a jpeg"), "not an image"),
        (lambda p: _write(p / "cut.jpg", DOG.read_bytes()[:2000]), "cannot decode"),
    ],
    ids=["missing", "directory", "empty", "text", "truncated"],
)
def test_bad_files_raise_image_error_naming_the_file(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ImageError, match=message) as info:
        load_image(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "bad,message",
    [
        (np.zeros((0, 5, 3), np.uint8), "zero-size"),
        (np.zeros((5, 0, 3), np.uint8), "zero-size"),
        (np.zeros((5, 5, 3), np.float32), "uint8"),
        (np.zeros((5, 5, 2), np.uint8), "HxWx3"),
        (np.zeros((2, 5, 5, 3), np.uint8), "HxWx3"),
        (Image.new("RGB", (0, 0)), "zero-size"),
        (12345, "unsupported image object"),
    ],
)
def test_bad_in_memory_images(bad, message):
    with pytest.raises(ImageError, match=message):
        load_image(bad)


def test_draw_marks_boxes_and_keeps_input(dog_rgb):
    before = dog_rgb.copy()
    dets = [Detection("dog", 16, 0.9, 100, 200, 300, 500), Detection("car", 2, 0.5, 450, 70, 690, 180)]
    out = draw(dog_rgb, dets)
    assert out.size == (768, 576) and out.mode == "RGB"
    np.testing.assert_array_equal(dog_rgb, before)
    arr = np.asarray(out)
    changed = (arr != dog_rgb).any(axis=2)
    # The box outlines changed pixels on each edge; the inside of the dog box did not change.
    assert changed[350, 99:103].any() and changed[350, 298:302].any()
    assert not changed[300:400, 150:250].any()
    assert changed.mean() < 0.1
    # No detections: identical picture.
    np.testing.assert_array_equal(np.asarray(draw(DOG, [])), dog_rgb)


def test_save_annotated_writes_png(tmp_path, dog_rgb):
    path = save_annotated(dog_rgb, [Detection("dog", 16, 0.9, 1, 2, 30, 40)], tmp_path / "sub" / "out.png")
    assert Image.open(path).size == (768, 576)


def test_json_round_trip():
    dets = [Detection("dog", 16, 0.875, 1.5, 2.0, 30.25, 40.0)]
    text = to_json(dets, image="dog.jpg")
    payload = json.loads(text)
    assert payload["image"] == "dog.jpg"
    assert payload["detections"][0] == {"label": "dog", "class_id": 16, "score": 0.875, "x1": 1.5, "y1": 2.0, "x2": 30.25, "y2": 40.0}
    assert from_json(text) == dets
    assert from_json(to_json(dets)) == dets
