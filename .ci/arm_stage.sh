#!/usr/bin/env bash
# CI stage "arm": on a fresh x86-64 Debian bookworm machine (root), cross-build the aarch64 and
# armv7 (hard-float, NEON) CPython 3.11 wheels, make minimal bookworm arm64/armhf userlands,
# install each wheel into its emulated Python (qemu-user via binfmt_misc) and run the ARM test
# suite there. Prints timings, wheel sizes and a pytest-style summary; exits non-zero on any
# failure. Caches nothing a fresh machine would lack (an existing finished root is reused,
# which only happens on a developer's machine).
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p build/arm
# Roots, build dirs and wheelhouse are shared state: one stage at a time.
exec 9>build/arm/.stage.lock
if ! flock -n 9; then echo "arm stage: another run holds build/arm/.stage.lock, waiting"; flock 9; fi
stage_start=$(date +%s)
failures=()
declare -A secs

step() {  # step NAME CMD...: run, time, remember failures
  local name=$1; shift
  local t0; t0=$(date +%s)
  echo "== arm stage: $name"
  if "$@"; then :; else failures+=("$name"); fi
  secs[$name]=$(( $(date +%s) - t0 ))
}

step host-deps tools/arm/install_host_deps.sh

# Both userlands at once (network + native tar, no emulation); the wheel builds need them
# too: FindPython validates the target's own interpreter, run under qemu.
roots_t0=$(date +%s)
for a in arm64 armhf; do
  tools/arm/make_root.sh "$a" "build/arm-roots/$a" >"build/arm/root-$a.log" 2>&1 &
  eval "root_pid_$a=$!"
done
for a in arm64 armhf; do
  pid_var="root_pid_$a"
  if ! wait "${!pid_var}"; then
    failures+=("root-$a")
    echo "arm stage: root $a FAILED:"; tail -n 30 "build/arm/root-$a.log"
  else
    tail -n 1 "build/arm/root-$a.log"
  fi
done
secs[roots]=$(( $(date +%s) - roots_t0 ))

step wheels bash -c "tools/build_arm_wheels.sh aarch64 armv7 2>&1 | tee build/arm/wheels.log; exit \${PIPESTATUS[0]}"

version=$(python3 -c "import tomllib; print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])")
summaries=()
for pair in arm64:aarch64 armhf:armv7l; do
  arch=${pair%%:*} plat=${pair##*:}
  wheel="wheelhouse/deepthings-$version-cp311-cp311-manylinux_2_36_$plat.whl"
  log="build/arm/tests-$arch.log"
  if [[ ! -f "$wheel" || ! -f "build/arm-roots/$arch/.deepthings-root-ok" ]]; then
    failures+=("tests-$arch (no wheel or root)")
    summaries+=("$plat: not run")
    continue
  fi
  step "tests-$arch" bash -c "tools/arm/run_emulated_tests.sh $arch $wheel 2>&1 | tee $log; exit \${PIPESTATUS[0]}"
  line=$(grep -E "^=*\s*[0-9]+ (passed|failed)|^=*\s*[0-9]+ error|no tests ran" "$log" | tail -n 1 | sed 's/=//g; s/^ *//; s/ *$//')
  summaries+=("$plat: ${line:-no pytest summary}")
done

echo
echo "== arm stage report"
for w in wheelhouse/deepthings-"$version"-cp311-cp311-manylinux_2_36_*.whl; do
  [[ -f "$w" ]] && printf '  %-60s %6d KiB\n' "$(basename "$w")" $(( $(stat -c %s "$w") / 1024 ))
done
grep -h "build_arm_wheels.sh: .* build " build/arm/wheels.log 2>/dev/null | sed "s/^/  /" || true
for k in host-deps roots wheels tests-arm64 tests-armhf; do
  [[ -n "${secs[$k]:-}" ]] && printf '  %-12s %5d s\n' "$k" "${secs[$k]}"
done
total=$(( $(date +%s) - stage_start ))
if (( ${#failures[@]} )); then
  echo "==== arm stage FAILED (${failures[*]}): $(IFS=';'; echo "${summaries[*]}") in ${total}s ===="
  exit 1
fi
echo "==== arm stage passed: $(IFS=';'; echo "${summaries[*]}") in ${total}s ===="
