"""The NEON micro-kernels (aarch64 vfmaq_laneq_f32, armv7 vmlaq_lane_f32) vs the scalar path
and a naive double-precision conv, cross-compiled and run under qemu-user when the Debian
cross compilers and qemu-user-static are installed (skipped otherwise)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"

TARGETS = {
    "aarch64": ("aarch64-linux-gnu-g++", ["-DDT_ARCH_AARCH64=1"], "f32-gemm-8x8-neon-aarch64.cpp",
                "qemu-aarch64-static", "/usr/aarch64-linux-gnu"),
    "armv7": ("arm-linux-gnueabihf-g++", ["-DDT_ARCH_ARMV7=1", "-mfpu=neon", "-mfloat-abi=hard"],
              "f32-gemm-6x8-neon-armv7.cpp", "qemu-arm-static", "/usr/arm-linux-gnueabihf"),
}


@pytest.mark.slow
@pytest.mark.arm
@pytest.mark.parametrize("arch", sorted(TARGETS))
def test_neon_kernel_under_qemu(arch: str, tmp_path: Path) -> None:
    cxx, flags, kernel, qemu, sysroot = TARGETS[arch]
    if not shutil.which(cxx) or not shutil.which(qemu) or not Path(sysroot).is_dir():
        pytest.skip(f"{cxx} / {qemu} / {sysroot} not installed")
    portable = [p for p in sorted((SRC / "ftp_core").rglob("*.cpp"))
                if "-avx" not in p.name and "-neon" not in p.name]
    exe = tmp_path / f"neon_{arch}"
    cmd = [cxx, "-std=c++17", "-O1", f"-I{SRC}", *flags, *map(str, portable),
           str(SRC / "ftp_core" / "gemm" / kernel), str(Path(__file__).with_name("neon_vs_scalar.cpp")),
           "-o", str(exe), "-pthread"]
    subprocess.run(cmd, check=True, timeout=600)
    out = subprocess.run([qemu, "-L", sysroot, str(exe)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert kernel.removesuffix(".cpp") in out.stdout  # the NEON kernel ran, not the scalar one
