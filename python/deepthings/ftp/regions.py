"""Region and padding value types of FTP plans, and the bridge to the C++ arithmetic.

Regions are half-open ``[top, bottom) x [left, right)`` in the coordinates of the map they
live on (docs/ARCHITECTURE.md). The arithmetic itself lives in ``src/ftp_core/region.cpp``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import PlanError

Quad = tuple[int, int, int, int]


@dataclass(frozen=True)
class Region:
    """A half-open rectangle on one feature map: rows [top, bottom), columns [left, right)."""

    top: int
    left: int
    bottom: int
    right: int

    @classmethod
    def of(cls, q: Sequence[int]) -> "Region":
        t, l, b, r = (int(v) for v in q)
        return cls(t, l, b, r)

    @property
    def height(self) -> int:
        return max(0, self.bottom - self.top)

    @property
    def width(self) -> int:
        return max(0, self.right - self.left)

    @property
    def area(self) -> int:
        return self.height * self.width

    @property
    def empty(self) -> bool:
        return self.area == 0

    def as_tuple(self) -> Quad:
        return (self.top, self.left, self.bottom, self.right)

    def contains(self, other: "Region") -> bool:
        return other.empty or (
            self.top <= other.top
            and self.left <= other.left
            and self.bottom >= other.bottom
            and self.right >= other.right
        )

    def intersect(self, other: "Region") -> "Region":
        r = Region(
            max(self.top, other.top),
            max(self.left, other.left),
            min(self.bottom, other.bottom),
            min(self.right, other.right),
        )
        return r if not r.empty else EMPTY

    def relative_to(self, origin: "Region") -> tuple[slice, slice]:
        """Row/column slices selecting this region inside an array that holds ``origin``."""
        if not origin.contains(self):
            raise PlanError(f"region {self} is not inside {origin}")
        return (
            slice(self.top - origin.top, self.bottom - origin.top),
            slice(self.left - origin.left, self.right - origin.left),
        )

    def crop(self, array: np.ndarray, origin: "Region") -> np.ndarray:
        """The part of CHW ``array`` (which holds ``origin``) covered by this region (a view)."""
        rows, cols = self.relative_to(origin)
        return array[:, rows, cols]

    def __str__(self) -> str:
        return f"[{self.top}:{self.bottom}, {self.left}:{self.right}]"


EMPTY = Region(0, 0, 0, 0)


def core() -> Any:
    """The native module (its region arithmetic); a clear error if it was not built."""
    try:
        from .. import _core
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise ImportError(
            "deepthings._core is not built: run tools/dev_build.sh or pip install ."
        ) from exc
    return _core


_KIND_NAMES = ("window", "pointwise", "upsample", "global")


def winograd_align(layer: Any) -> int:
    """2 for a layer the native engine may run as Winograd F(2x2,3x3), else 1.

    That is every dense 3x3 stride-1 convolution, whatever its channel counts: the engine's
    size thresholds (and ``set_winograd``) may change at run time, while a plan must give
    bit-identical tiles under any of them. Tiles then compute such a layer from an even global
    row/column, so their 2x2 output blocks are the full map's (see region.hpp).
    """
    if (
        getattr(layer, "type", None) == "convolutional"
        and tuple(layer.spatial.kernel) == (3, 3)
        and tuple(layer.spatial.stride) == (1, 1)
        and int(getattr(layer, "groups", 1)) == 1
    ):
        return 2
    return 1


def layer_desc(layer: Any, shapes: dict[int, tuple[int, int, int]], align: bool = True) -> Any:
    """The C++ LayerDesc of a darknet Layer (``shapes`` maps index -> (C, H, W), -1 = input).

    ``align=False`` drops the Winograd alignment (for measuring what it costs)."""
    c = core()
    spec = layer.spatial
    if spec.kind not in _KIND_NAMES:
        raise PlanError(f"layer {layer.index} [{layer.type}]: unknown spatial kind {spec.kind!r}")
    kind = getattr(c.RegionKind, "global_" if spec.kind == "global" else spec.kind)
    in_h = [int(shapes[j][1]) for j in layer.inputs]
    in_w = [int(shapes[j][2]) for j in layer.inputs]
    _, oh, ow = layer.out_shape
    return c.LayerDesc(
        kind,
        tuple(int(v) for v in spec.kernel),
        tuple(int(v) for v in spec.stride),
        tuple(int(v) for v in spec.pad),
        int(spec.factor),
        [int(j) for j in layer.inputs],
        in_h,
        in_w,
        int(oh),
        int(ow),
        winograd_align(layer) if align else 1,
    )
