"""A data source with idle edges waiting hands out their tiles before starting its own
(EdgeConfig.serve_first_s): held until the expected steals are served, or until the hold times
out, and not at all when nobody waits."""

from __future__ import annotations

import time

import pytest

from runtime_helpers import source_edge, steal


@pytest.fixture()
def source():
    edge, thief, x = source_edge((3, 3), 96, serve_first_s=0.05)
    yield edge, thief, x
    edge._ctx.destroy(0)


def _steal(edge, thief) -> int:
    return steal(edge, thief)


def test_source_waits_for_the_waiting_thieves_then_runs_tile_0(source):
    edge, thief, x = source
    edge._on_frame(0, x, idle=2)
    edge._dispatch(time.monotonic())
    assert edge.current is None  # held: two thieves are on their way
    stolen = [_steal(edge, thief)]
    edge._dispatch(time.monotonic())
    assert edge.current is None  # one still expected
    stolen.append(_steal(edge, thief))
    assert 0 not in stolen and all(edge.workload.level(t) == 0 for t in stolen)
    edge._dispatch(time.monotonic())  # both served: the source starts its own first tile at once
    assert edge.current is not None and edge.current.tile == 0


def test_the_hold_ends_after_serve_first_s_without_thieves(source):
    edge, _, x = source
    edge._on_frame(0, x, idle=3)
    t0 = time.monotonic()
    edge._dispatch(t0)
    assert edge.current is None
    edge._dispatch(t0 + 0.06)  # nobody came: the source computes (its tiles stay stealable)
    assert edge.current is not None and edge.current.tile == 0


@pytest.mark.parametrize("idle", [0, None, "3", -1])
def test_no_hold_when_nobody_waits_or_the_count_is_bad(source, idle):
    edge, _, x = source
    edge._on_frame(0, x, idle=idle)
    edge._dispatch(time.monotonic())
    assert edge.current is not None and edge.current.tile == 0
