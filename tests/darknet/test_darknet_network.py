"""Network: layer ranges with caches, outputs, shape validation, graph queries, registry."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DARKNET_CFGS, YOLO_FASTEST
from hypothesis import given, settings
from hypothesis import strategies as st

from deepthings.darknet import load_darknet, network_from_cfg_text
from deepthings.darknet.layers import LAYER_TYPES, SpatialSpec
from deepthings.engine import get_engine
from deepthings.engine.reference import ReferenceEngine
from deepthings.errors import ShapeError

YF = load_darknet(YOLO_FASTEST / "yolo-fastest-1.1.cfg", YOLO_FASTEST / "yolo-fastest-1.1.weights")
X = np.random.default_rng(0).random(YF.input_shape, dtype=np.float32)
FULL = YF.forward(X, engine="reference", outputs=range(len(YF)))


def test_registry_has_every_contract_type() -> None:
    expected = {"convolutional", "maxpool", "avgpool", "connected", "dropout", "softmax", "route",
                "reorg", "shortcut", "upsample", "region", "yolo", "crop", "cost"}
    assert expected <= set(LAYER_TYPES)
    for name, cls in LAYER_TYPES.items():
        assert cls.type == name


@settings(max_examples=25)
@given(st.integers(1, len(YF) - 1), st.data())
def test_split_forward_equals_full(split: int, data: st.DataObject) -> None:
    """Running [0, k) then [k, end) with outputs_needed_after(k) as cache equals one run."""
    end = data.draw(st.integers(split + 1, len(YF)))
    cache = {j: FULL[j] for j in YF.outputs_needed_after(split) if j >= 0}
    x = FULL[split - 1]
    got = YF.forward(x, split, end, engine="reference", cache=cache)
    np.testing.assert_array_equal(got, FULL[end - 1])


def test_outputs_dict_and_engine_object() -> None:
    class Counting(ReferenceEngine):
        calls = 0

        def run_layer(self, layer, inputs, pad=None):
            Counting.calls += 1
            return super().run_layer(layer, inputs, pad)

    eng = Counting()
    out = YF.forward(X, 0, 12, engine=eng, outputs=[-1, 3, 11])
    assert set(out) == {-1, 3, 11} and Counting.calls == 12
    np.testing.assert_array_equal(out[3], FULL[3])
    np.testing.assert_array_equal(out[-1], X)
    assert get_engine(eng) is eng


def test_graph_queries_yolov2() -> None:
    net = load_darknet(DARKNET_CFGS / "yolov2.cfg")
    assert net.head_layers == [31]
    # layer 25 is [route] layers=-9 -> 16; layer 28 is [route] layers=-1,-4 -> 27, 24
    assert net.layers[25].inputs == (16,) and net.layers[25].line == 208
    assert net.consumers(16) == [17, 25]
    assert net.layers[28].inputs == (27, 24)
    assert net.layers[28].out_shape == (1280, 19, 19)
    assert net.layers[27].out_shape == (256, 19, 19)
    assert net.outputs_needed_after(20) == [16, 19]
    assert net.consumers(-1) == [0]
    assert net.out_shape(-1) == (3, 608, 608)
    # Darknet reports 62.94 BFLOPs for yolov2-608 (README: 62.9 GFLOP).
    assert abs(net.flops() / 1e9 - 62.9) < 0.2
    assert abs(net.flops(0, 16) / 1e9 - 26.0) < 0.1


def test_wrong_input_shape_names_layer_and_expected_shape() -> None:
    with pytest.raises(ShapeError) as info:
        YF.forward(np.zeros((3, 300, 320), np.float32), engine="reference")
    msg = str(info.value)
    assert "layer 0 [convolutional]" in msg and "(3, 320, 320)" in msg and "(3, 300, 320)" in msg
    with pytest.raises(ShapeError, match="float32"):
        YF.forward(X.astype(np.float64), engine="reference")
    with pytest.raises(ShapeError, match=r"expected \(8, 160, 160\)"):
        YF.forward(X, 2, 4, engine="reference")  # x must be layer 1's output


def test_missing_cache_entry_names_layer() -> None:
    # yolo-fastest layer 8 is a shortcut reading layer 4 (from=-4? whichever is < start).
    k = 8
    needed = [j for j in YF.outputs_needed_after(k) if j < k - 1]
    assert needed
    with pytest.raises(ShapeError, match="pass it in cache"):
        YF.forward(FULL[k - 1], k, k + 1, engine="reference")


def test_native_default_is_not_a_silent_fallback() -> None:
    """engine=None means native: it either runs the C++ engine or raises; never NumPy."""
    try:
        eng = get_engine(None)
    except Exception as exc:  # native not built: a clear deepthings error
        assert "native engine is not available" in str(exc)
    else:
        assert not isinstance(eng, ReferenceEngine)
    with pytest.raises(ValueError, match="unknown engine"):
        get_engine("turbo")


def test_spatial_specs_follow_darknet_padding() -> None:
    text = ("[net]\nwidth=13\nheight=13\nchannels=4\n"
            "[maxpool]\nsize=2\nstride=1\n"                # yolov2-tiny's stride-1 pool
            "[maxpool]\nsize=5\nstride=1\npadding=4\n"     # SPP
            "[maxpool]\nsize=3\nstride=2\n"                # padding default size-1 = 2
            "[convolutional]\nfilters=2\nsize=3\nstride=2\npad=1\n"
            "[convolutional]\nfilters=2\nsize=3\nstride=1\npadding=0\n"
            "[upsample]\nstride=2\n[route]\nlayers=-1\n[avgpool]\n")
    net = network_from_cfg_text(text)
    sp = [layer.spatial for layer in net.layers]
    assert sp[0] == SpatialSpec("window", (2, 2), (1, 1), (0, 0, 1, 1))
    assert net.layers[0].out_shape == (4, 13, 13)
    assert sp[1] == SpatialSpec("window", (5, 5), (1, 1), (2, 2, 2, 2))
    assert sp[2] == SpatialSpec("window", (3, 3), (2, 2), (1, 1, 1, 1))
    assert net.layers[2].out_shape == (4, 7, 7)
    assert sp[3] == SpatialSpec("window", (3, 3), (2, 2), (1, 1, 1, 1))
    assert net.layers[3].out_shape == (2, 4, 4)
    assert sp[4].pad == (0, 0, 0, 0) and net.layers[4].out_shape == (2, 2, 2)
    assert sp[5] == SpatialSpec("upsample", factor=2)
    assert sp[6].kind == "pointwise" and sp[7].kind == "global"
    assert net.layers[7].out_shape == (2, 1, 1)
    conv = net.layers[3]
    assert conv.flops() == 2 * 2 * 4 * 4 * 4 * 9
    assert conv.weight_bytes() == 4 * (2 * 4 * 9 + 2)
    assert conv.weight.shape == (2, 4, 3, 3) and conv.bias.shape == (2,)


def test_route_groups_take_one_channel_group() -> None:
    text = ("[net]\nwidth=4\nheight=4\nchannels=3\n[convolutional]\nfilters=6\nsize=1\n"
            "activation=linear\n[route]\nlayers=-1\ngroups=2\ngroup_id=1\n")
    net = network_from_cfg_text(text, random_seed=1)
    x = np.random.default_rng(0).random((3, 4, 4), dtype=np.float32)
    out = net.forward(x, engine="reference", outputs=[0, 1])
    assert net.layers[1].out_shape == (3, 4, 4)
    np.testing.assert_array_equal(out[1], out[0][3:6])


def test_forward_keeps_only_outputs_later_layers_need() -> None:
    """While layer i runs, the only earlier outputs alive are the ones layers >= i read.

    (NumPy arrays hold no reference cycles: an output is freed as soon as forward drops it.)
    """
    import weakref

    refs: dict[int, weakref.ref] = {}
    violations: list[tuple[int, list[int]]] = []

    class Watching(ReferenceEngine):
        def run_layer(self, layer, inputs, pad=None):
            alive = sorted(j for j, r in refs.items() if r() is not None)
            allowed = set(YF.outputs_needed_after(layer.index))
            extra = [j for j in alive if j not in allowed]
            if extra:
                violations.append((layer.index, extra))
            out = super().run_layer(layer, inputs, pad)
            refs[layer.index] = weakref.ref(out)
            return out

    x = X.copy()
    YF.forward(x, engine=Watching())
    assert not violations, violations[:5]
    assert len(refs) == len(YF)
