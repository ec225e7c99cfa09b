"""Shared fixtures: where the models and images are, and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DEEPTHINGS_SHARED", REPO.parent / "shared")).resolve()
DARKNET_CFGS = SHARED / "models" / "darknet"
YOLO_FASTEST = SHARED / "models" / "yolo-fastest-1.1"
IMAGES = SHARED / "images"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"shared data not found at {SHARED} (set DEEPTHINGS_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def yolo_fastest_paths() -> tuple[Path, Path]:
    return YOLO_FASTEST / "yolo-fastest-1.1.cfg", YOLO_FASTEST / "yolo-fastest-1.1.weights"


@pytest.fixture(scope="session")
def image_paths() -> list[Path]:
    return sorted(IMAGES.glob("*.jpg"))


# Shared CI machines are slow and noisy: hypothesis must judge correctness, never speed.
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "deepthings",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile("deepthings")
