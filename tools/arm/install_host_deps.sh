#!/usr/bin/env bash
# Host prerequisites for the ARM wheels (Debian bookworm, root): cross compilers, qemu-user
# with binfmt_misc handlers (so chroots of arm64/armhf userlands run transparently),
# mmdebstrap, and apt index files for arm64/armhf (for the target's Python headers).
# Idempotent and quiet when everything is already there.
set -euo pipefail
[[ $(id -u) == 0 ]] || { echo "install_host_deps.sh: needs root (apt, binfmt_misc)" >&2; exit 1; }

# Another apt/dpkg may hold the lock on a shared machine: retry instead of failing.
apt_retry() {
  local i
  for i in $(seq 1 30); do
    if "$@"; then return 0; fi
    echo "install_host_deps.sh: '$*' failed (lock held?), retry $i/30 in 10 s" >&2
    sleep 10
  done
  return 1
}

need=()
for p in g++-aarch64-linux-gnu g++-arm-linux-gnueabihf qemu-user-static binfmt-support mmdebstrap; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
foreign=$(dpkg --print-foreign-architectures)
newarch=0
for a in arm64 armhf; do
  if ! grep -qx "$a" <<<"$foreign"; then dpkg --add-architecture "$a"; newarch=1; fi
done
if (( ${#need[@]} )) || (( newarch )) || ! apt-cache show libpython3.11-dev:arm64 >/dev/null 2>&1 \
   || ! apt-cache show libpython3.11-dev:armhf >/dev/null 2>&1; then
  apt_retry apt-get update -q -o Acquire::Retries=3 >/dev/null
fi
if (( ${#need[@]} )); then
  DEBIAN_FRONTEND=noninteractive apt_retry apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

# binfmt_misc: not mounted on a fresh machine; the qemu handlers carry the F flag, so the
# interpreter is opened at registration time and works inside chroots.
if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
for h in qemu-aarch64 qemu-arm; do
  [[ -e /proc/sys/fs/binfmt_misc/$h ]] || update-binfmts --enable "$h" >/dev/null 2>&1 || true
done
for h in qemu-aarch64 qemu-arm; do
  if ! grep -qx enabled "/proc/sys/fs/binfmt_misc/$h" 2>/dev/null; then
    echo "install_host_deps.sh: binfmt handler $h is not registered" >&2
    exit 1
  fi
done
