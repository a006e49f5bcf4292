#!/usr/bin/env bash
# Compares the library's exported symbols (nm -D --defined-only) with the checked-in list.
set -euo pipefail
lib=$1 expected=$2
actual=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sed 's/@.*//' | sort -u)
if ! diff -u "$expected" <(echo "$actual"); then
  echo "exported symbols differ from $expected (left: expected, right: actual)" >&2
  exit 1
fi
bad=$(echo "$actual" | grep -v '^hope_' || true)
if [ -n "$bad" ]; then echo "non-hope_ symbols exported: $bad" >&2; exit 1; fi
echo "exports OK: $(echo "$actual" | wc -l) hope_* symbols"
