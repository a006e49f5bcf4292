#!/usr/bin/env bash
# scripts/test.sh — set up, build everything into build/, then run every test:
#   ctest (GoogleTest suite, header and export checks, install consumer; GPU tests report "Skipped" without a
#   GPU), pytest (the Python binding, against the library just built), scripts/cpu-only-check.sh (CPU-only builds
#   as without the CUDA toolkit), scripts/wheel-check.sh (pip wheel in a fresh venv), scripts/emulated-gpu.sh (the
#   GPU suites on the emulated GPU, four schedules and ASan, and the CPU suite in that ASan build), and
#   scripts/sanitize.sh (its TSan half when the emulated ASan build ran the CPU suite),
#   scripts/pyfuzz.sh and scripts/fuzz.sh when they exist. Exits non-zero if any step fails; prints a summary.
# HOPE_BUILD_DIR overrides the build directory (default: build/ in the repository).
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
set -e
source scripts/setup.sh
set +e
build=${HOPE_BUILD_DIR:-build}
case $build in /*) ;; *) build=$repo/$build ;; esac
jobs=$(nproc 2> /dev/null || echo 2)

declare -a names=() results=()
failed=0
step() { # step NAME COMMAND...: runs a step, records PASS/FAIL, keeps going
  local name=$1; shift
  local t0=$SECONDS
  echo
  echo "==== $name"
  "$@"
  local rc=$?
  names+=("$name")
  if [ $rc -eq 0 ]; then results+=("PASS ($((SECONDS - t0)) s)"); else results+=("FAIL (exit $rc, $((SECONDS - t0)) s)"); failed=1; fi
  return $rc
}

build_all() { hope_configure "$build" && cmake --build "$build" -j"$jobs"; }
run_ctest() { ctest --test-dir "$build" --output-on-failure -j"$jobs" --timeout 900 2>&1 | tee "$build/ctest.log"; }
run_pytest() {
  HOPE_ATTN_LIBRARY="$build/libhope_attn.so" PYTHONPATH="$repo/python${PYTHONPATH:+:$PYTHONPATH}" \
    python3 -m pytest -q -p no:cacheprovider python/tests
}

rm -f "$build/ctest.log"
if step "build" build_all; then
  step "ctest" run_ctest
  step "pytest" run_pytest
  if [ -x scripts/cpu-only-check.sh ]; then step "cpu-only" scripts/cpu-only-check.sh; fi
  if [ -x scripts/wheel-check.sh ]; then step "wheel" scripts/wheel-check.sh; fi
  # The emulated GPU's ASan build also runs the CPU suite under ASan (it writes $cpu_asan when that passed), so
  # sanitize.sh then runs its ThreadSanitizer half only: hope_tests is built with ASan once, not twice.
  cpu_asan=$build/cpu-asan.passed
  rm -f "$cpu_asan"
  if [ -x scripts/emulated-gpu.sh ]; then step "emulated-gpu" env HOPE_EMU_ASAN_CPU="$cpu_asan" scripts/emulated-gpu.sh; fi
  if [ -x scripts/sanitize.sh ]; then
    if [ -f "$cpu_asan" ]; then step "sanitize" env HOPE_SANITIZE_ONLY=tsan scripts/sanitize.sh
    else step "sanitize" scripts/sanitize.sh; fi
  fi
  if [ -x scripts/pyfuzz.sh ]; then step "pyfuzz" scripts/pyfuzz.sh; fi
  if [ -x scripts/fuzz.sh ]; then step "fuzz" scripts/fuzz.sh --seconds 20; fi  # 5 harnesses x 20 s
fi

echo
echo "==== summary"
for i in "${!names[@]}"; do printf '  %-13s %s\n' "${names[$i]}" "${results[$i]}"; done
if [ -f "$build/ctest.log" ] && grep -q "The following tests FAILED" "$build/ctest.log"; then
  echo "  failed ctest tests:"
  sed -n '/The following tests FAILED/,/Errors while running CTest/p' "$build/ctest.log" | grep -E '^\s+[0-9]+ - ' \
    | sed 's/^\s*/    /'
fi
if [ $failed -ne 0 ]; then echo "test.sh: FAILED"; exit 1; fi
echo "test.sh: all steps passed"
