#!/usr/bin/env bash
# Cross-build the CPython 3.11 wheels for Raspberry Pi class ARM boards on an x86-64 Debian
# bookworm host, with scikit-build-core, Debian's cross g++ 12 and a CMake toolchain file:
#
#   tools/build_arm_wheels.sh [aarch64] [armv7]      (default: both; run as root)
#
# -> wheelhouse/deepthings-<ver>-cp311-cp311-manylinux_2_36_aarch64.whl
#    wheelhouse/deepthings-<ver>-cp311-cp311-manylinux_2_36_armv7l.whl
#
# Platform tag: manylinux_2_36, because the cross toolchain links against bookworm's glibc
# 2.36 (the glibc of Raspberry Pi OS bookworm); tools/arm/check_wheel.py proves each wheel
# needs no newer glibc symbol and only libraries the manylinux policy allows, and would fail
# the build otherwise. (A plain linux_* tag would install on the Pi just as well, but says
# nothing about where the wheel runs and is refused by PyPI.)
#
# Env: JOBS (parallel compile jobs, default 2), PYTHON (build interpreter, CPython 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
py=${PYTHON:-python3}
jobs=${JOBS:-2}
targets=("$@")
(( ${#targets[@]} )) || targets=(aarch64 armv7)

"$py" - <<'PY' || { echo "build_arm_wheels.sh: the build interpreter must be CPython 3.11" >&2; exit 1; }
import sys
sys.exit(0 if sys.implementation.name == "cpython" and sys.version_info[:2] == (3, 11) else 1)
PY
# The wheels are built without build isolation: the backend runs in the host Python, which
# must have the build requirements (offline-friendly and faster than a fresh isolated env).
"$py" -c "import scikit_build_core, pybind11" 2>/dev/null \
  || "$py" -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.12"

tools/arm/install_host_deps.sh

mkdir -p wheelhouse build/arm
exec 7>build/arm/.wheels.lock   # one build per tree: the build dirs and wheelhouse are shared
flock 7
version=$("$py" -c "import tomllib; print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])")
status=0
for t in "${targets[@]}"; do
  case "$t" in
    aarch64) arch=arm64; triplet=aarch64-linux-gnu; plat=manylinux_2_36_aarch64 ;;
    armv7|armv7l) t=armv7; arch=armhf; triplet=arm-linux-gnueabihf; plat=manylinux_2_36_armv7l ;;
    *) echo "build_arm_wheels.sh: unknown target '$t' (aarch64 or armv7)" >&2; exit 2 ;;
  esac
  tools/arm/fetch_python_headers.sh "$arch" "build/arm-sysroot/$triplet" >/dev/null
  # The target's interpreter (run under qemu at configure time) lives in the emulated root.
  tools/arm/make_root.sh "$arch" "build/arm-roots/$arch" >/dev/null
  wheel="wheelhouse/deepthings-$version-cp311-cp311-$plat.whl"
  rm -f "$wheel"
  log="build/arm/$t.log"
  mkdir -p build/arm
  t0=$(date +%s%N)
  # SETUPTOOLS_EXT_SUFFIX: scikit-build-core's SOABI for a foreign target; wheel.tags: the
  # host interpreter would otherwise name the wheel after itself (x86_64).
  if ! SETUPTOOLS_EXT_SUFFIX=".cpython-311-$triplet.so" \
       CMAKE_BUILD_PARALLEL_LEVEL="$jobs" \
       DEEPTHINGS_PY_SYSROOT="$repo/build/arm-sysroot/$triplet" \
       DEEPTHINGS_TARGET_ROOT="$repo/build/arm-roots/$arch" \
       "$py" -m pip wheel . --no-deps --no-build-isolation -q -w wheelhouse \
         -C "build-dir=build/arm/$t" \
         -C "cmake.define.CMAKE_TOOLCHAIN_FILE=$repo/cmake/toolchains/$triplet.cmake" \
         -C "wheel.tags=cp311-cp311-$plat" \
         -C "cmake.python-hints=false" \
         >"$log" 2>&1; then
    echo "build_arm_wheels.sh: $t build FAILED, last lines of $log:" >&2
    tail -n 40 "$log" >&2
    status=1
    continue
  fi
  t1=$(date +%s%N)
  if [[ ! -f "$wheel" ]]; then
    echo "build_arm_wheels.sh: $t: expected $wheel, got: $(ls wheelhouse)" >&2
    status=1
    continue
  fi
  if ! "$py" tools/arm/check_wheel.py "$wheel"; then
    status=1
    continue
  fi
  printf 'build_arm_wheels.sh: %-7s %s  build %d.%01d s  %d KiB\n' "$t" "$wheel" \
    $(( (t1 - t0) / 1000000000 )) $(( (t1 - t0) / 100000000 % 10 )) $(( $(stat -c %s "$wheel") / 1024 ))
done
exit $status
