#!/usr/bin/env bash
# scripts/setup.sh — installs what hope_attn's build and tests need on a fresh Debian machine. Checks before
# installing, so an already prepared machine does no network work at all. With the CUDA toolkit (nvcc on PATH or
# in /usr/local/cuda*/bin) the library gets its CUDA backend; without it the build is CPU-only (the CPU backend is
# complete; CUDA-backend calls return HOPE_ERROR_NOT_SUPPORTED), and this script says so.
# Sourced by run.sh and test.sh (it exports PATH); also runnable on its own.
set -euo pipefail

hope_setup_main() {
  local sudo=""
  if [ "$(id -u)" != 0 ] && command -v sudo > /dev/null; then sudo="sudo"; fi

  # --- the CUDA toolkit (optional): nvcc on PATH is how CMake finds it --------------------------------------
  if ! command -v nvcc > /dev/null; then
    local d
    for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
      if [ -x "$d/nvcc" ]; then export PATH="$d:$PATH"; break; fi
    done
  fi
  if ! command -v nvcc > /dev/null; then
    echo "setup: no CUDA toolkit (nvcc is not on PATH or in /usr/local/cuda*/bin): building the CPU-only library" \
         "(complete CPU backend; CUDA-backend calls return HOPE_ERROR_NOT_SUPPORTED). Install the CUDA toolkit" \
         "for the GPU kernels." >&2
  fi

  # --- Debian packages ---------------------------------------------------------------------------------------
  local missing=() pkg
  # ccache: the CPU-only, wheel, sanitizer and emulated builds of scripts/test.sh reuse each other's objects.
  for pkg in cmake g++ make ccache libgtest-dev libboost-context-dev pkg-config python3-pip python3-venv; do
    if ! dpkg -s "$pkg" > /dev/null 2>&1; then missing+=("$pkg"); fi
  done
  # A python3 that is not Debian's (pyenv, conda) brings its own pip and venv (scripts/wheel-check.sh makes a
  # virtual environment): then python3-pip and python3-venv are not needed.
  local have_pip=0 have_venv=0
  if python3 -m pip --version > /dev/null 2>&1; then have_pip=1; fi
  if python3 -c "import ensurepip, venv" > /dev/null 2>&1; then have_venv=1; fi
  local filtered=()
  for pkg in "${missing[@]+"${missing[@]}"}"; do
    if [ "$pkg" = python3-pip ] && [ $have_pip = 1 ]; then continue; fi
    if [ "$pkg" = python3-venv ] && [ $have_venv = 1 ]; then continue; fi
    filtered+=("$pkg")
  done
  missing=("${filtered[@]+"${filtered[@]}"}")
  if [ "${#missing[@]}" -gt 0 ]; then
    if ! command -v apt-get > /dev/null; then
      echo "setup: missing ${missing[*]} and no apt-get to install them" >&2
      return 1
    fi
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  if ! command -v python3 > /dev/null; then
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q python3 python3-pip
  fi

  # --- Python packages for the binding's tests (python3 may be pyenv's: always go through python3 -m pip) ---
  local pymissing=() mod
  for mod in numpy pytest ml_dtypes hypothesis; do
    if ! python3 -c "import $mod" > /dev/null 2>&1; then pymissing+=("$mod"); fi
  done
  if [ "${#pymissing[@]}" -gt 0 ]; then
    echo "setup: pip installing ${pymissing[*]}"
    # Debian's own python3 refuses system-wide pip installs (PEP 668) unless told otherwise.
    python3 -m pip install -q "${pymissing[@]}" 2> /dev/null \
      || python3 -m pip install -q --break-system-packages "${pymissing[@]}"
  fi
}

hope_setup_main

# hope_configure BUILD_DIR [CMAKE_ARGS...]: the one CMake configuration run.sh and test.sh share (Release); extra
# arguments go to cmake (e.g. -DHOPE_WITH_CUDA=OFF). Prints what CMake chose (CUDA backend or CPU-only, NVTX).
# On a machine with a GPU, compile for exactly that GPU (quick build, kernels that run). Without one, 80-real:
# there the kernels can only be checked to compile, and one real architecture is the quickest such check.
hope_configure() {
  local build=$1 archs=80-real
  shift
  if command -v nvidia-smi > /dev/null && nvidia-smi -L 2> /dev/null | grep -q '^GPU'; then archs=native; fi
  # ccache, when present, lets the sanitizer and fuzz builds reuse this build's objects.
  local launcher=() cuda=()
  if command -v ccache > /dev/null; then
    launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  fi
  if command -v nvcc > /dev/null; then # the toolkit is here: insist on the CUDA backend (a later -D overrides)
    cuda=(-DHOPE_WITH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$archs")
    if command -v ccache > /dev/null; then cuda+=(-DCMAKE_CUDA_COMPILER_LAUNCHER=ccache); fi
  fi
  echo "configure: $build"
  mkdir -p "$build"
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release "${cuda[@]+"${cuda[@]}"}" "${launcher[@]+"${launcher[@]}"}" \
    -DHOPE_BUILD_TESTS=ON -DHOPE_BUILD_EXAMPLES=ON -DHOPE_BUILD_BENCHMARKS=ON "$@" > "$build/configure.log" 2>&1 \
    || { cat "$build/configure.log" >&2; return 1; }
  grep -E "^-- hope_attn: (CUDA backend|NVTX)" "$build/configure.log" | sed 's/^-- hope_attn: /configure:   /'
}

# Sanitizer options for the CPU test suite under ASan+UBSan (scripts/sanitize.sh, and the ASan build of
# scripts/emulated-gpu.sh). CUDA's runtime maps memory in ASan's shadow gap when it initialises a GPU:
# protect_shadow_gap=0 lets it. allocator_may_return_null=1: the resource tests ask for impossible allocations and
# expect a status back.
HOPE_CPU_ASAN_OPTIONS="protect_shadow_gap=0:detect_leaks=1:allocator_may_return_null=1:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=1:abort_on_error=0:halt_on_error=1"
HOPE_UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
