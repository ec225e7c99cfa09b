"""Engines that run one layer at a time: ``native`` (C++, default) and ``reference`` (NumPy).

An engine is any object with ``run_layer(layer, inputs, pad=None) -> np.ndarray``. One whose
``takes_out_region`` is true also takes ``out_region=(top, left, bottom, right)`` and returns
only that part of the output (FTP tiles ask for it on Winograd-aligned layers; otherwise they
crop the whole output themselves).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from deepthings.errors import DeepthingsError


@runtime_checkable
class Engine(Protocol):
    """The engine protocol (docs/ARCHITECTURE.md)."""

    def run_layer(
        self, layer: Any, inputs: list[np.ndarray], pad: tuple[int, int, int, int] | None = None
    ) -> np.ndarray:
        """Output of ``layer`` for ``inputs``; ``pad`` overrides its padding (tiles)."""
        ...


_ENGINES: dict[str, Engine] = {}


def get_engine(engine: "str | Engine | None" = None) -> Engine:
    """Resolve ``engine``: None or "native" -> the C++ engine, "reference" -> NumPy, or an
    object that already implements ``run_layer``. No silent fallback: if the native engine
    is not available, this raises instead of quietly running the slow reference."""
    if engine is None:
        engine = "native"
    if not isinstance(engine, str):
        if not callable(getattr(engine, "run_layer", None)):
            raise TypeError(f"engine must be 'native', 'reference' or have run_layer(), got {engine!r}")
        return engine
    cached = _ENGINES.get(engine)
    if cached is not None:
        return cached
    if engine == "reference":
        from deepthings.engine.reference import ReferenceEngine

        inst: Engine = ReferenceEngine()
    elif engine == "native":
        try:
            from deepthings.engine.native import NativeEngine
        except ImportError as exc:
            raise DeepthingsError(
                f"the native engine is not available ({exc}); build it with tools/dev_build.sh "
                "or `pip install .`, or pass engine='reference' for the NumPy engine"
            ) from exc
        inst = NativeEngine()
    else:
        raise ValueError(f"unknown engine {engine!r}: use 'native' or 'reference'")
    _ENGINES[engine] = inst
    return inst


__all__ = ["Engine", "get_engine"]
