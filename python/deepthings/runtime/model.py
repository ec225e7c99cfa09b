"""What the gateway ships and how each role rebuilds it: model description -> files by SHA-256
-> workload. The gateway holds the whole network; edges get the cfg and only the fused block's
weights (``upto=L``); clients get the cfg (to decode detections)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from deepthings.errors import ClusterError
from deepthings.runtime.gateway import ModelFiles
from deepthings.runtime.scheduler import REUSE_SCHEDULES
from deepthings.runtime.workload import PUBLISH_MODES, FTPWorkload, SyntheticWorkload, Workload

CFG_NAME = "model.cfg"
BLOCK_WEIGHTS_NAME = "block.weights"


def describe_model(model: Any, weights: str | os.PathLike[str] | None = None, random_seed: int | None = None) -> dict[str, Any]:
    """A small picklable description of ``model`` ("default", a cfg path, a Network, or a
    ``{"kind": "synthetic", ...}`` spec) that a gateway process can load from."""
    if isinstance(model, dict):
        return dict(model)
    if isinstance(model, str) and model == "default":
        from deepthings.data import default_cfg_path, default_weights_path

        return {"kind": "darknet", "cfg_path": str(default_cfg_path()), "weights_path": str(default_weights_path())}
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise ClusterError(f"{path}: model cfg not found")
        desc: dict[str, Any] = {"kind": "darknet", "cfg_path": str(path)}
        if weights is not None:
            desc["weights_path"] = str(weights)
        else:
            desc["random_seed"] = 0 if random_seed is None else int(random_seed)
        return desc
    if hasattr(model, "layers") and hasattr(model, "cfg_text"):
        from deepthings.darknet import serialize_weights

        if model.cfg_text is None:
            raise ClusterError("this Network has no cfg text; load it with load_darknet or network_from_cfg_text")
        return {"kind": "darknet", "cfg_text": model.cfg_text, "weights_bytes": serialize_weights(model), "name": model.cfg_path}
    raise ClusterError(f"model must be 'default', a cfg path or a Network, not {type(model).__name__}")


def load_network(desc: dict[str, Any], *, with_weights: bool = True) -> Any:
    """The full Network a description names (``with_weights=False``: shapes only)."""
    from deepthings.darknet import load_darknet, network_from_cfg_text

    if "cfg_text" in desc:
        if not with_weights:
            return network_from_cfg_text(desc["cfg_text"], random_seed=None, name=desc.get("name", "<cfg>"))
        return network_from_cfg_text(desc["cfg_text"], weights=desc.get("weights_bytes"), name=desc.get("name", "<cfg>"),
                                     random_seed=None if desc.get("weights_bytes") else 0)
    if not with_weights:
        return load_darknet(desc["cfg_path"])
    if desc.get("weights_path"):
        return load_darknet(desc["cfg_path"], desc["weights_path"])
    return load_darknet(desc["cfg_path"], random_seed=desc.get("random_seed", 0))


def _entry(name: str, data: bytes, roles: list[str], files: dict[str, tuple[str, bytes]]) -> dict[str, Any]:
    sha = hashlib.sha256(data).hexdigest()
    files[sha] = (name, data)
    return {"sha": sha, "name": name, "for": roles, "bytes": len(data)}


def prepare(desc: dict[str, Any], grid: tuple[int, int], fused_layers: int | None, schedule: str,
            balance: int = 0) -> tuple[Workload, ModelFiles]:
    """Gateway side: its own workload and the files + spec it ships to edges and clients.

    ``balance=K`` (K >= 1) places the grid's cell boundaries so that K equal devices finish
    their tiles together (``deepthings.ftp.balance``), one of them being the frame's data
    source except under work sharing (``wsh``: the gateway holds the tiles); the cuts travel in
    the spec."""
    if desc.get("kind") == "synthetic":
        wl = SyntheticWorkload(tuple(desc["shape"]), tuple(grid), desc.get("passes", 2), desc.get("compute_s", 0.0))
        return wl, ModelFiles(wl.spec())
    from deepthings.darknet import serialize_weights

    net = load_network(desc)
    L = fused_layers if fused_layers is not None else _default_fused(net)
    reuse = schedule in REUSE_SCHEDULES
    cuts = None
    if balance:
        from deepthings.ftp.balance import SOURCE_LOAD, balanced_cuts

        source = None if schedule == "wsh" else SOURCE_LOAD
        cuts = balanced_cuts(net, grid, L, int(balance), reuse=reuse, source=source)
    publish = "core" if schedule == "wst-s" else "all"
    wl = FTPWorkload(net, grid, L, reuse=reuse, cuts=cuts, publish=publish)
    files: dict[str, tuple[str, bytes]] = {}
    entries = [
        _entry(CFG_NAME, net.cfg_text.encode(), ["edge", "client"], files),
        _entry(BLOCK_WEIGHTS_NAME, serialize_weights(net, upto=wl.fused_layers), ["edge"], files),
    ]
    spec = {
        "kind": "darknet",
        "name": net.name,
        "grid": list(wl.grid),
        "fused_layers": wl.fused_layers,
        "reuse": schedule in REUSE_SCHEDULES,
        "publish": publish,
        "cuts": None if wl.plan.cuts is None else [list(b) for b in wl.plan.cuts],
        "input_shape": list(net.input_shape),
        "files": entries,
    }
    return wl, ModelFiles(spec, files)


def _default_fused(net: Any) -> int:
    """Without an explicit L: as many leading layers as FTP can tile (at most 16, as in the paper)."""
    from deepthings.darknet.layers import HEAD_TYPES

    n = 0
    for layer in net.layers[:16]:
        if layer.spatial.kind == "global" or layer.type in HEAD_TYPES:
            break
        n += 1
    if n == 0:
        raise ClusterError(f"{net.cfg_path}: layer 0 ({net.layers[0].type}) cannot be tiled")
    return n


def build_workload(spec: dict[str, Any], files: dict[str, Path]) -> Workload:
    """Edge side: rebuild the workload from the gateway's spec and the verified cached files."""
    if spec.get("kind") == "synthetic":
        return SyntheticWorkload.from_spec(spec)
    if spec.get("kind") != "darknet":
        raise ClusterError(f"unknown model kind {spec.get('kind')!r}")
    from deepthings.darknet import network_from_cfg_text

    L = int(spec["fused_layers"])
    net = network_from_cfg_text(
        files[CFG_NAME].read_text(), weights=files[BLOCK_WEIGHTS_NAME].read_bytes(), upto=L, name=spec.get("name", CFG_NAME)
    )
    publish = spec.get("publish", "all")
    if publish not in PUBLISH_MODES:
        raise ClusterError(f"model spec: unknown publish mode {publish!r}")
    return FTPWorkload(net, tuple(spec["grid"]), L, reuse=bool(spec.get("reuse")), cuts=spec.get("cuts"),
                       publish=publish)
