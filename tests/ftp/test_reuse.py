"""Data reuse (WST-S): level-1 tiles built from neighbours' published data stay exact."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepthings.darknet import network_from_cfg_text
from deepthings.errors import PlanError, ShapeError
from deepthings.ftp import FTP

from ftp_netgen import ENGINES, random_cfg, scale_of

DAG_CFG = """[net]
width=30
height=26
channels=3

[convolutional]
filters=4
size=3
stride=1
pad=1
activation=leaky

[convolutional]
filters=4
size=5
stride=1
pad=1
activation=leaky

[maxpool]
size=3
stride=2

[convolutional]
filters=6
size=3
stride=1
pad=1
activation=leaky

[convolutional]
filters=6
size=3
stride=1
pad=1
activation=linear

[shortcut]
from=-2
activation=leaky

[upsample]
stride=2

[route]
layers=-1,1

[convolutional]
filters=5
size=3
stride=2
pad=1
activation=leaky

[convolutional]
filters=3
size=1
stride=1
pad=1
activation=linear
"""


def _run_with_reuse(plan, x, engine, present_of):
    """All tiles with reuse; ``present_of(t, neighbours)`` picks which neighbours' data t gets."""
    rp = plan.reuse
    outs, published = {}, {}
    for t in rp.level0:
        outs[t], published[t] = rp.run_level0(t, x, engine)
    for t in rp.level1:
        data = rp.data_for(t, published)
        keep = present_of(t, sorted(data))
        outs[t] = rp.run_level1(t, x, {s: data[s] for s in keep}, engine)
    return outs


@pytest.fixture(scope="module")
def dag_net():
    return network_from_cfg_text(DAG_CFG, random_seed=3)


@pytest.mark.parametrize("grid", [(3, 3), (2, 4), (4, 3)])
def test_every_subset_of_neighbours_is_exact(dag_net, grid):
    """For every level-1 tile and every subset of neighbours present, the tile is exact."""
    plan = FTP(dag_net, grid=grid, fused_layers=9)
    x = np.random.default_rng(0).standard_normal(dag_net.input_shape).astype(np.float32)
    rp = plan.reuse
    published = {t: rp.run_level0(t, x, "reference")[1] for t in rp.level0}
    subsets_tried = 0
    for t in rp.level1:
        want = plan.run_tile(t, x, "reference")
        data = rp.data_for(t, published)
        assert set(data) == set(rp.neighbours(t).values())
        for k in range(len(data) + 1):
            for keep in itertools.combinations(sorted(data), k):
                got = rp.run_level1(t, x, {s: data[s] for s in keep}, "reference")
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale_of(want))
                subsets_tried += 1
        # With every neighbour present the tile computes strictly less than without reuse.
        full = rp.compute_regions(t, ())
        reduced = rp.compute_regions(t, data)
        assert sum(r.area for r in reduced) < sum(r.area for r in full)
    assert subsets_tried >= len(rp.level1) * 4


def test_exports_across_the_cut_with_reuse(dag_net):
    """Reuse with a block whose inner layer (1) is read after the cut; finish == full forward."""
    plan = FTP(dag_net, grid=(3, 3), fused_layers=7)
    assert plan.exports == (6, 1)
    x = np.random.default_rng(1).standard_normal(dag_net.input_shape).astype(np.float32)
    outs = _run_with_reuse(plan, x, "reference", lambda t, nbs: nbs)
    want = dag_net.forward(x, engine="reference")
    np.testing.assert_allclose(plan.finish(outs, engine="reference"), want, rtol=0, atol=1e-5 * scale_of(want))


def test_partial_or_bad_neighbour_data(dag_net):
    """Partial data from a neighbour is ignored (fallback); wrong shapes and strangers raise."""
    plan = FTP(dag_net, grid=(3, 3), fused_layers=9)
    rp = plan.reuse
    x = np.random.default_rng(2).standard_normal(dag_net.input_shape).astype(np.float32)
    t = 4  # the centre tile is level 0 in a 3x3 checkerboard
    assert rp.level(t) == 0 and rp.level(1) == 1
    published = {s: rp.run_level0(s, x, "reference")[1] for s in rp.level0}
    data = rp.data_for(1, published)
    want = plan.run_tile(1, x, "reference")
    partial = {s: dict(list(d.items())[:-1]) for s, d in data.items()}
    np.testing.assert_allclose(rp.run_level1(1, x, partial, "reference"), want, rtol=0, atol=1e-5 * scale_of(want))
    src = next(iter(data))
    layer = next(iter(data[src]))
    bad = {src: {**data[src], layer: data[src][layer][:, :-1]}}
    with pytest.raises(ShapeError, match=f"from tile {src}"):
        rp.run_level1(1, x, bad, "reference")
    with pytest.raises(PlanError, match="not a neighbour"):
        rp.run_level1(1, x, {8: data[src]}, "reference")
    with pytest.raises(PlanError, match="level-1"):
        rp.run_level0(1, x)


def _draw_case(data, net_text):
    """A random net, fused depth, grid (up to 4x4) and input; ``pick`` draws which level-0
    neighbours each level-1 tile finds."""
    text, _ = net_text
    net = network_from_cfg_text(text, random_seed=data.draw(st.integers(0, 999)))
    L = data.draw(st.integers(1, len(net.layers)))
    probe = FTP(net, grid=(1, 1), fused_layers=L)
    n = data.draw(st.integers(1, min(4, *(probe.layer_shape(e)[1] for e in probe.exports))))
    m = data.draw(st.integers(1, min(4, *(probe.layer_shape(e)[2] for e in probe.exports))))
    plan = FTP(net, grid=(n, m), fused_layers=L)
    x = np.random.default_rng(data.draw(st.integers(0, 999))).standard_normal(net.input_shape).astype(np.float32)

    def pick(t, nbs):
        return data.draw(st.lists(st.sampled_from(nbs), unique=True) if nbs else st.just([]))

    return net, plan, x, pick


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=30)
@given(data=st.data(), net_text=random_cfg(max_layers=8))
def test_random_stacks_with_reuse_and_random_arrivals(engine, data, net_text):
    """Stitched tiles with reuse == full forward, whatever neighbours each level-1 tile finds."""
    net, plan, x, pick = _draw_case(data, net_text)

    outs = _run_with_reuse(plan, x, engine, pick)
    want = net.forward(x, engine=engine, outputs=list(plan.exports))
    maps = plan.stitch_all(outs)
    for e in plan.exports:
        if engine == "native":  # the full map's kernels, Winograd blocks aligned: bit for bit
            np.testing.assert_array_equal(maps[e], want[e], err_msg=f"layer {e}")
        else:
            np.testing.assert_allclose(maps[e], want[e], rtol=0, atol=1e-5 * scale_of(want[e]), err_msg=f"layer {e}")


@settings(max_examples=25)
@given(data=st.data(), net_text=random_cfg(max_layers=6, winograd=True))
def test_winograd_stacks_with_reuse_are_bit_identical(data, net_text):
    """WST-S reduced regions of stacks with Winograd convs: native tiles with reuse (any
    neighbours present) == native full forward, bit for bit."""
    net, plan, x, pick = _draw_case(data, net_text)

    maps = plan.stitch_all(_run_with_reuse(plan, x, "native", pick))
    want = net.forward(x, outputs=list(plan.exports))
    for e in plan.exports:
        np.testing.assert_array_equal(maps[e], want[e], err_msg=f"layer {e}")


def test_level1_runs_from_its_reduced_input_crop(dag_net):
    """With neighbours present a level-1 tile may be sent only the input it still reads."""
    from deepthings.ftp import Region

    plan = FTP(dag_net, grid=(3, 3), fused_layers=9)
    rp = plan.reuse
    x = np.random.default_rng(5).standard_normal(dag_net.input_shape).astype(np.float32)
    published = {t: rp.run_level0(t, x, "reference")[1] for t in rp.level0}
    full = Region(0, 0, x.shape[1], x.shape[2])
    for t in rp.level1:
        data = rp.data_for(t, published)
        region = rp.input_region(t, data)
        assert region.area < plan.tiles[t].input_region.area
        small_crop = np.ascontiguousarray(region.crop(x, full))
        want = plan.run_tile(t, x, "reference")
        np.testing.assert_allclose(rp.run_level1(t, small_crop, data, "reference"), want, rtol=0, atol=1e-5 * scale_of(want))
        with pytest.raises(ShapeError):
            rp.run_level1(t, small_crop, {}, "reference")  # without neighbours it needs more


@pytest.mark.parametrize("grid", [(3, 3), (5, 1), (2, 4)])
def test_only_the_needed_pieces_are_read(dag_net, grid):
    """A level-1 tile given just needed_pieces(t, present) of its present neighbours is bit
    exact; without one of those pieces that neighbour falls back (still exact). On strips the
    needed pieces are a strict subset of the publication."""
    plan = FTP(dag_net, grid=grid, fused_layers=9)
    rp = plan.reuse
    x = np.random.default_rng(6).standard_normal(dag_net.input_shape).astype(np.float32)
    published = {t: rp.run_level0(t, x, "native")[1] for t in rp.level0}
    trimmed_somewhere = False
    for t in rp.level1:
        want = plan.run_tile(t, x, "native")
        data = rp.data_for(t, published)
        for k in range(len(data) + 1):
            for keep in itertools.combinations(sorted(data), k):
                needed = rp.needed_pieces(t, keep)
                assert set(needed) == set(keep)
                slim = {s: {layer: data[s][layer] for layer in needed[s]} for s in keep}
                trimmed_somewhere |= any(len(slim[s]) < len(data[s]) for s in keep)
                np.testing.assert_array_equal(rp.run_level1(t, x, slim, "native"), want)
                for s in keep:
                    for layer in needed[s]:
                        short = {**slim, s: {k2: v for k2, v in slim[s].items() if k2 != layer}}
                        np.testing.assert_array_equal(rp.run_level1(t, x, short, "native"), want)
    if grid[1] == 1:
        assert trimmed_somewhere


@pytest.mark.parametrize("grid", [(3, 3), (5, 1)])
def test_core_publication_serves_the_all_present_case(dag_net, grid):
    """run_level0(pieces=core_pieces) publishes exactly what each neighbour reads with all its
    neighbours present (the same arrays as the full publication's), and that is enough for a
    bit-exact level-1 tile; on strips it is a strict subset of the publication."""
    plan = FTP(dag_net, grid=grid, fused_layers=9)
    rp = plan.reuse
    x = np.random.default_rng(7).standard_normal(dag_net.input_shape).astype(np.float32)
    full = {t: rp.run_level0(t, x, "native")[1] for t in rp.level0}
    core = {t: rp.run_level0(t, x, "native", pieces=rp.core_pieces(t))[1] for t in rp.level0}
    smaller = False
    for src in rp.level0:
        assert {d: set(ls) for d, ls in core[src].items()} == {d: set(ls) for d, ls in rp.core_pieces(src).items()}
        for dest, layers in core[src].items():
            assert set(layers) == set(rp.needed_pieces(dest, rp.neighbours(dest).values())[src])
            for layer, arr in layers.items():
                np.testing.assert_array_equal(arr, full[src][dest][layer])
            smaller |= len(layers) < len(full[src][dest])
    for t in rp.level1:
        np.testing.assert_array_equal(rp.run_level1(t, x, rp.data_for(t, core), "native"), plan.run_tile(t, x, "native"))
    assert rp.core_pieces(rp.level1[0]) == {}
    if grid[1] == 1:
        assert smaller
