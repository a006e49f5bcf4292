#!/usr/bin/env bash
# scripts/gpu-check.sh — the one command for a lent GPU machine (nothing prepared, no network needed):
#
#   scripts/gpu-check.sh            # from the repository root (or anywhere: it finds the root itself)
#
# How it is invoked. The lent machine has no network, so GoogleTest travels with the working tree as sources
# in .deps/googletest (tests/CMakeLists.txt builds them when no installed GTest is found):
#   on the dev machine:   mkdir -p .deps && cp -r /usr/src/googletest .deps/
#   then the device tool: run with carry [".deps"] and command `bash scripts/gpu-check.sh`
# Without an installed GTest, .deps/googletest or /usr/src/googletest it says so clearly, fails the "gtest"
# step, and still builds the library and the benchmarks (tests off) so the benchmarks run.
#
# 1. environment: GPU, driver, toolkit; best-effort installs of what is missing (cmake, GoogleTest, numpy,
#    pytest) that skip quietly when already present or when there is no network;
# 2. configure build-gpu/ with -DCMAKE_CUDA_ARCHITECTURES=native (falls back to 90) and benchmarks ON;
#    build with every core;
#    then the disassembly check: the sm90 kernels' SASS must contain HGMMA (wgmma) and UTMALDG (TMA) — on a
#    machine without cuobjdump it reports SKIP;
# 3. the PTX known-answer tests (tests/kat/: hand-worked values the emulated GPU also passes, so this checks
#    the emulator against the hardware; the sm90 ones — wgmma per swizzle mode, a TMA copy — need a 9.x
#    device), then the full ctest (GPU tests included: on a GPU machine none may report "Skipped" for want of
#    a device; on compute capability 9.x the fused suites run on the sm90 family, and once more with the sm80
#    family forced);
# 4. pytest of the Python binding, when numpy and pytest are importable;
# 5. the GPU GoogleTest suites (names containing "Gpu") under compute-sanitizer: memcheck and racecheck
#    (errors fail the run) and initcheck (advisory), with HOPE_TEST_QUICK=1 so the tests use modest sizes;
#    a tool that runs out of its time slice reports TIMEOUT (incomplete, not a failure);
# 6. the benchmarks: benchmarks/hope_bench (C++), then, when python3 can import torch,
#    benchmarks/prefill_bench.py and benchmarks/decode_bench.py (PyTorch SDPA comparisons).
#
# Output goes to "$OUT" when it is set (the device tool brings that folder back), else ./out/. The device
# tool returns at most 8 files, so exactly these 8 (at most) are written there, each kept under 16 MiB:
#   summary.txt          step results, then every benchmark table (hope_bench's, and the two scripts' markdown)
#   build.log            environment (GPU, driver, toolkit, installs) + configure + build
#   tests.log            ctest + pytest + the compute-sanitizer runs, one "==== section" each
#   bench.log            stdout/stderr of hope_bench, prefill_bench.py and decode_bench.py
#   bench.json           hope_bench's results (one object per case)
#   prefill_bench.json   prefill_bench.py's results
#   prefill_bench.png    prefill_bench.py's plot (TFLOP/s against N; needs matplotlib)
#   decode_bench.json    decode_bench.py's results
# Scratch files live in a temporary folder and are removed at exit. Exits non-zero when a step fails.
# Environment knobs: HOPE_GPU_CHECK_BUDGET (seconds, default 470: later steps are skipped when it runs out),
# HOPE_BENCH_RESERVE (seconds kept for the benchmarks when the sanitizers run, default 220),
# HOPE_MEMCHECK_FILTER, HOPE_RACECHECK_FILTER, HOPE_INITCHECK_FILTER (gtest filters), HOPE_BENCH_ARGS
# (extra hope_bench arguments), HOPE_PY_BENCH=0 (skip the two Python benchmarks).
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo" || exit 2
out=${OUT:-$repo/out}
mkdir -p "$out"
build=$repo/build-gpu
jobs=$(nproc 2> /dev/null || echo 4)
budget=${HOPE_GPU_CHECK_BUDGET:-470}
bench_reserve=${HOPE_BENCH_RESERVE:-220}
start=$SECONDS
scratch=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

memcheck_filter=${HOPE_MEMCHECK_FILTER:-'*Gpu*'}
# racecheck serialises every shared-memory access: only the suites whose kernels use shared memory.
racecheck_filter=${HOPE_RACECHECK_FILTER:-'*Attention*Gpu*:*Decode*Gpu*'}
initcheck_filter=${HOPE_INITCHECK_FILTER:-'*AttentionUnfusedGpu*:*RopeApplyGpu*:*Rope*Gpu*'}

summary=$out/summary.txt
: > "$summary"
declare -a names=() results=()
failed=0

log() { echo "$*" | tee -a "$summary"; }
elapsed() { echo $((SECONDS - start)); }
record() { # record NAME RESULT [fatal=1]
  names+=("$1"); results+=("$2")
  case $2 in FAIL*) [ "${3:-1}" = 1 ] && failed=1 ;; esac
}
# Appends a scratch log to one of the output logs under a section header: collect SRC DEST TITLE
collect() {
  { echo; echo "==== $3"; cat "$1" 2> /dev/null; } >> "$2"
}
# Keeps a log under the device tool's 16 MiB per-file limit (head and tail kept).
trim_log() {
  local f=$1 max=$((15 * 1024 * 1024))
  [ -f "$f" ] || return 0
  local size
  size=$(stat -c %s "$f" 2> /dev/null || echo 0)
  if [ "$size" -gt "$max" ]; then
    { head -c 2000000 "$f"; printf '\n\n[... %s bytes cut by gpu-check.sh ...]\n\n' "$((size - 12000000))"
      tail -c 10000000 "$f"; } > "$f.trim" && mv "$f.trim" "$f"
  fi
}

# ---- 1. environment -----------------------------------------------------------------------------------------
# The environment report opens build.log (env and build share one file: the 8-file limit).
buildlog=$out/build.log
envlog=$buildlog
{
  echo "==== environment"
  echo "date: $(date -u)"; echo "host: $(hostname)"; echo "cores: $jobs"
  uname -a
  nvidia-smi 2>&1 || echo "nvidia-smi: not available"
} > "$envlog" 2>&1

if ! command -v nvcc > /dev/null; then
  for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
    if [ -x "$d/nvcc" ]; then export PATH="$d:$PATH"; break; fi
  done
fi
sanitizer=$(command -v compute-sanitizer || true)
if [ -z "$sanitizer" ]; then
  for d in "$(dirname "$(command -v nvcc 2> /dev/null || echo /usr/local/cuda/bin/nvcc)")" /usr/local/cuda/bin \
           /usr/local/cuda/compute-sanitizer /usr/local/cuda-*/bin; do
    if [ -x "$d/compute-sanitizer" ]; then sanitizer=$d/compute-sanitizer; break; fi
  done
fi

sudo=()
if [ "$(id -u)" != 0 ] && command -v sudo > /dev/null; then sudo=(sudo -n); fi
apt_try() { # best effort; the device machine has no network, so everything here may fail quickly
  command -v apt-get > /dev/null || return 1
  timeout 90 ${sudo[@]+"${sudo[@]}"} apt-get install -y -q --no-install-recommends "$@" >> "$envlog" 2>&1 && return 0
  timeout 90 ${sudo[@]+"${sudo[@]}"} apt-get update -q >> "$envlog" 2>&1 || return 1
  timeout 120 ${sudo[@]+"${sudo[@]}"} apt-get install -y -q --no-install-recommends "$@" >> "$envlog" 2>&1
}
have_gtest() {
  [ -f /usr/include/gtest/gtest.h ] || [ -f /usr/local/include/gtest/gtest.h ] || \
    ls /usr/lib/*/cmake/GTest /usr/lib/cmake/GTest /usr/local/lib/cmake/GTest > /dev/null 2>&1
}
# GoogleTest sources tests/CMakeLists.txt can build instead of an installed package.
gtest_sources() {
  local d
  for d in "$repo/.deps/googletest" /usr/src/googletest; do
    if [ -f "$d/CMakeLists.txt" ]; then echo "$d"; return 0; fi
  done
  return 1
}
cmake_ok() { # the project needs CMake >= 3.24
  command -v cmake > /dev/null || return 1
  local v
  v=$(cmake --version | head -1 | awk '{print $3}')
  [ "$(printf '%s\n3.24\n' "$v" | sort -V | head -1)" = 3.24 ]
}
{
  echo "---- installs (best effort)"
  cmake_ok || apt_try cmake || timeout 90 python3 -m pip install -q cmake || true
  have_gtest || apt_try libgtest-dev || true
  command -v make > /dev/null || apt_try make || true
  command -v g++ > /dev/null || apt_try g++ || true
  for mod in numpy pytest; do
    python3 -c "import $mod" > /dev/null 2>&1 && continue
    timeout 90 python3 -m pip install -q "$mod" || timeout 90 python3 -m pip install -q --break-system-packages "$mod" || true
  done
  echo "---- tools"
  echo "nvcc: $(command -v nvcc || echo missing)"; nvcc --version 2>&1 | tail -2
  echo "cmake: $(cmake --version 2>&1 | head -1)"
  echo "compute-sanitizer: ${sanitizer:-missing}"
  echo "gtest: $(have_gtest && echo installed || echo 'not installed'); sources: $(gtest_sources || echo none)"
  python3 -c 'import numpy, sys; print("numpy", numpy.__version__, "python", sys.version.split()[0])' 2>&1
  python3 -c 'import pytest; print("pytest", pytest.__version__)' 2>&1
} >> "$envlog" 2>&1
gpu_name=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2> /dev/null | head -1)
log "gpu-check.sh: ${gpu_name:-no GPU visible to nvidia-smi}; $jobs cores; logs in $out"

# ---- 2. configure and build -----------------------------------------------------------------------------------
build_tests=ON
if have_gtest || gtest_sources > /dev/null; then
  record "gtest" "PASS ($(have_gtest && echo installed || echo "sources in $(gtest_sources)"))"
else
  build_tests=OFF
  msg="ERROR: GoogleTest not found: no installed GTest, no $repo/.deps/googletest, no /usr/src/googletest."
  msg+=" On the dev machine run 'mkdir -p .deps && cp -r /usr/src/googletest .deps/' and pass carry [\".deps\"]"
  msg+=" to the device tool. Building without the tests (the benchmarks still run)."
  log "$msg"
  echo "$msg" >&2
  record "gtest" "FAIL (GoogleTest not found: tests not built; see the top of scripts/gpu-check.sh)"
fi
echo "==== configure and build (tests $build_tests)" >> "$buildlog"
configure() {
  cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DHOPE_WITH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$1" \
    -DHOPE_BUILD_TESTS="$build_tests" -DHOPE_BUILD_BENCHMARKS=ON >> "$buildlog" 2>&1
}
t0=$SECONDS
archs=native
if ! configure native; then
  echo "---- configure with native failed; retrying with 90" >> "$buildlog"
  rm -rf "$build"
  archs=90
  configure 90
fi
cfg_rc=$?
built=0
if [ $cfg_rc -ne 0 ]; then
  record "configure" "FAIL (see build.log)"
else
  record "configure" "PASS (CUDA architectures: $archs)"
  if cmake --build "$build" -j"$jobs" >> "$buildlog" 2>&1; then
    record "build" "PASS ($((SECONDS - t0)) s)"
    built=1
  else
    record "build" "FAIL (see build.log)"
    tail -40 "$buildlog"
  fi
fi
trim_log "$buildlog"

# ---- 2b. the sm90 kernels really use wgmma and TMA ------------------------------------------------------------
cuobjdump_bin=$(command -v cuobjdump || true)
[ -z "$cuobjdump_bin" ] && [ -x "$(dirname "$(command -v nvcc 2> /dev/null || echo /x/nvcc)")/cuobjdump" ] && \
  cuobjdump_bin=$(dirname "$(command -v nvcc)")/cuobjdump
sm90_objs=$(ls "$build"/CMakeFiles/hope_attn_sm90.dir/kernels/instances/*_sm90.cu.o 2> /dev/null)
if [ $built != 1 ]; then
  record "sass" "SKIP (no build)"
elif [ -z "$cuobjdump_bin" ]; then
  record "sass" "SKIP (no cuobjdump on this machine)" 0
elif [ -z "$sm90_objs" ]; then
  record "sass" "FAIL (no sm90 objects: was the library built with HOPE_SM90=OFF?)"
else
  : > "$scratch/sm90.sass"
  for obj in $sm90_objs; do  # cuobjdump takes one file at a time
    "$cuobjdump_bin" -sass -arch sm_90a "$obj" >> "$scratch/sm90.sass" 2>> "$buildlog"
  done
  hgmma=$(grep -c HGMMA "$scratch/sm90.sass"); tma=$(grep -c UTMALDG "$scratch/sm90.sass")
  local_mem=$(grep -cE '\b(LDL|STL)\b' "$scratch/sm90.sass")
  { echo "==== sm90 SASS: $hgmma HGMMA, $tma UTMALDG, $local_mem LDL/STL"; grep -oE 'HGMMA[.A-Z0-9x]*|UTMALDG[.A-Z0-9]*' \
      "$scratch/sm90.sass" | sort | uniq -c; } >> "$buildlog"
  if [ "$hgmma" -gt 0 ] && [ "$tma" -gt 0 ]; then record "sass" "PASS ($hgmma HGMMA, $tma UTMALDG, $local_mem LDL/STL)"
  else record "sass" "FAIL ($hgmma HGMMA, $tma UTMALDG in the sm90 objects)"; fi
fi

tests_bin=$build/tests/hope_tests
bench_bin=$build/benchmarks/hope_bench

testslog=$out/tests.log
: > "$testslog"

# ---- 2b. known-answer tests first: single PTX instructions against hand-worked values (tests/kat/). The emulated
# GPU passes the same tests, so a failure here is a hardware/emulator disagreement: fix the emulator's semantics
# (emulator/src/ptx_*.cc) before trusting any emulated result. -------------------------------------------------
# run_kat NAME BINARY SOURCE SKIP_OK: SKIP_OK=1 lets skipped tests pass (the sm90 ones on a non-9.x GPU).
run_kat() {
  local name=$1 bin=$2 src=$3 skip_ok=$4 log=$scratch/$1.log t0=$SECONDS rc line
  if [ $built != 1 ] || [ ! -x "$bin" ]; then
    record "$name" "SKIP (no build, or not built: $(basename "$bin"))" 0
    return
  fi
  "$bin" > "$log" 2>&1
  rc=$?
  line=$(grep -E '^\[  (PASSED|FAILED)  \]' "$log" | head -2 | tr '\n' ' ')
  if [ $rc -ne 0 ]; then record "$name" "FAIL ($line; the emulator's instruction semantics disagree with this GPU: see tests.log)"
  elif grep -q '\[  SKIPPED \]' "$log"; then
    if [ "$skip_ok" = 1 ]; then record "$name" "SKIP (not a compute capability 9.x GPU)" 0
    else record "$name" "FAIL ($line; some tests skipped on a GPU machine)"; fi
  else record "$name" "PASS ($((SECONDS - t0)) s; $line)"; fi
  collect "$log" "$testslog" "known-answer tests ($src)"
}
run_kat kat "$build/tests/hope_kat_tests" tests/kat/ptx_kat.cu 0
run_kat kat-sm90 "$build/tests/hope_kat_sm90_tests" tests/kat/ptx_sm90_kat.cu 1

# ---- 3. ctest -----------------------------------------------------------------------------------------------
ctestlog=$scratch/ctest.log
if [ $built = 1 ] && [ $build_tests = ON ]; then
  t0=$SECONDS
  ctest --test-dir "$build" --output-on-failure -j"$((jobs > 8 ? 8 : jobs))" --timeout 240 > "$ctestlog" 2>&1
  rc=$?
  line=$(grep -E 'tests passed|tests failed' "$ctestlog" | tail -1)
  skipped=$(grep -c -E '\*\*\*Skipped|Not Run' "$ctestlog")
  if [ $rc -eq 0 ]; then record "ctest" "PASS ($((SECONDS - t0)) s; $line; $skipped skipped)"
  else record "ctest" "FAIL ($line)"; grep -E '\(Failed\)|\(Timeout\)|\*\*\*Exception|SEGFAULT' "$ctestlog" | head -40; fi
  if [ "$skipped" -gt 0 ]; then
    echo "ctest: $skipped tests skipped (on a GPU machine only tests that skip for another reason should):" >> "$summary"
    grep -E '\*\*\*Skipped' "$ctestlog" | head -20 >> "$summary"
  fi
  collect "$ctestlog" "$testslog" "ctest"
  trim_log "$testslog"
else
  record "ctest" "SKIP (no build, or tests not built)"
fi

# ---- 4. pytest ----------------------------------------------------------------------------------------------
pylog=$scratch/pytest.log
if [ $built = 1 ] && [ -d python/tests ] && python3 -c 'import numpy, pytest' > /dev/null 2>&1; then
  t0=$SECONDS
  HOPE_ATTN_LIBRARY="$build/libhope_attn.so" PYTHONPATH="$repo/python${PYTHONPATH:+:$PYTHONPATH}" \
    timeout 180 python3 -m pytest -q -p no:cacheprovider python/tests > "$pylog" 2>&1
  rc=$?
  line=$(tail -1 "$pylog")
  if [ $rc -eq 0 ]; then record "pytest" "PASS ($((SECONDS - t0)) s; $line)"; else record "pytest" "FAIL ($line)"; fi
  collect "$pylog" "$testslog" "pytest"
  trim_log "$testslog"
else
  record "pytest" "SKIP (no build, or numpy/pytest not importable)"
fi

# ---- 5. compute-sanitizer -------------------------------------------------------------------------------------
sanlog=$scratch/sanitizers.log
: > "$sanlog"
run_sanitizer() { # run_sanitizer TOOL FILTER TIMEOUT FATAL(1/0) [extra args]
  local tool=$1 filter=$2 limit=$3 fatal=$4; shift 4
  if [ $built = 1 ] && [ -n "$sanitizer" ] && [ -x "$tests_bin" ]; then :; else
    record "$tool" "SKIP (no build or no compute-sanitizer)"; return; fi
  local left=$((budget - $(elapsed) - bench_reserve))  # keep time for the benchmarks
  if [ "$left" -lt 30 ]; then record "$tool" "SKIP (time budget spent)" "$fatal"; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$SECONDS first
  first=$(($(wc -l < "$sanlog") + 1))
  echo "==== compute-sanitizer --tool $tool, filter $filter, limit ${limit}s" >> "$sanlog"
  HOPE_TEST_QUICK=1 timeout "$limit" "$sanitizer" --tool "$tool" --error-exitcode 97 --report-api-errors no "$@" \
    "$tests_bin" --gtest_filter="$filter" --gtest_brief=1 >> "$sanlog" 2>&1
  local rc=$?
  local errs
  errs=$(tail -n +"$first" "$sanlog" | grep -E '========= ERROR SUMMARY' | tail -1)
  if [ $rc -eq 0 ]; then record "$tool" "PASS ($((SECONDS - t0)) s; ${errs:-no summary})"
  elif [ $rc -eq 124 ]; then
    # Not a finding: the tests ran out of time under the tool (errors found so far would show as FAIL).
    record "$tool" "TIMEOUT (incomplete after ${limit}s, ${errs:-no errors reported before the cut}; narrow the filter)"
  elif [ $rc -eq 97 ]; then record "$tool" "FAIL (sanitizer errors: ${errs})" "$fatal"
  else record "$tool" "FAIL (exit $rc: a test failed under the sanitizer)" "$fatal"; fi
  # Copied into tests.log after every tool, so a run cut short still brings back what it has.
  tail -n +"$first" "$sanlog" > "$scratch/sanitizer-one.log"
  collect "$scratch/sanitizer-one.log" "$testslog" "compute-sanitizer --tool $tool"
  trim_log "$testslog"
}
run_sanitizer memcheck "$memcheck_filter" 180 1 --leak-check no
run_sanitizer racecheck "$racecheck_filter" 120 1 --racecheck-report all
run_sanitizer initcheck "$initcheck_filter" 60 0

# ---- 6. benchmarks ------------------------------------------------------------------------------------------
benchlog=$out/bench.log
: > "$benchlog"
benchtables=$scratch/bench-tables.txt
: > "$benchtables"
benchmd=$scratch/bench.md
: > "$benchmd"
time_left() { # time_left CAP: seconds for the next benchmark, at most CAP, at least 30
  local left=$((budget - $(elapsed) + 20))
  [ "$left" -gt "$1" ] && left=$1
  [ "$left" -lt 30 ] && left=30
  echo "$left"
}
if [ $built = 1 ] && [ -x "$bench_bin" ]; then
  t0=$SECONDS
  echo "==== hope_bench" >> "$benchlog"
  # shellcheck disable=SC2086
  timeout "$(time_left 110)" "$bench_bin" --json "$out/bench.json" ${HOPE_BENCH_ARGS:-} > "$scratch/hope_bench.out" 2>&1
  rc=$?
  cat "$scratch/hope_bench.out" >> "$benchlog"
  grep -v '^wrote ' "$scratch/hope_bench.out" > "$benchtables"
  if [ $rc -eq 0 ]; then record "bench" "PASS ($((SECONDS - t0)) s)"
  elif [ $rc -eq 124 ]; then record "bench" "FAIL (timeout)"
  else record "bench" "FAIL (exit $rc)"; fi
else
  record "bench" "SKIP (no build)"
fi

# The Python benchmarks need PyTorch with CUDA and the built library; each writes one JSON (+ the prefill
# plot) into $out and appends its markdown table to a scratch bench.md that the summary takes in.
py_bench() { # py_bench NAME SCRIPT CAP
  local name=$1 script=$2 cap=$3 t0=$SECONDS rc
  echo "==== $script" >> "$benchlog"
  HOPE_ATTN_LIBRARY="$build/libhope_attn.so" PYTHONPATH="$repo/python${PYTHONPATH:+:$PYTHONPATH}" \
    timeout "$(time_left "$cap")" python3 "$repo/$script" --out "$out" --markdown "$benchmd" >> "$benchlog" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then record "$name" "PASS ($((SECONDS - t0)) s)"
  elif [ $rc -eq 124 ]; then record "$name" "FAIL (timeout; partial output in bench.log)"
  else record "$name" "FAIL (exit $rc; see bench.log)"; fi
}
if [ "${HOPE_PY_BENCH:-1}" = 0 ]; then
  record "py-bench" "SKIP (HOPE_PY_BENCH=0)" 0
elif [ $built != 1 ] || [ ! -f "$build/libhope_attn.so" ]; then
  record "py-bench" "SKIP (no build)" 0
elif ! timeout 60 python3 -c 'import torch; assert torch.cuda.is_available()' > /dev/null 2>&1; then
  record "py-bench" "SKIP (python3 cannot import torch with CUDA)" 0
else
  py_bench "prefill-py" benchmarks/prefill_bench.py 200
  py_bench "decode-py" benchmarks/decode_bench.py 80
fi
trim_log "$benchlog"

# ---- summary --------------------------------------------------------------------------------------------------
{
  echo
  echo "==== gpu-check summary ($(elapsed) s; GPU: ${gpu_name:-none})"
  for i in "${!names[@]}"; do printf '  %-10s %s\n' "${names[$i]}" "${results[$i]}"; done
  if [ -s "$benchtables" ]; then echo; echo "==== benchmarks (hope_bench)"; cat "$benchtables"; fi
  if [ -s "$benchmd" ]; then echo; echo "==== benchmarks (PyTorch comparisons)"; cat "$benchmd"; fi
  echo
  if [ $failed -ne 0 ]; then echo "gpu-check.sh: FAILED (logs in $out)"; else echo "gpu-check.sh: OK (logs in $out)"; fi
} | tee -a "$summary"
exit $failed
