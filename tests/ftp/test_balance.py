"""Uneven grids: explicit cuts stay exact (with and without data reuse); balanced cuts shorten
the modelled schedule; bad cuts are refused with a message naming them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepthings.darknet import load_darknet, network_from_cfg_text
from deepthings.errors import PlanError
from deepthings.ftp import FTP
from deepthings.ftp.balance import balanced_cuts, schedule_makespan

from ftp_netgen import DARKNET_CFGS, ENGINES, random_cfg, scale_of


def _random_cuts(draw, size: int, parts: int) -> list[int]:
    if parts == 1:
        return [0, size]
    inner = sorted(draw(st.sets(st.integers(1, size - 1), min_size=parts - 1, max_size=parts - 1)))
    return [0, *inner, size]


def _same(got: np.ndarray, want: np.ndarray, engine: str) -> None:
    if engine == "native":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale_of(want))


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=30, deadline=None)
@given(data=st.data(), net_text=random_cfg(max_layers=6))
def test_uneven_cuts_stitch_exactly(engine, data, net_text):
    """Any valid cuts: stitched tiles == the unpartitioned forward, also through WST-S reuse."""
    text, _ = net_text
    net = network_from_cfg_text(text, random_seed=data.draw(st.integers(0, 2**16)))
    L = data.draw(st.integers(1, len(net.layers)))
    probe = FTP(net, grid=(1, 1), fused_layers=L)
    _, h, w = probe.output_shape
    # other exported maps must still get a non-empty cell each: keep the grid small there
    small = min(min(probe.layer_shape(e)[1], probe.layer_shape(e)[2]) for e in probe.exports)
    n = data.draw(st.integers(1, max(1, min(h, small, 4))))
    m = data.draw(st.integers(1, max(1, min(w, small, 4))))
    cuts = (_random_cuts(data.draw, h, n), _random_cuts(data.draw, w, m))
    try:
        plan = FTP(net, grid=(n, m), fused_layers=L, cuts=cuts)
    except PlanError as exc:
        assert "empty cell" in str(exc)  # the scaled cuts collapse on a smaller export
        return
    assert [t.out_region.top for t in plan.tiles[::m]] == cuts[0][:-1]
    assert [t.out_region.left for t in plan.tiles[:m]] == cuts[1][:-1]
    x = np.random.default_rng(data.draw(st.integers(0, 2**16))).standard_normal(net.input_shape).astype(np.float32)
    want = net.forward(x, 0, L, engine=engine, outputs=list(plan.exports))
    maps = plan.stitch_all([plan.run_tile(t.tile_id, x, engine) for t in plan.tiles])
    for e in plan.exports:
        _same(maps[e], want[e], engine)
    rp = plan.reuse
    outs, pub = {}, {}
    for t in rp.level0:
        outs[t], pub[t] = rp.run_level0(t, x, engine)
    for t in rp.level1:
        outs[t] = rp.run_level1(t, x, rp.data_for(t, pub), engine)
    maps = plan.stitch_all(outs)
    for e in plan.exports:
        _same(maps[e], want[e], engine)


@pytest.fixture(scope="module")
def yolov2():
    return load_darknet(DARKNET_CFGS / "yolov2.cfg")


@pytest.mark.parametrize("cuts, what", [
    (([0, 9, 9, 19, 24, 29, 38], [0, 19, 38]), "row cuts"),
    (([0, 7, 14, 20, 26, 32, 38], [0, 40]), "column cuts"),
    (([0, 7, 14, 20, 26, 32], [0, 19, 38]), "row cuts"),
    ("6x2", "cuts must be"),
])
def test_bad_cuts_are_refused(yolov2, cuts, what):
    with pytest.raises(PlanError, match=what):
        FTP(yolov2, grid=(6, 2), fused_layers=16, cuts=cuts)


def test_even_cuts_are_the_default_plan(yolov2):
    even = FTP(yolov2, grid=(6, 2), fused_layers=16)
    assert even.cuts is None
    same = FTP(yolov2, grid=(6, 2), fused_layers=16, cuts=([0, 7, 14, 20, 26, 32, 38], [0, 19, 38]))
    assert [t.out_region for t in same.tiles] == [t.out_region for t in even.tiles]
    assert even.boundaries == same.boundaries == ((0, 7, 14, 20, 26, 32, 38), (0, 19, 38))
    assert same.key != FTP(yolov2, grid=(6, 2), fused_layers=16, cuts=([0, 8, 14, 20, 26, 32, 38], [0, 19, 38])).key


@pytest.mark.parametrize("grid, reuse", [((6, 2), True), ((3, 3), True), ((3, 3), False)])
def test_balanced_cuts_shorten_the_modelled_schedule(yolov2, grid, reuse):
    even = schedule_makespan(FTP(yolov2, grid=grid, fused_layers=16), 6, reuse)
    cuts = balanced_cuts(yolov2, grid, 16, devices=6, reuse=reuse)
    plan = FTP(yolov2, grid=grid, fused_layers=16, cuts=cuts)
    bal = schedule_makespan(plan, 6, reuse)
    assert bal[0] < even[0]  # the border tiles, which need less overlap, got more rows
    # the makespan can never beat perfect sharing of the (redundant) total work
    assert bal[0] >= bal[1] / 6 - 1


def test_source_aware_cuts_lighten_the_sources_pair(yolov2):
    """The data source runs tile 0 and its partner and serves the steals: cuts balanced for it
    shorten the schedule the runtime actually runs, and its pair of tiles, served steals
    included, is not the busiest."""
    plain = FTP(yolov2, grid=(12, 1), fused_layers=16, cuts=balanced_cuts(yolov2, (12, 1), 16, devices=6))
    cuts = balanced_cuts(yolov2, (12, 1), 16, devices=6, source=0.1)
    aware = FTP(yolov2, grid=(12, 1), fused_layers=16, cuts=cuts)
    assert schedule_makespan(aware, 6, True, 0.1)[0] < schedule_makespan(plain, 6, True, 0.1)[0]
    cost = {t.tile_id: t.flops_reuse for t in aware.cost(reuse=True).tiles}
    pairs = {src: cost[src] + cost[dest] for src, dest in aware.reuse.partners.items()}
    assert 1.1 * pairs[0] <= max(v for src, v in pairs.items() if src != 0)
    assert pairs[0] < max(pairs.values())
    # one device: everything runs on the (slower) source
    span, total = schedule_makespan(aware, 1, True, 0.1)
    assert span == pytest.approx(1.1 * total)
    with pytest.raises(PlanError, match="source load"):
        schedule_makespan(aware, 6, True, -1.0)


def test_partners_pair_each_level0_tile_with_a_level1_neighbour(yolov2):
    """Row strips pair t with t + 1; on any grid a partner is a neighbour of the other level,
    and no level-1 tile has two level-0 partners."""
    strips = FTP(yolov2, grid=(12, 1), fused_layers=16).reuse
    assert strips.partners == {t: t + 1 for t in range(0, 12, 2)}
    for grid in ((6, 2), (3, 3), (4, 3), (5, 5)):
        rp = FTP(yolov2, grid=grid, fused_layers=16).reuse
        assert len(set(rp.partners.values())) == len(rp.partners)
        for src, dest in rp.partners.items():
            assert rp.level(src) == 0 and rp.level(dest) == 1 and src in rp.neighbours(dest).values()


def test_paired_schedule_runs_the_partner_on_the_same_device(yolov2):
    """With pairs, a level-1 tile waits for its partner's device even if another is idle: a
    level-1 tile much heavier than the rest makes its pair the makespan, which the unpaired
    (first free device) model would hide behind the lighter tiles."""
    plan = FTP(yolov2, grid=(12, 1), fused_layers=16, cuts=((0, 1, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29, 38), (0, 38)))
    cost = {t.tile_id: t.flops_reuse for t in plan.cost(reuse=True).tiles}
    paired, _ = schedule_makespan(plan, 6, True, paired=True)
    pair_sums = [cost[s] + cost[d] for s, d in plan.reuse.partners.items()]
    assert paired >= max(pair_sums) - 1
    assert schedule_makespan(plan, 6, True, paired=False)[0] <= paired


def test_rows_move_across_the_map_to_the_idlest_pair(yolov2):
    """Handing a row from one cell to a distant one (the cells between keep their sizes) finds
    cuts single-boundary moves cannot reach: at least as good as a hand-balanced 12x1 split
    whose level-1 strips all have 5 rows and whose bottom pair takes the rest."""
    cuts = balanced_cuts(yolov2, (12, 1), 16, devices=6, source=0.1)
    found = schedule_makespan(FTP(yolov2, grid=(12, 1), fused_layers=16, cuts=cuts), 6, True, 0.1)[0]
    by_hand = ((0, 3, 8, 9, 14, 15, 20, 21, 26, 27, 33, 34, 38), (0, 38))
    assert found <= schedule_makespan(FTP(yolov2, grid=(12, 1), fused_layers=16, cuts=by_hand), 6, True, 0.1)[0]


def test_schedule_makespan_of_one_device_is_the_total(yolov2):
    plan = FTP(yolov2, grid=(3, 3), fused_layers=16)
    for reuse in (False, True):
        span, total = schedule_makespan(plan, 1, reuse)
        assert span == pytest.approx(total)
    with pytest.raises(PlanError, match="devices"):
        schedule_makespan(plan, 0, True)
