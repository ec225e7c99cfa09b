"""Detection heads -> objects: region/yolo decoding, class-wise NMS, drawing and JSON.

``deepthings.detect`` is both this package and the one-call detector: calling the module,
``deepthings.detect(net, image)``, is :func:`deepthings.detect.api.detect`.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from deepthings.detect.api import detect as _detect
from deepthings.detect.api import network_input
from deepthings.detect.decode import HeadSpec, decode_outputs, decode_raw, head_specs
from deepthings.detect.detection import Detection, from_json, to_json
from deepthings.detect.draw import draw, save_annotated
from deepthings.detect.labels import class_names_for, read_names
from deepthings.detect.nms import iou_matrix, nms, nms_per_class

__all__ = [
    "Detection",
    "HeadSpec",
    "class_names_for",
    "decode_outputs",
    "decode_raw",
    "detect",
    "draw",
    "from_json",
    "head_specs",
    "iou_matrix",
    "network_input",
    "nms",
    "nms_per_class",
    "read_names",
    "save_annotated",
    "to_json",
]


class _CallableModule(types.ModuleType):
    """Lets ``deepthings.detect(...)`` work whether it resolves to the package or the function.

    ``import deepthings.detect`` (done by the runtime) binds the *package* to
    ``deepthings.detect``; the lazy export in ``deepthings/__init__.py`` binds
    ``getattr(package, "detect")``. Making both the same callable keeps the contract
    ``deepthings.detect(net, image)`` and ``deepthings.detect.decode_outputs(...)`` true.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> list[Detection]:
        return _detect(*args, **kwargs)


_module = sys.modules[__name__]
_module.__class__ = _CallableModule
_CallableModule.__call__.__doc__ = _detect.__doc__
detect = _module  # the callable package itself; see _CallableModule
