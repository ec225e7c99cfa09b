"""The distributed runtime: a gateway and edge devices on ZeroMQ running FTP tiles.

    protocol.py   message types, fields, version, codec (one source of truth)
    transport.py  sockets, CURVE, send/receive        keys.py     the cluster key pair
    scheduler.py  pure decisions: membership, victims, frames/tiles, queues, events
    workload.py   what runs: FTP plans (and a synthetic stencil for runtime tests)
    gateway.py    ROUTER: membership, stealing broker, re-issue, WST-S cache, merge
    edge.py       DEALER + steal server: partitions, runs and steals tiles
    cluster.py    the Python API: Cluster(...) / Cluster.connect(...)
"""

from __future__ import annotations

from deepthings.runtime.cluster import Cluster
from deepthings.runtime.keys import ClusterKey
from deepthings.runtime.protocol import PROTOCOL_VERSION
from deepthings.runtime.scheduler import SCHEDULES
from deepthings.runtime.trace import InferenceResult, Trace

__all__ = ["Cluster", "ClusterKey", "InferenceResult", "PROTOCOL_VERSION", "SCHEDULES", "Trace"]
