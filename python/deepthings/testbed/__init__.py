"""Emulated edge testbed: devices as network namespaces on a shaped bridge, CPU-capped by cgroups.

Public API: `Testbed`, `DeviceSpec`, `LinkSpec`, `device_specs`, `cleanup_leftovers`.
"""

from deepthings.testbed.cleanup import cleanup_leftovers, leftovers
from deepthings.testbed.spec import DeviceSpec, LinkSpec, device_specs
from deepthings.testbed.testbed import Testbed, TestbedInterrupted, require_root

__all__ = [
    "DeviceSpec", "LinkSpec", "Testbed", "TestbedInterrupted", "cleanup_leftovers",
    "device_specs", "leftovers", "require_root",
]
