#!/usr/bin/env bash
# Build a minimal Debian bookworm userland for one ARM architecture (arm64 or armhf) with the
# Python packages the emulated tests need, so the cross-built wheel can be installed and run
# under qemu-user (binfmt_misc) with `chroot`. Needs root, mmdebstrap and qemu-user-static.
#
#   tools/arm/make_root.sh arm64 build/arm-roots/arm64
#
# Idempotent: a root that finished (marker file .deepthings-root-ok) is reused, a half-built
# one is removed and rebuilt. Docs, man pages and locales are left out to save time and disk.
set -euo pipefail
arch=${1:?usage: make_root.sh arm64|armhf DIR}
dir=${2:?usage: make_root.sh arm64|armhf DIR}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=${DEBIAN_SUITE:-bookworm}

case "$arch" in arm64|armhf) ;; *) echo "make_root.sh: unknown arch '$arch' (arm64 or armhf)" >&2; exit 2 ;; esac
if [[ -f "$dir/.deepthings-root-ok" ]]; then
  echo "make_root.sh: $dir already built, reused"
  exit 0
fi
if [[ -e "$dir" ]]; then
  # A previous run died half-way: never build on top of it.
  for m in proc sys dev/pts dev; do umount -l "$dir/$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$dir"
fi
mkdir -p "$(dirname "$dir")"

# Everything the tests import, from Debian (no PyPI inside the emulated roots: pip from
# PyPI under qemu would compile numpy from source).
pkgs=python3,python3-numpy,python3-pytest,python3-hypothesis,python3-zmq,python3-msgpack,python3-pil,python3-pip,python3-venv

mmdebstrap --mode=root --variant=essential --architectures="$arch" \
  --include="$pkgs" \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --aptopt='Acquire::Retries "3"' \
  "$suite" "$dir" "$mirror"
touch "$dir/.deepthings-root-ok"
