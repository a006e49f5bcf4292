#!/usr/bin/env bash
# scripts/sanitize.sh — the CPU test suite once more under sanitizers; any finding fails the script.
#   1. build-asan: library + hope_tests with -DHOPE_SANITIZE=address,undefined (AddressSanitizer, its
#      LeakSanitizer, UndefinedBehaviorSanitizer; host C/C++ only, CUDA objects are not instrumented), then every
#      test except the GPU suites (*Gpu*), which skip without a GPU anyway and would call into the CUDA runtime.
#   2. build-tsan: the same with -DHOPE_SANITIZE=thread, running the Concurrency.* tests (every entry point
#      from several threads at once, per-thread error messages).
# Both builds compile host C/C++ at -O1 -g (quick to build, good sanitizer reports), CUDA files exactly as a
# Release build with architecture 80-real, through ccache (installed when missing and possible), so kernel objects
# identical to another build's are not compiled again. The TSan half builds only the library and compiles
# tests/test_concurrency.cc on its own (falling back to the whole hope_tests target if that fails).
# Environment: HOPE_SANITIZE_JOBS (default 2), HOPE_ASAN_BUILD_DIR / HOPE_TSAN_BUILD_DIR (default build-asan /
# build-tsan in the repository), HOPE_SANITIZE_ONLY=asan|tsan to run one half, HOPE_SANITIZE_ONLY=asan-lib to
# only build the ASan/UBSan library (scripts/pyfuzz.sh loads it into Python).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# nvcc on PATH and the build's packages (checks first; installs only what is missing).
source scripts/setup.sh

jobs=${HOPE_SANITIZE_JOBS:-2}
asan_dir=${HOPE_ASAN_BUILD_DIR:-$repo/build-asan}
tsan_dir=${HOPE_TSAN_BUILD_DIR:-$repo/build-tsan}
only=${HOPE_SANITIZE_ONLY:-}

sudo=""
if [ "$(id -u)" != 0 ] && command -v sudo > /dev/null; then sudo="sudo"; fi
if ! command -v ccache > /dev/null && command -v apt-get > /dev/null; then
  echo "sanitize: installing ccache"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends ccache > /dev/null 2>&1 \
    || { $sudo apt-get update -q > /dev/null 2>&1 &&
         DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends ccache > /dev/null 2>&1; } \
    || echo "sanitize: could not install ccache; building without it"
fi
launcher=()
if command -v ccache > /dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi

# The sanitizer flags go in through CMAKE_{C,CXX}_FLAGS and the linker flags: exactly what -DHOPE_SANITIZE=...
# adds (host C/C++ compile and every link; CUDA compiles untouched, so their ccache entries are shared), and
# independent of how CMakeLists.txt spells that option.
configure_and_build() { # DIR SANITIZERS [TARGET]
  local dir=$1 san=$2 target=${3:-hope_tests}
  local flags="-fsanitize=$san -fno-omit-frame-pointer -fno-sanitize-recover=all -g"
  echo "sanitize: configure $dir (-fsanitize=$san)"
  mkdir -p "$dir"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=80-real -DHOPE_SANITIZE= \
    -DHOPE_BUILD_TESTS=ON -DHOPE_BUILD_BENCHMARKS=OFF -DHOPE_BUILD_EXAMPLES=OFF \
    -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=$san" \
    -DCMAKE_C_FLAGS_RELEASE="-O1 -DNDEBUG" -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" \
    -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=$san" "${launcher[@]}" > "$dir/configure.log" 2>&1 \
    || { cat "$dir/configure.log" >&2; return 1; }
  echo "sanitize: build $dir"
  cmake --build "$dir" -j"$jobs" --target "$target" > "$dir/build.log" 2>&1 \
    || { tail -n 60 "$dir/build.log" >&2; return 1; }
}

# the options are scripts/setup.sh's (shared with scripts/emulated-gpu.sh)
asan_env=("ASAN_OPTIONS=$HOPE_CPU_ASAN_OPTIONS" "UBSAN_OPTIONS=$HOPE_UBSAN_OPTIONS")
tsan_env=(
  "TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:allocator_may_return_null=1:exitcode=66"
)

# Runs a sanitized test binary; with ThreadSanitizer, retries without ASLR when the kernel's mmap randomisation
# is too wide for this TSan runtime ("unexpected memory mapping").
run_tests() { # ENV-ARRAY-NAME BINARY FILTER
  local -n envs=$1
  local bin=$2 filter=$3 log
  log=$(mktemp)
  set +e
  env "${envs[@]}" "$bin" --gtest_filter="$filter" --gtest_brief=1 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ] && grep -q "unexpected memory mapping" "$log" && command -v setarch > /dev/null; then
    echo "sanitize: retrying with ASLR off (setarch -R)"
    env "${envs[@]}" setarch "$(uname -m)" -R "$bin" --gtest_filter="$filter" --gtest_brief=1
    rc=$?
  fi
  set -e
  rm -f "$log"
  return "$rc"
}

t0=$SECONDS
status=0
if [ "$only" = asan-lib ]; then
  configure_and_build "$asan_dir" "address,undefined" hope_attn
  exit 0
fi
if [ "$only" != tsan ]; then
  configure_and_build "$asan_dir" "address,undefined"
  echo "sanitize: AddressSanitizer + UndefinedBehaviorSanitizer: CPU tests"
  run_tests asan_env "$asan_dir/tests/hope_tests" '-*Gpu*:*GPU*' || { echo "sanitize: ASan/UBSan run FAILED"; status=1; }
fi
if [ "$only" != asan ]; then
  configure_and_build "$tsan_dir" "thread" hope_attn
  echo "sanitize: build $tsan_dir/concurrency_tests (tests/test_concurrency.cc alone)"
  tsan_bin=$tsan_dir/concurrency_tests
  cuda_home=$(dirname "$(dirname "$(command -v nvcc)")")
  compile=(${launcher:+ccache} "${CXX:-c++}" -std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=thread
           -I"$repo/include" -I"$repo/tests" -I"$cuda_home/include" "$repo/tests/test_concurrency.cc"
           -o "$tsan_bin" -L"$tsan_dir" -Wl,-rpath,"$tsan_dir" -lhope_attn
           -L"$cuda_home/lib64" -Wl,-rpath,"$cuda_home/lib64" -lcudart -lgtest_main -lgtest -pthread)
  if ! "${compile[@]}" > "$tsan_dir/concurrency_build.log" 2>&1; then
    echo "sanitize: stand-alone compile failed ($tsan_dir/concurrency_build.log); building hope_tests instead"
    configure_and_build "$tsan_dir" "thread" hope_tests
    tsan_bin=$tsan_dir/tests/hope_tests
  fi
  echo "sanitize: ThreadSanitizer: Concurrency tests"
  run_tests tsan_env "$tsan_bin" 'Concurrency*:-*Gpu*' || { echo "sanitize: TSan run FAILED"; status=1; }
fi
if command -v ccache > /dev/null; then ccache --show-stats 2> /dev/null | grep -iE "hit|miss" | head -4 || true; fi
echo "sanitize: done in $((SECONDS - t0)) s: $([ $status -eq 0 ] && echo 'no findings' || echo FAILED)"
exit $status
