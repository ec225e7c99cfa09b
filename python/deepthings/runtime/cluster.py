"""``deepthings.Cluster``: a gateway + edges as local processes on loopback, or a client of a
running cluster (``Cluster.connect``). ``infer`` sends one frame, ``infer_many`` streams
several with pipelining, both return :class:`InferenceResult` with outputs, detections and a
trace."""

from __future__ import annotations

import logging
import os
import pickle
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import zmq

from deepthings.errors import ClusterError, ProtocolError
from deepthings.runtime import transport
from deepthings.runtime.edge import EdgeConfig
from deepthings.runtime.filetransfer import FileDownload
from deepthings.runtime.gateway import Gateway, GatewayConfig
from deepthings.runtime.keys import ClusterKey
from deepthings.runtime.protocol import Message, exact8, make
from deepthings.runtime.scheduler import SCHEDULES
from deepthings.runtime.trace import InferenceResult, Trace

log = logging.getLogger("deepthings.runtime.cluster")


# ----------------------------------------------------------------------------- processes
def run_gateway(desc: dict[str, Any], grid: tuple[int, int], fused_layers: int | None, config: GatewayConfig,
                key: ClusterKey | None, ready: Any = None, stop_event: Any = None) -> None:
    """Load the model, bind, report the endpoint through ``ready(endpoint)``, serve until stopped."""
    from deepthings.runtime.model import prepare

    workload, files = prepare(desc, grid, fused_layers, config.schedule, balance=config.balance)
    gw = Gateway(workload, files, config, key)
    if ready is not None:
        ready(gw.endpoint)
    gw.serve(stop_event)


class ChildProcess:
    """A gateway or edge in its own interpreter (``python -m deepthings.runtime._child``).

    The job goes in pickled on stdin; closing stdin stops the child cleanly, and a child whose
    parent dies sees EOF and stops too. The interface mirrors multiprocessing.Process."""

    def __init__(self, job: dict[str, Any], name: str, capture_stdout: bool = False) -> None:
        import deepthings

        self.name = name
        env = dict(os.environ)
        root = str(Path(deepthings.__file__).resolve().parent.parent)  # importable in the child
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "deepthings.runtime._child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
            env=env,
        )
        assert self._proc.stdin is not None
        self._proc.stdin.write(pickle.dumps(dict(job, name=name)))
        self._proc.stdin.flush()

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def exitcode(self) -> int | None:
        return self._proc.poll()

    def is_alive(self) -> bool:
        return self._proc.poll() is None

    def read_line(self, timeout_s: float) -> str | None:
        """One line of the child's stdout (None on timeout or exit)."""
        out = self._proc.stdout
        if out is None:
            return None
        ready, _, _ = select.select([out], [], [], timeout_s)
        if not ready:
            return None
        line = out.readline()
        return line.decode(errors="replace").strip() if line else None

    def stop(self) -> None:
        """Ask the child to finish (close its stdin)."""
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except OSError:
                pass

    def join(self, timeout: float | None = None) -> None:
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def terminate(self) -> None:
        if self.is_alive():
            self._proc.terminate()

    def kill(self) -> None:
        if self.is_alive():
            self._proc.kill()

    def close(self) -> None:
        self.stop()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


# ----------------------------------------------------------------------------- client
class _Client:
    """The caller's connection to a gateway: a DEALER that submits frames and collects DONEs."""

    def __init__(self, address: str, key: ClusterKey | None, timeout_s: float, name: str = "client") -> None:
        self.address = address
        self.key = key
        self.name = name
        self.ctx = zmq.Context()
        self.sock: zmq.Socket | None = None
        self.welcome: Message | None = None
        self.hb_interval_s = 0.5
        self._last_tx = 0.0
        self._refs = 0
        self.pending: dict[int, np.ndarray] = {}  # submitted, not yet accepted
        # Submitted and not yet answered: ref -> (input, gateway frame id once accepted). A
        # rejoin submits these again; the gateway re-attaches the ones it still has.
        self.unanswered: dict[int, tuple[np.ndarray, int | None]] = {}
        self.done: dict[int, Message] = {}
        self.errors: dict[int, str] = {}
        self.bytes_sent = 0
        self.bytes_received = 0
        self._hello(timeout_s)

    def _hello(self, timeout_s: float) -> None:
        if self.sock is not None:
            self.sock.close(0)
        self.sock = transport.client_socket(self.ctx, self.address, self.key)
        self._send(make("HELLO", role="client", name=self.name, source=False, steal_addr=None))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = self._recv(0.1)
            if msg is not None and msg.type == "WELCOME":
                self.welcome = msg
                self.hb_interval_s = float(msg["hb_interval_s"])
                return
        self.close()
        raise ClusterError(
            f"no answer from the gateway at {self.address} within {timeout_s:.0f} s "
            "(gateway down, or this client does not hold the cluster key)"
        )

    def _send(self, msg: Message) -> None:
        assert self.sock is not None
        self.bytes_sent += transport.send(self.sock, msg)
        self._last_tx = time.monotonic()

    def _recv(self, timeout_s: float) -> Message | None:
        assert self.sock is not None
        if not self.sock.poll(int(timeout_s * 1000)):
            return None
        _, msg, nbytes = transport.recv(self.sock, False, f"gateway {self.address}", log)
        self.bytes_received += nbytes
        return msg

    def fetch_file(self, sha: str, timeout_s: float) -> bytes:
        """One model file from the gateway, chunk by chunk; `timeout_s` bounds each chunk."""
        download = FileDownload(sha, sha[:16], peer=f"gateway {self.address}")
        self._send(download.request())
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = self._recv(0.1)
            if msg is not None and msg.type == "MODEL" and msg["sha"] == sha:
                data = download.add(msg)
                if data is not None:
                    return data
                self._send(download.request())
                deadline = time.monotonic() + timeout_s
            elif msg is not None:
                self._handle(msg)
        raise ClusterError(f"gateway {self.address} did not send model file {sha[:16]}")

    def status(self, timeout_s: float = 5.0) -> Message:
        self._send(make("STATUS_REQ"))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = self._recv(0.1)
            if msg is not None and msg.type == "STATUS":
                return msg
            if msg is not None:
                self._handle(msg)
                if msg.type == "ERROR" and msg["message"].startswith("unknown peer"):
                    self._send(make("STATUS_REQ"))
        raise ClusterError(f"gateway {self.address} did not answer STATUS_REQ")

    def submit(self, x: np.ndarray) -> int:
        x = np.ascontiguousarray(x, np.float32)
        x = exact8(x) or x  # an 8-bit image crosses the link as its codes
        self._refs += 1
        self.pending[self._refs] = x
        self.unanswered[self._refs] = (x, None)
        self._send(make("SUBMIT", [x], ref=self._refs, keep=False))
        return self._refs

    def _resubmit(self, ref: int) -> None:
        x, frame = self.unanswered[ref]
        fields: dict[str, Any] = {"ref": ref, "keep": False}
        if frame is not None:
            fields["frame"] = frame
        self._send(make("SUBMIT", [x], **fields))

    def _handle(self, msg: Message) -> None:
        if msg.type == "ACCEPT":
            self.pending.pop(msg["ref"], None)
            if msg["ref"] in self.unanswered:
                self.unanswered[msg["ref"]] = (self.unanswered[msg["ref"]][0], msg["frame"])
        elif msg.type == "DONE":
            self.pending.pop(msg["ref"], None)
            if self.unanswered.pop(msg["ref"], None) is None:
                log.info("DONE for ref %d that is not awaited: ignored", msg["ref"])
                return
            self.done[msg["ref"]] = msg
        elif msg.type == "ERROR":
            text = msg["message"]
            ref = msg.get("ref")
            if text.startswith("unknown peer"):  # the gateway forgot us (restart, idle): rejoin
                # DONE goes to the connection that submitted: every frame still unanswered
                # (accepted or not) is submitted again on the new one.
                self._hello(10.0)
                for r in list(self.unanswered):
                    self._resubmit(r)
            elif type(ref) is int and ref in self.pending and text.startswith("too many frames"):
                time.sleep(0.05)
                self._send(make("SUBMIT", [self.pending[ref]], ref=ref, keep=False))
            elif type(ref) is int:
                self.errors[ref] = text
                self.pending.pop(ref, None)
                self.unanswered.pop(ref, None)
            else:
                log.warning("gateway says: %s", text)

    def wait(self, refs: Iterable[int], timeout_s: float) -> Iterator[Message]:
        """Yield DONE messages for ``refs`` as they arrive (any order)."""
        want = set(refs)
        deadline = time.monotonic() + timeout_s
        while want:
            for ref in [r for r in want if r in self.done or r in self.errors]:
                want.discard(ref)
                if ref in self.errors:
                    raise ClusterError(f"frame ref {ref}: {self.errors.pop(ref)}")
                yield self.done.pop(ref)
            if not want:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"{len(want)} frame(s) not answered within {timeout_s:.0f} s")
            if time.monotonic() - self._last_tx >= self.hb_interval_s:
                self._send(make("HEARTBEAT"))
            msg = self._recv(min(self.hb_interval_s, 0.2))
            if msg is not None:
                self._handle(msg)

    def close(self) -> None:
        if self.sock is not None:
            try:
                transport.send(self.sock, make("BYE"))
            finally:
                self.sock.close(0)
                self.sock = None
        self.ctx.term()


# ----------------------------------------------------------------------------- Cluster
class Cluster:
    """A DeepThings cluster: ``with Cluster(model, edges=4, grid=(5, 5), fused_layers=16,
    schedule="wst-s") as c: r = c.infer(image)``.

    model: ``"default"`` (the embedded yolo-fastest-1.1), a cfg path (``weights=`` path, else
    deterministic random weights from ``random_seed``), or a Network. Edges run as local
    processes on 127.0.0.1, each capped at ``threads_per_edge`` native threads; the first
    ``sources`` edges are data sources (they partition frames into their local queues; the
    others steal). Traffic is CURVE-encrypted with a throwaway key unless ``secure=False``.
    ``balance=True`` (or a device count) makes the grid uneven so that the edges finish their
    tiles together (``deepthings.ftp.balance``).
    """

    def __init__(
        self,
        model: Any = "default",
        edges: int = 4,
        grid: tuple[int, int] = (5, 5),
        fused_layers: int | None = 16,
        schedule: str = "wst-s",
        *,
        balance: bool | int = False,
        weights: str | os.PathLike[str] | None = None,
        random_seed: int | None = None,
        sources: int = 1,
        key: ClusterKey | str | os.PathLike[str] | None = None,
        secure: bool = True,
        threads_per_edge: int | None = 1,
        bind: str = "127.0.0.1:0",
        hb_interval_s: float = 0.25,
        hb_liveness: int = 8,
        task_timeout_s: float = 60.0,
        link_bytes_per_s: float = 1e9,
        cache_dir: str | os.PathLike[str] | None = None,
        thresh: float = 0.25,
        nms: float = 0.45,
        letterbox: bool = False,
        start_timeout_s: float = 120.0,
        frame_timeout_s: float = 300.0,
        log_level: int | None = None,
    ) -> None:
        if schedule not in SCHEDULES:
            raise ClusterError(f"unknown schedule {schedule!r}: choose one of {', '.join(SCHEDULES)}")
        if edges < 0 or sources < 0:
            raise ClusterError("edges and sources must be >= 0")
        self.desc: dict[str, Any] | None = None
        self.model = model
        self.weights = weights
        self.random_seed = random_seed
        self.n_edges = edges
        self.grid = (int(grid[0]), int(grid[1]))
        self.fused_layers = fused_layers
        self.schedule = schedule
        self.sources = min(sources, edges)
        self.key = ClusterKey.coerce(key) if key is not None else (ClusterKey.generate() if secure else None)
        self.threads_per_edge = threads_per_edge
        self.gateway_config = GatewayConfig(
            bind=bind,
            schedule=schedule,
            hb_interval_s=hb_interval_s,
            hb_liveness=hb_liveness,
            task_timeout_s=task_timeout_s,
            link_bytes_per_s=link_bytes_per_s,
            # True: balance the grid's cuts for the edges this cluster starts.
            balance=(max(1, edges) if balance is True else int(balance or 0)),
        )
        self._own_cache = cache_dir is None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.thresh, self.nms, self.letterbox = thresh, nms, letterbox
        self.start_timeout_s = start_timeout_s
        self.frame_timeout_s = frame_timeout_s
        self.log_level = log_level
        self.address: str | None = None
        self.net: Any = None
        self.spec: dict[str, Any] | None = None
        self._client: _Client | None = None
        self.gateway_process: Any = None
        self.edge_processes: list[Any] = []
        self._started = False

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "Cluster":
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> "Cluster":
        """Start the gateway and the edges, and wait until every edge is ready."""
        from deepthings.runtime.model import describe_model

        self.desc = describe_model(self.model, self.weights, self.random_seed)
        if self.cache_dir is None:
            self.cache_dir = Path(tempfile.mkdtemp(prefix="deepthings-cache-"))
        self._started = True
        try:
            key = None if self.key is None else (self.key.public, self.key.secret)
            self.gateway_process = ChildProcess(
                {"role": "gateway", "desc": self.desc, "grid": self.grid, "fused_layers": self.fused_layers,
                 "config": self.gateway_config, "key": key, "log_level": self.log_level},
                name="gateway",
                capture_stdout=True,
            )
            deadline = time.monotonic() + self.start_timeout_s
            line = None
            while line is None:
                line = self.gateway_process.read_line(0.2)
                if line is None and not self.gateway_process.is_alive():
                    raise ClusterError(f"the gateway process exited with code {self.gateway_process.exitcode}")
                if time.monotonic() > deadline:
                    raise ClusterError("the gateway did not start in time")
            if not line.startswith("READY "):
                raise ClusterError(f"the gateway could not start: {line.removeprefix('ERROR ')}")
            self.address = line.split()[1]
            for i in range(self.n_edges):
                self.add_edge(source=i < self.sources)
            self._connect_client(deadline - time.monotonic())
            self.wait_for_edges(self.n_edges, max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.close()
            raise
        return self

    def add_edge(self, source: bool = False, name: str | None = None) -> Any:
        """Start one more edge process (it joins the running cluster); returns the process."""
        if self.address is None or self.gateway_process is None:
            raise ClusterError("add_edge needs a cluster started by this object")
        index = len(self.edge_processes)
        config = EdgeConfig(
            gateway=self.address,
            name=name or f"edge{index}",
            source=source,
            cache_dir=self.cache_dir or Path(tempfile.gettempdir()),
            threads=self.threads_per_edge,
            advertise_host="127.0.0.1",
        )
        key = None if self.key is None else (self.key.public, self.key.secret)
        proc = ChildProcess({"role": "edge", "config": config, "key": key, "log_level": self.log_level}, name=config.name)
        self.edge_processes.append(proc)
        return proc

    def wait_for_edges(self, count: int, timeout_s: float = 60.0) -> list[dict[str, Any]]:
        """Block until ``count`` edges are ready; returns the gateway's edge list."""
        deadline = time.monotonic() + timeout_s
        while True:
            edges = self.status()["edges"]
            if sum(1 for e in edges if e.get("ready")) >= count:
                return edges
            if time.monotonic() > deadline:
                raise ClusterError(f"only {sum(1 for e in edges if e.get('ready'))} of {count} edges became ready")
            dead = [p for p in self.edge_processes if p.exitcode not in (None, 0) and p.exitcode != -signal.SIGKILL]
            if dead:
                raise ClusterError(f"edge process {dead[0].name} exited with code {dead[0].exitcode}")
            time.sleep(0.1)

    def status(self) -> dict[str, Any]:
        """The gateway's view: {"edges": [...], "stats": {...}, "frames_in_flight": n}."""
        if self._client is None:
            raise ClusterError("the cluster is not running")
        msg = self._client.status()
        return dict(msg.fields)

    def _connect_client(self, timeout_s: float) -> None:
        assert self.address is not None
        self._client = _Client(self.address, self.key, max(1.0, timeout_s))
        assert self._client.welcome is not None
        self.spec = self._client.welcome["model"]
        if self.net is None and self.spec.get("kind") == "darknet":
            from deepthings.darknet import network_from_cfg_text

            entry = next(f for f in self.spec["files"] if "client" in f.get("for", []))
            text = self._client.fetch_file(entry["sha"], 30.0).decode()
            self.net = network_from_cfg_text(text, random_seed=None, name=self.spec.get("name", "model.cfg"))

    @classmethod
    def connect(cls, address: str, key: ClusterKey | str | os.PathLike[str] | None = None, *,
                timeout_s: float = 10.0, thresh: float = 0.25, nms: float = 0.45, letterbox: bool = False) -> "Cluster":
        """A client of a running cluster at ``host:port`` (``key``: the cluster key file)."""
        self = cls.__new__(cls)
        cls.__init__(self, edges=0, key=key, secure=key is not None, thresh=thresh, nms=nms, letterbox=letterbox)
        self.address = transport.tcp_address(address)
        self._started = True
        self._connect_client(timeout_s)
        return self

    def kill_edge(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to edge ``index`` (tests use SIGKILL: a crash without goodbye)."""
        proc = self.edge_processes[index]
        if proc.pid is not None and proc.is_alive():
            os.kill(proc.pid, sig)
            proc.join(timeout=10)

    def close(self) -> None:
        """Stop every process this cluster started (also after a failure) and remove temp files."""
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
            self._client = None
        procs = [p for p in [*self.edge_processes, self.gateway_process] if p is not None]
        for p in procs:
            p.stop()  # EOF on stdin: a clean goodbye
        deadline = time.monotonic() + 10
        for p in procs:
            p.join(timeout=max(0.1, deadline - time.monotonic()))
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=3)
            if p.is_alive():
                p.kill()
                p.join(timeout=3)
            p.close()
        if self._own_cache and self.cache_dir is not None and self.cache_dir.exists():
            shutil.rmtree(self.cache_dir, ignore_errors=True)
        self._started = False

    @property
    def pids(self) -> dict[str, int]:
        """Process ids: ``gateway`` and ``edge<i>``."""
        out = {}
        if self.gateway_process is not None and self.gateway_process.pid:
            out["gateway"] = self.gateway_process.pid
        for i, p in enumerate(self.edge_processes):
            if p.pid:
                out[f"edge{i}"] = p.pid
        return out

    # ------------------------------------------------------------------ inference
    def _input(self, image: Any) -> tuple[np.ndarray, tuple[int, int]]:
        shape = tuple(self.spec.get("input_shape") or self.spec.get("shape") or ()) if self.spec else ()
        if isinstance(image, np.ndarray) and image.dtype == np.float32 and tuple(image.shape) == shape:
            return np.ascontiguousarray(image), (shape[2], shape[1])
        if self.net is None:
            raise ClusterError(f"input must be a float32 array of shape {shape}")
        from deepthings.engine.preprocess import load_image
        from deepthings.engine.preprocess import preprocess

        rgb = load_image(image)  # ImageError for missing/broken images
        _, net_h, net_w = self.net.input_shape
        x = preprocess(rgb, (net_w, net_h), letterbox=self.letterbox)
        return np.ascontiguousarray(x, np.float32), (rgb.shape[1], rgb.shape[0])

    def _result(self, msg: Message, image_wh: tuple[int, int], t0: float, t_pre: float) -> InferenceResult:
        names = msg["names"]
        if len(names) != len(msg.arrays):
            raise ProtocolError(f"gateway: DONE has {len(names)} names for {len(msg.arrays)} arrays")
        outputs: dict[int, np.ndarray] = {}
        for name, arr in zip(names, msg.arrays):
            if not name.startswith("layer") or not name[5:].isdigit():
                raise ProtocolError(f"gateway: DONE output name {name!r}")
            outputs[int(name[5:])] = arr
        trace = Trace.from_wire(msg["trace"])
        t_done = time.perf_counter()
        detections = None
        heads = list(getattr(self.net, "head_layers", []) or []) if self.net is not None else []
        if heads and all(h in outputs for h in heads):
            from deepthings.detect import decode_outputs

            detections = decode_outputs(self.net, {h: outputs[h] for h in heads}, image_wh,
                                        thresh=self.thresh, nms=self.nms, letterbox=self.letterbox)
        trace.stages.update(preprocess_s=t_pre, roundtrip_s=t_done - t0 - t_pre, decode_s=time.perf_counter() - t_done)
        trace.stages["total_s"] = time.perf_counter() - t0
        return InferenceResult(outputs[max(outputs)], outputs, detections, trace)

    def infer(self, image: Any) -> InferenceResult:
        """Run one frame on the cluster (image path, PIL image, HxWx3 uint8, or the network input)."""
        return self.infer_many([image], window=1)[0]

    def infer_many(self, images: Sequence[Any] | Iterable[Any], window: int = 4) -> list[InferenceResult]:
        """Run a stream of frames with up to ``window`` in flight (pipelining); results in input order."""
        return list(self.stream(images, window))

    def stream(self, images: Iterable[Any], window: int = 4) -> Iterator[InferenceResult]:
        """Like :meth:`infer_many`, but yields each result (in input order) as soon as it and all
        earlier ones are done; ``images`` may be an endless iterator (a camera)."""
        if self._client is None:
            raise ClusterError("the cluster is not running (use it as a context manager or call start())")
        client = self._client
        done: dict[int, InferenceResult] = {}
        inflight: dict[int, tuple[int, tuple[int, int], float, float]] = {}
        it = iter(enumerate(images))
        exhausted = False
        next_out = 0
        while not exhausted or inflight or done:
            while not exhausted and len(inflight) + len(done) < max(1, window):
                try:
                    idx, image = next(it)
                except StopIteration:
                    exhausted = True
                    break
                t0 = time.perf_counter()
                x, wh = self._input(image)
                t_pre = time.perf_counter() - t0
                ref = client.submit(x)
                inflight[ref] = (idx, wh, t0, t_pre)
            while next_out in done:
                yield done.pop(next_out)
                next_out += 1
            if not inflight:
                if exhausted and not done:
                    return
                continue
            msg = next(client.wait(list(inflight), self.frame_timeout_s))
            idx, wh, t0, t_pre = inflight.pop(msg["ref"])
            done[idx] = self._result(msg, wh, t0, t_pre)
