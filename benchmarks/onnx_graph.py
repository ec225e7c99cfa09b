"""Build an ONNX graph from a loaded deepthings Network (same folded weights), so ONNX Runtime
can be timed on exactly the network our engine runs.

Conv with batch-norm already folded (weight + bias), leaky as LeakyRelu(0.1), maxpool with
Darknet's explicit (top, left, bottom, right) padding (ONNX MaxPool ignores padded cells, as
Darknet does), route as Concat/Slice, shortcut as Add, upsample as Resize(nearest), reorg as
the Reshape/Transpose that reproduces Darknet's element order. Region/yolo heads are not part
of the graph: the graph's outputs are the heads' inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_OPSET = 17


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, base: str, arr: np.ndarray) -> str:
        nm = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), nm))
        return nm

    def node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def activation(self, x: str, act: str) -> str:
        if act == "linear":
            return x
        if act == "leaky":
            return self.node("LeakyRelu", [x], alpha=0.1)
        if act == "relu":
            return self.node("Relu", [x])
        if act == "logistic":
            return self.node("Sigmoid", [x])
        if act == "tanh":
            return self.node("Tanh", [x])
        if act == "mish":
            return self.node("Mul", [x, self.node("Tanh", [self.node("Softplus", [x])])])
        if act == "swish":
            return self.node("Mul", [x, self.node("Sigmoid", [x])])
        raise NotImplementedError(f"activation {act!r} has no ONNX mapping here")


def network_to_onnx(net: Any, end: int | None = None) -> tuple[onnx.ModelProto, list[int]]:
    """ONNX model of layers [0, end) of ``net`` (heads excluded) with batch 1, NCHW input
    ``x``. Returns the model and the layer indices of its outputs (in output order)."""
    stop = len(net.layers) if end is None else end
    layers = net.layers[:stop]
    b = _Builder()
    vals: dict[int, str] = {-1: "x"}
    consumed: set[int] = set()
    heads: list[int] = []
    for layer in layers:
        t = layer.type
        ins = [vals[j] for j in layer.inputs] if t not in ("region", "yolo") else []
        if t in ("region", "yolo"):
            heads.append(layer.inputs[0])
            continue
        consumed.update(layer.inputs)
        if t == "convolutional":
            w = b.const("w", layer.weight)
            bias = b.const("b", layer.bias)
            top, left, bot, right = layer.spatial.pad
            y = b.node("Conv", [ins[0], w, bias], kernel_shape=list(layer.kernel), strides=list(layer.stride),
                       pads=[top, left, bot, right], group=int(layer.groups))
            y = b.activation(y, layer.activation)
        elif t == "maxpool":
            top, left, bot, right = layer.spatial.pad
            y = b.node("MaxPool", [ins[0]], kernel_shape=list(layer.spatial.kernel),
                       strides=list(layer.spatial.stride), pads=[top, left, bot, right])
        elif t == "route":
            parts = []
            for src, (lo, hi), shp in zip(ins, layer.channel_slices(), layer.in_shapes):
                if (lo, hi) == (0, shp[0]):
                    parts.append(src)
                else:
                    parts.append(b.node("Slice", [src, b.const("s", np.array([lo], np.int64)),
                                                  b.const("e", np.array([hi], np.int64)),
                                                  b.const("a", np.array([1], np.int64))]))
            y = parts[0] if len(parts) == 1 else b.node("Concat", parts, axis=1)
        elif t == "shortcut":
            if any(s != layer.in_shapes[0] for s in layer.in_shapes):
                raise NotImplementedError(f"layer {layer.index}: shortcut of unequal shapes")
            y = ins[0]
            for k, src in enumerate(ins[1:]):
                lhs = y if layer.alpha == 1.0 else b.node("Mul", [y, b.const("al", np.float32(layer.alpha))])
                rhs = src if layer.beta == 1.0 else b.node("Mul", [src, b.const("be", np.float32(layer.beta))])
                y = b.node("Add", [lhs, rhs])
            y = b.activation(y, layer.activation)
        elif t == "upsample":
            f = float(layer.factor)
            scales = b.const("sc", np.array([1, 1, f, f], np.float32))
            y = b.node("Resize", [ins[0], "", scales], mode="nearest", nearest_mode="floor",
                       coordinate_transformation_mode="asymmetric")
            if layer.scale != 1.0:
                y = b.node("Mul", [y, b.const("us", np.float32(layer.scale))])
        elif t == "reorg":
            c, h, w = layer.in_shapes[0]
            s = int(layer.stride)
            oc = c // (s * s)
            # Darknet reads the input buffer as (C/s², H, s, W, s) -> (s, s, C/s², H, W) flat.
            r = b.node("Reshape", [ins[0], b.const("sh", np.array([1, oc, h, s, w, s], np.int64))])
            r = b.node("Transpose", [r], perm=[0, 3, 5, 1, 2, 4])
            y = b.node("Reshape", [r, b.const("sh", np.array([1, c * s * s, h // s, w // s], np.int64))])
        elif t in ("dropout", "cost"):
            y = ins[0]
        else:
            raise NotImplementedError(f"layer {layer.index} [{t}] has no ONNX mapping here")
        vals[layer.index] = y
    outs = sorted(set(heads)) if heads else [layers[-1].index]
    if not heads and layers[-1].type in ("region", "yolo"):
        outs = [layers[-1].inputs[0]]
    c, h, w = net.input_shape
    graph_outputs = []
    out_names = []
    for i in outs:
        oc, oh, ow = net.layers[i].out_shape
        nm = f"out_{i}"
        b.nodes.append(helper.make_node("Identity", [vals[i]], [nm]))
        graph_outputs.append(helper.make_tensor_value_info(nm, TensorProto.FLOAT, [1, oc, oh, ow]))
        out_names.append(nm)
    graph = helper.make_graph(
        b.nodes, "deepthings", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, w])],
        graph_outputs, initializer=b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model, outs
