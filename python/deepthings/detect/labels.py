"""Class names: read a Darknet .names file, or pick the shipped COCO/VOC list by class count."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from deepthings.errors import DeepthingsError


def read_names(path: str | Path) -> list[str]:
    """The class names in a Darknet ``.names`` file (one per line, blank lines ignored)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DeepthingsError(f"{path}: cannot read class names ({exc.strerror or exc})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


@lru_cache(maxsize=None)
def _shipped(name: str) -> tuple[str, ...]:
    from deepthings.data import data_path

    return tuple(read_names(data_path(name)))


def class_names_for(classes: int) -> list[str]:
    """Default names for a ``classes``-class net: COCO for 80, VOC for 20, else ``class<i>``."""
    for file in ("coco.names", "voc.names"):
        names = _shipped(file)
        if len(names) == classes:
            return list(names)
    return [f"class{i}" for i in range(classes)]
