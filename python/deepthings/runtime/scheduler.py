"""Scheduling decisions of the runtime as pure data structures (no sockets, no clocks of their own).

The gateway and the edges only move bytes and call these: who is alive (:class:`Membership`),
which frames and tiles are outstanding and who holds them (:class:`FrameBook`), whom an idle
edge should steal from (:class:`VictimList`), what an edge runs next and what it may give away
(:class:`LocalQueue`, :func:`steal_pays`). Every decision is recorded as an event so the story
of one task can be replayed (:class:`EventLog`).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np

SCHEDULES = ("wst", "wst-s", "wst-sp", "wsh")
# Schedules with WST-S data reuse: "wst-s" caches the overlap data at the gateway (DeepThings);
# "wst-sp" leaves it on the edge that computed it, which serves it peer to peer (PIECES).
REUSE_SCHEDULES = ("wst-s", "wst-sp")

GATEWAY = 0  # holder id meaning "in the gateway's own queue"


# ----------------------------------------------------------------------------- events
@dataclass
class EventLog:
    """Bounded log of (time_s, frame, tile, event, peer, detail) tuples, oldest dropped first."""

    limit: int = 20000
    events: deque = field(default_factory=deque)

    def add(self, t: float, frame: int, tile: int, event: str, peer: int = GATEWAY, detail: str = "") -> None:
        self.events.append((t, frame, tile, event, peer, detail))
        while len(self.events) > self.limit:
            self.events.popleft()

    def story(self, frame: int, tile: int | None = None) -> list[tuple]:
        """Every event of one frame (or of one tile of it), in order."""
        return [e for e in self.events if e[1] == frame and (tile is None or e[2] == tile)]

    def drop_frame(self, frame: int) -> list[tuple]:
        """Remove and return a finished frame's events (they go into its trace)."""
        mine = [e for e in self.events if e[1] == frame]
        if mine:
            self.events = deque(e for e in self.events if e[1] != frame)
        return mine


# ----------------------------------------------------------------------------- membership
@dataclass
class Peer:
    """What the gateway knows about one connected peer."""

    peer_id: int
    identity: bytes
    role: str
    name: str
    source: bool = False
    steal_addr: str | None = None
    last_seen: float = 0.0
    ready: bool = False
    pending: int = 0
    busy: bool = False


class Membership:
    """Peers by id and by ZeroMQ identity; ids are given out once and never reused."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.peers: dict[int, Peer] = {}
        self.by_identity: dict[bytes, int] = {}

    def join(self, identity: bytes, role: str, name: str, source: bool, steal_addr: str | None, now: float) -> Peer:
        """Register a peer (a HELLO from a known identity re-registers it under a new id)."""
        old = self.by_identity.get(identity)
        if old is not None:
            self.peers.pop(old, None)
        peer = Peer(next(self._ids), identity, role, name, source, steal_addr, now)
        self.peers[peer.peer_id] = peer
        self.by_identity[identity] = peer.peer_id
        return peer

    def leave(self, peer_id: int) -> Peer | None:
        peer = self.peers.pop(peer_id, None)
        if peer is not None and self.by_identity.get(peer.identity) == peer_id:
            del self.by_identity[peer.identity]
        return peer

    def lookup(self, identity: bytes) -> Peer | None:
        pid = self.by_identity.get(identity)
        return None if pid is None else self.peers.get(pid)

    def seen(self, identity: bytes, now: float) -> Peer | None:
        peer = self.lookup(identity)
        if peer is not None:
            peer.last_seen = now
        return peer

    def expired(self, now: float, timeout_s: float) -> list[Peer]:
        """Peers silent for longer than ``timeout_s`` (Paranoid Pirate: interval x liveness)."""
        return [p for p in self.peers.values() if now - p.last_seen > timeout_s]

    def edges(self, ready_only: bool = True) -> list[Peer]:
        return [p for p in self.peers.values() if p.role == "edge" and (p.ready or not ready_only)]

    def sources(self) -> list[Peer]:
        return [p for p in self.edges() if p.source]


# ----------------------------------------------------------------------------- victims
class VictimList:
    """Round-robin list of edges that registered pending work (DeepThings' gateway list)."""

    def __init__(self) -> None:
        # peer id -> (pending, level-0 tasks among them; None: not reported)
        self._order: OrderedDict[int, tuple[int, int | None]] = OrderedDict()

    def update(self, peer_id: int, pending: int, level0: int | None = None) -> None:
        """Record an edge's queue length (and how many of those are level-0 tiles); an edge
        with nothing pending leaves the list."""
        if pending > 0:
            self._order[peer_id] = (pending, None if level0 is None else max(0, min(level0, pending)))
        else:
            self._order.pop(peer_id, None)

    def remove(self, peer_id: int) -> None:
        self._order.pop(peer_id, None)

    def next(self, exclude: int | None = None, level: int | None = None) -> int | None:
        """The next victim in round-robin order, never ``exclude`` (the thief itself).

        ``level`` 0 (an idle thief under WST-S) prefers victims holding level-0 tiles, which
        it can start at once, and 1 (a busy thief prefetching) victims holding level-1 tiles:
        an idle edge handed a level-1 tile whose neighbours are not computed yet would wait
        while a level-0 tile waits in another queue. Others when none qualifies."""
        def fits(entry: tuple[int, int | None]) -> bool:
            pending, level0 = entry
            if level is None or level0 is None:
                return True
            return level0 > 0 if level == 0 else pending - level0 > 0

        candidates = [p for p in self._order if p != exclude]
        if not candidates:
            return None
        chosen = next((p for p in candidates if fits(self._order[p])), candidates[0])
        self._order.move_to_end(chosen)
        return chosen

    def __contains__(self, peer_id: int) -> bool:
        return peer_id in self._order

    def __len__(self) -> int:
        return len(self._order)


def steal_pays(wait_s: float | None, transfer_s: float) -> bool:
    """Cost-aware stealing (as dask does): move a task only if the thief gets its input before
    the victim would even start it. ``wait_s`` None means no estimate yet: steal."""
    return wait_s is None or transfer_s < wait_s


# ----------------------------------------------------------------------------- edge queue
@dataclass
class LocalTask:
    """A task in an edge's queue: the tile's input crop and where it came from."""

    frame: int
    tile: int
    level: int
    crop: Any  # float32 CHW array, or an Exact8 (8-bit coded crop of an 8-bit frame); None: empty region
    meta: dict[str, Any] = field(default_factory=dict)
    stolen: bool = False
    extra: list[np.ndarray] = field(default_factory=list)
    queued_at: float = 0.0
    # The part of the network input `crop` holds (top, left, bottom, right); None: the tile's
    # whole input. A stolen level-1 tile under data reuse carries only what it reads with all
    # its neighbours' data in (Workload.lean_region), and fetches more only if one is missing.
    region: tuple[int, int, int, int] | None = None

    @property
    def input_bytes(self) -> int:
        return int((self.crop.nbytes if self.crop is not None else 0) + sum(a.nbytes for a in self.extra))


class LocalQueue:
    """An edge's task queue: the owner runs from the front; thieves take from the front in
    WST-S (level-0 tiles leave first) and from the back otherwise (the task the owner would
    reach last, where stealing saves the most)."""

    def __init__(self, steal_from_front: bool) -> None:
        self._q: deque[LocalTask] = deque()
        self.steal_from_front = steal_from_front

    def push_frame(self, tasks: Iterable[LocalTask]) -> None:
        """Queue one frame's tasks: level-0 before level-1, tile order otherwise."""
        self._q.extend(sorted(tasks, key=lambda t: (t.level, t.tile)))

    def push(self, task: LocalTask) -> None:
        self._q.append(task)

    def pop_own(self) -> LocalTask | None:
        return self._q.popleft() if self._q else None

    def pop_first(self, ok: "Callable[[LocalTask], bool]") -> LocalTask | None:
        """The first task (owner's order) for which ``ok(task)`` holds, removed; else None."""
        for i, t in enumerate(self._q):
            if ok(t):
                del self._q[i]
                return t
        return None

    def push_front(self, task: LocalTask) -> None:
        """Put a task back at the head (it was taken out and is next to run)."""
        self._q.appendleft(task)

    def steal_order(self) -> list[tuple[LocalTask, int]]:
        """Stealable tasks with their queue positions (0 = next to run), best first for a thief."""
        # Oldest frame first (its latency is what the user waits for); within a frame, from the
        # front (WST-S: level-0 tiles leave first) or from the back (the owner reaches it last).
        by_frame: dict[int, list[tuple[int, LocalTask]]] = {}
        for i, t in enumerate(self._q):
            by_frame.setdefault(t.frame, []).append((i, t))
        out = []
        for frame in sorted(by_frame):
            items = by_frame[frame] if self.steal_from_front else list(reversed(by_frame[frame]))
            out += [(t, i) for i, t in items]
        return out

    def peek_steal(self) -> tuple[LocalTask, int] | None:
        """The task a thief would get first and its position in the queue."""
        order = self.steal_order()
        return order[0] if order else None

    def pop_steal(self) -> LocalTask | None:
        first = self.peek_steal()
        return None if first is None else self.pop_at(first[1])

    def pop_at(self, position: int) -> LocalTask:
        """Remove and return the task at ``position`` (a steal picked by cost)."""
        task = self._q[position]
        del self._q[position]
        return task

    def frames(self) -> list[int]:
        return sorted({t.frame for t in self._q})

    def count_level(self, level: int) -> int:
        return sum(1 for t in self._q if t.level == level)

    def drop_frame(self, frame: int) -> int:
        """Forget a frame's queued tasks (the gateway finished it through someone else)."""
        before = len(self._q)
        self._q = deque(t for t in self._q if t.frame != frame)
        return before - len(self._q)

    def __len__(self) -> int:
        return len(self._q)

    def __iter__(self) -> Iterator[LocalTask]:
        return iter(self._q)


# ----------------------------------------------------------------------------- frames
@dataclass
class TileState:
    holder: int | None = None  # peer id, GATEWAY (queued at the gateway) or None (done)
    since: float = 0.0
    issues: int = 0  # how many times it was (re-)issued
    done: bool = False


@dataclass
class FrameState:
    """One frame in flight at the gateway."""

    frame: int
    ref: int
    submitter: int
    input: np.ndarray | None  # None: the source kept it (lazy SUBMIT) and sends it on FRAME_REQ
    n_tiles: int
    source: int  # the data-source edge (GATEWAY when the gateway shares the tasks itself)
    t_submit: float
    tiles: list[TileState] = field(default_factory=list)
    results: dict[int, Any] = field(default_factory=dict)
    reuse: dict[int, Any] = field(default_factory=dict)
    tile_trace: dict[int, dict[str, Any]] = field(default_factory=dict)
    bytes_in: int = 0
    bytes_out: int = 0
    t_tiles_done: float | None = None
    submitter_identity: bytes = b""
    submitter_name: str = ""  # lets the same device re-attach the frame after a rejoin
    codes: np.ndarray | None = None  # the input's 8-bit codes when it came as q8 (crops go out so)
    holders: dict[int, int] = field(default_factory=dict)  # wst-sp: level-0 tile -> edge keeping its overlap data
    # Without the input (lazy SUBMIT): tiles to queue here once it arrives, whether FRAME_REQ
    # went out, and whether the frame itself waits for it to start (the gateway shares it).
    awaiting_input: set[int] = field(default_factory=set)
    input_requested: bool = False
    start_on_input: bool = False

    @property
    def complete(self) -> bool:
        return len(self.results) == self.n_tiles


class FrameBook:
    """Which frames are in flight, which tiles are outstanding and who holds each one.

    Results are accepted once per (frame, tile); a duplicate or a late one (frame already
    answered) is reported as such and ignored, so no frame is answered twice."""

    def __init__(self, task_timeout_s: float, finished_memory: int = 4096) -> None:
        self.task_timeout_s = task_timeout_s
        self.frames: dict[int, FrameState] = {}
        self._ids = itertools.count(1)
        self._finished: OrderedDict[int, None] = OrderedDict()
        self._finished_memory = finished_memory

    def new_frame(self, ref: int, submitter: int, x: np.ndarray | None, n_tiles: int, source: int, now: float) -> FrameState:
        fid = next(self._ids)
        st = FrameState(fid, ref, submitter, x, n_tiles, source, now)
        st.tiles = [TileState(holder=source, since=now, issues=1) for _ in range(n_tiles)]
        self.frames[fid] = st
        return st

    def holder(self, frame: int, tile: int) -> int | None:
        st = self.frames.get(frame)
        if st is None or not 0 <= tile < st.n_tiles:
            return None
        return st.tiles[tile].holder

    def assign(self, frame: int, tile: int, peer: int, now: float, reissue: bool = False) -> bool:
        """Record that ``peer`` now holds the task; False if the frame/tile is unknown or done."""
        st = self.frames.get(frame)
        if st is None or not 0 <= tile < st.n_tiles or st.tiles[tile].done:
            return False
        ts = st.tiles[tile]
        ts.holder = peer
        ts.since = now
        if reissue:
            ts.issues += 1
        return True

    def accept(self, frame: int, tile: int, result: Any) -> str:
        """'new' (stored), 'duplicate' (tile already done), 'late' (frame finished) or 'unknown'."""
        st = self.frames.get(frame)
        if st is None:
            return "late" if frame in self._finished else "unknown"
        if not 0 <= tile < st.n_tiles:
            return "unknown"
        if st.tiles[tile].done:
            return "duplicate"
        st.tiles[tile].done = True
        st.tiles[tile].holder = None
        st.results[tile] = result
        return "new"

    def finish(self, frame: int) -> FrameState | None:
        """Remove a frame (answered); later results for it are 'late'."""
        st = self.frames.pop(frame, None)
        if st is not None:
            self._finished[frame] = None
            while len(self._finished) > self._finished_memory:
                self._finished.popitem(last=False)
        return st

    def held_by(self, peer: int) -> list[tuple[int, int]]:
        """Outstanding (frame, tile) pairs a peer holds."""
        return [
            (fid, t)
            for fid, st in self.frames.items()
            for t, ts in enumerate(st.tiles)
            if not ts.done and ts.holder == peer
        ]

    def overdue(self, now: float) -> list[tuple[int, int]]:
        """Outstanding tasks held by an edge for longer than the task timeout."""
        return [
            (fid, t)
            for fid, st in self.frames.items()
            for t, ts in enumerate(st.tiles)
            if not ts.done and ts.holder not in (None, GATEWAY) and now - ts.since > self.task_timeout_s
        ]

    def outstanding(self) -> int:
        return sum(1 for st in self.frames.values() for ts in st.tiles if not ts.done)


class GatewayQueue:
    """The gateway's own task queue (work sharing, and tasks re-issued after a failure):
    oldest frame first, level-0 before level-1 within a frame, no (frame, tile) twice."""

    def __init__(self) -> None:
        self._q: list[tuple[int, int, int]] = []  # (frame, level, tile)
        self._set: set[tuple[int, int]] = set()

    def push(self, frame: int, tile: int, level: int) -> bool:
        if (frame, tile) in self._set:
            return False
        self._set.add((frame, tile))
        self._q.append((frame, level, tile))
        self._q.sort()
        return True

    def pop(self) -> tuple[int, int] | None:
        if not self._q:
            return None
        frame, _, tile = self._q.pop(0)
        self._set.discard((frame, tile))
        return frame, tile

    def discard(self, frame: int, tile: int) -> None:
        if (frame, tile) in self._set:
            self._set.discard((frame, tile))
            self._q = [e for e in self._q if (e[0], e[2]) != (frame, tile)]

    def __len__(self) -> int:
        return len(self._q)
