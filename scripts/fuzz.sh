#!/usr/bin/env bash
# scripts/fuzz.sh — builds the libFuzzer harnesses (fuzz/fuzz_*.cc; clang, -fsanitize=fuzzer,address,undefined)
# into build-fuzz/ and runs each for a bounded time, one after another, starting from its seed corpus in
# fuzz/corpus/<harness>/ (the regression seeds there run first). New corpus entries go to a scratch directory
# under the build directory, never into the repository. Any crash, sanitizer report, leak, timeout or
# out-of-memory fails the script; the reproducer is saved as build-fuzz/artifacts/<harness>-crash-*.
#
#   scripts/fuzz.sh [--seconds N] [--only HARNESS] [--build-only] [--keep-corpus]
#     --seconds N     fuzzing time per harness (default 30; 5 harnesses -> 2.5 minutes)
#     --only NAME     run one harness (e.g. fuzz_positions)
#     --build-only    build, do not run
#     --keep-corpus   keep the scratch corpus from the previous run instead of starting from the seeds only
# Environment: HOPE_FUZZ_BUILD_DIR (default build-fuzz in the repository), HOPE_FUZZ_JOBS (build jobs, default 2),
# HOPE_FUZZ_EXTRA_FLAGS (extra sanitizer flags for exploring past a known finding; empty in CI).
# Reproduce a failure: build-fuzz/fuzz/<harness> <artifact file>
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

seconds=30
only=""
build_only=0
keep_corpus=0
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --seconds=*) seconds=${1#*=}; shift ;;
    --only) only=$2; shift 2 ;;
    --only=*) only=${1#*=}; shift ;;
    --build-only) build_only=1; shift ;;
    --keep-corpus) keep_corpus=1; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "fuzz.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case $seconds in ''|*[!0-9]*) echo "fuzz.sh: --seconds needs a whole number" >&2; exit 2 ;; esac

build=${HOPE_FUZZ_BUILD_DIR:-$repo/build-fuzz}
jobs=${HOPE_FUZZ_JOBS:-2}
# nvcc on PATH (the harnesses link the library, whose CUDA files must compile) and the build's packages.
source scripts/setup.sh

sudo=""
if [ "$(id -u)" != 0 ] && command -v sudo > /dev/null; then sudo="sudo"; fi
apt_install() {
  command -v apt-get > /dev/null || return 1
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "$@" > /dev/null 2>&1 \
    || { $sudo apt-get update -q > /dev/null 2>&1 &&
         DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "$@" > /dev/null 2>&1; }
}

# clang (Debian's clang-14, or whatever clang is on PATH) and its libFuzzer runtime.
cc=""; cxx=""
for v in 14 15 16 17 18 19 ""; do
  if command -v "clang${v:+-$v}" > /dev/null && command -v "clang++${v:+-$v}" > /dev/null; then
    cc=clang${v:+-$v}; cxx=clang++${v:+-$v}; break
  fi
done
if [ -z "$cc" ]; then
  echo "fuzz: installing clang"
  apt_install clang-14 || apt_install clang || { echo "fuzz: no clang and none installable" >&2; exit 1; }
  if command -v clang-14 > /dev/null; then cc=clang-14; cxx=clang++-14; else cc=clang; cxx=clang++; fi
fi
runtime=$("$cc" -print-file-name=libclang_rt.fuzzer-x86_64.a 2> /dev/null || true)
if [ ! -f "$runtime" ]; then
  ver=$("$cc" -dumpversion | cut -d. -f1)
  echo "fuzz: installing libFuzzer's runtime (libclang-rt-$ver-dev)"
  apt_install "libclang-rt-$ver-dev" || apt_install libclang-rt-dev \
    || { echo "fuzz: libFuzzer runtime missing and not installable" >&2; exit 1; }
fi
if ! command -v ccache > /dev/null; then apt_install ccache || true; fi
launcher=()
if command -v ccache > /dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi

echo "fuzz: configure $build ($cc)"
mkdir -p "$build"
# CPU-only (HOPE_WITH_CUDA=OFF): the harnesses fuzz the host code, argument checks and the CPU backend; with no GPU
# the CUDA backend is only ever refused, so compiling the kernels again (nvcc, clang as host) would buy nothing.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHOPE_WITH_CUDA=OFF \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" -DHOPE_BUILD_FUZZERS=ON -DHOPE_BUILD_TESTS=OFF \
  -DHOPE_BUILD_BENCHMARKS=OFF -DHOPE_BUILD_EXAMPLES=OFF -DHOPE_FUZZ_EXTRA_FLAGS="${HOPE_FUZZ_EXTRA_FLAGS:-}" \
  "${launcher[@]}" > "$build/configure.log" 2>&1 \
  || { cat "$build/configure.log" >&2; exit 1; }
echo "fuzz: build"
cmake --build "$build" -j"$jobs" --target hope_fuzzers > "$build/build.log" 2>&1 \
  || { tail -n 60 "$build/build.log" >&2; exit 1; }
[ "$build_only" = 1 ] && { echo "fuzz: built"; exit 0; }

harnesses=()
for src in fuzz/fuzz_*.cc; do
  name=$(basename "$src" .cc)
  if [ -z "$only" ] || [ "$only" = "$name" ]; then harnesses+=("$name"); fi
done
[ "${#harnesses[@]}" -gt 0 ] || { echo "fuzz: no harness named $only" >&2; exit 2; }

mkdir -p "$build/artifacts" "$build/logs"
status=0
summary=()
for name in "${harnesses[@]}"; do
  bin=$build/fuzz/$name
  seeds=$repo/fuzz/corpus/$name
  scratch=$build/corpus/$name
  [ "$keep_corpus" = 1 ] || rm -rf "$scratch"
  mkdir -p "$scratch" "$seeds"
  log=$build/logs/$name.log
  echo "fuzz: $name for ${seconds} s (seeds: fuzz/corpus/$name, new inputs: ${scratch#$repo/})"
  # The first corpus directory receives new inputs: the scratch one, so the repository stays untouched.
  # -timeout: one input may take at most 30 s; -rss_limit_mb: the harness caps its own allocations far below.
  # -seed: a fixed seed (HOPE_FUZZ_SEED, default 1) so that a run explores the same inputs every time: CI
  # stays reproducible, and a finding there reproduces here. HOPE_FUZZ_SEED=0 lets libFuzzer pick one.
  set +e
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$bin" "$scratch" "$seeds" -seed="${HOPE_FUZZ_SEED:-1}" -max_total_time="$seconds" -timeout=30 \
    -rss_limit_mb=3072 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/$name-" > "$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
  if [ "$rc" -eq 0 ]; then
    summary+=("$(printf '%-16s PASS  %10s inputs  %6s/s  %s' "$name" "${runs:-?}" "${speed:-?}" "$cov")")
  else
    status=1
    summary+=("$(printf '%-16s FAIL  (exit %d; see %s)' "$name" "$rc" "${log#$repo/}")")
    echo "fuzz: $name FAILED; the end of its log:"
    grep -v '^#[0-9]' "$log" | tail -n 40
    ls -1 "$build/artifacts/$name-"* 2> /dev/null | sed 's/^/fuzz: reproducer: /' || true
  fi
done
echo "fuzz: summary"
printf '  %s\n' "${summary[@]}"
exit $status
