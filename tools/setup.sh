#!/usr/bin/env bash
# Installs everything deepthings needs on a fresh Debian/Ubuntu machine into ./.venv:
# system tools for the emulated testbed (iproute2 for netns/veth/tc) and SIMDe's headers
# (tests of the AVX-512 kernel on CPUs without AVX-512) when run as root,
# then the package itself with its test and benchmark extras (builds the C++ core).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=""
  command -v ip >/dev/null || need="$need iproute2"
  command -v tc >/dev/null || need="$need iproute2"
  command -v ps >/dev/null || need="$need procps"
  # SIMDe: portable AVX-512 headers, so the AVX-512 kernel's logic is tested on CPUs without it
  [ -f /usr/include/simde/x86/avx512.h ] || need="$need libsimde-dev"
  if [ -n "$need" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $need
  fi
fi

py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q ".[test,bench]"
.venv/bin/python -c "import deepthings, deepthings._core as c; print('deepthings', deepthings.__version__, 'core:', c.build_info())"
