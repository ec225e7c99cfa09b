#!/usr/bin/env python3
"""Audit a cross-built ARM wheel on the x86-64 host before it is tested under emulation.

Checks what the wheel's name promises: the tag (cp311-cp311-manylinux_2_36_<arch>), the
extension's ELF class/machine/float ABI, that it needs only libraries the manylinux policy
allows and no glibc/libstdc++ symbol newer than Debian bookworm's (glibc 2.36, GCC 12), and
that real NEON code is in it (by-lane FMA/MLA instructions of the register-tiled GEMM
micro-kernels), not only the scalar fallback. Uses the cross binutils (readelf/objdump).

    python tools/arm/check_wheel.py wheelhouse/deepthings-*-manylinux_2_36_aarch64.whl
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Target:
    """What a wheel for one ARM flavour must look like."""

    plat_arch: str  # wheel platform tag suffix
    triplet: str  # GNU triplet = Debian multiarch dir = EXT_SUFFIX part
    elf_class: int  # 1 = ELF32, 2 = ELF64
    e_machine: int
    neon_pattern: str  # objdump -d line of a by-lane NEON multiply-accumulate


TARGETS = {
    # vfmaq_laneq_f32 -> fmla vD.4s, vN.4s, vM.s[lane]
    "aarch64": Target("aarch64", "aarch64-linux-gnu", 2, 183, r"\bfmla\s+v\d+\.4s, v\d+\.4s, v\d+\.s\[\d\]"),
    # vmlaq_lane_f32 -> vmla.f32 qD, qN, dM[lane]
    "armv7l": Target("armv7l", "arm-linux-gnueabihf", 1, 40, r"\bvmla\.f32\s+q\d+, q\d+, d\d+\[\d\]"),
}

# manylinux policy (PEP 600 / auditwheel): libraries a wheel may expect on the system.
ALLOWED_NEEDED = {
    "libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libgcc_s.so.1",
    "libstdc++.so.6", "ld-linux-aarch64.so.1", "ld-linux-armhf.so.3",
}
# Debian bookworm: glibc 2.36, GCC 12 (libstdc++ GLIBCXX_3.4.30, CXXABI_1.3.13, libgcc GCC_12).
MAX_VERSIONS = {"GLIBC": (2, 36), "GLIBCXX": (3, 4, 30), "CXXABI": (1, 3, 13), "GCC": (12, 0, 0)}
GLIBC_MAX = MAX_VERSIONS["GLIBC"]


class WheelError(Exception):
    """The wheel does not hold what its name promises."""


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def check_wheel(path: Path) -> list[str]:
    """Raise WheelError naming the first broken promise; return a list of facts checked."""
    m = re.fullmatch(r"deepthings-([^-]+)-cp311-cp311-manylinux_(\d+)_(\d+)_(aarch64|armv7l)\.whl", path.name)
    if not m:
        raise WheelError(f"{path.name}: not a cp311-cp311-manylinux_X_Y_(aarch64|armv7l) wheel name")
    glibc_tag = (int(m.group(2)), int(m.group(3)))
    target = TARGETS[m.group(4)]
    if glibc_tag != GLIBC_MAX:
        raise WheelError(f"{path.name}: tag says glibc {glibc_tag}, the toolchain links glibc {GLIBC_MAX}")
    facts = [f"tag cp311-cp311-manylinux_{glibc_tag[0]}_{glibc_tag[1]}_{target.plat_arch}"]
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        wheel_meta = [n for n in names if n.endswith(".dist-info/WHEEL")]
        if len(wheel_meta) != 1:
            raise WheelError(f"{path.name}: expected one .dist-info/WHEEL, found {wheel_meta}")
        meta = zf.read(wheel_meta[0]).decode()
        tag = f"cp311-cp311-manylinux_{glibc_tag[0]}_{glibc_tag[1]}_{target.plat_arch}"
        if f"Tag: {tag}" not in meta.splitlines() or "Root-Is-Purelib: false" not in meta:
            raise WheelError(f"{path.name}: WHEEL metadata does not say 'Tag: {tag}' / platlib:\n{meta}")
        so_name = f"deepthings/_core.cpython-311-{target.triplet}.so"
        sos = [n for n in names if n.endswith(".so")]
        if sos != [so_name]:
            raise WheelError(f"{path.name}: expected exactly {so_name}, found {sos}")
        for must in ("deepthings/__init__.py", "deepthings/data/yolo-fastest-1.1.cfg"):
            if must not in names:
                raise WheelError(f"{path.name}: {must} missing")
        with tempfile.TemporaryDirectory() as tmp:
            so = Path(tmp) / "core.so"
            so.write_bytes(zf.read(so_name))
            facts += _check_elf(so, target, so_name)
    return facts


def _check_elf(so: Path, target: Target, so_name: str) -> list[str]:
    head = so.read_bytes()[:52]
    if head[:4] != b"\x7fELF" or head[4] != target.elf_class:
        raise WheelError(f"{so_name}: ELF class {head[4]}, expected {target.elf_class}")
    e_machine = int.from_bytes(head[18:20], "little")
    if e_machine != target.e_machine:
        raise WheelError(f"{so_name}: e_machine {e_machine}, expected {target.e_machine}")
    facts = [f"ELF{32 * target.elf_class} e_machine={e_machine}"]
    if target.elf_class == 1:
        e_flags = int.from_bytes(head[36:40], "little")
        if not e_flags & 0x400:  # EF_ARM_ABI_FLOAT_HARD
            raise WheelError(f"{so_name}: not hard-float (e_flags {e_flags:#x}); armhf Python cannot load it")
        facts.append(f"hard-float EABI (e_flags {e_flags:#x})")

    readelf = f"{target.triplet}-readelf"
    dyn = _run(readelf, "-d", "-W", str(so))
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn))
    if not needed <= ALLOWED_NEEDED:
        raise WheelError(f"{so_name}: needs {sorted(needed - ALLOWED_NEEDED)}, outside the manylinux policy")
    facts.append("needs " + ", ".join(sorted(needed)))

    vers = _run(readelf, "-V", "-W", str(so))
    newest: dict[str, tuple[int, ...]] = {}
    for lib, ver in re.findall(r"Name: (GLIBC|GLIBCXX|CXXABI|GCC)_([\d.]+)", vers):
        v = _version_tuple(ver)
        newest[lib] = max(newest.get(lib, v), v)
        if v > MAX_VERSIONS[lib]:
            raise WheelError(f"{so_name}: needs {lib}_{ver}, newer than Debian bookworm's {MAX_VERSIONS[lib]}")
    facts.append("newest symbol versions " + ", ".join(f"{k}_{'.'.join(map(str, v))}" for k, v in sorted(newest.items())))

    disasm = _run(f"{target.triplet}-objdump", "-d", "--no-show-raw-insn", str(so))
    hits = len(re.findall(target.neon_pattern, disasm))
    if hits == 0:
        raise WheelError(f"{so_name}: no by-lane NEON multiply-accumulate ({target.neon_pattern}): "
                         "the NEON micro-kernel is not in this build")
    facts.append(f"{hits} by-lane NEON multiply-accumulate instructions")
    return facts


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    status = 0
    for arg in argv:
        path = Path(arg)
        try:
            facts = check_wheel(path)
        except (WheelError, subprocess.CalledProcessError, OSError, zipfile.BadZipFile) as e:
            print(f"check_wheel: FAIL {path.name}: {e}", file=sys.stderr)
            status = 1
            continue
        print(f"check_wheel: ok {path.name}: " + "; ".join(facts))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
