"""Scheduling decisions without sockets: victims, queues, frame bookkeeping, liveness."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from deepthings.runtime.scheduler import (
    GATEWAY,
    EventLog,
    FrameBook,
    GatewayQueue,
    LocalQueue,
    LocalTask,
    Membership,
    VictimList,
    steal_pays,
)


def test_victim_list_round_robin_excludes_thief_and_idle_edges():
    v = VictimList()
    v.update(1, 3)
    v.update(2, 1)
    v.update(3, 0)
    picks = [v.next(exclude=9) for _ in range(4)]
    assert picks == [1, 2, 1, 2]
    assert v.next(exclude=1) == 2
    v.update(2, 0)
    assert v.next(exclude=1) is None
    v.remove(1)
    assert len(v) == 0 and v.next() is None


def test_victim_list_prefers_victims_with_tiles_of_the_wanted_level():
    """An idle WST-S thief goes where level-0 tiles wait (it can start them at once), a busy
    one prefetching where level-1 tiles wait; any victim when none qualifies."""
    v = VictimList()
    v.update(1, 1, level0=0)  # a thief holding a prefetched level-1 tile
    v.update(2, 6, level0=1)  # the data source: one level-0 tile left, five level-1
    assert [v.next(exclude=9, level=0) for _ in range(3)] == [2, 2, 2]
    assert v.next(exclude=2, level=0) == 1  # nobody else has level-0 work
    v.update(3, 2, level0=2)
    assert v.next(exclude=9, level=1) in (1, 2)
    assert {v.next(exclude=9, level=1) for _ in range(4)} == {1, 2}
    v.update(4, 2)  # level0 not reported (older edge): eligible for anything
    assert 4 in {v.next(exclude=9, level=0) for _ in range(6)}


def test_steal_pays_only_when_transfer_beats_the_wait():
    assert steal_pays(None, 10.0)
    assert steal_pays(0.05, 0.01)
    assert not steal_pays(0.01, 0.05)


def _task(frame, tile, level=0):
    return LocalTask(frame, tile, level, np.zeros((1, 1, 1), np.float32))


def test_local_queue_levels_first_and_steal_ends():
    q = LocalQueue(steal_from_front=True)
    q.push_frame([_task(1, t, t % 2) for t in range(5)])
    assert [t.tile for t in q] == [0, 2, 4, 1, 3]
    assert q.peek_steal()[1] == 0 and q.pop_steal().tile == 0
    assert [p for _, p in q.steal_order()] == [0, 1, 2, 3] and q.pop_at(2).tile == 1
    q.push(_task(1, 1, 1))  # queue: 2 4 3 1
    q.steal_from_front = False
    task, pos = q.peek_steal()
    assert (task.tile, pos) == (1, 3) and [p for _, p in q.steal_order()] == [3, 2, 1, 0]
    assert q.pop_steal().tile == 1 and q.pop_own().tile == 2
    q.push_frame([_task(2, 0)])
    assert q.frames() == [1, 2]
    assert [(t.frame, p) for t, p in q.steal_order()] == [(1, 1), (1, 0), (2, 2)]  # oldest frame first
    q.steal_from_front = True
    assert [(t.frame, p) for t, p in q.steal_order()] == [(1, 0), (1, 1), (2, 2)]
    assert q.drop_frame(1) == 2 and q.frames() == [2]


def test_frame_book_dedupes_and_reports_late_results():
    book = FrameBook(task_timeout_s=5.0)
    st_ = book.new_frame(ref=1, submitter=9, x=np.zeros(1, np.float32), n_tiles=2, source=4, now=0.0)
    f = st_.frame
    assert book.held_by(4) == [(f, 0), (f, 1)]
    assert book.accept(f, 0, "a") == "new"
    assert book.accept(f, 0, "b") == "duplicate"
    assert book.accept(f, 5, "x") == "unknown"
    assert book.held_by(4) == [(f, 1)]
    assert book.assign(f, 1, 7, now=1.0)
    assert not book.assign(f, 0, 7, now=1.0)  # already done
    assert book.overdue(5.5) == [] and book.overdue(6.5) == [(f, 1)]
    assert book.accept(f, 1, "c") == "new" and st_.complete
    book.finish(f)
    assert book.accept(f, 1, "d") == "late"
    assert book.accept(12345, 0, "d") == "unknown"


def test_gateway_queue_orders_frames_then_levels_without_duplicates():
    q = GatewayQueue()
    assert q.push(2, 0, 0) and q.push(1, 3, 1) and q.push(1, 2, 0)
    assert not q.push(1, 3, 1)
    q.discard(2, 0)
    assert [q.pop(), q.pop(), q.pop()] == [(1, 2), (1, 3), None]


def test_membership_ids_are_unique_and_silence_expires():
    m = Membership()
    a = m.join(b"a", "edge", "a", True, "tcp://x:1", now=0.0)
    b = m.join(b"b", "edge", "b", False, None, now=0.0)
    a2 = m.join(b"a", "edge", "a", True, "tcp://x:1", now=1.0)  # rejoin: new id, old one gone
    assert len({a.peer_id, b.peer_id, a2.peer_id}) == 3 and a.peer_id not in m.peers
    m.seen(b"b", 2.5)
    assert [p.peer_id for p in m.expired(3.0, 1.0)] == [a2.peer_id]
    assert m.edges() == [] and len(m.edges(ready_only=False)) == 2
    m.leave(a2.peer_id)
    assert m.lookup(b"a") is None


def test_event_log_keeps_a_story_per_task():
    log = EventLog(limit=5)
    for i in range(7):
        log.add(float(i), frame=i % 2, tile=i, event="x")
    assert len(log.events) == 5
    assert [e[2] for e in log.story(0)] == [2, 4, 6]
    assert [e[2] for e in log.drop_frame(1)] == [3, 5] and log.story(1) == []


@settings(max_examples=50)
@given(
    n_tiles=st.integers(1, 6),
    ops=st.lists(
        st.tuples(st.sampled_from(["result", "steal", "die", "timeout"]), st.integers(0, 5), st.integers(1, 4)),
        max_size=40,
    ),
)
def test_every_tile_is_accepted_exactly_once_whatever_happens(n_tiles, ops):
    """Whatever order of results, steals, deaths and timeouts: each tile is accepted once and
    every outstanding tile always has a holder (an edge or the gateway queue)."""
    book = FrameBook(task_timeout_s=1.0)
    gq = GatewayQueue()
    f = book.new_frame(1, 99, np.zeros(1, np.float32), n_tiles, source=1, now=0.0).frame
    accepted = []
    now = 0.0
    for op, tile, peer in ops:
        tile %= n_tiles
        now += 0.3
        if op == "result":
            if book.accept(f, tile, peer) == "new":
                accepted.append(tile)
                gq.discard(f, tile)
        elif op == "steal" and book.holder(f, tile) not in (None, GATEWAY):
            book.assign(f, tile, peer, now)
        elif op == "die":
            for fr, t in book.held_by(peer):
                if book.assign(fr, t, GATEWAY, now, reissue=True):
                    gq.push(fr, t, 0)
        elif op == "timeout":
            for fr, t in book.overdue(now):
                if book.assign(fr, t, GATEWAY, now, reissue=True):
                    gq.push(fr, t, 0)
        for t, ts in enumerate(book.frames[f].tiles):
            assert ts.done or ts.holder is not None
    assert sorted(accepted) == sorted(set(accepted))
    for t in range(n_tiles):
        if book.accept(f, t, 0) == "new":
            accepted.append(t)
    assert sorted(accepted) == list(range(n_tiles)) and book.frames[f].complete
