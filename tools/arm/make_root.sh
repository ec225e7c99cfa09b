#!/usr/bin/env bash
# Build a minimal Debian bookworm userland for one ARM architecture (arm64 or armhf) with the
# Python packages the emulated tests need, for running the cross-built wheel under qemu-user
# (binfmt_misc) with `chroot`. Needs root and mmdebstrap; runs NO emulated code:
#
#   tools/arm/make_root.sh arm64 build/arm-roots/arm64
#
# Why "extract" and not a configured debootstrap: configuring packages runs every maintainer
# script under qemu (ca-certificates alone spawns hundreds of emulated processes; py3compile
# byte-compiles numpy, ...); on a 2-core shared machine that took > 30 min per root. The
# extract variant only unpacks the package closure (native tar), and this script does, natively,
# the few things the maintainer scripts would have done that the tests need:
#   - BLAS/LAPACK "alternatives" symlinks (numpy links libblas.so.3 / liblapack.so.3),
#   - /etc/passwd and /etc/group (base-passwd's master files),
#   - byte-compiled .pyc for the stdlib and dist-packages, made by the host's CPython 3.11
#     (bytecode is architecture independent; a stale or mismatched .pyc is just recompiled).
# Idempotent: a finished root (marker .deepthings-root-ok) is reused; a half-built one is
# removed and rebuilt.
set -euo pipefail
arch=${1:?usage: make_root.sh arm64|armhf DIR}
dir=${2:?usage: make_root.sh arm64|armhf DIR}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=${DEBIAN_SUITE:-bookworm}
py=${PYTHON:-python3}

case "$arch" in
  arm64) triplet=aarch64-linux-gnu ;;
  armhf) triplet=arm-linux-gnueabihf ;;
  *) echo "make_root.sh: unknown arch '$arch' (arm64 or armhf)" >&2; exit 2 ;;
esac
# One builder per root: a second caller waits, then finds the finished root.
mkdir -p "$(dirname "$dir")"
exec 8>"$dir.lock"
flock 8
if [[ -f "$dir/.deepthings-root-ok" ]]; then
  echo "make_root.sh: $dir already built, reused"
  exit 0
fi
if [[ -e "$dir" ]]; then
  # A previous run died half-way: never build on top of it (and never follow mounts out).
  for m in dev/shm dev proc; do umount -l "$dir/$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$dir"
fi
mkdir -p "$(dirname "$dir")"

# Everything the tests import, from Debian: no PyPI inside the emulated roots (pip from PyPI
# under qemu would compile numpy from source). python3-pip-whl: pip as a wheel, to install
# our wheel with the target's own pip (which checks the platform tag) without ca-certificates.
pkgs=python3,python3-numpy,python3-pytest,python3-pytest-timeout,python3-hypothesis,python3-zmq
pkgs+=,python3-msgpack,python3-pil,python3-pip-whl,base-passwd

# No dpkg path-exclude filters: with them mmdebstrap pipes every package through a Python
# filter (mmtarfilter), slower than writing the few MB of docs.
mmdebstrap --mode=root --variant=extract --architectures="$arch" \
  --include="$pkgs" \
  --aptopt='Acquire::Retries "3"' \
  "$suite" "$dir" "$mirror"

lib="$dir/usr/lib/$triplet"
for alt in blas/libblas.so.3 lapack/liblapack.so.3; do
  if [[ -e "$lib/$alt" ]]; then ln -sfn "$alt" "$lib/$(basename "$alt")"; fi
done
if [[ -f "$dir/usr/share/base-passwd/passwd.master" ]]; then
  cp "$dir/usr/share/base-passwd/passwd.master" "$dir/etc/passwd"
  cp "$dir/usr/share/base-passwd/group.master" "$dir/etc/group"
fi
mkdir -p "$dir/tmp" "$dir/proc" "$dir/dev" "$dir/opt"
chmod 1777 "$dir/tmp"

# Byte-compile natively (-s/-p: record the paths as seen inside the root, for tracebacks).
"$py" -m compileall -q -j 2 -s "$dir" -p / \
  "$dir/usr/lib/python3.11" "$dir/usr/lib/python3/dist-packages" >/dev/null || true

touch "$dir/.deepthings-root-ok"
echo "make_root.sh: $arch root in $dir ($(du -sm "$dir" | cut -f1) MB)"
