#!/usr/bin/env bash
# Unpack Debian's libpython3.11-dev for a foreign architecture into a private sysroot, so
# the cross build compiles against the target's own pyconfig.h (sizes, ABI) without
# installing anything foreign into the host's dpkg database (a multiarch *install* would
# need the host's libpython3.11 at exactly the same Debian revision).
#
#   tools/arm/fetch_python_headers.sh arm64 build/arm-sysroot/aarch64-linux-gnu
#
# Needs the architecture known to apt (dpkg --add-architecture + apt-get update), which
# tools/arm/install_host_deps.sh does.
set -euo pipefail
arch=${1:?usage: fetch_python_headers.sh arm64|armhf DEST}
dest=${2:?usage: fetch_python_headers.sh arm64|armhf DEST}
case "$arch" in
  arm64) triplet=aarch64-linux-gnu ;;
  armhf) triplet=arm-linux-gnueabihf ;;
  *) echo "fetch_python_headers.sh: unknown arch '$arch'" >&2; exit 2 ;;
esac
if [[ -f "$dest/usr/include/python3.11/Python.h" && -f "$dest/.flat-pyconfig" ]]; then
  exit 0
fi
rm -rf "$dest"
mkdir -p "$dest"
dl=$(mktemp -d)
trap 'rm -rf "$dl"' EXIT
chmod 777 "$dl"   # apt drops root to _apt for downloads
(cd "$dl" && apt-get download -q "libpython3.11-dev:$arch" >/dev/null)
dpkg-deb -x "$dl"/libpython3.11-dev_*_"$arch".deb "$dest"
# Debian's /usr/include/python3.11/pyconfig.h only dispatches to <triplet>/python3.11/pyconfig.h:
# put the target's real one in its place, so one include directory is enough.
cp "$dest/usr/include/$triplet/python3.11/pyconfig.h" "$dest/usr/include/python3.11/pyconfig.h"
touch "$dest/.flat-pyconfig"
echo "fetch_python_headers.sh: $arch headers in $dest/usr/include/python3.11"
