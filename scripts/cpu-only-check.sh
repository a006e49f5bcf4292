#!/usr/bin/env bash
# scripts/cpu-only-check.sh — the library as a machine without the CUDA toolkit builds it, twice:
#   A. build-cpu:     -DHOPE_WITH_CUDA=OFF with the toolkit still installed (NVTX from its header-only nvtx3);
#                     ctest (CPU suite, export and install-consumer checks, demo, NVTX injection test) and pytest
#   B. build-nocuda:  the default configuration (HOPE_WITH_CUDA=AUTO) with every nvcc removed from PATH and CUDA
#                     variables unset, so CMake finds no toolkit; HOPE_WITH_NVTX=OFF as on a machine without
#                     nvtx3 headers (ranges compile out, the NVTX test reports Skipped); ctest
# and for both: CMake chose the CPU-only mode, no object includes a CUDA runtime/cuBLAS header, the library
# neither links nor references the CUDA runtime or cuBLAS, and it exports exactly the symbols of tests/exports.txt
# (the list the CUDA build is checked against too). CUDA-backend calls answering NOT_SUPPORTED with "built
# without CUDA" is part of the ctest suite (NoDevice.*, Nvtx.*). Objects come from ccache where another build
# made them already. Environment: HOPE_CPU_ONLY_DIR (parent of the two build trees; default: the repository).
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
set -e
source scripts/setup.sh
set +e
parent=${HOPE_CPU_ONLY_DIR:-$repo}
jobs=$(nproc 2> /dev/null || echo 2)
t0=$SECONDS
failed=0
fail() { echo "cpu-only: FAILED: $*" >&2; failed=1; }

# Checks of a built CPU-only tree (DIR).
check_tree() {
  local dir=$1 lib
  lib=$(readlink -f "$dir/libhope_attn.so")
  grep -q "CUDA backend OFF" "$dir/configure.log" || fail "$dir: CMake did not choose the CPU-only mode"
  if readelf -d "$lib" | grep -E "NEEDED.*(cuda|cublas)"; then fail "$dir: libhope_attn.so links CUDA"; fi
  if nm -D --undefined-only "$lib" | grep -iE " (cuda|cublas)"; then fail "$dir: libhope_attn.so references CUDA"; fi
  local headers
  headers=$(find "$dir" -name '*.o.d' -exec grep -lE "(cuda_runtime|cuda_runtime_api|cublas_v2|cublas_api|driver_types)\.h" {} + 2> /dev/null)
  [ -z "$headers" ] || fail "$dir: objects built from CUDA headers: $headers"
  tests/check_exports.sh "$lib" tests/exports.txt > /dev/null || fail "$dir: exported symbols differ from tests/exports.txt"
}

# A: HOPE_WITH_CUDA=OFF, toolkit present.
echo "cpu-only: A. $parent/build-cpu: -DHOPE_WITH_CUDA=OFF"
if hope_configure "$parent/build-cpu" -DHOPE_WITH_CUDA=OFF && cmake --build "$parent/build-cpu" -j"$jobs" > "$parent/build-cpu/build.log" 2>&1; then
  check_tree "$parent/build-cpu"
  ctest --test-dir "$parent/build-cpu" -j"$jobs" --timeout 600 > "$parent/build-cpu/ctest.log" 2>&1 \
    || { grep -A30 "tests FAILED" "$parent/build-cpu/ctest.log" >&2; fail "ctest in build-cpu"; }
  grep -E "tests passed|did not run" -A3 "$parent/build-cpu/ctest.log" | sed 's/^/  /'
  HOPE_ATTN_LIBRARY="$parent/build-cpu/libhope_attn.so" PYTHONPATH="$repo/python" \
    python3 -m pytest -q -p no:cacheprovider python/tests > "$parent/build-cpu/pytest.log" 2>&1 \
    || { tail -n 30 "$parent/build-cpu/pytest.log" >&2; fail "pytest against build-cpu"; }
  echo "  pytest: $(tail -n 1 "$parent/build-cpu/pytest.log")"
else
  tail -n 40 "$parent/build-cpu/build.log" >&2
  fail "build-cpu did not build"
fi

# B: no toolkit on PATH (and no CUDA hints), default configuration.
echo "cpu-only: B. $parent/build-nocuda: no nvcc on PATH, HOPE_WITH_CUDA=AUTO, HOPE_WITH_NVTX=OFF"
shadow=$parent/build-nocuda/path-without-nvcc
rm -rf "$parent/build-nocuda" && mkdir -p "$shadow"
newpath=""
IFS=: read -r -a dirs <<< "$PATH"
for d in "${dirs[@]}"; do
  [ -n "$d" ] && [ -d "$d" ] || continue
  if [ -e "$d/nvcc" ]; then
    case $d in */cuda*) continue ;; esac # a toolkit's own bin/: drop it
    # a directory that also holds other tools (e.g. a /usr/local/bin/nvcc wrapper): keep those, without nvcc
    local_copy=$shadow/$(echo "$d" | tr / _)
    mkdir -p "$local_copy"
    for f in "$d"/*; do
      case $(basename "$f") in nvcc | nvcc.* | __nvcc*) ;; *) ln -sf "$f" "$local_copy/" ;; esac
    done
    d=$local_copy
  fi
  newpath=${newpath:+$newpath:}$d
done
if (env PATH="$newpath" bash -c 'command -v nvcc' > /dev/null); then fail "could not remove nvcc from PATH"; fi
no_toolkit() ( # runs "$@" (hope_configure included) as on a machine without the toolkit
  unset CUDACXX CUDA_PATH CUDA_HOME CUDAToolkit_ROOT
  export PATH=$newpath
  "$@"
)
if no_toolkit hope_configure "$parent/build-nocuda" -DHOPE_WITH_NVTX=OFF \
  && no_toolkit cmake --build "$parent/build-nocuda" -j"$jobs" > "$parent/build-nocuda/build.log" 2>&1; then
  check_tree "$parent/build-nocuda"
  no_toolkit ctest --test-dir "$parent/build-nocuda" -j"$jobs" --timeout 600 > "$parent/build-nocuda/ctest.log" 2>&1 \
    || { grep -A30 "tests FAILED" "$parent/build-nocuda/ctest.log" >&2; fail "ctest in build-nocuda"; }
  grep -E "tests passed|did not run" -A3 "$parent/build-nocuda/ctest.log" | sed 's/^/  /'
else
  tail -n 40 "$parent/build-nocuda/build.log" "$parent/build-nocuda/configure.log" 2> /dev/null >&2
  fail "build-nocuda did not build"
fi

echo "cpu-only: done in $((SECONDS - t0)) s: $([ $failed -eq 0 ] && echo 'all checks passed' || echo FAILED)"
exit $failed
