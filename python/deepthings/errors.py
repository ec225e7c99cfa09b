"""Errors a user can cause. Every message names the file, line, layer or peer at fault."""

from __future__ import annotations


class DeepthingsError(Exception):
    """Base class of every error deepthings raises on purpose."""


class CfgError(DeepthingsError, ValueError):
    """A Darknet .cfg file is malformed (message names file and line)."""


class WeightsError(DeepthingsError, ValueError):
    """A .weights file does not match its cfg (message gives expected vs actual bytes)."""


class ShapeError(DeepthingsError, ValueError):
    """An array has the wrong shape, dtype or layout for the layer or network it is fed to."""


class ImageError(DeepthingsError, ValueError):
    """An input image is missing, unreadable, empty or of an unsupported kind."""


class PlanError(DeepthingsError, ValueError):
    """A network block cannot be tiled as requested (message names the layer)."""


class ProtocolError(DeepthingsError):
    """A runtime message is malformed or unexpected (message names the peer and type)."""


class ClusterError(DeepthingsError, RuntimeError):
    """The distributed runtime cannot do what was asked (unreachable peer, bad key, timeout)."""


class EmulationError(DeepthingsError, RuntimeError):
    """The emulated testbed cannot be set up (not root, missing tools, ...)."""
