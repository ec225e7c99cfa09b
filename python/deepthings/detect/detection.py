"""The Detection record returned by every detector path, and its JSON form."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Iterable


@dataclass(frozen=True)
class Detection:
    """One detected object: class, confidence and box corners in original-image pixels.

    ``x1, y1`` is the top-left corner and ``x2, y2`` the bottom-right one, both clipped to the
    image (``0 <= x1 <= x2 <= width``). ``score`` is Darknet's class probability
    (objectness x class confidence).
    """

    label: str
    class_id: int
    score: float
    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return self.y2 - self.y1

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (JSON-ready) with the same fields."""
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"{self.label} {self.score:.0%} "
            f"[{self.x1:.0f}, {self.y1:.0f}, {self.x2:.0f}, {self.y2:.0f}]"
        )


def to_json(detections: Iterable[Detection], *, image: str | None = None, indent: int | None = 2) -> str:
    """Serialise detections as JSON: ``{"image": ..., "detections": [{label, class_id, ...}]}``.

    Without ``image`` the result is the bare list.
    """
    items = [d.to_dict() for d in detections]
    payload: Any = items if image is None else {"image": image, "detections": items}
    return json.dumps(payload, indent=indent)


def from_json(text: str) -> list[Detection]:
    """Inverse of :func:`to_json` (accepts both the bare list and the ``{"image", ...}`` form)."""
    payload = json.loads(text)
    items = payload["detections"] if isinstance(payload, dict) else payload
    return [Detection(**item) for item in items]
