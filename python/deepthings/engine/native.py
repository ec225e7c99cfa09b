"""The native engine: runs each layer with the C++ kernels in ``deepthings._core``.

Conv weights are copied and packed (GEMM panels, or Winograd-transformed for 3x3 stride-1
convs) once per layer object and ISA, so a network pays that only on its first forward. The
region/yolo heads and crop are element-wise NumPy (the reference functions): a negligible share
of the work. Design, memory bounds and switches: src/ftp_core/README.md.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Callable, Sequence

import numpy as np

from deepthings import _core
from deepthings.engine import reference as _ref
from deepthings.errors import ShapeError

Pad = tuple[int, int, int, int]


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (>= 1) in every native kernel (process-wide).

    The default is ``$DEEPTHINGS_THREADS`` if set, else the number of cores.
    """
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    """Number of threads the native kernels use."""
    return int(_core.get_num_threads())


def available_isas() -> list[str]:
    """GEMM kernel paths compiled in and supported by this CPU (e.g. scalar, avx2, avx512)."""
    return list(_core.available_isas())


def active_isa() -> str:
    """The GEMM kernel path in use (``$DEEPTHINGS_ISA`` or the best available)."""
    return str(_core.active_isa())


def set_isa(name: str) -> None:
    """Force a GEMM kernel path (``scalar``, ``avx2``, ``avx512``, ``neon``); ValueError if
    it is not available here."""
    _core.set_isa(name)


class NativeEngine:
    """Engine protocol implementation on the C++ core (docs/ARCHITECTURE.md)."""

    name = "native"
    # run_layer takes out_region (ftp/execute.py asks for it on Winograd-aligned layers)
    takes_out_region = True

    def __init__(self) -> None:
        # Packed weights per layer object; weak keys so dropping a Network frees them.
        self._packed: "weakref.WeakKeyDictionary[Any, tuple[int, Any]]" = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def run_layer(self, layer: Any, inputs: list[np.ndarray], pad: Pad | None = None,
                  out_region: Pad | None = None) -> np.ndarray:
        """Output of ``layer`` for ``inputs`` (one CHW float32 array per ``layer.inputs``).

        ``pad`` (top, left, bottom, right) overrides a window layer's own padding (a tile
        passes zero where its region is interior). ``out_region`` (top, left, bottom, right,
        half-open) returns only that part of the output, bit for bit; a Winograd conv then
        skips the work only the rest needs. Raises ShapeError naming the layer for wrong input
        shapes, dtypes or layouts.
        """
        if not _inputs_look_right(layer, inputs, pad):
            _ref._check_inputs(layer, inputs, pad)  # raises ShapeError naming the layer
        fn = _DISPATCH.get(layer.type)
        if fn is None:
            raise ShapeError(f"layer {layer.index} [{layer.type}]: no native implementation")
        layer.require_weights()
        ins = [_c_contiguous(a) for a in inputs]
        try:
            if out_region is None:
                return fn(self, layer, ins, pad)
            if fn is _conv:
                return _conv(self, layer, ins, pad, out_region)
            return _out_part(fn(self, layer, ins, pad), out_region)
        except ValueError as exc:
            if isinstance(exc, ShapeError):
                raise
            raise ShapeError(f"layer {layer.index} [{layer.type}]: {exc}") from exc

    def conv_weights(self, layer: Any) -> Any:
        """The layer's packed weights (``_core.ConvWeights``), made on first use and cached
        while the layer object lives (re-made if its weight array is replaced)."""
        w = layer.weight
        with self._lock:
            hit = self._packed.get(layer)
            if hit is not None and hit[0] is w:
                return hit[1]
        cw = _core.ConvWeights(np.ascontiguousarray(w, dtype=np.float32), int(layer.groups))
        with self._lock:
            self._packed[layer] = (w, cw)
        return cw


def _inputs_look_right(layer: Any, inputs: Sequence[np.ndarray], pad: Pad | None) -> bool:
    """Cheap version of the reference engine's input check (about 1 us instead of 10 per
    layer, which matters for 100+ small layers): count, CHW float32, channels, one map size.
    When it says no, the full check runs and raises the precise ShapeError."""
    if len(inputs) != len(layer.inputs) or (pad is not None and (len(pad) != 4 or min(pad) < 0)):
        return False
    hw = None
    tileable = layer.spatial.kind != "global"
    for a, shp in zip(inputs, layer.in_shapes):
        if type(a) is not np.ndarray or a.dtype != np.float32 or a.ndim != 3 or a.shape[0] != shp[0]:
            return False
        if not tileable and a.shape != shp:
            return False
        if hw is None:
            hw = a.shape[1:]
        elif a.shape[1:] != hw:
            return False
    return True


def _c_contiguous(a: np.ndarray) -> np.ndarray:
    # Tiles may be views of a larger map; the kernels take plain C-contiguous buffers.
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def _out_part(y: np.ndarray, region: Pad) -> np.ndarray:
    t, l, b, r = region
    if not (0 <= t < b <= y.shape[1] and 0 <= l < r <= y.shape[2]):
        raise ValueError(f"out_region {tuple(region)} is not a non-empty part of the {y.shape[1]}x{y.shape[2]} output")
    return np.ascontiguousarray(y[:, t:b, l:r])


def _conv(eng: NativeEngine, layer: Any, ins: Sequence[np.ndarray], pad: Pad | None,
          out_region: Pad | None = None) -> np.ndarray:
    p = layer.spatial.pad if pad is None else pad
    return _core.conv2d(
        ins[0], eng.conv_weights(layer), layer.bias, tuple(layer.stride), list(p), layer.activation,
        None if out_region is None else list(out_region),
    )


def _maxpool(eng: NativeEngine, layer: Any, ins: Sequence[np.ndarray], pad: Pad | None) -> np.ndarray:
    sp = layer.spatial
    return _core.maxpool2d(ins[0], tuple(sp.kernel), tuple(sp.stride), list(sp.pad if pad is None else pad))


def _route(eng: NativeEngine, layer: Any, ins: Sequence[np.ndarray], pad: Pad | None) -> np.ndarray:
    # Channel slices of C-contiguous CHW maps are C-contiguous views: no copies before the concat.
    parts = [a[lo:hi] for a, (lo, hi) in zip(ins, layer.channel_slices())]
    return _core.route(parts)


def _shortcut(eng: NativeEngine, layer: Any, ins: Sequence[np.ndarray], pad: Pad | None) -> np.ndarray:
    acc = ins[0]
    last = len(ins) - 1
    for k, add in enumerate(ins[1:], start=1):
        act = layer.activation if k == last else "linear"
        acc = _core.shortcut(acc, add, act, float(layer.alpha), float(layer.beta))
    return acc


def _connected(eng: NativeEngine, layer: Any, ins: Sequence[np.ndarray], pad: Pad | None) -> np.ndarray:
    return _core.connected(ins[0], layer.weight, layer.bias, layer.activation)


def _copy(eng: NativeEngine, layer: Any, ins: Sequence[np.ndarray], pad: Pad | None) -> np.ndarray:
    return ins[0].copy()


_DISPATCH: dict[str, Callable[[NativeEngine, Any, Sequence[np.ndarray], Pad | None], np.ndarray]] = {
    "convolutional": _conv,
    "maxpool": _maxpool,
    "avgpool": lambda e, l, ins, p: _core.global_avgpool(ins[0]),
    "connected": _connected,
    "dropout": _copy,
    "cost": _copy,
    "softmax": lambda e, l, ins, p: _core.softmax(ins[0], int(l.groups), float(l.temperature)),
    "route": _route,
    "reorg": lambda e, l, ins, p: _core.reorg(ins[0], int(l.stride)),
    "shortcut": _shortcut,
    "upsample": lambda e, l, ins, p: _core.upsample(ins[0], int(l.factor), float(l.scale)),
    "region": lambda e, l, ins, p: _ref.region_head(ins[0], l.num, l.coords, l.classes, l.softmax, l.background),
    "yolo": lambda e, l, ins, p: _ref.yolo_head(ins[0], l.num, l.classes, l.scale_x_y, l.new_coords),
    "crop": lambda e, l, ins, p: _ref.crop_center(ins[0], *l.offsets(), l.crop_height, l.crop_width, not l.noadjust),
}

__all__ = [
    "NativeEngine",
    "active_isa",
    "available_isas",
    "get_num_threads",
    "set_isa",
    "set_num_threads",
]
