"""deepthings: run CNNs distributed over a cluster of edge devices (Fused Tile Partitioning).

The data flow is the package layout::

    darknet/   cfg + weights -> Network (layer registry, shapes, receptive fields)
    engine/    Network.forward: native C++ engine (default) and the NumPy reference
    ftp/       image -> N x M tiles of the first L layers -> stitched feature map
    runtime/   gateway + edge devices: work stealing / sharing, transport, fault tolerance
    detect/    region/yolo heads -> detections (NMS, drawing)

Three lines::

    import deepthings
    with deepthings.Cluster("default", edges=3, grid=(3, 3), fused_layers=16) as c:
        print(c.infer("dog.jpg").detections)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> module that defines it. Imported lazily so `import deepthings` stays cheap
# (the runtime pulls in zmq, the CLI pulls in rich).
_EXPORTS = {
    "load_darknet": "deepthings.darknet",
    "write_random_weights": "deepthings.darknet",
    "Network": "deepthings.engine.network",
    "load_image": "deepthings.engine.preprocess",
    "preprocess": "deepthings.engine.preprocess",
    "set_num_threads": "deepthings.engine.native",
    "get_num_threads": "deepthings.engine.native",
    "FTP": "deepthings.ftp",
    "detect": "deepthings.detect",
    "Detection": "deepthings.detect",
    "default_model": "deepthings.data",
    "Cluster": "deepthings.runtime.cluster",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'deepthings' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
