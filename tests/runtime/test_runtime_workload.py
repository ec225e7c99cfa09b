"""Workloads in one process: tiles (with any WST-S reuse subset) merge to the single-device result."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepthings.errors import ProtocolError
from deepthings.runtime.model import build_workload, describe_model, prepare
from deepthings.runtime.workload import SyntheticWorkload, TileOutput, grid_bounds

from conftest import YOLO_FASTEST
from runtime_helpers import yolov2_cfg_text


@settings(max_examples=40)
@given(h=st.integers(1, 30), w=st.integers(1, 30), n=st.integers(1, 5), m=st.integers(1, 5), passes=st.integers(0, 3))
def test_synthetic_tiles_stitch_to_the_whole_map(h, w, n, m, passes):
    """Synthetic stencil: stitched tiles equal the whole-map computation, bit for bit."""
    if n > h or m > w:
        return
    wl = SyntheticWorkload((2, h, w), (n, m), passes)
    x = np.random.default_rng(h * 31 + w).random((2, h, w), dtype=np.float32)
    outs = {t: wl.run(t, wl.crop(x, t)) for t in range(wl.n_tiles)}
    np.testing.assert_array_equal(wl.merge(outs)["layer0"], wl.reference(x))


def test_grid_bounds_balanced():
    assert grid_bounds(10, 3) == [(0, 4), (4, 7), (7, 10)]


@pytest.fixture(scope="module")
def fastest():
    desc = describe_model(YOLO_FASTEST / "yolo-fastest-1.1.cfg", YOLO_FASTEST / "yolo-fastest-1.1.weights")
    wl, files = prepare(desc, (3, 3), 16, "wst-s")
    x = np.random.default_rng(0).random(wl.net.input_shape, dtype=np.float32)
    ref = wl.net.forward(x, outputs=wl.output_layers())
    return wl, files, x, ref


@settings(max_examples=12)
@given(present=st.lists(st.booleans(), min_size=9, max_size=9))
def test_ftp_reuse_with_any_subset_of_neighbours_is_exact(fastest, present):
    """WST-S: whatever subset of level-0 neighbours has published, merged output == forward."""
    wl, _, x, ref = fastest
    results = {t: wl.run(t, wl.crop(x, t)) for t in range(wl.n_tiles) if wl.level(t) == 0}
    published = {t: o for t, o in results.items() if present[t]}
    for t in range(wl.n_tiles):
        if wl.level(t) == 1:
            results[t] = wl.run(t, wl.crop(x, t), wl.reuse_for(t, published))
    for t, o in results.items():
        wl.check_output(t, o)
    merged = wl.merge(results)
    for i, arr in ref.items():
        np.testing.assert_array_equal(merged[f"layer{i}"], arr)


def test_reuse_for_sends_only_the_pieces_the_tile_reads(fastest):
    """The gateway's REUSE holds needed_pieces(t, present): no more than the tile reads."""
    wl, _, x, _ = fastest
    published = {t: wl.run(t, wl.crop(x, t)) for t in range(wl.n_tiles) if wl.level(t) == 0}
    total_published = total_sent = 0
    for t in range(wl.n_tiles):
        if wl.level(t) != 1:
            continue
        data = wl.reuse_for(t, published)
        needed = wl.plan.reuse.needed_pieces(t, wl.neighbours(t))
        assert sorted(map(tuple, data.meta["pieces"])) == sorted((s, layer) for s, ls in needed.items() for layer in ls)
        total_sent += sum(a.nbytes for a in data.arrays)
        total_published += sum(4 * wl.net.layers[layer].out_shape[0] * r.area
                               for s in wl.neighbours(t) for layer, r in wl.plan.reuse.publish_regions(s)[t].items())
    assert 0 < total_sent <= total_published


def test_wst_s_sends_the_core_publication_and_reuse_for_skips_incomplete_neighbours(tmp_path):
    """Under wst-s a level-0 tile returns only its core pieces (wst-sp: all, it holds them). With
    a neighbour missing, a present one whose core lacks what the tile then reads gets nothing
    into REUSE (the tile would ignore it), and the tile still comes out exact."""
    cfg = tmp_path / "yolov2-96.cfg"
    cfg.write_text(yolov2_cfg_text(96))  # YOLOv2 strips: the core is a fifth of the publication
    desc = describe_model(cfg, None, 0)
    wl, files = prepare(desc, (4, 1), 16, "wst-s")
    wl_sp, files_sp = prepare(desc, (4, 1), 16, "wst-sp")
    x = np.random.default_rng(1).random(wl.net.input_shape, dtype=np.float32)
    assert wl.publish == "core" and files.spec["publish"] == "core"
    assert wl_sp.publish == "all" and files_sp.spec["publish"] == "all"
    rp = wl.plan.reuse
    core = {t: wl.run(t, wl.crop(x, t)) for t in rp.level0}
    full = {t: wl_sp.run(t, wl.crop(x, t)) for t in rp.level0}
    for t in rp.level0:
        pairs = {tuple(p) for p in core[t].meta["publish"]}
        assert pairs == {(d, layer) for d, ls in rp.core_pieces(t).items() for layer in ls}
        assert pairs <= {tuple(p) for p in full[t].meta["publish"]}
        wl.check_output(t, core[t])
    assert sum(sum(a.nbytes for a in o.arrays) for o in core.values()) < \
        sum(sum(a.nbytes for a in o.arrays) for o in full.values())
    checked = 0
    for t in rp.level1:
        nbs = wl.neighbours(t)
        if len(nbs) < 2:
            continue
        alone = {nbs[0]: core[nbs[0]]}
        data = wl.reuse_for(t, alone)
        needed = rp.needed_pieces(t, [nbs[0]])[nbs[0]]
        if not needed <= set(rp.core_pieces(nbs[0])[t]):
            assert data is None  # incomplete: the tile computes in full
            checked += 1
        out = wl.run(t, wl.crop(x, t), data)
        want = wl_sp.run(t, wl.crop(x, t), wl_sp.reuse_for(t, {nbs[0]: full[nbs[0]]}))
        for a, b in zip(out.arrays, want.arrays):
            np.testing.assert_array_equal(a, b)
    assert checked > 0


def test_edge_rebuilds_the_workload_from_shipped_files(fastest, tmp_path):
    wl, files, x, _ = fastest
    paths = {}
    for sha, (name, data) in files.files.items():
        p = tmp_path / name
        p.write_bytes(data)
        paths[name] = p
    edge_wl = build_workload(files.spec, paths)
    assert edge_wl.n_tiles == wl.n_tiles and edge_wl.supports_reuse
    t = 4  # level 0, publishes
    a, b = edge_wl.run(t, wl.crop(x, t)), wl.run(t, wl.crop(x, t))
    assert len(a.arrays) == len(b.arrays)
    for u, v in zip(a.arrays, b.arrays):
        np.testing.assert_array_equal(u, v)


def test_malformed_tile_outputs_are_refused(fastest):
    wl, _, x, _ = fastest
    good = wl.run(0, wl.crop(x, 0))
    wl.check_output(0, good)
    with pytest.raises(ProtocolError):
        wl.check_output(0, TileOutput(good.arrays[:1], {}, 0))
    with pytest.raises(ProtocolError):
        wl.check_output(0, TileOutput([a[:, :-1] for a in good.arrays], good.meta, good.n_publish))
    with pytest.raises(ProtocolError):  # a published piece for the wrong neighbour
        wl.check_output(0, TileOutput(good.arrays, {"publish": [[8, 0]] * good.n_publish}, good.n_publish))
    with pytest.raises(ProtocolError):
        wl.check_crop(0, np.zeros((3, 5, 5), np.float32))
    with pytest.raises(ProtocolError):
        wl.check_crop(99, wl.crop(x, 0))
