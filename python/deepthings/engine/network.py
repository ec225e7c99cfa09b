"""``Network``: an ordered list of layers with a forward pass over any layer range.

It keeps only the intermediate outputs later layers still read, so running a block
[start, end) needs just its input and a ``cache`` of the earlier outputs routes/shortcuts use.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from deepthings.darknet.layers import HEAD_TYPES, Layer
from deepthings.errors import ShapeError

if TYPE_CHECKING:
    from deepthings.darknet.weights import WeightsHeader

Shape = tuple[int, int, int]


class Network:
    """A Darknet network: ``layers``, ``input_shape`` (C, H, W), ``meta`` ([net] options)."""

    def __init__(
        self,
        layers: Sequence[Layer],
        input_shape: Shape,
        meta: dict[str, Any],
        *,
        cfg_text: str | None = None,
        cfg_path: str = "<string>",
        weights_header: "WeightsHeader | None" = None,
    ) -> None:
        self.layers: list[Layer] = list(layers)
        self.input_shape: Shape = tuple(input_shape)  # type: ignore[assignment]
        self.meta = dict(meta)
        self.cfg_text = cfg_text
        self.cfg_path = cfg_path
        self.weights_header = weights_header

    # ----- structure --------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        return (
            f"<Network {self.cfg_path!r}: {len(self.layers)} layers, input {self.input_shape}, "
            f"{self.flops() / 1e9:.2f} GFLOP>"
        )

    @property
    def name(self) -> str:
        """The cfg file's stem (``yolov2`` for ``.../yolov2.cfg``)."""
        import os

        base = os.path.basename(self.cfg_path)
        return base[:-4] if base.endswith(".cfg") else base

    @cached_property
    def head_layers(self) -> list[int]:
        """Indices of the region/yolo layers."""
        return [layer.index for layer in self.layers if layer.type in HEAD_TYPES]

    @cached_property
    def _consumers(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in range(len(self.layers) + 1)]
        for layer in self.layers:
            for j in layer.inputs:
                out[j].append(layer.index)  # j == -1 lands in the extra last slot
        return out

    def consumers(self, i: int) -> list[int]:
        """Layers that read the output of layer ``i`` (``-1``: the network input)."""
        self._check_index(i, allow_input=True)
        return list(self._consumers[i])

    def outputs_needed_after(self, k: int) -> list[int]:
        """Layers ``< k`` (and ``-1``, the input) whose outputs layers ``>= k`` read."""
        need = {j for layer in self.layers[k:] for j in layer.inputs if j < k}
        return sorted(need)

    def out_shape(self, i: int) -> Shape:
        """Output shape of layer ``i``; ``-1`` is the network input."""
        return self.input_shape if i == -1 else self.layers[i].out_shape

    def flops(self, start: int = 0, end: int | None = None) -> int:
        """Total FLOPs of layers [start, end)."""
        return sum(layer.flops() for layer in self.layers[start:end])

    def weight_bytes(self, start: int = 0, end: int | None = None) -> int:
        """float32 bytes of the folded parameters of layers [start, end)."""
        return sum(layer.weight_bytes() for layer in self.layers[start:end])

    def _check_index(self, i: int, allow_input: bool = False) -> None:
        lo = -1 if allow_input else 0
        if not lo <= i < len(self.layers):
            raise IndexError(f"layer index {i} outside {lo}..{len(self.layers) - 1}")

    # ----- execution --------------------------------------------------------------------
    def forward(
        self,
        x: np.ndarray,
        start: int = 0,
        end: int | None = None,
        *,
        engine: Any = None,
        cache: dict[int, np.ndarray] | None = None,
        outputs: Iterable[int] | None = None,
    ) -> np.ndarray | dict[int, np.ndarray]:
        """Run layers [start, end) and return the output of layer end-1.

        ``x`` is the input of layer ``start`` (the output of layer start-1; the network
        input for start=0). ``cache`` maps earlier layer indices to their outputs for the
        routes/shortcuts in the range that read them. ``outputs=[i, ...]`` returns
        ``{i: output}`` (i in [start-1, end)) instead. ``engine``: "native" (default),
        "reference" or an object with ``run_layer``.
        """
        from deepthings.engine import get_engine

        n = len(self.layers)
        stop = n if end is None else end
        if not 0 <= start < stop <= n:
            raise IndexError(f"layer range [{start}, {end}) is not inside [0, {n}) or is empty")
        eng = get_engine(engine)
        want = sorted(set(outputs)) if outputs is not None else None
        if want is not None:
            bad = [i for i in want if not start - 1 <= i < stop]
            if bad:
                raise IndexError(f"outputs {bad} are not produced by layers [{start}, {stop})")

        values: dict[int, np.ndarray] = {}
        for j, arr in (cache or {}).items():
            values[int(j)] = self._validated(arr, int(j), f"cache[{j}]")
        values[start - 1] = self._validated(x, start - 1, "x")

        # Last layer in range reading each value: after it runs, the value can go.
        last_use: dict[int, int] = {}
        for layer in self.layers[start:stop]:
            for j in layer.inputs:
                last_use[j] = layer.index
        keep = set(want or ())
        result: dict[int, np.ndarray] = {i: values[i] for i in keep if i == start - 1}
        for layer in self.layers[start:stop]:
            try:
                ins = [values[j] for j in layer.inputs]
            except KeyError as exc:
                missing = exc.args[0]
                raise ShapeError(
                    f"layer {layer.index} [{layer.type}] reads the output of layer {missing}, "
                    f"which is before start={start}: pass it in cache={{{missing}: array}}"
                ) from None
            out = eng.run_layer(layer, ins)
            if out.shape != layer.out_shape:
                raise ShapeError(
                    f"layer {layer.index} [{layer.type}]: engine returned {out.shape}, "
                    f"expected {layer.out_shape}"
                )
            if layer.index in keep:
                result[layer.index] = out
            # A layer nobody in range reads (an early head) is not kept unless asked for.
            if layer.index in last_use or layer.index == stop - 1:
                values[layer.index] = out
            for j in layer.inputs:
                if last_use.get(j) == layer.index and j not in keep:
                    values.pop(j, None)
            del ins, out  # so a dropped output is freed before the next layer runs
        if want is not None:
            return result
        return values[stop - 1]

    def _validated(self, arr: Any, i: int, what: str) -> np.ndarray:
        expect = self.out_shape(i)
        consumer = self._consumers[i][0] if self._consumers[i] else i + 1
        who = (
            f"layer {consumer} [{self.layers[consumer].type}]"
            if 0 <= consumer < len(self.layers)
            else "the network"
        )
        src = "the network input" if i == -1 else f"the output of layer {i}"
        if not isinstance(arr, np.ndarray):
            raise ShapeError(f"{what} ({src}, read by {who}) must be a numpy array, got {type(arr).__name__}")
        if arr.shape != expect:
            raise ShapeError(
                f"{what} ({src}, read by {who}) has shape {arr.shape}, expected {expect} (C, H, W)"
            )
        if arr.dtype != np.float32:
            raise ShapeError(f"{what} ({src}, read by {who}) must be float32, got {arr.dtype}")
        if not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr)
        return arr


__all__ = ["Network"]
