"""An edge device: joins the gateway, fetches the model, runs tiles, steals when idle.

Roles as in DeepThings: a data-source edge partitions its frames into a local task queue and
works through it; any idle edge asks the gateway for a victim and then the victim itself for a
task (a steal server on its own ROUTER socket). One event-loop thread owns every socket; one
worker thread computes tiles (the native engine releases the GIL), so steal requests and
heartbeats are answered while a tile runs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import socket as _socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import zmq

from deepthings.errors import ClusterError, ProtocolError
from deepthings.runtime import transport
from deepthings.runtime.filetransfer import FileDownload
from deepthings.runtime.keys import ClusterKey, start_authenticator
from deepthings.runtime.protocol import Exact8, Message, as_float, exact8, make
from deepthings.runtime.scheduler import REUSE_SCHEDULES, SCHEDULES, LocalQueue, LocalTask, steal_pays
from deepthings.runtime.workload import ReuseData, Workload

log = logging.getLogger("deepthings.runtime.edge")
steal_log = logging.getLogger("deepthings.runtime.steal")

UNKNOWN_TILE_S = 0.05  # assumed tile compute time before the edge has timed one
# wst-sp: how much overlap data an edge keeps serving, oldest dropped first (a frame's level-1
# tiles ask within moments; a request for dropped data is answered empty and falls back).
HELD_BYTES = 48 << 20
# Frames a data source keeps after partitioning them, for thieves' CROP_REQ (lean level-1
# tasks whose neighbour's data went missing): a few frames' worth, oldest dropped first.
PARTITIONED_BYTES = 64 << 20


def _lower_priority(nice: int) -> None:
    """Raise the calling thread's nice value by ``nice`` (best effort: Linux threads only)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as exc:  # e.g. a platform where PRIO_PROCESS does not take a thread id
        log.debug("could not lower the worker's priority: %s", exc)


def _region_field(value: Any, what: str) -> "tuple[int, int, int, int] | None":
    """A [top, left, bottom, right] message field as a tuple (None if absent); ProtocolError
    if malformed. An empty region is ``(0, 0, 0, 0)``, sent as ``[]`` or as such."""
    if value is None:
        return None
    if value == []:
        return (0, 0, 0, 0)
    if not (isinstance(value, list) and len(value) == 4 and all(type(v) is int and v >= 0 for v in value)):
        raise ProtocolError(f"{what} must be [top, left, bottom, right], got {value!r}")
    t, l, b, r = value
    return (t, l, b, r) if t < b and l < r else (0, 0, 0, 0)


def default_cache_dir() -> Path:
    """Where edges keep shipped model files (DEEPTHINGS_CACHE, else ~/.cache/deepthings)."""
    env = os.environ.get("DEEPTHINGS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "deepthings"


def cached_file(cache_dir: Path, sha: str, name: str) -> Path:
    safe = "".join(ch for ch in name if ch.isalnum() or ch in "._-")[:64] or "file"
    return cache_dir / f"{sha[:32]}-{safe}"


def fetch_model_files(spec: dict[str, Any], role: str, cache_dir: Path) -> tuple[dict[str, Path], list[dict[str, Any]]]:
    """Files of ``spec`` this role needs: (already cached and verified, still missing)."""
    have: dict[str, Path] = {}
    missing = []
    files = spec.get("files", [])
    if not isinstance(files, list):
        raise ProtocolError("WELCOME model.files is not a list")
    for f in files:
        if not (isinstance(f, dict) and isinstance(f.get("sha"), str) and isinstance(f.get("name"), str)):
            raise ProtocolError(f"WELCOME model file entry {f!r} is malformed")
        if role not in f.get("for", []):
            continue
        path = cached_file(cache_dir, f["sha"], f["name"])
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == f["sha"]:
            have[f["name"]] = path
        else:
            missing.append(f)
    return have, missing


@dataclass
class EdgeConfig:
    """How an edge joins and behaves."""

    gateway: str = "127.0.0.1:5555"
    name: str = field(default_factory=lambda: f"{_socket.gethostname()}-{os.getpid()}")
    source: bool = False
    cache_dir: Path = field(default_factory=default_cache_dir)
    threads: int | None = None
    advertise_host: str | None = None  # address thieves dial for the steal server
    steal_timeout_s: float = 3.0
    max_frames_in_flight: int = 2  # a data source's pipelining depth
    hello_retry_s: float = 3.0
    # >0: the tile worker runs this much nicer than the event loop (Linux: per thread), so
    # steals and reuse answers go first when a tile saturates the device. Off by default: on
    # the emulated testbed (0.25-core quotas) it did not help (A/B, 10 rounds each: median
    # FTP-WST-S speedup 3.40x with 10, 3.58x without).
    worker_nice: int = 0
    # A data source with idle edges waiting hands them their tiles before it starts its own
    # (for at most this long): a thief that gets its tile late delays the whole frame, while
    # the source, CPU-capped, would be throttled later in the period anyway (on the testbed
    # the level-0 steals of a frame landed within ~30 ms, where some had taken 50-60 ms).
    serve_first_s: float = 0.05
    # A data source under work stealing submits its frames lazily: without the input, which
    # it partitions itself; the gateway asks for it (FRAME_REQ) only to re-issue a lost tile.
    # The frame then never crosses the source's uplink (DeepThings' sources never send it).
    lazy_submit: bool = True


class Edge:
    """One edge device; :meth:`serve` runs it until stopped.

    ``frames`` (a data source's camera) yields ``(tag, input)``: a CHW float32 array, or the
    CHW uint8 codes of an 8-bit image (the input is then ``codes / 255``, sent as 8 bits).
    ``on_done(tag, DONE message)`` is called for each answered frame."""

    def __init__(
        self,
        config: EdgeConfig,
        key: ClusterKey | None,
        build_workload: Callable[[dict[str, Any], dict[str, Path]], Workload],
        frames: Iterable[tuple[Any, np.ndarray]] | None = None,
        on_done: Callable[[Any, Message], None] | None = None,
    ) -> None:
        self.config = config
        self.key = key
        self.build_workload = build_workload
        self._frames: Iterator[tuple[Any, np.ndarray]] | None = iter(frames) if frames is not None else None
        self.on_done = on_done
        self._stop = threading.Event()
        self._ctx = zmq.Context()
        self._auth = start_authenticator(self._ctx, key) if key is not None else None
        host = config.advertise_host or transport.local_ip_towards(config.gateway)
        self.steal_sock, endpoint = transport.server_socket(self._ctx, zmq.ROUTER, f"tcp://{host}:0", key)
        self.steal_addr = endpoint
        self.gw: zmq.Socket | None = None
        self.poller = zmq.Poller()
        self.poller.register(self.steal_sock, zmq.POLLIN)
        self._wake_addr = f"inproc://edge-worker-{id(self)}"
        self._wake_rx = self._ctx.socket(zmq.PAIR)
        self._wake_rx.bind(self._wake_addr)
        self.poller.register(self._wake_rx, zmq.POLLIN)
        self._work_in: queue.Queue = queue.Queue()
        self._work_out: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None
        # protocol state
        self.peer_id: int | None = None
        self.spec: dict[str, Any] | None = None
        self.schedule = "wst"
        self.workload: Workload | None = None
        self.hb_interval_s = 0.5
        self.hb_liveness = 6
        self.link_bytes_per_s = 12.5e6
        self.ready = False
        self._missing: list[dict[str, Any]] = []
        self._have: dict[str, Path] = {}
        self._download: FileDownload | None = None
        self.queue = LocalQueue(steal_from_front=True)
        self.current: LocalTask | None = None
        self.current_started = 0.0
        self.parked: LocalTask | None = None  # level-1 task waiting for REUSE data
        self._parked_at = 0.0
        # wst-sp: overlap data of my level-0 tiles, (frame, src) -> {dest: {layer: array}}, and
        # the pieces the parked task still waits for from other edges: src -> steal address.
        self._held: OrderedDict[tuple[int, int], dict[int, dict[int, np.ndarray]]] = OrderedDict()
        self._held_bytes = 0
        self._fetching: dict[int, str] = {}
        # A lean level-1 task (parked) waiting for more of its input from the frame's data
        # source, which it needs because a neighbour's data is missing: (source address, since).
        self._crop_fetch: tuple[str, float] | None = None
        # The partner of the last level-0 tile run here (frame, tile), wanted until held.
        self._partner_wanted: tuple[int, int] | None = None
        # Frames this edge partitioned (its own or FRAMEs the gateway sent it), newest last, so
        # it can answer CROP_REQ for its lean level-1 tasks; bounded (PARTITIONED_BYTES).
        self._partitioned: OrderedDict[int, Any] = OrderedDict()
        self._partitioned_bytes = 0
        self.asking: float | None = None  # WORK_REQ outstanding since
        self.stealing: tuple[zmq.Socket, str, float] | None = None
        self._victims: dict[str, zmq.Socket] = {}
        self._backoff_until = 0.0
        self._backoff_s = 0.0
        self._empty_victim: int | None = None  # told the gateway with the next WORK_REQ
        self._stealing_from: int | None = None
        self._prefetching = False
        self._last_gw_rx = 0.0
        self._last_gw_tx = 0.0
        self._hello_at = 0.0
        self._reported_pending: tuple[int, int] | None = None
        self._avg_compute_s: float | None = None
        # My submitted frames: ref -> (tag, input, gateway frame id once accepted). The input is
        # kept until DONE: after a rejoin the frame is submitted again (see _connect).
        self._inflight: dict[int, Any] = {}
        self._retry: dict[int, float] = {}  # submissions to send (again): ref -> not before
        self._refs = 0
        self.frames_done = 0
        self.stats = {"tiles": 0, "stolen": 0, "given": 0, "refused": 0, "dropped": 0}
        # (frame, steals still expected, until when): the worker waits for the thieves first
        self._serve_first: tuple[int, int, float] | None = None

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        self._stop.set()

    @property
    def source_exhausted(self) -> bool:
        return self._frames is None and not self._inflight

    def serve(self, stop_event: Any = None, exit_when_sourced: bool = False) -> None:
        """Run until stopped (or, with ``exit_when_sourced``, until every own frame is answered)."""
        if self.config.threads:
            from deepthings.engine import native

            native.set_num_threads(int(self.config.threads))
        self._worker = threading.Thread(target=self._work_loop, name="edge-worker", daemon=True)
        self._worker.start()
        self._connect()
        try:
            while not self._stop.is_set() and not (stop_event is not None and stop_event.is_set()):
                if exit_when_sourced and self.config.source and self.ready and self.source_exhausted:
                    break
                timeout = self.hb_interval_s * 0.25
                if self._serve_first is not None:  # wake up when the hold ends
                    timeout = min(timeout, max(0.001, self._serve_first[2] - time.monotonic()))
                events = dict(self.poller.poll(timeout=int(timeout * 1000)))
                if self.gw is not None and self.gw in events:
                    self._drain(self.gw, self._on_gateway)
                if self.steal_sock in events:
                    self._drain_router()
                if self._wake_rx in events:
                    while True:
                        try:
                            self._wake_rx.recv(flags=zmq.NOBLOCK)
                        except zmq.Again:
                            break
                    self._collect_results()
                for addr, sock in list(self._victims.items()):
                    if sock in events:
                        self._drain(sock, lambda m, a=addr: self._on_victim(a, m))
                self._tick(time.monotonic())
                self._dispatch(time.monotonic())
        finally:
            if self.gw is not None and self.ready:
                self._send_gw(make("BYE"))
            self._work_in.put(None)
            if self._worker is not None:
                self._worker.join(timeout=10)
            for sock in [self.gw, self.steal_sock, self._wake_rx, *self._victims.values()]:
                if sock is not None:
                    sock.close(0)
            if self._auth is not None:
                self._auth.stop()
            self._ctx.term()

    def _connect(self) -> None:
        """(Re)connect to the gateway and introduce ourselves (Lazy/Paranoid Pirate: a fresh socket)."""
        if self.gw is not None:
            self.poller.unregister(self.gw)
            self.gw.close(0)
        self.gw = transport.client_socket(self._ctx, self.config.gateway, self.key)
        self.poller.register(self.gw, zmq.POLLIN)
        self.ready = False
        self.asking = None
        if self.parked is not None:  # its REUSE answer would go to the old socket: ask again later
            self.parked.meta.pop("reuse", None)
            self.queue.push_front(self.parked)
            self.parked = None
            self._fetching = {}
            self._crop_fetch = None
        now = time.monotonic()
        self._hello_at = now
        self._last_gw_rx = now
        # The gateway answers DONE to the socket that submitted, and this one is new (or the
        # gateway declared us dead): submit every frame still awaiting its answer again, once
        # ready. The gateway re-attaches a frame it still has (by its id) instead of starting it
        # over, and DONE is taken once per ref, so each frame is answered exactly once.
        for ref in self._inflight:
            self._retry[ref] = now
        self._send_gw(
            make("HELLO", role="edge", name=self.config.name, source=self.config.source, steal_addr=self.steal_addr)
        )

    def _send_gw(self, msg: Message) -> int:
        assert self.gw is not None
        self._last_gw_tx = time.monotonic()
        return transport.send(self.gw, msg)

    def _drain(self, sock: zmq.Socket, handler: Callable[[Message], None]) -> None:
        for _ in range(256):
            if sock.closed:  # a handler reconnected (new gateway socket) or dropped a victim
                return
            try:
                _, msg, _ = transport.recv(sock, False, "gateway" if sock is self.gw else "victim", log)
            except zmq.Again:
                return
            if msg is None:
                self.stats["dropped"] += 1
                continue
            try:
                handler(msg)
            except ProtocolError as exc:
                self.stats["dropped"] += 1
                log.warning("dropped %s: %s", msg.type, exc)
            except Exception:  # a message we failed to foresee must cost the message, not the edge
                self.stats["dropped"] += 1
                log.exception("dropped %s: handling it failed", msg.type)

    def _drain_router(self) -> None:
        for _ in range(256):
            try:
                identity, msg, _ = transport.recv(self.steal_sock, True, "thief", log)
            except zmq.Again:
                return
            if msg is None:
                self.stats["dropped"] += 1
                continue
            if msg.type not in ("STEAL_REQ", "PIECES_REQ", "CROP_REQ"):
                self.stats["dropped"] += 1
                log.warning("dropped %s on the steal server: only STEAL_REQ, PIECES_REQ and CROP_REQ are served "
                            "there", msg.type)
                continue
            try:
                if msg.type == "STEAL_REQ":
                    self._on_steal_req(identity, msg)
                elif msg.type == "PIECES_REQ":
                    self._on_pieces_req(identity, msg)
                else:
                    self._on_crop_req(identity, msg)
            except Exception:
                self.stats["dropped"] += 1
                log.exception("dropped %s: handling it failed", msg.type)

    # ------------------------------------------------------------------ gateway messages
    def _on_gateway(self, msg: Message) -> None:
        self._last_gw_rx = time.monotonic()
        t = msg.type
        if t == "WELCOME":
            self._on_welcome(msg)
        elif t == "MODEL":
            self._on_model(msg)
        elif t == "HEARTBEAT":
            pass
        elif t == "ERROR":
            log.warning("gateway says: %s", msg["message"])
            ref = msg.get("ref")
            if msg["message"].startswith("unknown peer"):
                self._connect()
            elif type(ref) is int and ref in self._inflight and self._inflight[ref][2] is None:
                self._retry[ref] = time.monotonic() + 0.2  # refused (gateway busy): send it again shortly
        elif not self.ready:
            raise ProtocolError(f"gateway: {t} before the model is loaded")
        elif t == "FRAME":
            self._on_frame(msg["frame"], msg.codes.get(0, msg.arrays[0]), msg.get("idle"))
        elif t == "ACCEPT":
            self._on_accept(msg)
        elif t == "TASK":
            self._on_task(msg, stolen=False)
            self.asking = None
        elif t == "VICTIM":
            self.asking = None
            self._steal_from(msg["victim"], msg["addr"])
        elif t == "NO_WORK":
            self.asking = None
            self._back_off()
        elif t == "REUSE":
            self._on_reuse(msg)
        elif t == "DONE":
            self._on_done(msg)
        elif t == "FRAME_REQ":
            self._on_frame_req(msg)
        else:
            raise ProtocolError(f"gateway: {t} is not a message for an edge")

    def _on_welcome(self, msg: Message) -> None:
        spec = msg["model"]
        if msg["schedule"] not in SCHEDULES:
            raise ProtocolError(f"gateway: WELCOME with unknown schedule {msg['schedule']!r}")
        if not 0.01 <= msg["hb_interval_s"] <= 60 or not 1 <= msg["hb_liveness"] <= 100:
            raise ProtocolError("gateway: WELCOME heartbeat settings out of range")
        self.peer_id = msg["peer_id"]
        self.schedule = msg["schedule"]
        self.hb_interval_s = float(msg["hb_interval_s"])
        self.hb_liveness = int(msg["hb_liveness"])
        self.link_bytes_per_s = max(1.0, float(msg["link_bytes_per_s"]))
        self.queue.steal_from_front = self.schedule in REUSE_SCHEDULES
        log.info("joined as edge %d (schedule %s)", self.peer_id, self.schedule)
        if self.workload is not None and spec == self.spec:
            self._become_ready()
            return
        self.spec = spec
        self.config.cache_dir.mkdir(parents=True, exist_ok=True)
        self._have, self._missing = fetch_model_files(spec, "edge", self.config.cache_dir)
        self._request_next_file()

    def _request_next_file(self) -> None:
        if self._missing:
            entry = self._missing[0]
            self._download = FileDownload(entry["sha"], entry["name"], entry.get("bytes"))
            self._send_gw(self._download.request())
            return
        assert self.spec is not None
        try:
            self.workload = self.build_workload(self.spec, self._have)
        except Exception as exc:
            self.ready = False
            raise ProtocolError(f"gateway: cannot build the model it shipped: {exc}") from exc
        self._become_ready()

    def _on_model(self, msg: Message) -> None:
        if not self._missing or self._download is None:
            raise ProtocolError(f"gateway: unexpected MODEL {msg['sha'][:16]}")
        try:
            data = self._download.add(msg)
        except ProtocolError:
            self._download = None  # a bad chunk: start that file again on the next WELCOME
            raise
        if data is None:
            self._send_gw(self._download.request())
            return
        self._download = None
        entry = self._missing.pop(0)
        path = cached_file(self.config.cache_dir, entry["sha"], entry["name"])
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # atomic: edges sharing a cache never see half a file
        self._have[entry["name"]] = path
        log.info("cached %s (%d bytes, sha256 %s...)", entry["name"], len(data), entry["sha"][:12])
        self._request_next_file()

    def _become_ready(self) -> None:
        self.ready = True
        self._reported_pending = None
        self._send_gw(make("READY"))
        self._report_queue()

    def _on_frame(self, frame: int, x: "np.ndarray | Exact8", idle: Any = None) -> None:
        """Partition a frame this edge is the data source of into its queue; ``idle``: how
        many edges the gateway has waiting for work (they will come to steal at once)."""
        assert self.workload is not None
        if tuple(x.shape) != tuple(self.workload.input_shape):
            raise ProtocolError(f"gateway: FRAME {frame} shape {tuple(x.shape)} != {self.workload.input_shape}")
        now = time.monotonic()
        self._keep_partitioned(frame, x)
        meta = {"origin": "local", "source_addr": self.steal_addr}
        tasks = [
            LocalTask(frame, t, self.workload.level(t), self.workload.crop(x, t), dict(meta), queued_at=now)
            for t in range(self.workload.n_tiles)
        ]
        self.queue.push_frame(tasks)
        self.asking = None  # the gateway drops a WORK_REQ of an edge that reports pending work
        if type(idle) is int and idle > 0 and self.config.serve_first_s > 0 and self.current is None:
            self._serve_first = (frame, min(idle, len(tasks) - 1), now + self.config.serve_first_s)
        self._report_queue()

    def _keep_partitioned(self, frame: int, x: "np.ndarray | Exact8") -> None:
        old = self._partitioned.pop(frame, None)
        if old is not None:
            self._partitioned_bytes -= old.nbytes
        self._partitioned[frame] = x
        self._partitioned_bytes += x.nbytes
        while self._partitioned_bytes > PARTITIONED_BYTES and len(self._partitioned) > 2:
            _, dropped = self._partitioned.popitem(last=False)
            self._partitioned_bytes -= dropped.nbytes

    def _on_accept(self, msg: Message) -> None:
        tag = self._inflight.get(msg["ref"])
        if tag is None:
            raise ProtocolError(f"gateway: ACCEPT for unknown ref {msg['ref']}")
        x = tag[1]
        log.debug("ACCEPT ref %d -> frame %d", msg["ref"], msg["frame"])
        if msg["keep"]:
            self._on_frame(msg["frame"], x, msg.get("idle"))
        self._inflight[msg["ref"]] = (tag[0], x, msg["frame"])

    def _on_frame_req(self, msg: Message) -> None:
        """The gateway needs a lazily submitted frame (to re-issue one of its tiles)."""
        for _, x, frame in self._inflight.values():
            if frame == msg["frame"]:
                log.info("frame %d: sending it to the gateway on request", frame)
                self._send_gw(make("FRAME_DATA", [x], frame=frame))
                return
        log.info("FRAME_REQ for frame %d, which is not in flight here: ignored", msg["frame"])

    def _on_done(self, msg: Message) -> None:
        tag = self._inflight.pop(msg["ref"], None)
        if tag is None:
            log.info("DONE for frame %d that is not mine: ignored", msg["frame"])
            return
        self.frames_done += 1
        if self.on_done is not None:
            self.on_done(tag[0], msg)
        else:
            log.info("frame %d (%s) done", msg["frame"], tag[0])

    def _on_task(self, msg: Message, stolen: bool) -> None:
        assert self.workload is not None
        tile = msg["tile"]
        meta = msg["meta"]
        if not isinstance(meta.get("origin", ""), str):
            raise ProtocolError("TASK meta.origin must be a string")
        region = _region_field(meta.get("crop"), "TASK meta.crop")
        if region is not None and not isinstance(meta.get("source_addr"), str):
            raise ProtocolError("TASK with a partial crop lacks meta.source_addr")
        has_crop = region is None or (region[0] < region[2] and region[1] < region[3])
        if has_crop and not msg.arrays:
            raise ProtocolError(f"TASK for tile {tile} carries no input crop")
        crop = msg.arrays[0] if has_crop else None
        if region is None:
            self.workload.check_crop(tile, crop)
        else:  # a lean task: only FTP workloads make them
            self.workload.check_crop(tile, crop, region)  # type: ignore[call-arg]
        if has_crop and 0 in msg.codes:  # kept as it came: its size is what moved, and what moves on if stolen again
            crop = msg.codes[0]
        extra = list(msg.arrays[1:] if has_crop else msg.arrays)
        task = LocalTask(msg["frame"], tile, self.workload.level(tile), crop, dict(meta), stolen, extra, region=region)
        task.queued_at = time.monotonic()
        if self._partner_wanted == (task.frame, task.tile):
            self._partner_wanted = None  # the partner is here
        if stolen:
            self.stats["stolen"] += 1
        self.queue.push(task)
        self._report_queue()

    def _on_reuse(self, msg: Message) -> None:
        task = self.parked
        if task is None or (task.frame, task.tile) != (msg["frame"], msg["tile"]):
            raise ProtocolError(f"gateway: REUSE {msg['frame']}/{msg['tile']} nobody asked for")
        peers = msg["meta"].get("peers")
        if peers is not None:
            self._fetch_pieces(task, peers)
            return
        self.parked = None
        task.extra = list(msg.arrays)
        pairs = list(msg["meta"].get("pieces", [])) if msg.arrays else []
        own_bytes = 0
        for src, layers in self._own_pieces(task.frame, task.tile).items():  # kept here, not sent
            for layer in sorted(layers):
                pairs.append([src, layer])
                task.extra.append(layers[layer])
                own_bytes += layers[layer].nbytes
            self._release(task.frame, src, task.tile)  # needed by this one task only
        task.meta["reuse"] = {"pieces": pairs} if task.extra else None
        task.meta["own_bytes"] = own_bytes
        self._run_unparked(task)

    def _run_unparked(self, task: LocalTask) -> None:
        if self.current is None:
            self._start(task)
        else:  # the worker took other work while we waited: this one runs next
            self.queue.push_front(task)
            self._report_queue()

    # ------------------------------------------------------------------ wst-sp: overlap data peer to peer
    def _fetch_pieces(self, task: LocalTask, peers: Any) -> None:
        """REUSE under wst-sp names the edges holding the neighbours' data: take mine from my
        own store, ask the others' steal servers (PIECES_REQ); the task runs once all answered
        or after a timeout, with whatever arrived (a missing side is computed: still exact)."""
        if not isinstance(peers, list):
            raise ProtocolError("gateway: REUSE meta.peers is not a list")
        task.extra, task.meta["reuse"] = [], {"pieces": []}
        self._fetching = {}
        for entry in peers:
            if not (isinstance(entry, list) and len(entry) == 3 and type(entry[0]) is int and type(entry[1]) is int
                    and isinstance(entry[2], str)):
                raise ProtocolError(f"gateway: REUSE peer entry {entry!r} is malformed")
        # Only the pieces the tile reads with these neighbours present (None: all of them).
        needed = getattr(self.workload, "needed_pieces", None)
        wanted = needed(task.tile, [e[0] for e in peers]) if needed is not None else None
        for src, holder, addr in peers:
            layers_wanted = sorted(wanted.get(src, ())) if wanted is not None else None
            if holder == self.peer_id:
                layers = self._held.get((task.frame, src), {}).get(task.tile)
                if layers:
                    keys = [k for k in sorted(layers) if layers_wanted is None or k in layers_wanted]
                    self._add_pieces(task, src, keys, [layers[k] for k in keys])
                continue
            try:
                addr = transport.tcp_address(addr)
            except ClusterError:
                continue  # that side is computed here
            self._victim_socket(addr)
            extra = {} if layers_wanted is None else {"layers": layers_wanted}
            transport.send(self._victims[addr], make("PIECES_REQ", frame=task.frame, src=src, dest=task.tile, **extra))
            self._fetching[src] = addr
        self._parked_at = time.monotonic()
        if not self._fetching:
            self._pieces_done()

    def _add_pieces(self, task: LocalTask, src: int, layers: list[int], arrays: list[np.ndarray]) -> bool:
        """Attach one neighbour's pieces after checking them against the plan (bad ones: ignored)."""
        assert self.workload is not None
        pairs = [[src, int(layer)] for layer in layers]
        check = getattr(self.workload, "check_reuse", None)
        if check is not None:
            try:
                check(task.tile, ReuseData(list(arrays), {"pieces": pairs}))
            except ProtocolError as exc:
                log.warning("ignored overlap data of tile %d for tile %d: %s", src, task.tile, exc)
                return False
        task.extra += list(arrays)
        task.meta["reuse"]["pieces"] += pairs
        return True

    def _on_pieces(self, addr: str, msg: Message) -> None:
        task = self.parked
        src = msg["src"]
        if task is None or (task.frame, task.tile) != (msg["frame"], msg["dest"]) or self._fetching.get(src) != addr:
            return  # late: the task already ran (computing that side itself)
        del self._fetching[src]
        layers = msg["meta"].get("layers")
        if msg.arrays and isinstance(layers, list) and len(layers) == len(msg.arrays) and all(type(v) is int for v in layers):
            self._add_pieces(task, src, layers, list(msg.arrays))
        if not self._fetching:
            self._pieces_done()

    def _pieces_done(self) -> None:
        task, self.parked = self.parked, None
        self._fetching = {}
        assert task is not None
        if not task.extra:
            task.meta["reuse"] = None  # nothing arrived: computed in full (the fallback)
        self._run_unparked(task)

    def _on_pieces_req(self, identity: bytes, msg: Message) -> None:
        layers = self._held.get((msg["frame"], msg["src"]), {}).get(msg["dest"], {})
        want = msg.get("layers")
        keys = sorted(layers)
        if isinstance(want, list):
            keys = [k for k in keys if k in want]
        reply = make("PIECES", [layers[k] for k in keys], frame=msg["frame"], src=msg["src"], dest=msg["dest"],
                     meta={"layers": keys})
        transport.send(self.steal_sock, reply, identity)

    def _keep_partner_pieces(self, task: LocalTask, meta: dict[str, Any], arrays: list[np.ndarray],
                             n_publish: int) -> tuple[list[np.ndarray], int]:
        """WST-S: the pieces a level-0 tile publishes for its partner stay here when this edge
        holds that partner task (it runs it next): they would only go up to the gateway and
        come straight back. The rest go up as usual; meta.publish lists what went."""
        partner = getattr(self.workload, "partner", lambda t: None)(task.tile)
        if partner is None or not self._holds(task.frame, partner):
            return arrays, n_publish
        n_out = len(arrays) - n_publish
        pairs = list(meta.get("publish", []))
        mine = [i for i, p in enumerate(pairs) if p[0] == partner]
        if not mine:
            return arrays, n_publish
        self._hold(task.frame, task.tile, [pairs[i] for i in mine], [arrays[n_out + i] for i in mine])
        up = [i for i in range(len(pairs)) if i not in set(mine)]
        meta["publish"] = [pairs[i] for i in up]
        return arrays[:n_out] + [arrays[n_out + i] for i in up], len(up)

    def _holds(self, frame: int, tile: int) -> bool:
        """This edge holds (queued, parked or running) the task of ``tile`` of ``frame``."""
        for t in (self.current, self.parked):
            if t is not None and (t.frame, t.tile) == (frame, tile):
                return True
        return any((t.frame, t.tile) == (frame, tile) for t in self.queue)

    def _own_pieces(self, frame: int, tile: int) -> dict[int, dict[int, np.ndarray]]:
        """Overlap pieces for level-1 ``tile`` that this edge computed itself: {src: {layer: array}}."""
        out = {}
        for src in getattr(self.workload, "neighbours", lambda t: [])(tile):
            layers = self._held.get((frame, src), {}).get(tile)
            if layers:
                out[src] = layers
        return out

    def _release(self, frame: int, src: int, dest: int) -> None:
        """Forget the pieces level-0 tile src published for dest (wst-s keeps them for one use)."""
        store = self._held.get((frame, src))
        if store is None or dest not in store:
            return
        self._held_bytes -= self._store_bytes({dest: store.pop(dest)})
        if not store:
            del self._held[(frame, src)]

    def _hold(self, frame: int, tile: int, pairs: list[list[int]], arrays: list[np.ndarray]) -> None:
        store: dict[int, dict[int, np.ndarray]] = {}
        for (dest, layer), arr in zip(pairs, arrays):
            store.setdefault(int(dest), {})[int(layer)] = arr
        old = self._held.pop((frame, tile), None)
        self._held_bytes -= self._store_bytes(old)
        self._held[(frame, tile)] = store
        self._held_bytes += self._store_bytes(store)
        while self._held_bytes > HELD_BYTES and len(self._held) > 1:
            _, dropped = self._held.popitem(last=False)
            self._held_bytes -= self._store_bytes(dropped)

    @staticmethod
    def _store_bytes(store: dict[int, dict[int, np.ndarray]] | None) -> int:
        return sum(a.nbytes for layers in (store or {}).values() for a in layers.values())

    # ------------------------------------------------------------------ stealing
    def _steal_from(self, victim: int, addr: str) -> None:
        if victim == self.peer_id:
            self._back_off()
            return
        try:
            addr = transport.tcp_address(addr)
        except ClusterError:
            raise ProtocolError(f"gateway: VICTIM address {addr!r} is malformed") from None
        sock = self._victim_socket(addr)
        # Busy: this is a prefetch, for a level-1 tile only (see _dispatch).
        prefetch = self.current is not None
        want = self._wanted()
        extra: dict[str, Any] = {"prefetch": True} if prefetch else {}
        if want is not None:
            extra["want"] = want
        req = make("STEAL_REQ", thief=self.peer_id or 0, **extra)
        transport.send(sock, req)
        self.stealing = (sock, addr, time.monotonic())
        self._prefetching = prefetch
        self._stealing_from = victim
        steal_log.info("event=steal_request thief=%s victim=%d addr=%s", self.peer_id, victim, addr)

    def _victim_socket(self, addr: str) -> zmq.Socket:
        """A DEALER to another edge's steal server (steals and wst-sp pieces), made once."""
        sock = self._victims.get(addr)
        if sock is None:
            sock = transport.client_socket(self._ctx, addr, self.key)
            self._victims[addr] = sock
            self.poller.register(sock, zmq.POLLIN)
        return sock

    def _on_victim(self, addr: str, msg: Message) -> None:
        if msg.type == "PIECES":
            self._on_pieces(addr, msg)
            return
        if msg.type == "CROP":
            self._on_crop(addr, msg)
            return
        if self.stealing is None or self.stealing[1] != addr:
            if msg.type == "TASK":  # a late answer to a steal we gave up on: still ours to run
                self._on_task(msg, stolen=True)
            return
        self.stealing = None
        if msg.type == "TASK":
            self._backoff_s = 0.0
            self._on_task(msg, stolen=True)
            steal_log.info("event=stolen thief=%s frame=%d tile=%d", self.peer_id, msg["frame"], msg["tile"])
        elif msg.type == "NO_WORK":
            # The gateway's view of that victim's queue is stale: say so with the next WORK_REQ,
            # which the gateway then holds until some edge reports work (no back-off needed, so
            # a new frame's first tiles are not missed by a thief that is sleeping).
            if self._prefetching:
                self._back_off()  # it may still have level-0 tiles for idle edges
            else:
                self._empty_victim = self._stealing_from
        else:
            raise ProtocolError(f"victim {addr}: {msg.type} is not an answer to STEAL_REQ")

    def _on_steal_req(self, identity: bytes, msg: Message) -> None:
        """Step 1 of a steal at the victim: give the next stealable task if the move pays,
        then confirm to the gateway (MOVED) so it knows the thief holds it now."""
        thief = msg["thief"]
        order = self.queue.steal_order() if self.ready else []
        if msg.fields.get("prefetch") is True:  # a busy thief: level-1 tiles only
            order = [(t, p) for t, p in order if t.level == 1]
        if self.schedule == "wst-s":  # a tile whose overlap data is here runs here (it would lose it)
            order = [(t, p) for t, p in order if t.level != 1 or not self._own_pieces(t.frame, t.tile)]
        want = msg.fields.get("want")
        if isinstance(want, list) and len(want) == 2:  # the thief's partner tile goes first
            order = sorted(order, key=lambda tp: [tp[0].frame, tp[0].tile] != want)
        if not order or thief == self.peer_id:
            transport.send(self.steal_sock, make("NO_WORK"), identity)
            return
        # Until the first tile is timed, guess a tile's cost (as dask guesses unknown durations).
        avg = self._avg_compute_s if self._avg_compute_s is not None else UNKNOWN_TILE_S
        running_left = 0.0
        if self.current is not None:
            running_left = max(0.0, avg - (time.monotonic() - self.current_started))
        chosen = None
        for task, position in order:
            # when would this edge itself start the task, and how long would moving it take?
            wait_s = running_left + position * avg
            transfer_s = self._lean(task).input_bytes / self.link_bytes_per_s
            if steal_pays(wait_s, transfer_s):
                chosen = position
                break
        if chosen is None:
            self.stats["refused"] += 1
            steal_log.info("event=steal_refused victim=%s queued=%d reason=transfer_exceeds_wait", self.peer_id, len(order))
            transport.send(self.steal_sock, make("NO_WORK"), identity)
            return
        task = self._lean(self.queue.pop_at(chosen))
        meta = {k: v for k, v in task.meta.items() if k in ("origin", "reuse", "source_addr")}
        meta["victim"] = self.peer_id
        if task.region is not None:
            meta["crop"] = list(task.region)
        arrays = ([task.crop] if task.crop is not None else []) + list(task.extra)
        transport.send(
            self.steal_sock,
            make("TASK", arrays, frame=task.frame, tile=task.tile, level=task.level, meta=meta),
            identity,
        )
        self._send_gw(make("MOVED", frame=task.frame, tile=task.tile, thief=thief))
        self.stats["given"] += 1
        if self._serve_first is not None and self._serve_first[0] == task.frame:
            f, expected, until = self._serve_first
            self._serve_first = (f, expected - 1, until) if expected > 1 else None
        steal_log.info("event=steal_given victim=%s thief=%d frame=%d tile=%d", self.peer_id, thief, task.frame, task.tile)
        self._report_queue()

    def _lean(self, task: LocalTask) -> LocalTask:
        """The task as a thief gets it: a level-1 tile under data reuse with only the part of its
        crop it reads when its neighbours' data arrives (often none: a 12x1 strip's ~370 KB
        stays off the source's uplink), provided the data source can be asked for the rest."""
        lean_region = getattr(self.workload, "lean_region", None)
        if (lean_region is None or task.region is not None or task.level != 1 or task.crop is None
                or self.schedule not in REUSE_SCHEDULES or not isinstance(task.meta.get("source_addr"), str)):
            return task
        region = lean_region(task.tile)
        if region is None:
            return task
        t0, l0, _, _ = self.workload.input_region(task.tile)  # type: ignore[union-attr]
        t, l, b, r = region
        crop = None
        if t < b and l < r:  # the lean part of the tile's own crop (which starts at t0, l0)
            crop = task.crop[:, t - t0 : b - t0, l - l0 : r - l0]
            crop = crop if isinstance(crop, Exact8) else np.ascontiguousarray(crop)
        return LocalTask(task.frame, task.tile, task.level, crop, task.meta, task.stolen, task.extra,
                         task.queued_at, region=tuple(region))

    def _on_crop_req(self, identity: bytes, msg: Message) -> None:
        """A thief's lean level-1 task needs more of a frame this edge is the data source of."""
        region = _region_field(msg["region"], "CROP_REQ.region")
        x = self._partitioned.get(msg["frame"])
        crop = None
        if x is not None and region is not None and self.workload is not None:
            _, h, w = x.shape
            if 0 <= msg["tile"] < self.workload.n_tiles and region[2] <= h and region[3] <= w:
                crop = self.workload.crop_region(x, region)  # type: ignore[union-attr]
            else:
                log.warning("CROP_REQ for tile %d region %s of a %dx%d frame: refused", msg["tile"], list(region), h, w)
        reply = make("CROP", [crop] if crop is not None else [], frame=msg["frame"], tile=msg["tile"],
                     region=list(region or ()))
        transport.send(self.steal_sock, reply, identity)

    def _needs_more_input(self, task: LocalTask) -> "tuple[int, int, int, int] | None":
        """The input a (lean) task still lacks to run with the reuse data it has, or None."""
        if task.region is None or self.workload is None:
            return None
        reuse = task.meta.get("reuse")
        data = ReuseData(task.extra, reuse) if reuse is not None and task.extra else None
        need = tuple(self.workload.input_needed(task.tile, data))  # type: ignore[union-attr]
        have = task.region
        if need[0] >= need[2] or need[1] >= need[3]:
            return None
        if have[0] <= need[0] and have[1] <= need[1] and have[2] >= need[2] and have[3] >= need[3]:
            return None
        return need  # type: ignore[return-value]

    def _fetch_crop(self, task: LocalTask, need: tuple[int, int, int, int]) -> None:
        addr = transport.tcp_address(task.meta["source_addr"])
        self.parked = task
        self._parked_at = time.monotonic()
        self._crop_fetch = (addr, self._parked_at)
        transport.send(self._victim_socket(addr), make("CROP_REQ", frame=task.frame, tile=task.tile, region=list(need)))
        log.info("tile %d of frame %d: a neighbour's data is missing, fetching input %s from its source",
                 task.tile, task.frame, list(need))

    def _on_crop(self, addr: str, msg: Message) -> None:
        task = self.parked
        if task is None or self._crop_fetch is None or self._crop_fetch[0] != addr or \
                (task.frame, task.tile) != (msg["frame"], msg["tile"]):
            return  # late: the task was dropped
        self.parked, self._crop_fetch = None, None
        region = _region_field(msg["region"], "CROP.region")
        if not msg.arrays or region is None:
            log.warning("tile %d of frame %d: its source no longer has the frame; dropped (the gateway "
                        "re-issues it)", task.tile, task.frame)
            return
        crop = msg.codes.get(0, msg.arrays[0])  # 8-bit codes stay codes, as in TASK
        try:
            assert self.workload is not None
            self.workload.check_crop(task.tile, msg.arrays[0], region)  # type: ignore[call-arg]
        except ProtocolError as exc:
            log.warning("tile %d of frame %d: bad CROP from %s (%s); dropped", task.tile, task.frame, addr, exc)
            return
        task.crop, task.region = crop, region
        self._run_unparked(task)

    def _back_off(self) -> None:
        self._backoff_s = min(0.2, max(0.005, self._backoff_s * 2))
        self._backoff_until = time.monotonic() + self._backoff_s

    # ------------------------------------------------------------------ running tiles
    def _report_queue(self) -> None:
        state = (len(self.queue), self.queue.count_level(0))
        if self.ready and state != self._reported_pending:
            self._reported_pending = state
            self._send_gw(make("QUEUE", pending=state[0], frames=self.queue.frames(), level0=state[1]))

    def _dispatch(self, now: float) -> None:
        if not self.ready:
            return
        self._submit_own_frames()
        if self.current is None and self.parked is None:
            if self._serve_first is not None:
                if now < self._serve_first[2]:
                    return  # the thieves first (EdgeConfig.serve_first_s)
                steal_log.info("event=serve_first_timeout frame=%d missing=%d", self._serve_first[0], self._serve_first[1])
                self._serve_first = None
            task = self.queue.pop_own()
            if task is not None:
                self._report_queue()
                self._start(task)
            elif self.asking is None and self.stealing is None and now >= self._backoff_until:
                self.asking = now
                self._send_gw(self._work_req())
                return
        elif self.current is None:
            # A level-1 tile waits for its neighbours' data: keep the worker busy meanwhile with
            # a task that needs no fetch (the parked one goes first once its data is here).
            task = self.queue.pop_first(lambda t: not self._needs_reuse_fetch(t))
            if task is not None:
                self._report_queue()
                self._start(task)
        # Work sharing: ask for the next task while this one runs, so the gateway's round trip
        # hides behind compute (one task of prefetch; stealing stays idle-only, as in DeepThings).
        busy = self.current is not None or self.parked is not None
        if busy and self.schedule == "wsh" and not len(self.queue) and self.asking is None and now >= self._backoff_until:
            self.asking = now
            self._send_gw(self._work_req())
        # Data reuse: while a level-0 tile runs, steal one level-1 tile ahead (it cannot start
        # before the level-0 wave ends anyway), so the steal's round trips hide behind compute
        # instead of following it; level-0 tiles stay with the edges that are idle.
        elif (self._prefetch_level1() and self.current is not None and self.current.level == 0
              and not len(self.queue) and self.asking is None and self.stealing is None
              and now >= self._backoff_until):
            self.asking = now
            self._send_gw(self._work_req())

    def _prefetch_level1(self) -> bool:
        return (self.schedule in REUSE_SCHEDULES and self.workload is not None
                and bool(self.workload.supports_reuse))

    def _wanted(self) -> list[int] | None:
        """[frame, tile] of the level-1 partner of the last level-0 tile this edge ran, until it
        holds that task: the tile to prefetch, or to steal first when idle (the balanced cuts
        pair them, so each edge's two tiles add up evenly). A partner already done elsewhere
        is harmless: the gateway then picks a victim as usual."""
        partner = getattr(self.workload, "partner", None)
        if partner is None:
            return None
        if self.current is not None and self.current.level == 0:
            tile = partner(self.current.tile)
            self._partner_wanted = None if tile is None else (self.current.frame, int(tile))
        want = self._partner_wanted
        if want is not None and self._holds(*want):
            self._partner_wanted = want = None  # got it
        return None if want is None else list(want)

    def _work_req(self) -> Message:
        # Busy: a prefetch (level-1 tiles only), so the gateway picks a victim that has them.
        extra: dict[str, Any] = {"prefetch": True} if self.current is not None else {}
        want = self._wanted()
        if want is not None:
            extra["want"] = want
        if self._empty_victim is not None:
            extra["empty"] = self._empty_victim
            self._empty_victim = None
        return make("WORK_REQ", **extra)

    def _needs_reuse_fetch(self, task: LocalTask) -> bool:
        """A WST-S level-1 tile that has not yet asked the gateway's overlap cache."""
        return (
            self.schedule in REUSE_SCHEDULES
            and self.workload is not None
            and self.workload.supports_reuse
            and task.level == 1
            and "reuse" not in task.meta
        )

    def _start(self, task: LocalTask) -> None:
        assert self.workload is not None
        if self._needs_reuse_fetch(task):
            assert self.parked is None
            self.parked = task  # ask the gateway's overlap cache first
            self._parked_at = time.monotonic()
            own = self._own_pieces(task.frame, task.tile) if self.schedule == "wst-s" else {}
            have = {"have": [[src, sorted(layers)] for src, layers in sorted(own.items())]} if own else {}
            self._send_gw(make("REUSE_REQ", frame=task.frame, tile=task.tile, **have))
            return
        need = self._needs_more_input(task)
        if need is not None:  # a lean task whose neighbour's data is missing
            assert self.parked is None
            self._fetch_crop(task, need)
            return
        self.current = task
        self.current_started = time.monotonic()
        log.debug("start tile %d of frame %d (level %d)", task.tile, task.frame, task.level)
        self._work_in.put(task)

    def _work_loop(self) -> None:
        _lower_priority(self.config.worker_nice)
        wake = self._ctx.socket(zmq.PAIR)
        wake.connect(self._wake_addr)
        try:
            while True:
                task = self._work_in.get()
                if task is None:
                    return
                t0, c0 = time.perf_counter(), time.thread_time()
                try:
                    reuse = task.meta.get("reuse")
                    data = ReuseData(task.extra, reuse) if reuse is not None and task.extra else None
                    crop = as_float(task.crop) if task.crop is not None else None
                    if task.region is None:
                        out = self.workload.run(task.tile, crop, data)  # type: ignore[union-attr]
                    else:
                        out = self.workload.run(task.tile, crop, data, region=task.region)  # type: ignore[union-attr,call-arg]
                    err = None
                except Exception as exc:
                    log.exception("tile %d of frame %d failed", task.tile, task.frame)
                    out, err = None, exc
                if out is not None:
                    # CPU the tile itself used; compute_s - cpu_s is time it was ready but not
                    # running (a CPU quota's throttling, or other threads of the device)
                    out.meta["cpu_s"] = time.thread_time() - c0
                self._work_out.put((task, out, err, time.perf_counter() - t0))
                wake.send(b"")
        finally:
            wake.close(0)

    def _collect_results(self) -> None:
        while True:
            try:
                task, out, err, compute_s = self._work_out.get_nowait()
            except queue.Empty:
                return
            self.current = None
            if err is not None or out is None:
                continue  # the gateway re-issues it after its timeout
            self._avg_compute_s = compute_s if self._avg_compute_s is None else 0.8 * self._avg_compute_s + 0.2 * compute_s
            t_send = time.perf_counter()
            meta = dict(out.meta)
            arrays = out.arrays
            n_publish = out.n_publish
            if self.schedule == "wst-sp" and n_publish:
                # keep the overlap data here and serve it to whoever runs the neighbours
                n_out = len(arrays) - n_publish
                self._hold(task.frame, task.tile, list(meta.get("publish", [])), arrays[n_out:])
                arrays, n_publish = arrays[:n_out], 0
                meta["held"] = True
            elif self.schedule == "wst-s" and n_publish:
                arrays, n_publish = self._keep_partner_pieces(task, meta, arrays, n_publish)
            meta.update(
                n_publish=n_publish,
                queue_s=max(0.0, self.current_started - task.queued_at),
                input_bytes=task.input_bytes - int(task.meta.get("own_bytes", 0)),
                crop_bytes=int(task.crop.nbytes) if task.crop is not None else 0,
                origin=str(task.meta.get("origin", "local")),
                reused=task.meta.get("reuse") is not None and bool(task.extra),
            )
            if self.gw is not None:
                self._send_gw(
                    make(
                        "RESULT",
                        arrays,
                        frame=task.frame,
                        tile=task.tile,
                        stolen=task.stolen,
                        compute_s=compute_s,
                        meta=meta,
                    )
                )
            self.stats["tiles"] += 1
            log.debug("tile %d of frame %d: %.1f ms compute, %.2f ms to send", task.tile, task.frame,
                      compute_s * 1e3, (time.perf_counter() - t_send) * 1e3)

    # ------------------------------------------------------------------ data source
    def _submit_own_frames(self) -> None:
        now = time.monotonic()
        for ref in [r for r, when in self._retry.items() if when <= now]:
            del self._retry[ref]
            if ref not in self._inflight:
                continue  # answered meanwhile
            _, x, frame = self._inflight[ref]
            fields: dict[str, Any] = {"ref": ref, "keep": True}
            if frame is not None:
                fields["frame"] = frame  # the gateway's id for it: re-attach if it still has it
            self._send_gw(make("SUBMIT", [x], **fields))
        while self._frames is not None and len(self._inflight) < self.config.max_frames_in_flight:
            try:
                tag, x = next(self._frames)
            except StopIteration:
                self._frames = None
                return
            except Exception as exc:  # e.g. an unreadable image: skip that frame, keep serving
                log.error("skipping a source frame: %s", exc)
                continue
            if isinstance(x, np.ndarray) and x.dtype == np.uint8:
                # A camera's 8-bit CHW codes: the input is codes / 255 exactly, no check needed
                # (exact8's bit-for-bit check costs a slow device tens of ms per frame).
                x = Exact8(np.ascontiguousarray(x))
            else:
                x = np.ascontiguousarray(x, np.float32)
                x = exact8(x) or x  # an 8-bit image travels (and is cropped for thieves) as its codes
            if self.workload is not None and tuple(x.shape) != tuple(self.workload.input_shape):
                # the gateway would refuse it, and nobody would ever answer it
                log.error("skipping source frame %r: shape %s, the model takes %s", tag, tuple(x.shape),
                          tuple(self.workload.input_shape))
                continue
            self._refs += 1
            self._inflight[self._refs] = (tag, x, None)
            if self.config.lazy_submit and self.schedule != "wsh":
                self._send_gw(make("SUBMIT", [], ref=self._refs, keep=True, shape=list(x.shape)))
            else:
                self._send_gw(make("SUBMIT", [x], ref=self._refs, keep=True))
            log.debug("SUBMIT ref %d", self._refs)

    # ------------------------------------------------------------------ liveness
    def _tick(self, now: float) -> None:
        if self.gw is None:
            return
        if not self.ready and self.peer_id is None and now - self._hello_at > self.config.hello_retry_s:
            log.warning("no WELCOME from %s yet (wrong key or gateway down?): reconnecting", self.config.gateway)
            self._connect()
            return
        if now - self._last_gw_rx > self.hb_interval_s * self.hb_liveness:
            log.warning("gateway silent for %.1f s: reconnecting", now - self._last_gw_rx)
            self.peer_id = None
            self._connect()
            return
        if now - self._last_gw_tx >= self.hb_interval_s:
            self._send_gw(make("HEARTBEAT"))
        if self.parked is not None and self._crop_fetch is not None and \
                now - self._crop_fetch[1] > max(1.0, 4 * self.hb_interval_s):
            task, self.parked, self._crop_fetch = self.parked, None, None
            log.warning("tile %d of frame %d: its source did not send the input it needs; dropped (the gateway "
                        "re-issues it)", task.tile, task.frame)
        elif self.parked is not None and self._fetching and now - self._parked_at > max(0.5, 2 * self.hb_interval_s):
            log.info("no overlap data from %s in time: computing those sides", sorted(set(self._fetching.values())))
            self._pieces_done()  # run with the pieces that did arrive
        elif self.parked is not None and self._crop_fetch is None and now - self._parked_at > max(1.0, 4 * self.hb_interval_s):
            task, self.parked = self.parked, None  # no REUSE answer: compute it in full (fallback)
            task.meta["reuse"] = None
            self.queue.push_front(task)
        if self.asking is not None and now - self.asking > max(1.0, 4 * self.hb_interval_s):
            self.asking = None  # ask again: a lost WORK_REQ must not idle us for good
        if self.stealing is not None and now - self.stealing[2] > self.config.steal_timeout_s:
            sock, addr, _ = self.stealing
            log.info("victim %s did not answer: giving up on it", addr)
            self.poller.unregister(sock)
            sock.close(0)
            self._victims.pop(addr, None)
            self.stealing = None
