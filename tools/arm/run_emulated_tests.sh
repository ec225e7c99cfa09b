#!/usr/bin/env bash
# Install a cross-built wheel into an emulated ARM Python and run the ARM test suite there:
#
#   tools/arm/run_emulated_tests.sh arm64 wheelhouse/deepthings-*-manylinux_2_36_aarch64.whl
#   tools/arm/run_emulated_tests.sh armhf wheelhouse/deepthings-*-manylinux_2_36_armv7l.whl
#
# The root (build/arm-roots/<arch>, tools/arm/make_root.sh) is entered with chroot; its
# binaries run under qemu-user through binfmt_misc. Inside: a fresh venv (system site
# packages = Debian's numpy, pyzmq, pytest, ...), the wheel installed by the target's own
# pip (which refuses a wheel whose tags this interpreter does not support), then pytest on
# $ARM_TEST_PATHS from a copy of the tests, never the source tree, so `import deepthings`
# can only find the installed wheel. Extra arguments go to pytest. Exit status = pytest's.
# Hypothesis runs with a fixed seed (ARM_HYPOTHESIS_SEED, default 0): a CI stage this slow
# must give the same verdict for the same code; the host suite explores with random seeds.
# Env: ARM_ROOTS (default build/arm-roots), ARM_TEST_PATHS, ARM_PYTEST_ARGS, ARM_HYPOTHESIS_SEED.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
arch=${1:?usage: run_emulated_tests.sh arm64|armhf WHEEL [pytest args]}
wheel=${2:?usage: run_emulated_tests.sh arm64|armhf WHEEL [pytest args]}
shift 2
root="${ARM_ROOTS:-build/arm-roots}/$arch"
# The project's own kernel tests and FTP stitching property test run as they are; tests/arm
# adds the NEON-path assertion, conv / depthwise / pooling vs the reference, FTP stitching on
# a small net and a 2-edge loopback cluster.
paths=${ARM_TEST_PATHS:-tests/arm tests/kernels tests/ftp/test_stitch_property.py}

[[ -f "$root/.deepthings-root-ok" ]] || { echo "run_emulated_tests.sh: no root at $root (tools/arm/make_root.sh $arch $root)" >&2; exit 2; }
[[ -f "$wheel" ]] || { echo "run_emulated_tests.sh: no wheel $wheel" >&2; exit 2; }
root=$(cd "$root" && pwd)

mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" || true; done
}
trap cleanup EXIT

# /proc (multiprocessing, os.cpu_count) and a private /dev with the few nodes Python needs;
# /dev/shm inside it holds multiprocessing's semaphores. Nothing of the host's /dev is shared.
mountpoint -q "$root/proc" || { mount -t proc proc "$root/proc"; mounted+=("$root/proc"); }
if ! mountpoint -q "$root/dev"; then
  mount -t tmpfs -o mode=755,size=64m dt-arm-dev "$root/dev"
  mounted+=("$root/dev")
  mknod -m 666 "$root/dev/null" c 1 3
  mknod -m 666 "$root/dev/zero" c 1 5
  mknod -m 666 "$root/dev/full" c 1 7
  mknod -m 666 "$root/dev/random" c 1 8
  mknod -m 666 "$root/dev/urandom" c 1 9
  mkdir -m 1777 "$root/dev/shm"
  ln -s /proc/self/fd "$root/dev/fd"
  ln -s /proc/self/fd/0 "$root/dev/stdin"
  ln -s /proc/self/fd/1 "$root/dev/stdout"
  ln -s /proc/self/fd/2 "$root/dev/stderr"
fi

# Stage: the wheel, pip (unpacked from Debian's pip wheel, byte-compiled natively), the tests.
rm -rf "$root/opt/dt-wheels" "$root/opt/dt-tests" "$root/opt/dt-venv"
mkdir -p "$root/opt/dt-wheels" "$root/opt/dt-tests/tests"
cp "$wheel" "$root/opt/dt-wheels/"
wname=$(basename "$wheel")
if [[ ! -d "$root/opt/dt-pip/pip" ]]; then
  pipwhl=$(ls "$root"/usr/share/python-wheels/pip-*.whl | head -n 1)
  python3 -m zipfile -e "$pipwhl" "$root/opt/dt-pip"
  python3 -m compileall -q -j 2 -s "$root" -p / "$root/opt/dt-pip" >/dev/null || true
fi
cp pyproject.toml "$root/opt/dt-tests/"
cp tests/conftest.py "$root/opt/dt-tests/tests/"
targets=()
for p in $paths; do
  [[ -e "$p" ]] || { echo "run_emulated_tests.sh: $p not in this checkout, skipped" >&2; continue; }
  # A single test file brings its whole directory along (helpers such as ftp_netgen.py).
  src=$p; [[ -f "$p" ]] && src=$(dirname "$p")
  if [[ ! -e "$root/opt/dt-tests/$src" ]]; then
    mkdir -p "$root/opt/dt-tests/$(dirname "$src")"
    cp -r "$src" "$root/opt/dt-tests/$src"
  fi
  targets+=("/opt/dt-tests/$p")
done
find "$root/opt/dt-tests" -name __pycache__ -prune -exec rm -rf {} +

# Everything below runs emulated. A clean environment: nothing of the host's Python leaks in.
in_root() {
  env -i PATH=/opt/dt-venv/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 TMPDIR=/tmp \
    DEEPTHINGS_SHARED=/opt/dt-shared DEEPTHINGS_EXPECT_WHEEL="/opt/dt-wheels/$wname" \
    PYTHONUNBUFFERED=1 "$@"
}
chroot_bin=$(command -v chroot)
t0=$(date +%s)
in_root "$chroot_bin" "$root" /usr/bin/python3 -m venv --without-pip --system-site-packages /opt/dt-venv
in_root PYTHONPATH=/opt/dt-pip "$chroot_bin" "$root" /opt/dt-venv/bin/python -m pip install -q --no-deps \
  --no-index --no-cache-dir --disable-pip-version-check "/opt/dt-wheels/$wname"
t1=$(date +%s)
echo "run_emulated_tests.sh: $arch: $wname installed by the target's pip ($((t1 - t0)) s)"
in_root "$chroot_bin" "$root" /opt/dt-venv/bin/python -c \
  "import platform, deepthings._core as c; print('run_emulated_tests.sh: %s: %s, ISAs %s, active %s, kernel %s' % (platform.machine(), c.build_info().split(' (')[0], c.available_isas(), c.active_isa(), c.active_kernel()[0]))"

status=0
# shellcheck disable=SC2086
in_root "$chroot_bin" "$root" /opt/dt-venv/bin/python -m pytest -p no:cacheprovider \
  --rootdir /opt/dt-tests -c /opt/dt-tests/pyproject.toml -q --durations=8 \
  --hypothesis-seed="${ARM_HYPOTHESIS_SEED:-0}" \
  ${ARM_PYTEST_ARGS:-} "$@" "${targets[@]}" || status=$?
t2=$(date +%s)
echo "run_emulated_tests.sh: $arch: tests took $((t2 - t1)) s (exit $status)"
exit $status
