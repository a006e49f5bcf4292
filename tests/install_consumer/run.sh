#!/usr/bin/env bash
# Installs the built library into a scratch prefix, then builds a C program against the *installed*
# package twice: with CMake's find_package(hope_attn CONFIG) and with pkg-config. Runs both.
set -euo pipefail
build_dir=$1 cmake=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work" && mkdir -p "$work"
"$cmake" --install "$build_dir" --prefix "$work/prefix" > "$work/install.log"
"$cmake" -S "$here" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/configure.log"
"$cmake" --build "$work/build" > "$work/build.log"
"$work/build/consumer"
libdir=$(dirname "$(find "$work/prefix" -name 'libhope_attn.so' | head -1)")
export PKG_CONFIG_PATH="$libdir/pkgconfig"
if command -v pkg-config > /dev/null; then
  cc -std=c99 -o "$work/consumer_pc" "$here/consumer.c" $(pkg-config --cflags --libs hope_attn) -Wl,-rpath,"$libdir"
  "$work/consumer_pc"
else
  echo "pkg-config not installed: skipped the pkg-config build"
fi
