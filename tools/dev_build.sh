#!/usr/bin/env bash
# Development build: compiles deepthings._core into python/deepthings/ so that
# `PYTHONPATH=python python -m pytest` runs the working tree without a reinstall.
# Serialised with flock: several people may build the same tree at once.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
mkdir -p build
exec 9>build/.dev_build.lock
flock 9
cmake -S . -B build/dev -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DPython_EXECUTABLE="$(command -v "$py")" \
  -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" -DDEEPTHINGS_DEV_INPLACE=ON | grep -v "^--" || true
cmake --build build/dev "$@"
