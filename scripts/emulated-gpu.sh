#!/usr/bin/env bash
# scripts/emulated-gpu.sh — every GPU test suite on the emulated GPU, on a machine without a GPU.
#
#   scripts/emulated-gpu.sh            # build build-emu/ (and build-emu-asan/), run the suite, print a summary
#
# 1. configures build-emu/ with -DHOPE_EMULATED_DEVICE=ON: the CUDA kernels compiled by the host C++
#    compiler and run by emulator/ (one fiber per CUDA thread, PTX wrappers emulated, an emulated CUDA
#    runtime and cuBLAS), and builds it;
# 2. runs the emulated suite — every GoogleTest case of tests/*_gpu.cc (and the GPU half of the concurrency
#    and no-device tests), the PTX known-answer tests (tests/kat/ptx_kat.cu, ptx_sm90_kat.cu), the emulator's
#    own hazard tests (tests/kat/emu_hazards.cu), decode_loop and the demo on the CUDA backend — once per
#    thread schedule: lockstep, forward (warp-serial), reverse (warp-serial reversed) and random (seeded). The
#    emulated device is a compute capability 9.0 one, so the fused-attention suites run the sm90 kernel family;
# 2b. runs the fused-attention suites once more on an 8.0 device (HOPE_EMU_CC=80: the planner picks the sm80
#    family) under one schedule;
# 3. builds build-emu-asan/ (AddressSanitizer + UndefinedBehaviorSanitizer on the emulator, the library and
#    the tests: global memory is ASan-checked host memory, in-flight cp.async bytes are ASan-poisoned) and
#    runs the suite once more under one schedule;
# 3b. with HOPE_EMU_ASAN_CPU=FILE, also runs the CPU test suite (what scripts/sanitize.sh's ASan half runs:
#    every test but the GPU suites, with its stricter ASAN_OPTIONS) in that same ASan build, in two gtest shards
#    side by side, and on success writes FILE: scripts/test.sh then skips sanitize.sh's own ASan build of the
#    same tests (CI builds hope_tests with ASan once, not twice).
# Prints one "N passed, M failed" line per run and a total; exits non-zero if anything failed.
#
# Environment: HOPE_EMU_SCHEDULES (default "lockstep forward reverse random"), HOPE_EMU_SM80_SCHEDULE (the
# 8.0-device run of the fused suites, default random; "none" skips it), HOPE_EMU_ASAN_SCHEDULE
# (default random; "none" skips the ASan run), HOPE_EMU_SEED (random schedule, default 1),
# HOPE_EMU_QUICK (1 by default: the suites' HOPE_TEST_QUICK sizes, which keep every shape class but drop the
# longest sequences; 0 runs the full sizes), HOPE_EMU_BUILD_DIR / HOPE_EMU_ASAN_BUILD_DIR, HOPE_EMU_FILTER
# (a ctest -R regex replacing the default selection).
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo" || exit 2
set -e
source scripts/setup.sh
set +e

# The emulated build needs the CUDA toolkit's headers (not nvcc, not a GPU).
if ! { command -v nvcc > /dev/null || [ -f /usr/local/cuda/include/cuda_runtime_api.h ] ||
       [ -f /usr/include/cuda_runtime_api.h ]; }; then
  echo "emulated-gpu.sh: no CUDA toolkit headers on this machine: the emulated GPU is skipped"
  exit 0
fi

build=${HOPE_EMU_BUILD_DIR:-$repo/build-emu}
asan_build=${HOPE_EMU_ASAN_BUILD_DIR:-$repo/build-emu-asan}
schedules=${HOPE_EMU_SCHEDULES:-lockstep forward reverse random}
asan_schedule=${HOPE_EMU_ASAN_SCHEDULE:-random}
sm80_schedule=${HOPE_EMU_SM80_SCHEDULE:-random}
quick=${HOPE_EMU_QUICK:-1}
jobs=$(nproc 2> /dev/null || echo 2)
# The emulated suite: GPU test suites, the known-answer and emulator tests, and the programs.
filter=${HOPE_EMU_FILTER:-'Gpu|NoDevice|PtxKat|Emu(Hazards|Runtime|Math)|EmulatedGpu\.|Examples\.DecodeLoopRuns'}
# The ctest entry that repeats the fused suites with the sm80 family forced (for real Hopper GPUs) is left out:
# the 8.0-device run below covers that family here, with its tests spread over the cores.
exclude='AllWithSm80FamilyForced'
sm80_filter='AttentionFused|RotaryFusedAttention|RotaryAttentionGpu'  # the suites whose kernel family depends on the device

launcher=()
if command -v ccache > /dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

configure() { # configure DIR [extra cmake args...]
  local dir=$1; shift
  mkdir -p "$dir"
  cmake -S "$repo" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DHOPE_EMULATED_DEVICE=ON -DHOPE_BUILD_TESTS=ON \
    -DHOPE_BUILD_EXAMPLES=ON -DHOPE_BUILD_BENCHMARKS=OFF "${launcher[@]+"${launcher[@]}"}" "$@" \
    > "$dir/configure.log" 2>&1 || { cat "$dir/configure.log" >&2; return 1; }
  cmake --build "$dir" -j"$jobs" > "$dir/build.log" 2>&1 || { tail -50 "$dir/build.log" >&2; return 1; }
}

declare -a run_names=() run_results=()
total_pass=0 total_fail=0 total_skip=0 failed=0

run_suite() { # run_suite NAME BUILD_DIR SCHEDULE [env...]; FILTER (default $filter) selects the tests
  local name=$1 dir=$2 schedule=$3; shift 3
  local log=$dir/emulated-${name// /-}.log t0=$SECONDS
  echo
  echo "==== emulated GPU: $name (schedule $schedule${HOPE_EMU_SEED:+, seed $HOPE_EMU_SEED})"
  env HOPE_EMU_SCHEDULE="$schedule" HOPE_TEST_QUICK="$quick" "$@" \
    ctest --test-dir "$dir" -R "${FILTER:-$filter}" -E "$exclude" -j"$jobs" --timeout 1200 --output-on-failure \
    > "$log" 2>&1
  local total failed_n skipped
  total=$(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' "$log" | tail -1)
  failed_n=$(sed -n 's/.* \([0-9]*\) tests failed out of.*/\1/p' "$log" | tail -1)
  skipped=$(grep -c '(Skipped)$' "$log")
  total=${total:-0} failed_n=${failed_n:-0}
  if [ "$total" = 0 ]; then
    echo "no test ran (see $log)"
    tail -20 "$log"
    failed_n=1
  fi
  local passed=$((total - failed_n - skipped))
  grep -E '^\s+[0-9]+/[0-9]+ Test' "$log" | grep -v 'Passed' | head -40
  if [ "$failed_n" != 0 ]; then
    sed -n '/The following tests FAILED/,$p' "$log" | head -60
    failed=1
  fi
  echo "$name: $passed passed, $failed_n failed, $skipped skipped ($((SECONDS - t0)) s)"
  run_names+=("$name")
  run_results+=("$passed passed, $failed_n failed, $skipped skipped ($((SECONDS - t0)) s)")
  total_pass=$((total_pass + passed))
  total_fail=$((total_fail + failed_n))
  total_skip=$((total_skip + skipped))
}

# run_cpu_asan BUILD_DIR MARK_FILE: the CPU suite under ASan+UBSan (sanitize.sh's filter and options; no fibers
# there, so stack-use-after-return is checked), two shards at once; writes MARK_FILE when both pass.
run_cpu_asan() {
  local dir=$1 mark=$2 t0=$SECONDS rc=0 i
  local -a pids=()
  rm -f "$mark"
  echo
  echo "==== emulated GPU build, CPU suite under ASan+UBSan (instead of scripts/sanitize.sh's ASan build)"
  for i in 0 1; do
    env GTEST_TOTAL_SHARDS=2 GTEST_SHARD_INDEX=$i \
      ASAN_OPTIONS="$HOPE_CPU_ASAN_OPTIONS" UBSAN_OPTIONS="$HOPE_UBSAN_OPTIONS" \
      "$dir/tests/hope_tests" --gtest_filter='-*Gpu*:*GPU*' --gtest_brief=1 > "$dir/cpu-asan-$i.log" 2>&1 &
    pids+=($!)
  done
  for i in 0 1; do wait "${pids[$i]}" || rc=1; done
  local passed
  passed=$(cat "$dir"/cpu-asan-[01].log | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | awk '{n += $1} END {print n + 0}')
  if [ $rc -eq 0 ]; then
    touch "$mark"
    echo "asan+ubsan CPU suite: $passed passed ($((SECONDS - t0)) s)"
    run_results+=("$passed passed ($((SECONDS - t0)) s)")
  else
    grep -hE "FAILED|ERROR: (Address|Undefined|Leak)Sanitizer|runtime error" "$dir"/cpu-asan-[01].log | head -40
    echo "asan+ubsan CPU suite: FAILED (logs: $dir/cpu-asan-0.log, cpu-asan-1.log)"
    run_results+=("FAILED")
    failed=1
  fi
  run_names+=("asan+ubsan CPU suite")
}

t_build=$SECONDS
echo "==== emulated GPU: building $build"
if ! configure "$build"; then
  echo "emulated-gpu.sh: the emulated build failed"
  exit 1
fi
echo "built in $((SECONDS - t_build)) s"
for s in $schedules; do run_suite "$s" "$build" "$s"; done
if [ "$sm80_schedule" != none ]; then
  FILTER=$sm80_filter run_suite "sm80 family $sm80_schedule" "$build" "$sm80_schedule" HOPE_EMU_CC=80
fi

if [ "$asan_schedule" != none ]; then
  t_build=$SECONDS
  echo
  echo "==== emulated GPU: building $asan_build (AddressSanitizer + UndefinedBehaviorSanitizer)"
  # Host code at -O1 (tests and library: quick to build under ASan+UBSan), the emulator and the kernels at -O3.
  if configure "$asan_build" -DHOPE_SANITIZE=address,undefined -DCMAKE_C_FLAGS_RELEASE="-O1 -DNDEBUG" \
    -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" -DHOPE_EMU_KERNEL_OPT=-O3; then
    echo "built in $((SECONDS - t_build)) s"
    # Leaks are checked; huge allocations return NULL (the tests' out-of-memory cases), fibers switch stacks.
    run_suite "asan+ubsan $asan_schedule" "$asan_build" "$asan_schedule" \
      ASAN_OPTIONS="allocator_may_return_null=1:detect_stack_use_after_return=0:${ASAN_OPTIONS:-}" \
      UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
    if [ -n "${HOPE_EMU_ASAN_CPU:-}" ]; then run_cpu_asan "$asan_build" "$HOPE_EMU_ASAN_CPU"; fi
  else
    echo "emulated-gpu.sh: the ASan build failed"
    run_names+=("asan+ubsan build")
    run_results+=("FAILED")
    failed=1
  fi
fi

echo
echo "==== emulated GPU summary (HOPE_TEST_QUICK=$quick)"
for i in "${!run_names[@]}"; do printf '  %-22s %s\n' "${run_names[$i]}" "${run_results[$i]}"; done
echo "emulated GPU total: $total_pass passed, $total_fail failed, $total_skip skipped"
exit $failed
