#!/usr/bin/env bash
# scripts/wheel-check.sh — what a pip user gets: builds the wheel of this checkout (pyproject.toml,
# scikit-build-core), installs it into a fresh virtual environment, and from a directory outside the repository,
# with no HOPE_ATTN_LIBRARY or PYTHONPATH set, runs the README's Python quick start (extracted from README.md)
# and checks its results against float64 computed here, the wheel's build record (hope_attn.build_info()),
# and the demo's two entry points (hope-attn-demo, python -m hope_attn).
#
# CI builds the CPU-only wheel (HOPE_WITH_CUDA=OFF: C files only, a few seconds with ccache); HOPE_WHEEL_CUDA=1
# builds the default wheel instead (the CUDA backend when a toolkit is found, architectures 80-real;90 unless
# HOPE_WHEEL_ARGS says otherwise, e.g. HOPE_WHEEL_ARGS="-C cmake.define.CMAKE_CUDA_ARCHITECTURES=90a").
# pip needs PyPI for scikit-build-core (build isolation) and numpy (the fresh environment); the pip cache helps.
# HOPE_WHEEL_DIR: scratch directory (default build-wheel/ in the repository).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${HOPE_WHEEL_DIR:-$repo/build-wheel}
rm -rf "$work" && mkdir -p "$work/dist" "$work/outside"
t0=$SECONDS

args=(--no-deps -w "$work/dist")
if [ "${HOPE_WHEEL_CUDA:-0}" = 1 ]; then
  echo "wheel: building the default wheel (CUDA backend when a toolkit is found)"
else
  echo "wheel: building the CPU-only wheel (HOPE_WITH_CUDA=OFF; HOPE_WHEEL_CUDA=1 builds the default one)"
  args+=(-C cmake.define.HOPE_WITH_CUDA=OFF)
fi
read -r -a extra <<< "${HOPE_WHEEL_ARGS:-}"
# Parallel jobs and ccache through CMake's environment defaults (the build runs in pip's temporary directory).
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2> /dev/null || echo 2)}
if command -v ccache > /dev/null; then
  export CMAKE_C_COMPILER_LAUNCHER=ccache CMAKE_CXX_COMPILER_LAUNCHER=ccache CMAKE_CUDA_COMPILER_LAUNCHER=ccache
fi
python3 -m pip wheel -q "${args[@]}" "${extra[@]+"${extra[@]}"}" "$repo" > "$work/wheel.log" 2>&1 \
  || { tail -n 40 "$work/wheel.log" >&2; echo "wheel: the wheel did not build" >&2; exit 1; }
wheel=$(ls "$work"/dist/hope_attn-*.whl)
echo "wheel: $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB) in $((SECONDS - t0)) s"

python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "$wheel" > "$work/install.log" 2>&1 \
  || { tail -n 40 "$work/install.log" >&2; echo "wheel: pip install of the wheel failed" >&2; exit 1; }
echo "wheel: installed into a fresh virtual environment in $((SECONDS - t0)) s"

# The README's quick start, exactly as written there (the first python block after "## Python quick start").
awk '/^## Python quick start/ {s = 1} s && /^```python/ {p = 1; next} p && /^```/ {exit} p' "$repo/README.md" \
  > "$work/outside/quickstart.py"
[ -s "$work/outside/quickstart.py" ] || { echo "wheel: no python block under '## Python quick start'" >&2; exit 1; }

cat > "$work/outside/check.py" << 'EOF'
"""Runs quickstart.py and checks what it computed, from outside the repository with no environment help."""
import json
import math
import pathlib
import sys

import numpy as np

ns = {}
exec(compile(pathlib.Path("quickstart.py").read_text(), "README quick start", "exec"), ns)
ha = ns["ha"]
info = ha.build_info()
pkg = pathlib.Path(ha.__file__).resolve().parent
lib = pathlib.Path(info["library"]).resolve()
assert pkg.parent.name == "site-packages" and pkg.parent.parent.parent.parent == pathlib.Path(sys.prefix).resolve(), pkg
assert lib == pkg / "libhope_attn.so", f"library {lib}, not the wheel's"
wheel = info["wheel"]
assert wheel is not None, "no build record in the wheel's metadata"
for key in ("version", "cuda", "cuda_version", "cuda_architectures", "nvtx"):
    assert wheel[key] == info[key], (key, wheel[key], info[key])

# The quick start's results against float64 (SPEC §4-5), for a spread of query rows.
pos, next_pos, cos, sin, q, k, out, lse, n = (ns[x] for x in ("pos", "next_pos", "cos", "sin", "q", "k", "out", "lse", "n"))
assert pos.shape == (3, n) and cos.shape == sin.shape == (n, 64) and out.shape == q.shape and lse.shape == (4, n)
assert next_pos == pos[0].max() + 1, next_pos  # text after the video: 1 + the largest t, then 40 text tokens
assert np.all(np.isfinite(out)) and np.all(np.isfinite(lse))


def rotate(x, c, s):  # rotate-half, float64
    lo, hi = x[..., :64], x[..., 64:]
    return np.concatenate([lo * c - hi * s, hi * c + lo * s], axis=-1)


c64, s64 = cos.astype(np.float64)[:, None, :], sin.astype(np.float64)[:, None, :]
qr, kr = rotate(q.astype(np.float64), c64, s64), rotate(k.astype(np.float64), c64, s64)
worst = worst_lse = 0.0
for i in np.linspace(0, n - 1, 17).astype(int):
    for h in range(4):
        sc = kr[: i + 1, 0] @ qr[i, h] / math.sqrt(128)
        w = np.exp(sc - sc.max())
        ref = w @ k[: i + 1, 0].astype(np.float64) / w.sum()
        worst = max(worst, np.linalg.norm(out[i, h] - ref) / np.linalg.norm(ref))
        worst_lse = max(worst_lse, abs(lse[h, i] - (sc.max() + math.log(w.sum()))))
assert worst <= 1e-5 and worst_lse <= 1e-4, (worst, worst_lse)  # SPEC §6, float32
print(f"quick start: {n} tokens, next position {next_pos:g}; attention vs float64: rel err {worst:.2e}, "
      f"lse err {worst_lse:.2e}")
print("build_info:", json.dumps({key: info[key] for key in ("version", "cuda", "cuda_version", "nvtx",
                                                           "cpu_isa_selected")}), "wheel record:", json.dumps(wheel))
EOF

cd "$work/outside" # outside the repository: nothing can be picked up from the checkout
clean_env=(env -u HOPE_ATTN_LIBRARY -u PYTHONPATH -u LD_LIBRARY_PATH)
"${clean_env[@]}" "$work/venv/bin/python" check.py
"${clean_env[@]}" "$work/venv/bin/hope-attn-demo" --text 8 --video 2x4x4 --text 8 | tail -n 1 | grep -q "PASS" \
  || { echo "wheel: hope-attn-demo did not pass" >&2; exit 1; }
"${clean_env[@]}" "$work/venv/bin/python" -m hope_attn --image 3x5 --text 4 --dtype fp32 | tail -n 1 | grep -q "PASS" \
  || { echo "wheel: python -m hope_attn did not pass" >&2; exit 1; }
echo "wheel: hope-attn-demo and python -m hope_attn PASS"
echo "wheel: all checks passed in $((SECONDS - t0)) s"
