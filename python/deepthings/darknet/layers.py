"""The layer registry: one class per Darknet section type, each knowing its own shapes.

A layer is built from its cfg section and the output shapes of the layers before it. It holds
its geometry (``spatial``), its cost (``flops()``, ``weight_bytes()``) and, once weights are
loaded, its folded parameters. How it computes lives in the engines (reference / native).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, TypeVar

import numpy as np

from deepthings.darknet.cfg import Section
from deepthings.errors import CfgError, WeightsError

Shape = tuple[int, int, int]
Pad = tuple[int, int, int, int]

#: Activations the engines implement (Darknet names).
ACTIVATIONS = frozenset(
    {
        "linear",
        "leaky",
        "relu",
        "relu6",
        "logistic",
        "tanh",
        "elu",
        "selu",
        "mish",
        "hard_mish",
        "swish",
        "softplus",
        "gelu",
        "relie",
        "ramp",
        "lhtan",
        "hardtan",
        "plse",
        "stair",
        "loggy",
    }
)

# Darknet's batch-norm epsilon (normalize_cpu: (x - mean) / (sqrt(var) + .000001f)).
BN_EPS = 0.000001
# float32 variance v with float32(1 / (sqrt(v) + BN_EPS)) == 1.0 exactly: a batch-norm that
# folds to the identity, for writing already-folded parameters back into a .weights file.
_NEUTRAL_VAR = np.float32((1.0 - BN_EPS) ** 2)
assert np.float32(1.0 / (np.sqrt(np.float64(_NEUTRAL_VAR)) + BN_EPS)) == np.float32(1.0)


@dataclass(frozen=True)
class SpatialSpec:
    """How a layer's output pixels depend on its input pixels (see docs/ARCHITECTURE.md).

    kind: ``window`` (conv, maxpool), ``pointwise`` (same map size), ``upsample`` (out o reads
    input o // factor) or ``global`` (not tileable).
    """

    kind: str
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    pad: Pad = (0, 0, 0, 0)
    factor: int = 1


POINTWISE = SpatialSpec("pointwise")
GLOBAL = SpatialSpec("global")

LAYER_TYPES: dict[str, type["Layer"]] = {}

L = TypeVar("L", bound="type[Layer]")


def register(cls: L) -> L:
    """Class decorator: add a layer class to LAYER_TYPES under its cfg section name."""
    if cls.type in LAYER_TYPES:
        raise RuntimeError(f"layer type {cls.type!r} registered twice")
    LAYER_TYPES[cls.type] = cls
    return cls


class Layer:
    """Base class of every layer. Subclasses set ``type`` and implement ``_configure``."""

    type: ClassVar[str] = "?"

    def __init__(
        self,
        index: int,
        section: Section,
        prev_shapes: list[Shape],
        input_shape: Shape,
    ) -> None:
        self.index = index
        self.line = section.line
        self.cfg_path = section.cfg_path
        self._section = section
        self._prev_shapes = prev_shapes
        self._input_shape = input_shape
        self.activation = "linear"
        self.inputs: tuple[int, ...] = (index - 1,)
        self.spatial: SpatialSpec = POINTWISE
        self._loaded = False  # parameters set (by a weights file or randomly)
        self._configure(section)
        self.in_shapes: tuple[Shape, ...] = tuple(self._shape_of(j) for j in self.inputs)
        self.out_shape: Shape = self._out_shape()
        if min(self.out_shape) < 1:
            raise self.error(f"output shape {self.out_shape} is empty (input {self.in_shapes})")
        # The cfg section is needed only while building.
        del self._section, self._prev_shapes

    # ----- construction helpers ---------------------------------------------------------
    def _configure(self, s: Section) -> None:
        """Read options from the section; set inputs/spatial/attributes."""

    def _out_shape(self) -> Shape:
        return self.in_shapes[0]

    def _shape_of(self, j: int) -> Shape:
        return self._input_shape if j == -1 else self._prev_shapes[j]

    def _read_activation(self, s: Section, default: str) -> str:
        act = s.get_str("activation", default).lower()
        if act not in ACTIVATIONS:
            raise s.error(
                f"unknown activation {act!r} (known: {', '.join(sorted(ACTIVATIONS))})",
                "activation",
            )
        return act

    def _resolve(self, s: Section, key: str, j: int) -> int:
        """Darknet's layer references: negative = relative to this layer, else absolute."""
        target = self.index + j if j < 0 else j
        if not 0 <= target < self.index:
            raise s.error(
                f"'{key}' refers to layer {j} -> index {target}, which does not exist before "
                f"layer {self.index} (valid: 0..{self.index - 1})",
                key,
            )
        return target

    def error(self, msg: str) -> CfgError:
        """A CfgError naming this layer's cfg file, line, index and type."""
        return CfgError(f"{self.cfg_path}:{self.line}: layer {self.index} [{self.type}] {msg}")

    # ----- parameters -------------------------------------------------------------------
    def param_layout(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) of each float32 array in the .weights file, in file order."""
        return []

    def param_count(self) -> int:
        """Number of float32 values this layer reads from a .weights file."""
        return int(sum(int(np.prod(shape)) for _, shape in self.param_layout()))

    @property
    def has_weights(self) -> bool:
        """Whether the layer has parameters in a .weights file."""
        return bool(self.param_layout())

    @property
    def weights_loaded(self) -> bool:
        """Whether the parameters are set (always true for parameter-free layers)."""
        return self._loaded or not self.has_weights

    def set_params(self, raw: dict[str, np.ndarray]) -> None:
        """Take the raw (file-order, unfolded) arrays and fold batch-norm into them.

        Only the folded parameters are kept (one copy of the weights in memory);
        ``file_params()`` turns them back into an equivalent file layout.
        """
        for name, shape in self.param_layout():
            arr = raw.get(name)
            if arr is None or tuple(arr.shape) != shape:
                got = None if arr is None else tuple(arr.shape)
                raise WeightsError(f"layer {self.index} [{self.type}]: {name} {got}, expected {shape}")
        self._fold({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in raw.items()})
        self._loaded = True

    def _fold(self, raw: dict[str, np.ndarray]) -> None:
        """Derive the runtime parameters from the raw file arrays."""

    def file_params(self) -> dict[str, np.ndarray]:
        """Arrays in ``param_layout()`` order that load back to bit-identical parameters.

        Layers without batch-norm give their own arrays (the file round-trips byte for
        byte); folded layers give the folded weights with a neutral batch-norm (scale 1,
        mean 0, variance _NEUTRAL_VAR whose folding factor rounds to exactly 1.0f).
        """
        self.require_weights()
        weight, bias = self.weight, self.bias  # type: ignore[attr-defined]
        out = {"biases": bias, "weights": weight}
        if getattr(self, "batch_normalize", False):
            n = bias.shape[0]
            out.update(
                scales=np.ones(n, np.float32),
                rolling_mean=np.zeros(n, np.float32),
                rolling_variance=np.full(n, _NEUTRAL_VAR, np.float32),
            )
        return {name: out[name] for name, _ in self.param_layout()}

    def require_weights(self) -> None:
        """Raise WeightsError if the parameters were never loaded (``upto=``)."""
        if not self.weights_loaded:
            raise WeightsError(
                f"layer {self.index} [{self.type}] ({self.cfg_path}:{self.line}) has no weights "
                "loaded (the network was loaded with upto= below this layer)"
            )

    # ----- cost -------------------------------------------------------------------------
    def flops(self) -> int:
        """Multiply-adds x 2 (conv/connected), comparisons (pooling), elements otherwise."""
        return 0

    def weight_bytes(self) -> int:
        """float32 bytes of the folded parameters this layer uses at inference."""
        return 0

    def output_bytes(self) -> int:
        """float32 bytes of the output map."""
        c, h, w = self.out_shape
        return 4 * c * h * w

    def describe(self) -> str:
        """Short kernel/stride/pad text for tables."""
        return ""

    def __repr__(self) -> str:
        ins = ",".join(str(i) for i in self.inputs)
        return f"<{self.type} #{self.index} in=({ins}) {self.in_shapes} -> {self.out_shape}>"


def _folded(
    raw: dict[str, np.ndarray], batch_normalize: bool, ndim: int
) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) with batch-norm folded in, Darknet's formula:
    bn(y) = scale * (y - mean) / (sqrt(var) + .000001) + bias."""
    if not batch_normalize:
        # Nothing to fold: share the raw arrays (no copy of big connected layers).
        return raw["weights"], raw["biases"]
    var = np.maximum(raw["rolling_variance"].astype(np.float64), 0.0)
    factor = raw["scales"].astype(np.float64) / (np.sqrt(var) + BN_EPS)
    bias = raw["biases"].astype(np.float64) - raw["rolling_mean"].astype(np.float64) * factor
    f32 = factor.astype(np.float32).reshape((-1,) + (1,) * (ndim - 1))
    weight = np.ascontiguousarray(raw["weights"] * f32, dtype=np.float32)
    return weight, np.ascontiguousarray(bias, dtype=np.float32)


@register
class Convolutional(Layer):
    """2-D convolution with groups (depthwise when groups == channels), folded batch-norm."""

    type = "convolutional"

    def _configure(self, s: Section) -> None:
        c = self._shape_of(self.index - 1)[0]
        self.filters = s.get_int("filters", 1, min_value=1)
        self.size = s.get_int("size", 1, min_value=1)
        stride = s.get_int("stride", 1, min_value=1)
        sy = s.get_int("stride_y", stride, min_value=1)
        sx = s.get_int("stride_x", stride, min_value=1)
        self.groups = s.get_int("groups", 1, min_value=1)
        if s.get_int("dilation", 1) != 1:
            raise s.error("dilation != 1 is not supported", "dilation")
        # Options that change the math: refuse rather than compute something else.
        for key in ("binary", "xnor", "antialiasing", "deform", "flipped"):
            if s.get_int(key, 0):
                raise s.error(f"{key}=1 is not supported", key)
        self.batch_normalize = bool(s.get_int("batch_normalize", 0))
        padding = s.get_int("padding", 0, min_value=0)
        if s.get_int("pad", 0):
            padding = self.size // 2
        self.padding = padding
        self.activation = self._read_activation(s, "logistic")
        if c % self.groups or self.filters % self.groups:
            raise s.error(
                f"groups={self.groups} must divide both input channels ({c}) and filters "
                f"({self.filters})",
                "groups",
            )
        self.in_channels = c
        self.kernel = (self.size, self.size)
        self.stride = (sy, sx)
        self.pad: Pad = (padding, padding, padding, padding)
        self.spatial = SpatialSpec("window", self.kernel, self.stride, self.pad)
        self.weight: np.ndarray | None = None
        self.bias: np.ndarray | None = None

    def _out_shape(self) -> Shape:
        _, h, w = self.in_shapes[0]
        k, p = self.size, self.padding
        sy, sx = self.stride
        return (self.filters, (h + 2 * p - k) // sy + 1, (w + 2 * p - k) // sx + 1)

    def param_layout(self) -> list[tuple[str, tuple[int, ...]]]:
        n = self.filters
        out: list[tuple[str, tuple[int, ...]]] = [("biases", (n,))]
        if self.batch_normalize:
            out += [("scales", (n,)), ("rolling_mean", (n,)), ("rolling_variance", (n,))]
        out.append(("weights", (n, self.in_channels // self.groups, self.size, self.size)))
        return out

    def _fold(self, raw: dict[str, np.ndarray]) -> None:
        self.weight, self.bias = _folded(raw, self.batch_normalize, 4)

    def flops(self) -> int:
        o, oh, ow = self.out_shape
        return 2 * o * oh * ow * (self.in_channels // self.groups) * self.size * self.size

    def weight_bytes(self) -> int:
        return 4 * (self.filters * (self.in_channels // self.groups) * self.size**2 + self.filters)

    def describe(self) -> str:
        g = f" g{self.groups}" if self.groups > 1 else ""
        s = self.stride[0] if self.stride[0] == self.stride[1] else self.stride
        return f"{self.size}x{self.size}/{s} p{self.padding}{g}"


@register
class Maxpool(Layer):
    """Max pooling, Darknet padding: ``padding`` is a total, top/left get padding // 2."""

    type = "maxpool"

    def _configure(self, s: Section) -> None:
        stride = s.get_int("stride", 1, min_value=1)
        sy = s.get_int("stride_y", stride, min_value=1)
        sx = s.get_int("stride_x", stride, min_value=1)
        self.size = s.get_int("size", stride, min_value=1)
        self.padding = s.get_int("padding", self.size - 1, min_value=0)
        if s.get_int("maxpool_depth", 0):
            raise s.error("maxpool_depth is not supported", "maxpool_depth")
        self.kernel = (self.size, self.size)
        self.stride = (sy, sx)
        lo = self.padding // 2
        hi = self.padding - lo
        self.pad = (lo, lo, hi, hi)
        self.spatial = SpatialSpec("window", self.kernel, self.stride, self.pad)

    def _out_shape(self) -> Shape:
        c, h, w = self.in_shapes[0]
        sy, sx = self.stride
        return (c, (h + self.padding - self.size) // sy + 1, (w + self.padding - self.size) // sx + 1)

    def flops(self) -> int:
        c, h, w = self.out_shape
        return c * h * w * self.size * self.size

    def describe(self) -> str:
        s = self.stride[0] if self.stride[0] == self.stride[1] else self.stride
        return f"{self.size}x{self.size}/{s} p{self.padding}"


@register
class Avgpool(Layer):
    """Global average pooling: (C, H, W) -> (C, 1, 1)."""

    type = "avgpool"

    def _configure(self, s: Section) -> None:
        self.spatial = GLOBAL

    def _out_shape(self) -> Shape:
        return (self.in_shapes[0][0], 1, 1)

    def flops(self) -> int:
        c, h, w = self.in_shapes[0]
        return c * h * w


@register
class Connected(Layer):
    """Fully connected layer over the flattened CHW input; output (outputs, 1, 1).

    File order differs from conv: biases, weights, then the batch-norm statistics.
    """

    type = "connected"

    def _configure(self, s: Section) -> None:
        self.outputs = s.get_int("output", 1, min_value=1)
        self.batch_normalize = bool(s.get_int("batch_normalize", 0))
        self.activation = self._read_activation(s, "logistic")
        c, h, w = self._shape_of(self.index - 1)
        self.n_inputs = c * h * w
        self.spatial = GLOBAL
        self.weight: np.ndarray | None = None
        self.bias: np.ndarray | None = None

    def _out_shape(self) -> Shape:
        return (self.outputs, 1, 1)

    def param_layout(self) -> list[tuple[str, tuple[int, ...]]]:
        n = self.outputs
        out: list[tuple[str, tuple[int, ...]]] = [
            ("biases", (n,)),
            ("weights", (n, self.n_inputs)),
        ]
        if self.batch_normalize:
            out += [("scales", (n,)), ("rolling_mean", (n,)), ("rolling_variance", (n,))]
        return out

    def _fold(self, raw: dict[str, np.ndarray]) -> None:
        self.weight, self.bias = _folded(raw, self.batch_normalize, 2)

    def flops(self) -> int:
        return 2 * self.outputs * self.n_inputs

    def weight_bytes(self) -> int:
        return 4 * (self.outputs * self.n_inputs + self.outputs)


@register
class Dropout(Layer):
    """Identity at inference."""

    type = "dropout"

    def _configure(self, s: Section) -> None:
        self.probability = s.get_float("probability", 0.5)


@register
class Softmax(Layer):
    """Softmax over the flattened input, in ``groups`` equal contiguous groups."""

    type = "softmax"

    def _configure(self, s: Section) -> None:
        self.groups = s.get_int("groups", 1, min_value=1)
        self.temperature = s.get_float("temperature", 1.0)
        if self.temperature == 0:
            raise s.error("temperature must not be 0", "temperature")
        c, h, w = self._shape_of(self.index - 1)
        if (c * h * w) % self.groups:
            raise s.error(f"groups={self.groups} does not divide {c * h * w} inputs", "groups")
        self.spatial = GLOBAL

    def flops(self) -> int:
        c, h, w = self.out_shape
        return 3 * c * h * w


@register
class Route(Layer):
    """Channel concatenation of earlier layers (optionally one channel group of each)."""

    type = "route"

    def _configure(self, s: Section) -> None:
        refs = s.get_int_list("layers")
        self.inputs = tuple(self._resolve(s, "layers", j) for j in refs)
        self.groups = s.get_int("groups", 1, min_value=1)
        self.group_id = s.get_int("group_id", 0, min_value=0)
        if self.group_id >= self.groups:
            raise s.error(f"group_id={self.group_id} must be < groups={self.groups}", "group_id")
        shapes = [self._shape_of(j) for j in self.inputs]
        h, w = shapes[0][1:]
        for j, shp in zip(self.inputs, shapes):
            if shp[1:] != (h, w):
                raise s.error(
                    f"layers {list(self.inputs)} have different map sizes: layer {j} is "
                    f"{shp[1]}x{shp[2]}, layer {self.inputs[0]} is {h}x{w}",
                    "layers",
                )
            if shp[0] % self.groups:
                raise s.error(
                    f"groups={self.groups} does not divide the {shp[0]} channels of layer {j}",
                    "groups",
                )

    def _out_shape(self) -> Shape:
        c = sum(shp[0] // self.groups for shp in self.in_shapes)
        return (c, self.in_shapes[0][1], self.in_shapes[0][2])

    def channel_slices(self) -> list[tuple[int, int]]:
        """(first, stop) channel range taken from each input."""
        out = []
        for shp in self.in_shapes:
            part = shp[0] // self.groups
            out.append((part * self.group_id, part * (self.group_id + 1)))
        return out

    def describe(self) -> str:
        g = f" g{self.group_id}/{self.groups}" if self.groups > 1 else ""
        return "layers " + ",".join(str(i) for i in self.inputs) + g


@register
class Reorg(Layer):
    """Darknet's reorg (YOLOv2 passthrough): (C, H, W) -> (C*s*s, H/s, W/s).

    Darknet's element order is not a plain space-to-depth: forward_reorg_layer calls
    reorg_cpu(..., forward=0), see deepthings.engine.reference.reorg.
    """

    type = "reorg"

    def _configure(self, s: Section) -> None:
        self.stride = s.get_int("stride", 1, min_value=1)
        for key in ("reverse", "flatten", "extra"):
            if s.get_int(key, 0):
                raise s.error(f"reorg with {key}=1 is not supported", key)
        c, h, w = self._shape_of(self.index - 1)
        st = self.stride
        if h % st or w % st:
            raise s.error(f"stride {st} does not divide the {h}x{w} input map", "stride")
        if c % (st * st):
            raise s.error(f"stride^2={st * st} does not divide the {c} input channels", "stride")
        self.spatial = GLOBAL

    def _out_shape(self) -> Shape:
        c, h, w = self.in_shapes[0]
        st = self.stride
        return (c * st * st, h // st, w // st)

    def describe(self) -> str:
        return f"/{self.stride}"


@register
class Shortcut(Layer):
    """Residual add: act(alpha * previous + beta * from).

    Equal shapes are the normal case (``pointwise``). Like Darknet's shortcut_cpu, a ``from``
    map that is an integer factor larger or smaller (same factor for rows and cols) is
    sub-sampled / spread, and only the common channels are added (resnet18.cfg relies on it);
    such a shortcut is ``global`` (not tileable). Any other mismatch is a CfgError.
    """

    type = "shortcut"

    def _configure(self, s: Section) -> None:
        if self.index == 0:
            raise s.error("a shortcut cannot be the first layer")
        refs = s.get_int_list("from")
        self.inputs = (self.index - 1,) + tuple(self._resolve(s, "from", j) for j in refs)
        self.activation = self._read_activation(s, "linear")
        self.alpha = s.get_float("alpha", 1.0)
        self.beta = s.get_float("beta", 1.0)
        wt = s.get_str("weights_type", "none")
        if wt != "none":
            raise s.error(f"weights_type={wt} is not supported", "weights_type")
        base = self._shape_of(self.index - 1)
        equal = True
        for j in self.inputs[1:]:
            shp = self._shape_of(j)
            if shp == base:
                continue
            equal = False
            if shortcut_sampling(shp, base) is None:
                raise s.error(
                    f"shapes differ: previous layer {self.index - 1} gives {base}, "
                    f"layer {j} gives {shp} (shortcut needs equal shapes, or maps an integer "
                    "factor apart as Darknet allows)",
                    "from",
                )
        self.spatial = POINTWISE if equal else GLOBAL

    def flops(self) -> int:
        c, h, w = self.out_shape
        return c * h * w * (len(self.inputs) - 1)

    def describe(self) -> str:
        return "from " + ",".join(str(i) for i in self.inputs[1:])


def shortcut_sampling(add: Shape, out: Shape) -> tuple[int, int] | None:
    """Darknet shortcut_cpu's (stride, sample) for adding map ``add`` into map ``out``:
    out[k, j*sample, i*sample] += add[k, j*stride, i*stride] over the common channels.

    None unless one map is exactly an integer factor of the other, the same for rows and
    columns (Darknet only asserts the truncated ratios; a 32 vs 11 map is a cfg mistake).
    """
    _, h1, w1 = add
    _, h2, w2 = out
    if w1 >= w2 and h1 >= h2 and w1 % w2 == 0 and h1 % h2 == 0 and w1 // w2 == h1 // h2:
        return w1 // w2, 1
    if w2 >= w1 and h2 >= h1 and w2 % w1 == 0 and h2 % h1 == 0 and w2 // w1 == h2 // h1:
        return 1, w2 // w1
    return None


@register
class Upsample(Layer):
    """Nearest-neighbour upsampling by an integer factor (times ``scale``)."""

    type = "upsample"

    def _configure(self, s: Section) -> None:
        stride = s.get_int("stride", 2)
        if stride < 1:
            raise s.error("downsampling upsample (stride < 1) is not supported", "stride")
        self.factor = stride
        self.scale = s.get_float("scale", 1.0)
        self.spatial = SpatialSpec("upsample", factor=stride)

    def _out_shape(self) -> Shape:
        c, h, w = self.in_shapes[0]
        return (c, h * self.factor, w * self.factor)

    def describe(self) -> str:
        return f"x{self.factor}"


def _check_head_channels(layer: Layer, s: Section, per_anchor: int, anchors: int) -> None:
    c = layer._shape_of(layer.index - 1)[0]
    if c != anchors * per_anchor:
        raise s.error(
            f"input has {c} channels, expected {anchors} anchors x {per_anchor} = "
            f"{anchors * per_anchor} (check filters= of the layer before)"
        )


@register
class Region(Layer):
    """YOLOv2 head. Output = input with forward_region_layer's in-place activations:

    per anchor n (block of coords+classes+1 channels): logistic on x, y; logistic on the
    objectness (unless background); softmax over the class channels (if softmax=1) else
    logistic. Anchors etc. are kept for the decoder.
    """

    type = "region"

    def _configure(self, s: Section) -> None:
        self.classes = s.get_int("classes", 20, min_value=0)
        self.coords = s.get_int("coords", 4, min_value=0)
        self.num = s.get_int("num", 1, min_value=1)
        self.softmax = bool(s.get_int("softmax", 0))
        self.background = bool(s.get_int("background", 0))
        if s.has("tree"):
            raise s.error("softmax trees are not supported", "tree")
        self.anchors = s.get_float_list("anchors", [0.5] * (2 * self.num))
        if len(self.anchors) < 2 * self.num:
            raise s.error(
                f"anchors has {len(self.anchors)} values, num={self.num} needs {2 * self.num}",
                "anchors",
            )
        self.thresh = s.get_float("thresh", 0.5)
        self.bias_match = bool(s.get_int("bias_match", 0))
        _check_head_channels(self, s, self.coords + self.classes + 1, self.num)
        self.spatial = GLOBAL


@register
class Yolo(Layer):
    """YOLOv3-style head. Output = input with forward_yolo_layer's in-place activations.

    Per anchor of ``mask`` (block of 4+1+classes channels), as in AlexeyAB's darknet (which
    yolo-fastest uses): logistic on x, y, objectness and classes (skipped when new_coords=1),
    then x, y <- x * scale_x_y - 0.5 * (scale_x_y - 1). The decoder must NOT apply
    scale_x_y again; it only adds the grid offset and divides by the map size.
    """

    type = "yolo"

    def _configure(self, s: Section) -> None:
        self.classes = s.get_int("classes", 20, min_value=0)
        self.total = s.get_int("num", 1, min_value=1)
        self.mask = s.get_int_list("mask", list(range(self.total)))
        for m in self.mask:
            if not 0 <= m < self.total:
                raise s.error(f"mask entry {m} is outside 0..{self.total - 1} (num)", "mask")
        self.num = len(self.mask)
        self.anchors = s.get_float_list("anchors", [0.5] * (2 * self.total))
        if len(self.anchors) < 2 * self.total:
            raise s.error(
                f"anchors has {len(self.anchors)} values, num={self.total} needs "
                f"{2 * self.total}",
                "anchors",
            )
        self.scale_x_y = s.get_float("scale_x_y", 1.0)
        # The forward output already has scale_x_y applied (the decoder reads this flag).
        self.scale_x_y_applied = True
        self.new_coords = bool(s.get_int("new_coords", 0))
        self.thresh = s.get_float("ignore_thresh", 0.5)
        _check_head_channels(self, s, 4 + 1 + self.classes, self.num)
        self.spatial = GLOBAL


@register
class Crop(Layer):
    """Central crop at inference (Darknet forward_crop_layer with train=0), then x*2-1
    unless noadjust=1 (Darknet's crop layer maps [0,1] images to [-1,1])."""

    type = "crop"

    def _configure(self, s: Section) -> None:
        self.crop_height = s.get_int("crop_height", min_value=1)
        self.crop_width = s.get_int("crop_width", min_value=1)
        self.noadjust = bool(s.get_int("noadjust", 0))
        c, h, w = self._shape_of(self.index - 1)
        if self.crop_height > h or self.crop_width > w:
            raise s.error(
                f"crop {self.crop_height}x{self.crop_width} is larger than the {h}x{w} input"
            )
        self.spatial = GLOBAL

    def _out_shape(self) -> Shape:
        return (self.in_shapes[0][0], self.crop_height, self.crop_width)

    def offsets(self) -> tuple[int, int]:
        """(dh, dw): top-left corner of the central crop, as Darknet computes it."""
        _, h, w = self.in_shapes[0]
        return (h - self.crop_height) // 2, (w - self.crop_width) // 2

    def describe(self) -> str:
        return f"{self.crop_height}x{self.crop_width}"


@register
class Cost(Layer):
    """Training loss layer: identity at inference."""

    type = "cost"


HEAD_TYPES = ("region", "yolo")


def build_layer(index: int, section: Section, prev_shapes: list[Shape], input_shape: Shape) -> Layer:
    """Instantiate the registered class for ``section`` (CfgError for unknown types)."""
    cls = LAYER_TYPES.get(section.type)
    if cls is None:
        raise CfgError(
            f"{section.cfg_path}:{section.line}: unknown layer type [{section.type}] "
            f"(layer {index}; known: {', '.join(sorted(LAYER_TYPES))})"
        )
    section.index = index
    return cls(index, section, prev_shapes, input_shape)


def layer_types() -> dict[str, type[Layer]]:
    """A copy of the registry (type name -> class)."""
    return dict(LAYER_TYPES)


__all__ = [
    "ACTIVATIONS",
    "BN_EPS",
    "HEAD_TYPES",
    "LAYER_TYPES",
    "Layer",
    "SpatialSpec",
    "build_layer",
    "layer_types",
    "register",
]
