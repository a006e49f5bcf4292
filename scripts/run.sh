#!/usr/bin/env bash
# scripts/run.sh — set up, build (Release) into build/, and run the demo. Arguments go to the demo:
#   ./scripts/run.sh --video 32x18x32 --text 64 --scale fit:16384
# HOPE_BUILD_DIR overrides the build directory (default: build/ in the repository).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
source scripts/setup.sh
build=${HOPE_BUILD_DIR:-build}
case $build in /*) ;; *) build=$repo/$build ;; esac

hope_configure "$build"
cmake --build "$build" -j"$(nproc 2> /dev/null || echo 2)" --target hope_attn_demo
exec "$build/examples/hope_attn_demo" "$@"
