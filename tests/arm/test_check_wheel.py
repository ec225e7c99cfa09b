"""The wheel audit (tools/arm/check_wheel.py) refuses wheels that do not hold what their
name promises; on the host, against wheels assembled from this machine's own module."""

from __future__ import annotations

import importlib.util
import sys
import zipfile
from pathlib import Path

import pytest

from deepthings import _core

_TOOL = Path(__file__).resolve().parents[2] / "tools" / "arm" / "check_wheel.py"
if not _TOOL.is_file():
    pytest.skip("tools/arm/check_wheel.py is not in this copy of the tests", allow_module_level=True)
_spec = importlib.util.spec_from_file_location("check_wheel", _TOOL)
check_wheel = importlib.util.module_from_spec(_spec)
sys.modules["check_wheel"] = check_wheel  # dataclasses look their module up there
_spec.loader.exec_module(check_wheel)

NAME = "deepthings-0.1.0-cp311-cp311-manylinux_2_36_aarch64.whl"
GOOD_META = "Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp311-cp311-manylinux_2_36_aarch64\n"


def _wheel(tmp_path: Path, name: str = NAME, meta: str = GOOD_META, so: bytes | None = None,
           so_name: str = "deepthings/_core.cpython-311-aarch64-linux-gnu.so") -> Path:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("deepthings/__init__.py", "")
        zf.writestr("deepthings/data/yolo-fastest-1.1.cfg", "[net]\n")
        zf.writestr("deepthings-0.1.0.dist-info/WHEEL", meta)
        zf.writestr(so_name, so if so is not None else Path(_core.__file__).read_bytes())
    return path


def test_wrong_names_and_tags_are_refused(tmp_path: Path) -> None:
    with pytest.raises(check_wheel.WheelError, match="not a cp311-cp311-manylinux"):
        check_wheel.check_wheel(_wheel(tmp_path, name="deepthings-0.1.0-cp311-cp311-linux_aarch64.whl"))
    with pytest.raises(check_wheel.WheelError, match="tag says glibc"):
        check_wheel.check_wheel(_wheel(tmp_path, name=NAME.replace("2_36", "2_17")))
    with pytest.raises(check_wheel.WheelError, match="WHEEL metadata"):
        check_wheel.check_wheel(_wheel(tmp_path, meta=GOOD_META.replace("aarch64", "x86_64")))
    with pytest.raises(check_wheel.WheelError, match="expected exactly"):
        check_wheel.check_wheel(_wheel(tmp_path, so_name="deepthings/_core.cpython-311-x86_64-linux-gnu.so"))


def test_a_host_module_in_an_arm_wheel_is_refused(tmp_path: Path) -> None:
    """This machine's own _core (x86-64 here) named as an aarch64 module: wrong ELF machine."""
    if Path(_core.__file__).read_bytes()[18:20] == (183).to_bytes(2, "little"):
        pytest.skip("the host module is itself aarch64")
    with pytest.raises(check_wheel.WheelError, match="e_machine"):
        check_wheel.check_wheel(_wheel(tmp_path))
    with pytest.raises(check_wheel.WheelError, match="ELF class"):
        check_wheel.check_wheel(_wheel(tmp_path, so=b"\x7fELF\x01" + bytes(60)))
