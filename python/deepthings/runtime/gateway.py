"""The gateway: membership, the victim list, frame bookkeeping, work sharing, re-issue after
failures, the WST-S overlap cache, and the merge (stitch + layers after the fused block).

One event-loop thread owns the ROUTER socket and every decision; one merge thread runs the
stitch and the remaining layers so the loop keeps answering steal and heartbeat traffic while a
frame finishes (pipelining: edges already work on the next frame).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import zmq

from deepthings.errors import ClusterError, ProtocolError
from deepthings.runtime import transport
from deepthings.runtime.filetransfer import model_chunk
from deepthings.runtime.keys import ClusterKey, start_authenticator
from deepthings.runtime.protocol import Exact8, Message, make
from deepthings.runtime.scheduler import (
    GATEWAY,
    REUSE_SCHEDULES,
    SCHEDULES,
    EventLog,
    FrameBook,
    GatewayQueue,
    Membership,
    Peer,
    VictimList,
)
from deepthings.runtime.workload import TileOutput, Workload

log = logging.getLogger("deepthings.runtime.gateway")
steal_log = logging.getLogger("deepthings.runtime.steal")

CLIENT_IDLE_S = 600.0


def _local_pieces(value: Any, peer: Peer) -> dict[int, list[int]]:
    """REUSE_REQ.have, [[src, [layer, ...]], ...], as {src: layers}; ProtocolError if malformed."""
    if value is None:
        return {}
    ok = isinstance(value, list) and all(
        isinstance(e, list) and len(e) == 2 and type(e[0]) is int and isinstance(e[1], list)
        and all(type(v) is int for v in e[1]) for e in value)
    if not ok:
        raise ProtocolError(f"peer {peer.peer_id}: REUSE_REQ.have must be [[src, [layers]], ...], got {value!r}")
    return {int(e[0]): [int(v) for v in e[1]] for e in value}


@dataclass
class GatewayConfig:
    """Tunables of a gateway (defaults suit a LAN; tests shorten the timeouts)."""

    bind: str = "tcp://0.0.0.0:5555"
    schedule: str = "wst-s"
    hb_interval_s: float = 0.5
    hb_liveness: int = 6
    task_timeout_s: float = 60.0
    link_bytes_per_s: float = 12.5e6  # for cost-aware stealing: 100 Mbit/s unless told
    max_frames_in_flight: int = 64
    expect_edges: int = 0  # announce when this many edges are ready (DeepThings' -total_edge)
    balance: int = 0  # >0: uneven grid cuts balanced for this many devices (ftp.balance)
    # A level-1 tile's REUSE_REQ waits (at most this long, or about one level-0 tile's compute
    # time when that is known and shorter) for neighbours still being computed: recomputing
    # their overlap costs the asker about as much as waiting would, and delays the frame.
    reuse_wait_s: float = 0.5  # below the edge's own give-up time (max(1 s, 4 heartbeats))


@dataclass
class ModelFiles:
    """What the gateway ships: the workload spec edges build from, and files by SHA-256."""

    spec: dict[str, Any]
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # sha -> (name, bytes)


class Gateway:
    """Serve one cluster until :meth:`stop` (or the stop event) is set."""

    def __init__(
        self,
        workload: Workload,
        model: ModelFiles,
        config: GatewayConfig,
        key: ClusterKey | None,
        merge_fn: Callable[[dict[int, TileOutput]], dict[str, np.ndarray]] | None = None,
    ) -> None:
        if config.schedule not in SCHEDULES:
            raise ClusterError(f"unknown schedule {config.schedule!r}: choose one of {', '.join(SCHEDULES)}")
        self.workload = workload
        self.model = model
        self.config = config
        self.key = key
        self.merge_fn = merge_fn or workload.merge
        self.reuse = config.schedule in REUSE_SCHEDULES and workload.supports_reuse
        self.p2p = self.reuse and config.schedule == "wst-sp"  # overlap data stays on the edges
        self.members = Membership()
        self.victims = VictimList()
        self.book = FrameBook(config.task_timeout_s)
        self.gqueue = GatewayQueue()
        self.events = EventLog()
        self.waiting: dict[int, float] = {}  # idle edges waiting for work, in arrival order
        self._prefetching: set[int] = set()  # waiting edges that are busy (WST-S level-1 prefetch)
        self._wants: dict[int, tuple[int, int]] = {}  # waiting edge -> (frame, tile) it prefetches
        # REUSE_REQs waiting for neighbours' data: (deadline, peer id, frame, tile, pieces the
        # asker holds itself {src: layers})
        self._reuse_waits: list[tuple[float, int, int, int, dict[int, list[int]]]] = []
        self._l0_compute_s: float | None = None  # running mean of level-0 tiles' compute time
        self._last_sent: dict[int, float] = {}
        # When the link to each peer will have drained what we sent it (at link_bytes_per_s): a
        # peer's own messages queue behind that traffic, so its silence counts only from then.
        self._drained_at: dict[int, float] = {}
        self._uplink_free_at = 0.0
        self._source_rr = 0
        self._stop = threading.Event()
        self._ctx = zmq.Context()
        self._auth = start_authenticator(self._ctx, key) if key is not None else None
        self.sock, self.endpoint = transport.server_socket(self._ctx, zmq.ROUTER, config.bind, key)
        self._merge_in: queue.Queue = queue.Queue()
        self._merge_out: queue.Queue = queue.Queue()
        self._wake_addr = f"inproc://gw-merge-{id(self)}"
        self._wake_rx = self._ctx.socket(zmq.PAIR)
        self._wake_rx.bind(self._wake_addr)
        self._merge_thread: threading.Thread | None = None
        self.stats = {"dropped": 0, "duplicates": 0, "late": 0, "reissued": 0, "frames_done": 0, "reattached": 0,
                      "frames_dropped": 0, "frames_requested": 0}

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        self._stop.set()

    def serve(self, stop_event: Any = None) -> None:
        """Run the event loop until stopped; closes every socket on the way out."""
        self._merge_thread = threading.Thread(target=self._merge_loop, name="gateway-merge", daemon=True)
        self._merge_thread.start()
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self._wake_rx, zmq.POLLIN)
        next_tick = 0.0
        log.info("gateway listening on %s (schedule %s, curve %s)", self.endpoint, self.config.schedule, self.key is not None)
        try:
            while not self._stop.is_set() and not (stop_event is not None and stop_event.is_set()):
                wait_ms = self.config.hb_interval_s * 500
                if self._reuse_waits:
                    first = min(w[0] for w in self._reuse_waits)
                    wait_ms = min(wait_ms, max(0.0, (first - time.monotonic()) * 1000) + 1)
                events = dict(poller.poll(timeout=int(wait_ms)))
                now = time.monotonic()
                if self.sock in events:
                    for _ in range(256):  # drain, but let the tick run under heavy traffic
                        try:
                            identity, msg, nbytes = transport.recv(self.sock, True, "peer", log)
                        except zmq.Again:
                            break
                        if msg is None:
                            self.stats["dropped"] += 1
                            continue
                        try:
                            self._handle(identity, msg, nbytes, time.monotonic())
                        except ProtocolError as exc:
                            self.stats["dropped"] += 1
                            log.warning("dropped %s: %s", msg.type, exc)
                        except Exception:  # unforeseen: lose the message, never the gateway
                            self.stats["dropped"] += 1
                            log.exception("dropped %s: handling it failed", msg.type)
                if self._wake_rx in events:
                    while True:
                        try:
                            self._wake_rx.recv(flags=zmq.NOBLOCK)
                        except zmq.Again:
                            break
                    try:
                        self._deliver_merged()
                    except Exception:  # never lose the gateway to one frame's bookkeeping
                        log.exception("delivering a merged frame failed")
                if self._reuse_waits:
                    self._answer_reuse_waits(time.monotonic())
                if now >= next_tick:
                    try:
                        self._tick(now)
                    except Exception:
                        log.exception("gateway tick failed")
                    next_tick = now + self.config.hb_interval_s / 2
        finally:
            self._merge_in.put(None)
            if self._merge_thread is not None:
                self._merge_thread.join(timeout=5)
            self.sock.close(0)
            self._wake_rx.close(0)
            if self._auth is not None:
                self._auth.stop()
            self._ctx.term()

    # ------------------------------------------------------------------ sending
    def _send(self, peer: Peer | bytes, msg: Message) -> int:
        identity = peer.identity if isinstance(peer, Peer) else peer
        n = transport.send(self.sock, msg, identity)
        if isinstance(peer, Peer):
            now = time.monotonic()
            self._last_sent[peer.peer_id] = now
            if n > 65536:  # only bulk data (frames, tasks, model files) can delay a peer noticeably
                # One uplink carries what we send to every peer: a peer's data drains after
                # everything queued before it, whoever it was for.
                self._uplink_free_at = max(now, self._uplink_free_at) + n / self.config.link_bytes_per_s
                self._drained_at[peer.peer_id] = self._uplink_free_at
        return n

    # ------------------------------------------------------------------ handlers
    def _handle(self, identity: bytes, msg: Message, nbytes: int, now: float) -> None:
        if msg.type == "HELLO":
            self._on_hello(identity, msg, now)
            return
        peer = self.members.seen(identity, now)
        if peer is None:
            # Unknown sender (the gateway restarted or forgot it): ask it to introduce itself.
            if msg.type != "HEARTBEAT":
                log.info("message %s from an unknown peer: asking it to HELLO again", msg.type)
            self._send(identity, make("ERROR", message="unknown peer: send HELLO"))
            return
        handler = getattr(self, f"_on_{msg.type.lower()}", None)
        if handler is None:
            raise ProtocolError(f"peer {peer.peer_id} ({peer.name}): {msg.type} is not a message for the gateway")
        handler(peer, msg, nbytes, now)

    def _on_hello(self, identity: bytes, msg: Message, now: float) -> None:
        old = self.members.lookup(identity)
        if old is not None:
            self._lost(old, "said HELLO again", now)
        peer = self.members.join(identity, msg["role"], msg["name"][:64], msg["source"], msg["steal_addr"], now)
        log.info("event=join peer=%d role=%s name=%s source=%s", peer.peer_id, peer.role, peer.name, peer.source)
        self._send(
            peer,
            make(
                "WELCOME",
                peer_id=peer.peer_id,
                model=self.model.spec,
                schedule=self.config.schedule,
                hb_interval_s=self.config.hb_interval_s,
                hb_liveness=self.config.hb_liveness,
                link_bytes_per_s=self.config.link_bytes_per_s,
            ),
        )

    def _on_model_req(self, peer: Peer, msg: Message, nbytes: int, now: float) -> None:
        entry = self.model.files.get(msg["sha"])
        if entry is None:
            raise ProtocolError(f"peer {peer.peer_id}: MODEL_REQ for unknown file {msg['sha'][:16]}")
        name, data = entry
        self._send(peer, model_chunk(msg["sha"], name, data, msg["offset"], str(peer.peer_id)))
        log.debug("MODEL %s [%d:] of %d bytes to peer %d", name, msg["offset"], len(data), peer.peer_id)

    def _on_ready(self, peer: Peer, msg: Message, nbytes: int, now: float) -> None:
        if peer.role != "edge":
            raise ProtocolError(f"peer {peer.peer_id}: READY from a {peer.role}")
        peer.ready = True
        log.info("edge %d (%s) ready", peer.peer_id, peer.name)
        if self.config.expect_edges and len(self.members.edges()) == self.config.expect_edges:
            log.warning("all %d expected edges are ready", self.config.expect_edges)
        self._dispatch(now)

    def _on_heartbeat(self, peer: Peer, msg: Message, nbytes: int, now: float) -> None:
        pass

    def _on_status_req(self, peer: Peer, msg: Message, nbytes: int, now: float) -> None:
        edges = [
            {
                "id": p.peer_id,
                "name": p.name,
                "source": p.source,
                "ready": p.ready,
                "pending": p.pending,
                "held": len(self.book.held_by(p.peer_id)),
                "steal_addr": p.steal_addr,
            }
            for p in sorted(self.members.edges(ready_only=False), key=lambda p: p.peer_id)
        ]
        self._send(peer, make("STATUS", edges=edges, stats=dict(self.stats), frames_in_flight=len(self.book.frames)))

    def _on_bye(self, peer: Peer, msg: Message, nbytes: int, now: float) -> None:
        self._lost(peer, "left", now)

    def _on_submit(self, peer: Peer, msg: Message, nbytes: int, now: float) -> None:
        # No array: a lazy SUBMIT; the source keeps the frame and sends it only on FRAME_REQ.
        x = msg.arrays[0] if msg.arrays else None
        self._check_input_shape(peer, "SUBMIT", tuple(x.shape) if x is not None else msg.get("shape"))
        if x is not None and self._reattach(peer, msg, x, now):
            return
        if len(self.book.frames) >= self.config.max_frames_in_flight:
            self._send(peer, make("ERROR", message=f"too many frames in flight ({len(self.book.frames)}); retry later",
                                  ref=msg["ref"]))
            return
        keep = bool(msg["keep"]) and peer.role == "edge" and peer.source and peer.ready and self.config.schedule != "wsh"
        source = peer.peer_id if keep else self._pick_source()
        st = self.book.new_frame(msg["ref"], peer.peer_id, None, self.workload.n_tiles, source, now)
        st.submitter_identity = peer.identity
        st.submitter_name = peer.name
        if x is not None:
            st.input, st.codes = self._owned_input(msg)
        st.bytes_in += nbytes
        self.events.add(now, st.frame, -1, "submit", peer.peer_id, f"source={source}" + (" lazy" if x is None else ""))
        # idle: the edges waiting for work, which will steal from the source at once
        idle = sum(1 for p in self.waiting if p != source and p not in self._prefetching)
        self._send(peer, make("ACCEPT", ref=msg["ref"], frame=st.frame, keep=keep, idle=idle))
        if st.input is None and not keep:
            st.start_on_input = True  # the gateway shares it, or another source does: get it first
            self._request_input(st)
            return
        self._start_frame(st, keep, idle, now)

    def _check_input_shape(self, peer: Peer, what: str, shape: Any) -> None:
        if not isinstance(shape, (list, tuple)) or tuple(shape) != tuple(self.workload.input_shape):
            raise ProtocolError(
                f"peer {peer.peer_id}: {what} input shape {shape!r}, the model takes {self.workload.input_shape}"
            )

    @staticmethod
    def _owned_input(msg: Message) -> tuple[np.ndarray, np.ndarray | None]:
        """A message's input array and its 8-bit codes (if it came as q8), as copies: the
        receive buffers are read-only and may be reused."""
        return msg.arrays[0].copy(), (msg.codes[0].codes.copy() if 0 in msg.codes else None)

    def _start_frame(self, st: Any, keep: bool, idle: int, now: float) -> None:
        if st.source == GATEWAY:
            for t in range(st.n_tiles):
                self.gqueue.push(st.frame, t, self.workload.level(t))
        elif not keep:
            src = self.members.peers.get(st.source)
            if src is None:  # the source picked for a lazy frame left while it came: share it here
                for t in range(st.n_tiles):
                    self._reissue(st.frame, t, now, f"source {st.source} left")
            else:
                st.bytes_out += self._send(src, make("FRAME", [self._frame_input(st)], frame=st.frame, idle=idle))
        self._dispatch(now)

    def _request_input(self, st: Any) -> None:
        """Ask a lazy frame's source for the frame (once): a tile must be re-issued from here."""
        if st.input_requested:
            return
        st.input_requested = True
        self.stats["frames_requested"] += 1
        self.events.add(time.monotonic(), st.frame, -1, "frame-req", st.submitter)
        self._send(st.submitter_identity, make("FRAME_REQ", frame=st.frame))

    def _on_frame_data(self, peer: Peer, msg: Message, nbytes: int, now: float) -> None:
        """The input of a lazy frame, which FRAME_REQ asked its source for."""
        st = self.book.frames.get(msg["frame"])
        if st is None:
            return  # answered meanwhile (or dropped): nothing waits for it
        if st.submitter != peer.peer_id:
            raise ProtocolError(f"peer {peer.peer_id}: FRAME_DATA for frame {st.frame}, which it did not submit")
        self._check_input_shape(peer, f"FRAME_DATA {st.frame}", tuple(msg.arrays[0].shape))
        if st.input is not None:
            return  # a re-attach brought it already
        st.bytes_in += nbytes
        self._take_input(st, msg, now)

    def _take_input(self, st: Any, msg: Message, now: float) -> None:
        """A lazy frame's input has come (FRAME_DATA or a re-attaching SUBMIT): start what waited."""
        st.input, st.codes = self._owned_input(msg)
        self.events.add(now, st.frame, -1, "frame-data", st.submitter)
        if st.start_on_input:
            st.start_on_input = False
            self._start_frame(st, False, 0, now)
        for t in sorted(st.awaiting_input):
            self.gqueue.push(st.frame, t, self.workload.level(t))
        st.awaiting_input.clear()
        self._dispatch(now)

    def _reattach(self, peer: Peer, msg: Message, x: np.ndarray, now: float) -> bool:
        """A SUBMIT naming a frame this gateway still has, from the device that submitted it
        but on a new connection (it rejoined, e.g. after being declared dead behind a saturated
        link): answer that frame to the new connection instead of starting it again."""
        prev = msg.get("frame")
        if type(prev) is not int:
            return False
        st = self.book.frames.get(prev)
        if st is None or st.ref != msg["ref"] or st.submitter_name != peer.name or st.submitter == peer.peer_id:
            return False  # finished (its DONE went to the old connection) or not this peer's: new frame
        if st.input is not None and not np.array_equal(st.input, x):
            return False  # same name and ref but another frame (e.g. ids reused after a gateway restart)
        st.submitter = peer.peer_id
        st.submitter_identity = peer.identity
        if st.input is None:  # a lazy frame: it comes with the data now
            st.input_requested = False
            self._take_input(st, msg, now)
        self.events.add(now, st.frame, -1, "resubmit", peer.peer_id, "re-attached")
        self.stats["reattached"] += 1
        log.info("event=reattach frame=%d ref=%d peer=%d", st.frame, st.ref, peer.peer_id)
        self._send(peer, make("ACCEPT", ref=msg["ref"], frame=st.frame, keep=False))
        return True

    def _pick_source(self) -> int:
        """Round-robin over ready data-source edges; the gateway itself shares the tasks
        (work sharing) under `wsh` or when no data source is alive."""
        if self.config.schedule == "wsh":
            return GATEWAY
        sources = sorted(self.members.sources(), key=lambda p: p.peer_id)
        if not sources:
            return GATEWAY
        self._source_rr += 1
        return sources[self._source_rr % len(sources)].peer_id

    def _on_queue(self, peer: Peer, msg: Message, nbytes: int, now: float) -> None:
        pending = max(0, msg["pending"])
        peer.pending = pending
        level0 = msg.fields.get("level0")
        self.victims.update(peer.peer_id, pending, level0 if type(level0) is int else None)
        if pending:
            self.waiting.pop(peer.peer_id, None)  # it has its own work now: not idle
            self._dispatch(now)

    def _on_work_req(self, peer: Peer, msg: Message, nbytes: int, now: float) -> None:
        if peer.role != "edge" or not peer.ready:
            raise ProtocolError(f"peer {peer.peer_id}: WORK_REQ before READY")
        empty = msg.fields.get("empty")
        if type(empty) is int and empty in self.victims and empty != peer.peer_id:
            # That victim answered NO_WORK: off the list until its next QUEUE report.
            self.victims.update(empty, 0)
        self.waiting.setdefault(peer.peer_id, now)
        if msg.fields.get("prefetch") is True:
            self._prefetching.add(peer.peer_id)
        else:
            self._prefetching.discard(peer.peer_id)
        want = msg.fields.get("want")
        if isinstance(want, list) and len(want) == 2 and all(type(v) is int for v in want):
            self._wants[peer.peer_id] = (want[0], want[1])
        else:
            self._wants.pop(peer.peer_id, None)
        self._dispatch(now)

    def _on_moved(self, peer: Peer, msg: Message, nbytes: int, now: float) -> None:
        frame, tile, thief = msg["frame"], msg["tile"], msg["thief"]
        if self.book.holder(frame, tile) != peer.peer_id:
            log.info("MOVED %d/%d from edge %d which does not hold it: ignored", frame, tile, peer.peer_id)
            return
        self.events.add(now, frame, tile, "stolen", thief, f"from={peer.peer_id}")
        steal_log.info("event=moved frame=%d tile=%d victim=%d thief=%d", frame, tile, peer.peer_id, thief)
        if thief in self.members.peers:
            self.book.assign(frame, tile, thief, now)
        else:  # the thief is already gone: nobody holds it
            self._reissue(frame, tile, now, f"thief {thief} unknown")

    def _on_reuse_req(self, peer: Peer, msg: Message, nbytes: int, now: float) -> None:
        frame, tile = msg["frame"], msg["tile"]
        local = _local_pieces(msg.get("have"), peer)
        st = self.book.frames.get(frame)
        if st is not None and 0 <= tile < st.n_tiles and self._missing_neighbours(st, tile, local):
            wait = self.config.reuse_wait_s
            if self._l0_compute_s is not None:
                wait = min(wait, self._l0_compute_s)
            if wait > 0:
                self._reuse_waits.append((now + wait, peer.peer_id, frame, tile, local))
                self.events.add(now, frame, tile, "reuse-wait", peer.peer_id)
                return
        self._answer_reuse(peer, frame, tile, now, local)

    def _missing_neighbours(self, st: Any, tile: int, local: dict[int, list[int]] | None = None) -> list[int]:
        """Level-0 neighbours of a tile whose overlap data is not at hand yet (none if the
        schedule does not reuse); ``local``: those whose data the asking edge holds itself."""
        if not self.reuse:
            return []
        have = st.holders if self.p2p else st.reuse
        return [src for src in self.workload.neighbours(tile) if src not in have and src not in (local or {})]

    def _answer_reuse_waits(self, now: float) -> None:
        """Answer the waiting REUSE_REQs whose neighbours are all in, or whose time is up."""
        keep = []
        for entry in self._reuse_waits:
            deadline, peer_id, frame, tile, local = entry
            st = self.book.frames.get(frame)
            peer = self.members.peers.get(peer_id)
            if st is None or peer is None:
                continue  # frame answered or asker gone: nobody waits for this any more
            if now >= deadline or not self._missing_neighbours(st, tile, local):
                self._answer_reuse(peer, frame, tile, now, local)
            else:
                keep.append(entry)
        self._reuse_waits = keep

    def _answer_reuse(self, peer: Peer, frame: int, tile: int, now: float,
                      local: dict[int, list[int]] | None = None) -> None:
        st = self.book.frames.get(frame)
        data = None
        if st is not None and 0 <= tile < st.n_tiles and self.p2p:
            peers = []
            for src in self.workload.neighbours(tile):
                holder = self.members.peers.get(st.holders.get(src, -1))
                if holder is not None and holder.steal_addr:
                    peers.append([src, holder.peer_id, holder.steal_addr])
            self.events.add(now, frame, tile, "reuse-peers" if peers else "reuse-miss", peer.peer_id)
            st.bytes_out += self._send(peer, make("REUSE", [], frame=frame, tile=tile, meta={"peers": peers}))
            return
        if st is not None and 0 <= tile < st.n_tiles and self.reuse:
            data = self.workload.reuse_for(tile, st.reuse, local)
        if data is None:
            self.events.add(now, frame, tile, "reuse-miss", peer.peer_id)
            n = self._send(peer, make("REUSE", [], frame=frame, tile=tile, meta={}))
        else:
            self.events.add(now, frame, tile, "reuse-hit", peer.peer_id)
            n = self._send(peer, make("REUSE", data.arrays, frame=frame, tile=tile, meta=data.meta))
        if st is not None:
            st.bytes_out += n

    def _on_result(self, peer: Peer, msg: Message, nbytes: int, now: float) -> None:
        frame, tile = msg["frame"], msg["tile"]
        st = self.book.frames.get(frame)
        meta = msg["meta"]
        n_pub = meta.get("n_publish", 0)
        if type(n_pub) is not int or not 0 <= n_pub < len(msg.arrays):
            raise ProtocolError(f"peer {peer.peer_id}: RESULT {frame}/{tile} has bad n_publish {n_pub!r}")
        out = TileOutput([a for a in msg.arrays], {k: v for k, v in meta.items() if k != "n_publish"}, n_pub)
        if st is not None and 0 <= tile < st.n_tiles:
            self.workload.check_output(tile, out)  # raises ProtocolError on wrong shapes
        verdict = self.book.accept(frame, tile, out)
        if verdict != "new":
            key = "duplicates" if verdict == "duplicate" else "late"
            self.stats[key] += 1
            self.events.add(now, frame, tile, f"result-{verdict}", peer.peer_id)
            log.info("ignored %s result %d/%d from edge %d", verdict, frame, tile, peer.peer_id)
            return
        assert st is not None
        self.gqueue.discard(frame, tile)
        st.bytes_in += nbytes
        if out.n_publish:
            st.reuse[tile] = out
        elif self.p2p and meta.get("held") is True and self.workload.level(tile) == 0:
            st.holders[tile] = peer.peer_id
        if self.workload.level(tile) == 0:
            c = float(msg["compute_s"])
            self._l0_compute_s = c if self._l0_compute_s is None else 0.7 * self._l0_compute_s + 0.3 * c
        if self._reuse_waits:
            self._answer_reuse_waits(now)
        trace = {
            "tile": tile,
            "device": peer.peer_id,
            "device_name": peer.name,
            "stolen": bool(msg["stolen"]),
            "compute_s": float(msg["compute_s"]),
            "level": self.workload.level(tile),
            "result_bytes": nbytes,
        }
        # Edge-reported extras, kept only when they have the right type (an edge is not trusted
        # to be well-behaved: the trace must never break the frame's answer).
        for k, types in (("queue_s", (int, float)), ("cpu_s", (int, float)), ("input_bytes", (int,)),
                         ("crop_bytes", (int,)), ("reused", (bool,)), ("origin", (str,))):
            v = meta.get(k)
            if isinstance(v, types) and (k == "reused" or not isinstance(v, bool)):
                trace[k] = v if k != "origin" else v[:16]
        issued = st.tile_trace.get(tile, {}).get("issued_at")
        if issued is not None:
            trace["rtt_s"] = now - issued
        st.tile_trace[tile] = trace
        self.events.add(now, frame, tile, "result", peer.peer_id, "stolen" if msg["stolen"] else "")
        if st.complete:
            st.t_tiles_done = now
            self._merge_in.put((st, {t: o for t, o in st.results.items()}))

    # ------------------------------------------------------------------ work distribution
    def _dispatch(self, now: float) -> None:
        """Serve idle edges: tasks from the gateway's own queue first, else a victim to steal from."""
        for peer_id in list(self.waiting):
            peer = self.members.peers.get(peer_id)
            if peer is None or not peer.ready:
                self.waiting.pop(peer_id, None)
                continue
            item = self.gqueue.pop()
            while item is not None and self.book.holder(*item) in (None,):
                item = self.gqueue.pop()  # done meanwhile
            if item is not None:
                self.waiting.pop(peer_id, None)
                self._wants.pop(peer_id, None)
                self._push_task(peer, item[0], item[1], now)
                continue
            if self.config.schedule == "wsh":
                break  # nothing to share; the edges wait to be served
            level = (1 if peer_id in self._prefetching else 0) if self.reuse else None
            victim_id = None
            want = self._wants.get(peer_id)
            if want is not None:  # the edge holding the tile it wants (its level-0 tile's partner)
                holder = self.book.holder(*want)
                if holder not in (None, GATEWAY, peer_id) and holder in self.members.peers:
                    victim_id = holder
            if victim_id is None:
                victim_id = self.victims.next(exclude=peer_id, level=level)
            victim = self.members.peers.get(victim_id) if victim_id is not None else None
            if victim is None or victim.steal_addr is None:
                continue  # nobody else has work for this one; the next waiting edge may differ
            self.waiting.pop(peer_id, None)
            self._wants.pop(peer_id, None)
            steal_log.info("event=victim thief=%d victim=%d addr=%s", peer_id, victim.peer_id, victim.steal_addr)
            self._send(peer, make("VICTIM", victim=victim.peer_id, addr=victim.steal_addr))

    def _push_task(self, peer: Peer, frame: int, tile: int, now: float) -> None:
        st = self.book.frames[frame]
        arrays = [self.workload.crop(self._frame_input(st), tile)]
        meta: dict[str, Any] = {"origin": "gateway"}
        level = self.workload.level(tile)
        if self.reuse and level == 1:
            data = self.workload.reuse_for(tile, st.reuse)
            if data is not None:
                arrays += data.arrays
                meta["reuse"] = data.meta
            else:
                meta["reuse"] = None  # computed in full: the fallback
        self.book.assign(frame, tile, peer.peer_id, now)
        st.tile_trace.setdefault(tile, {})["issued_at"] = now
        st.bytes_out += self._send(peer, make("TASK", arrays, frame=frame, tile=tile, level=level, meta=meta))
        self.events.add(now, frame, tile, "shared", peer.peer_id)

    @staticmethod
    def _frame_input(st: Any) -> "np.ndarray | Exact8":
        """The frame as it should travel: its 8-bit codes if it came coded (a quarter of the bytes)."""
        return Exact8(st.codes) if st.codes is not None else st.input

    def _reissue(self, frame: int, tile: int, now: float, why: str) -> None:
        if self.book.assign(frame, tile, GATEWAY, now, reissue=True):
            st = self.book.frames[frame]
            if st.input is None:  # a lazy frame: queue the tile once its source sent the frame
                st.awaiting_input.add(tile)
                self._request_input(st)
            else:
                self.gqueue.push(frame, tile, self.workload.level(tile))
            self.stats["reissued"] += 1
            self.events.add(now, frame, tile, "reissue", GATEWAY, why)
            log.info("event=reissue frame=%d tile=%d why=%r", frame, tile, why)

    def _lost(self, peer: Peer, why: str, now: float) -> None:
        self.members.leave(peer.peer_id)
        self.victims.remove(peer.peer_id)
        self.waiting.pop(peer.peer_id, None)
        self._prefetching.discard(peer.peer_id)
        self._wants.pop(peer.peer_id, None)
        self._last_sent.pop(peer.peer_id, None)
        self._drained_at.pop(peer.peer_id, None)
        held = self.book.held_by(peer.peer_id)
        log.warning("event=leave peer=%d role=%s name=%s why=%r reissued=%d", peer.peer_id, peer.role, peer.name, why, len(held))
        for frame, tile in held:
            self._reissue(frame, tile, now, f"holder {peer.peer_id} {why}")
        self._dispatch(now)

    def _tick(self, now: float) -> None:
        timeout = self.config.hb_interval_s * self.config.hb_liveness
        for peer in self.members.expired(now, timeout):
            if now - max(peer.last_seen, self._drained_at.get(peer.peer_id, 0.0)) <= timeout:
                continue  # still busy receiving our data: its heartbeats may queue behind it
            # Clients hold no tasks: forget them only after a long silence (they re-HELLO).
            if peer.role == "edge" or now - peer.last_seen > max(CLIENT_IDLE_S, timeout):
                self._lost(peer, f"silent for {now - peer.last_seen:.1f} s", now)
        for frame, tile in self.book.overdue(now):
            self._reissue(frame, tile, now, "task timeout")
        # A lazy frame whose source left and did not come back to submit it again (with the
        # data) cannot be computed, and nobody waits for it: drop it after the task timeout.
        for st in [s for s in self.book.frames.values() if s.input is None and s.submitter not in self.members.peers
                   and now - s.t_submit > self.config.task_timeout_s]:
            self.book.finish(st.frame)
            self.events.drop_frame(st.frame)
            self.stats["frames_dropped"] += 1
            log.warning("event=drop frame=%d why='its source %d left before sending it'", st.frame, st.submitter)
        for peer in list(self.members.peers.values()):
            if now - self._last_sent.get(peer.peer_id, 0.0) >= self.config.hb_interval_s:
                self._send(peer, make("HEARTBEAT"))
        if self.gqueue:
            self._dispatch(now)

    # ------------------------------------------------------------------ merge
    def _merge_loop(self) -> None:
        wake = self._ctx.socket(zmq.PAIR)
        wake.connect(self._wake_addr)
        try:
            while True:
                item = self._merge_in.get()
                if item is None:
                    return
                st, results = item
                t0 = time.monotonic()
                try:
                    outputs = self.merge_fn(results)
                    err = None
                except Exception as exc:  # a merge failure must answer the frame, not kill the gateway
                    log.exception("merge of frame %d failed", st.frame)
                    outputs, err = {}, f"merge failed: {exc}"
                self._merge_out.put((st, outputs, err, time.monotonic() - t0))
                wake.send(b"")
        finally:
            wake.close(0)

    def _deliver_merged(self) -> None:
        while True:
            try:
                st, outputs, err, merge_s = self._merge_out.get_nowait()
            except queue.Empty:
                return
            now = time.monotonic()
            self.book.finish(st.frame)
            identity = st.submitter_identity
            if err is not None:
                self._send(identity, make("ERROR", message=f"frame {st.frame}: {err}"))
                continue
            names = sorted(outputs)
            events = self.events.drop_frame(st.frame)
            trace = {
                "frame": st.frame,
                "source": st.source,
                "stages": {
                    "tiles_s": (st.t_tiles_done or now) - st.t_submit,
                    "merge_wait_s": now - (st.t_tiles_done or now) - merge_s,
                    "merge_s": merge_s,
                    "gateway_total_s": now - st.t_submit,
                },
                "tiles": [st.tile_trace.get(t, {"tile": t}) for t in range(st.n_tiles)],
                "bytes": {
                    "gateway_in": st.bytes_in,
                    "gateway_out": st.bytes_out,
                    # stolen tiles' inputs went victim -> thief directly, beside the gateway
                    "edge_to_edge": int(sum(t.get("input_bytes", 0) for t in st.tile_trace.values() if t.get("stolen"))),
                },
                "reissues": sum(ts.issues - 1 for ts in st.tiles),
                "events": [[round(e[0] - st.t_submit, 6), e[2], e[3], e[4], e[5]] for e in events],
                # CLOCK_MONOTONIC readings: system-wide, so on one host (the emulated testbed)
                # a source can tell when its frame's merged output was ready here
                "clock": {"submitted": st.t_submit, "merged": now},
            }
            for tr in trace["tiles"]:
                tr.pop("issued_at", None)
            arrays = [np.ascontiguousarray(outputs[n], dtype=np.float32) for n in names]
            self._send(identity, make("DONE", arrays, frame=st.frame, ref=st.ref, trace=trace, names=names))
            self.stats["frames_done"] += 1
