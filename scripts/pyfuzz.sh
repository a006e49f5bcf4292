#!/usr/bin/env bash
# scripts/pyfuzz.sh — the Python binding under AddressSanitizer + UndefinedBehaviorSanitizer: every pytest test of
# python/tests, with the property-based fuzzer of the Python API (test_fuzz_api.py, Hypothesis) on its "asan"
# profile (more examples; derandomized, so every run draws the same ones), against build-asan/libhope_attn.so
# (built by scripts/sanitize.sh, or here when missing) with the ASan runtime preloaded into python3. Any
# sanitizer report, crash or failed property fails the script.
# Environment: HOPE_ASAN_BUILD_DIR (default build-asan in the repository), HOPE_FUZZ_EXAMPLES (examples per fuzzed
# function; default: the profile's 300), HOPE_PYFUZZ_PYTEST_ARGS (extra pytest arguments, e.g. -k attention).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
source scripts/setup.sh  # python3 with numpy, pytest and hypothesis; nvcc for the build

python3 -c "import hypothesis" || { echo "pyfuzz: the hypothesis package is missing (scripts/setup.sh installs it)" >&2; exit 1; }

asan_dir=${HOPE_ASAN_BUILD_DIR:-$repo/build-asan}
t0=$SECONDS
# Configures and builds the ASan library (a no-op build when sanitize.sh has just built it).
HOPE_ASAN_BUILD_DIR="$asan_dir" HOPE_SANITIZE_ONLY=asan-lib scripts/sanitize.sh
lib=$asan_dir/libhope_attn.so
# Preload the very ASan runtime the library was linked with (an instrumented library in an uninstrumented python3
# needs it first in the process).
runtime=$(ldd "$lib" | awk '/libasan\.so/ {print $3; exit}')
if [ -z "$runtime" ] || [ ! -f "$runtime" ]; then runtime=$("${CC:-cc}" -print-file-name=libasan.so); fi
echo "pyfuzz: $lib with $runtime preloaded"

# detect_leaks=0: CPython frees little at exit by design. protect_shadow_gap=0: the CUDA runtime maps memory there.
# allocator_may_return_null=1: an impossible allocation (a huge cache) must come back as OUT_OF_MEMORY.
# --capture=sys and python3 -u: a sanitizer report (written to file descriptor 2 by the runtime) and the tests run
# before it reach the log even when the report ends the process.
set +e
env LD_PRELOAD="$runtime" PYTHONUNBUFFERED=1 \
  ASAN_OPTIONS="detect_leaks=0:protect_shadow_gap=0:allocator_may_return_null=1:halt_on_error=1:abort_on_error=0" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  HOPE_ATTN_LIBRARY="$lib" HOPE_FUZZ_PROFILE=asan PYTHONPATH="$repo/python${PYTHONPATH:+:$PYTHONPATH}" \
  python3 -m pytest -q -p no:cacheprovider --capture=sys -W ignore::DeprecationWarning ${HOPE_PYFUZZ_PYTEST_ARGS:-} \
  python/tests
status=$?
set -e
echo "pyfuzz: done in $((SECONDS - t0)) s: $([ $status -eq 0 ] && echo 'no findings' || echo FAILED)"
exit $status
