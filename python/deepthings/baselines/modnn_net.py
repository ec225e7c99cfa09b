"""MoDNN over the network: a gateway (ZeroMQ ROUTER) and workers (DEALER), one per device.

The runtime's protocol has no message for MoDNN's per-layer exchange, so the baseline carries
its own small one, framed like the runtime's (a msgpack header, then raw float32 frames):

    worker  -> gateway  hello    {speed}
    gateway -> worker   setup    {index, speeds, fused, cfg_text, weights_path|seed, engine, threads}
    worker  -> gateway  ready    {}
    gateway -> worker   input    {frame, rows}                 [input rows need[0][d]]
    worker  -> gateway  boundary {frame, layer, ranges}        [one array per range]
    gateway -> worker   halo     {frame, layer, ranges}        [one array per range]
    worker  -> gateway  result   {frame, compute_s, wait_s}    [its strip of layer L-1]
    gateway -> worker   stop     {}

Work sharing: the gateway pushes every device its strips; each layer is a barrier (the gateway
forwards halos once all boundaries of that layer are in), as in MoDNN.

    python -m deepthings.baselines.modnn_net worker --gateway 10.200.0.1:5600
    python -m deepthings.baselines.modnn_net gateway --bind 10.200.0.1:5600 --workers 4 \
        --cfg yolov2.cfg --seed 1 --fused 16 --frames 3      # prints one JSON line of results
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Sequence

import msgpack
import numpy as np
import zmq

from deepthings.baselines.modnn import ModnnPlan, modnn_plan
from deepthings.errors import ClusterError, ProtocolError
from deepthings.data import camera_frame
from deepthings.runtime.protocol import Exact8, exact8
from deepthings.testbed.gate import wait_for_go


def _send(sock: zmq.Socket, header: dict, arrays: Sequence[Any] = (), identity: bytes | None = None) -> int:
    # Exact8 arrays (an 8-bit image's strips) travel as their codes, as in the runtime protocol.
    coded = [i for i, a in enumerate(arrays) if isinstance(a, Exact8)]
    header = dict(header, a=[list(a.shape) for a in arrays], q=coded)
    frames: list[Any] = [msgpack.packb(header)]
    frames += [a.codes if isinstance(a, Exact8) else np.ascontiguousarray(a, dtype=np.float32) for a in arrays]
    if identity is not None:
        frames.insert(0, identity)
    sock.send_multipart(frames, copy=False)
    return sum(a.nbytes for a in arrays)


def _recv(sock: zmq.Socket, router: bool, timeout_s: float | None, peer: str) -> tuple[bytes | None, dict, list[np.ndarray]]:
    if timeout_s is not None and not sock.poll(int(timeout_s * 1000)):
        raise ClusterError(f"MoDNN: no message from {peer} within {timeout_s:.0f}s")
    frames = sock.recv_multipart(copy=False)
    ident = None
    if router:
        ident, frames = frames[0].bytes, frames[1:]
    try:
        header = msgpack.unpackb(frames[0].bytes)
        shapes = header["a"]
        if len(shapes) != len(frames) - 1:
            raise ValueError(f"{len(shapes)} shapes for {len(frames) - 1} arrays")
        coded = set(header.get("q", []))
        arrays = [
            Exact8(np.frombuffer(f.buffer, dtype=np.uint8).reshape(s)).to_float() if i in coded
            else np.frombuffer(f.buffer, dtype=np.float32).reshape(s)
            for i, (f, s) in enumerate(zip(frames[1:], shapes))
        ]
    except (ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"MoDNN: malformed message from {peer}: {exc}") from None
    return ident, header, arrays


def load_model(cfg_text: str, *, weights_path: str | None, seed: int | None, upto: int, name: str = "<modnn>") -> Any:
    """The network every MoDNN role builds: same cfg text, weights from a file or a seed."""
    from deepthings.darknet import network_from_cfg_text

    weights = None
    if weights_path is not None:
        with open(weights_path, "rb") as f:
            weights = f.read()
        seed = None
    return network_from_cfg_text(cfg_text, random_seed=seed, weights=weights, upto=upto, name=name)


def run_worker(gateway: str, speed: float = 1.0, timeout_s: float = 600.0) -> None:
    """Serve as one MoDNN device until the gateway says stop."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://{gateway}")
    try:
        _send(sock, {"t": "hello", "speed": speed})
        _, setup, _ = _recv(sock, False, timeout_s, f"gateway {gateway}")
        if setup.get("t") != "setup":
            raise ProtocolError(f"MoDNN: expected setup from gateway {gateway}, got {setup.get('t')!r}")
        if setup.get("threads"):
            _set_threads(int(setup["threads"]))
        net = load_model(setup["cfg_text"], weights_path=setup.get("weights_path"), seed=setup.get("seed"),
                         upto=setup["fused"])
        plan = modnn_plan(net, setup["fused"], setup["speeds"])
        d, engine = int(setup["index"]), setup.get("engine")
        _send(sock, {"t": "ready"})
        while True:
            _, msg, arrays = _recv(sock, False, timeout_s, f"gateway {gateway}")
            if msg["t"] == "stop":
                return
            if msg["t"] != "input":
                raise ProtocolError(f"MoDNN: unexpected {msg['t']!r} from gateway {gateway}")
            _serve_frame(sock, plan, d, engine, int(msg["frame"]), arrays[0], timeout_s, gateway)
    finally:
        sock.close(0)


def _serve_frame(sock: zmq.Socket, plan: ModnnPlan, d: int, engine: Any, frame: int, x: np.ndarray,
                 timeout_s: float, gateway: str) -> None:
    compute = wait = 0.0
    t = time.perf_counter()
    own = plan.run_strip(0, d, x, engine) if not plan.steps[0][d].empty else _empty(plan, 0)
    compute += time.perf_counter() - t
    for layer in range(plan.fused_layers - 1):
        plo = plan.steps[layer][d].out_rows[0]
        ranges = plan.exports(layer, d)
        _send(sock, {"t": "boundary", "frame": frame, "layer": layer, "ranges": ranges},
              [own[:, lo - plo : hi - plo] for lo, hi in ranges])
        t = time.perf_counter()
        _, msg, arrays = _recv(sock, False, timeout_s, f"gateway {gateway}")
        wait += time.perf_counter() - t
        if msg["t"] != "halo" or msg["frame"] != frame or msg["layer"] != layer:
            raise ProtocolError(f"MoDNN: expected halo {frame}/{layer} from gateway {gateway}, got {msg}")
        t = time.perf_counter()
        if plan.steps[layer + 1][d].empty:
            own = _empty(plan, layer + 1)
        else:
            received = {tuple(r): a for r, a in zip(msg["ranges"], arrays)}
            own = plan.run_strip(layer + 1, d, plan.assemble_input(layer + 1, d, own, received), engine)
        compute += time.perf_counter() - t
    _send(sock, {"t": "result", "frame": frame, "compute_s": compute, "wait_s": wait}, [own])


def _empty(plan: ModnnPlan, layer: int) -> np.ndarray:
    c, _h, w = plan.net.layers[layer].out_shape
    return np.empty((c, 0, w), np.float32)


def _set_threads(n: int) -> None:
    try:
        import deepthings

        deepthings.set_num_threads(n)
    except (ImportError, AttributeError):
        pass  # reference engine only: NumPy's own threads


class ModnnGateway:
    """Gateway side: waits for `workers` devices, then runs frames through them with BODP."""

    def __init__(self, bind: str, workers: int, *, cfg_path: str, fused: int, weights_path: str | None = None,
                 seed: int | None = 0, engine: str | None = None, threads: int = 1, speeds: Sequence[float] | None = None,
                 timeout_s: float = 600.0):
        with open(cfg_path) as f:
            self.cfg_text = f.read()
        self.net = load_model(self.cfg_text, weights_path=weights_path, seed=seed, upto=0, name=cfg_path)
        self.workers, self.fused, self.engine, self.timeout_s = workers, fused, engine, timeout_s
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(f"tcp://{bind}")
        self.peers: list[bytes] = []
        hello_speeds: list[float] = []
        deadline = time.monotonic() + timeout_s
        while len(self.peers) < workers:
            ident, msg, _ = _recv(self.sock, True, max(0.1, deadline - time.monotonic()), "a worker")
            if msg.get("t") == "hello" and ident not in self.peers:
                self.peers.append(ident)
                hello_speeds.append(float(msg.get("speed", 1.0)))
        self.speeds = list(speeds) if speeds is not None else hello_speeds
        self.plan = modnn_plan(self.net, fused, self.speeds)
        for i, ident in enumerate(self.peers):
            _send(self.sock, {"t": "setup", "index": i, "speeds": self.speeds, "fused": fused,
                              "cfg_text": self.cfg_text, "weights_path": weights_path, "seed": seed,
                              "engine": engine, "threads": threads}, identity=ident)
        ready = set()
        while len(ready) < workers:
            ident, msg, _ = _recv(self.sock, True, timeout_s, "a worker")
            if msg.get("t") == "ready":
                ready.add(ident)
        self.frame = 0

    def infer(self, x: np.ndarray) -> tuple[np.ndarray, dict]:
        """Output of layer fused-1 for network input `x`, and a trace of where the time went."""
        plan, frame = self.plan, self.frame
        self.frame += 1
        t0 = time.perf_counter()
        sent = recv = 0
        coded = exact8(x)
        for d, ident in enumerate(self.peers):
            lo, hi = plan.input_rows(d)
            strip = coded[:, lo:hi] if coded is not None else x[:, lo:hi]
            sent += _send(self.sock, {"t": "input", "frame": frame}, [strip], identity=ident)
        index = {ident: d for d, ident in enumerate(self.peers)}
        gateway_s = 0.0
        for layer in range(plan.fused_layers - 1):
            c, h, w = plan.net.layers[layer].out_shape
            rows = np.empty((c, h, w), np.float32)
            got = 0
            while got < len(self.peers):
                ident, msg, arrays = _recv(self.sock, True, self.timeout_s, "a worker")
                if msg.get("t") != "boundary" or msg.get("frame") != frame or msg.get("layer") != layer:
                    raise ProtocolError(f"MoDNN: worker {index.get(ident)} sent {msg.get('t')} out of turn")
                t = time.perf_counter()
                for (lo, hi), a in zip(msg["ranges"], arrays):
                    rows[:, lo:hi] = a
                    recv += a.nbytes
                gateway_s += time.perf_counter() - t
                got += 1
            for d, ident in enumerate(self.peers):
                ranges = plan.imports(layer, d)
                sent += _send(self.sock, {"t": "halo", "frame": frame, "layer": layer, "ranges": ranges},
                              [rows[:, lo:hi] for lo, hi in ranges], identity=ident)
        strips: list[np.ndarray | None] = [None] * len(self.peers)
        per_device = [{} for _ in self.peers]
        while any(s is None for s in strips):
            ident, msg, arrays = _recv(self.sock, True, self.timeout_s, "a worker")
            d = index[ident]
            if msg.get("t") != "result" or msg.get("frame") != frame:
                raise ProtocolError(f"MoDNN: worker {d} sent {msg.get('t')} instead of its result")
            strips[d] = arrays[0]
            recv += arrays[0].nbytes
            per_device[d] = {"compute_s": msg["compute_s"], "wait_s": msg["wait_s"]}
        t = time.perf_counter()
        out = plan.stitch(strips)  # type: ignore[arg-type]
        gateway_s += time.perf_counter() - t
        latency = time.perf_counter() - t0
        return out, {"latency_s": latency, "bytes_sent": sent, "bytes_received": recv,
                     "gateway_s": gateway_s, "devices": per_device}

    def close(self) -> None:
        for ident in self.peers:
            try:
                _send(self.sock, {"t": "stop"}, identity=ident)
            except zmq.ZMQError:
                pass
        time.sleep(0.05)
        self.sock.close(0)

    def __enter__(self) -> "ModnnGateway":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deepthings.baselines.modnn_net", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="role", required=True)
    w = sub.add_parser("worker", help="serve as one MoDNN device")
    w.add_argument("--gateway", required=True, help="HOST:PORT of the MoDNN gateway")
    w.add_argument("--speed", type=float, default=1.0, help="relative speed for the biased partition")
    g = sub.add_parser("gateway", help="run frames through MoDNN workers and print JSON results")
    g.add_argument("--bind", required=True, help="HOST:PORT to listen on")
    g.add_argument("--workers", type=int, required=True)
    g.add_argument("--cfg", required=True)
    g.add_argument("--weights", default=None)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--fused", type=int, default=16)
    g.add_argument("--frames", type=int, default=3)
    g.add_argument("--engine", default=None, help="native (default) or reference")
    g.add_argument("--threads", type=int, default=1)
    g.add_argument("--check", action="store_true", help="compare with a single-device forward pass")
    g.add_argument("--ready-file", default=None, help="touched once every worker is set up")
    g.add_argument("--start-file", default=None, help="wait for this file before the first frame")
    args = p.parse_args(argv)
    if args.role == "worker":
        run_worker(args.gateway, args.speed)
        return 0
    with ModnnGateway(args.bind, args.workers, cfg_path=args.cfg, fused=args.fused, weights_path=args.weights,
                      seed=None if args.weights else args.seed, engine=args.engine, threads=args.threads) as gw:
        x = camera_frame(gw.net.input_shape)  # the same camera frame as the FTP runs
        wait_for_go(args.ready_file, args.start_file, gw.timeout_s, "MoDNN")
        traces = []
        t0 = time.perf_counter()
        for _ in range(args.frames):
            out, trace = gw.infer(x)
            trace["done_s"] = time.perf_counter() - t0  # when this frame finished, from the first start
            traces.append(trace)
        result: dict[str, Any] = {"traces": traces, "speeds": gw.speeds}
        if args.check:
            net = load_model(gw.cfg_text, weights_path=args.weights, seed=None if args.weights else args.seed,
                             upto=args.fused)
            ref = net.forward(x, end=args.fused, engine=args.engine)
            result["max_abs_err"] = float(np.abs(out - ref).max())
            result["max_abs_ref"] = float(np.abs(ref).max())
    print(json.dumps(result))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
