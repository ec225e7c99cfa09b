"""Property tests: the stitched tiles of random layer stacks equal the unpartitioned forward."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepthings.darknet import network_from_cfg_text
from deepthings.errors import PlanError
from deepthings.ftp import FTP, Region

from ftp_netgen import ENGINES, random_cfg, scale_of


def _plan(data, text):
    """A random plan over a random fused prefix, with a grid every exported map allows."""
    net = network_from_cfg_text(text, random_seed=data.draw(st.integers(0, 2**16)))
    L = data.draw(st.integers(1, len(net.layers)))
    probe = FTP(net, grid=(1, 1), fused_layers=L)
    n_max = min(probe.layer_shape(e)[1] for e in probe.exports)
    m_max = min(probe.layer_shape(e)[2] for e in probe.exports)
    n = data.draw(st.integers(1, min(n_max, 5)))
    m = data.draw(st.integers(1, min(m_max, 5)))
    return net, FTP(net, grid=(n, m), fused_layers=L)


def _assert_same(got, want, engine, msg=""):
    """Native: bit for bit (tiles run the full map's kernels, Winograd blocks aligned). The
    reference engine's numpy/BLAS products may sum in another order for another matrix size,
    so there: to float rounding."""
    if engine == "native":
        np.testing.assert_array_equal(got, want, err_msg=msg)
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale_of(want), err_msg=msg)


def _check_stitched(engine, data, text):
    net, plan = _plan(data, text)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.standard_normal(net.input_shape).astype(np.float32)
    want = net.forward(x, engine=engine, outputs=list(plan.exports) + [len(net.layers) - 1])
    outs = [plan.run_tile(t.tile_id, x, engine) for t in plan.tiles]
    maps = plan.stitch_all(outs)
    for e in plan.exports:
        _assert_same(maps[e], want[e], engine, f"layer {e}")
    final = plan.finish(outs, engine=engine)
    _assert_same(final, want[len(net.layers) - 1], engine, "after the block")
    return net, plan, x


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=40)
@given(data=st.data(), net_text=random_cfg())
def test_stitched_tiles_equal_full_forward(engine, data, net_text):
    """Stitched tiles == unpartitioned forward (native: bit for bit), and so does the rest of
    the net after them."""
    text, _ = net_text
    net, plan, x = _check_stitched(engine, data, text)
    # The same tile fed its exact input crop gives the same output.
    t = data.draw(st.sampled_from(plan.tiles))
    crop = np.ascontiguousarray(t.input_region.crop(x, Region(0, 0, x.shape[1], x.shape[2])))
    a, b = plan.run_tile(t.tile_id, x, engine), plan.run_tile(t.tile_id, crop, engine)
    for u, v in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
        np.testing.assert_array_equal(u, v)


@settings(max_examples=30)
@given(data=st.data(), net_text=random_cfg(max_layers=6, winograd=True))
def test_winograd_stacks_are_bit_identical(data, net_text):
    """Stacks starting with (and often containing more) convs the native engine runs as
    Winograd F(2x2,3x3): stitched native tiles == native full forward, bit for bit."""
    text, _ = net_text
    _check_stitched("native", data, text)


class _PlainNative:
    """The native engine seen through the bare protocol (no out_region): tiles then crop the
    aligned layers' extra row/column themselves."""

    def __init__(self) -> None:
        from deepthings.engine.native import NativeEngine

        self._e = NativeEngine()

    def run_layer(self, layer, inputs, pad=None):
        return self._e.run_layer(layer, inputs, pad)


@settings(max_examples=20)
@given(data=st.data(), net_text=random_cfg(max_layers=6, winograd=True))
def test_engines_without_out_region_give_the_same_tiles(data, net_text):
    """An engine that cannot make part of an output gets the aligned rows and columns and the
    tile crops them: the same bits as the native engine making only the part asked for."""
    text, _ = net_text
    net, plan = _plan(data, text)
    x = np.random.default_rng(2).standard_normal(net.input_shape).astype(np.float32)
    plain = _PlainNative()
    for t in plan.tiles:
        a, b = plan.run_tile(t.tile_id, x, "native"), plan.run_tile(t.tile_id, x, plain)
        for u, v in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
            np.testing.assert_array_equal(u, v)


@settings(max_examples=30)
@given(data=st.data(), net_text=random_cfg(pointwise_and_pool_only=True))
def test_pool_route_shortcut_upsample_are_bit_identical(data, net_text):
    """Without convolutions the same arithmetic runs per pixel: tiles are bit-identical."""
    text, _ = net_text
    net, plan = _plan(data, text)
    x = np.random.default_rng(1).standard_normal(net.input_shape).astype(np.float32)
    want = net.forward(x, end=plan.fused_layers, engine="reference")
    got = plan.stitch([plan.run_tile(t.tile_id, x, "reference") for t in plan.tiles])
    np.testing.assert_array_equal(got, want)


@settings(max_examples=40)
@given(data=st.data(), net_text=random_cfg(max_layers=9))
def test_plan_invariants(data, net_text):
    """Cells partition every exported map, grids are balanced, regions nest inside the maps,
    padding is the real border's plus the Winograd alignment's."""
    text, _ = net_text
    net, plan = _plan(data, text)
    n, m = plan.grid
    for e in plan.exports:
        _, h, w = plan.layer_shape(e)
        cover = np.zeros((h, w), dtype=np.int32)
        heights = {t.export_regions[e].height for t in plan.tiles}
        widths = {t.export_regions[e].width for t in plan.tiles}
        assert max(heights) - min(heights) <= 1 and max(widths) - min(widths) <= 1 and min(heights) >= 1
        for t in plan.tiles:
            r = t.export_regions[e]
            cover[r.top : r.bottom, r.left : r.right] += 1
        assert (cover == 1).all()
    for t in plan.tiles:
        assert t.level == (t.row + t.col) % 2
        for lt in t.layers:
            if not lt.active:
                continue
            _, h, w = plan.layer_shape(lt.index)
            assert 0 <= lt.out_region.top < lt.out_region.bottom <= h
            assert 0 <= lt.out_region.left < lt.out_region.right <= w
            assert min(lt.pad) >= 0
            layer = net.layers[lt.index]
            # Dense 3x3 stride-1 convs are produced from an even row/column (Winograd blocks of
            # the full map): one extra leading row/column, made of zero padding, where odd.
            aligned = (
                layer.type == "convolutional" and layer.kernel == (3, 3) and layer.stride == (1, 1)
                and layer.groups == 1
            )
            out, prod = lt.out_region, lt.produced_region
            et, el = out.top - prod.top, out.left - prod.left
            assert (et, el) == ((out.top % 2, out.left % 2) if aligned else (0, 0))
            assert (prod.bottom, prod.right) == (out.bottom, out.right)
            # Otherwise padding only where the input region touches the real border of the map.
            _, ih, iw = layer.in_shapes[0]
            if lt.pad[0] - et:
                assert lt.in_region.top == 0
            if lt.pad[1] - el:
                assert lt.in_region.left == 0
            if lt.pad[2]:
                assert lt.in_region.bottom == ih
            if lt.pad[3]:
                assert lt.in_region.right == iw


def test_grid_larger_than_map_is_refused():
    net = network_from_cfg_text(
        "[net]\nwidth=8\nheight=6\nchannels=1\n[maxpool]\nsize=2\nstride=2\n", random_seed=0
    )
    FTP(net, grid=(3, 4), fused_layers=1)
    with pytest.raises(PlanError, match="larger than the 3x4"):
        FTP(net, grid=(4, 4), fused_layers=1)
    with pytest.raises(PlanError, match="fused_layers"):
        FTP(net, grid=(1, 1), fused_layers=2)
