#!/usr/bin/env bash
# scripts/mutation-check.sh — proof that the emulated GPU suite catches kernel bugs.
#
#   scripts/mutation-check.sh              # every mutation below
#   scripts/mutation-check.sh NAME...      # only these
#
# Copies the working tree (tracked and untracked, not ignored) to a scratch folder, builds it once as an
# emulated build (-DHOPE_EMULATED_DEVICE=ON), checks that the suites the mutations target pass unmutated,
# then for each mutation: plants one realistic bug (an exact text replacement that must apply once),
# rebuilds incrementally, and runs the targeted tests under the schedules in turn (lockstep, forward,
# reverse, random) until one run fails. A mutation is CAUGHT when some schedule fails a test (a wrong
# result, or an error the emulator reported in kernel code), MISSED when all pass. The tree is restored
# after each mutation; your checkout is never modified. Prints a table; exits non-zero when any is missed.
# The emulated device is a 9.0 (Hopper) one, where the fused-attention suites run the sm90 kernel family; the
# sm80 family's mutations name HOPE_EMU_CC=80 in their optional sixth field (environment for their tests).
# Environment: HOPE_MUTATION_DIR (scratch folder, default $TMPDIR/hope-mutation), HOPE_EMU_QUICK (default 1).
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo" || exit 2
set -e
source scripts/setup.sh
set +e

scratch=${HOPE_MUTATION_DIR:-${TMPDIR:-/tmp}/hope-mutation}
src=$scratch/src build=$scratch/build
jobs=$(nproc 2> /dev/null || echo 2)
schedules="lockstep forward reverse random"
export HOPE_TEST_QUICK=${HOPE_EMU_QUICK:-1}

# name | file | text to replace | replacement | ctest -R filter of the tests that should catch it [| env]
mutations=(
  "causal-mask-off-by-one|kernels/attention/fwd_kernel.cuh|(p.causal && col > row + causal_shift)|(p.causal && col > row + causal_shift + 1)|AttentionFused|HOPE_EMU_CC=80"
  "shallow-wait-group|kernels/attention/fwd_kernel.cuh|ptx::cp_async_wait<1>();  // tile nb has landed|ptx::cp_async_wait<2>();  // tile nb has landed|AttentionFused|HOPE_EMU_CC=80"
  "missing-stage-barrier|kernels/attention/fwd_kernel.cuh|    __syncthreads();  // every warp is done with this stage before the next iteration refills it|    // (the stage barrier is missing)|AttentionFused|HOPE_EMU_CC=80"
  "ldmatrix-lane-mapping|kernels/attention/fwd_kernel.cuh|const int kb_row = (lane & 7) + (lane >> 4) * 8;|const int kb_row = (lane & 7) + ((lane >> 3) & 1) * 8;|AttentionFused|HOPE_EMU_CC=80"
  "swizzle-read-side-only|kernels/attention/fwd_kernel.cuh|ptx::ldmatrix_x4(a, sQ_addr + 2u * Traits::swizzle(a_row, 2 * kk + a_chunk));|ptx::ldmatrix_x4(a, sQ_addr + 2u * (a_row * kHeadDim + (2 * kk + a_chunk) * 8));|AttentionFused|HOPE_EMU_CC=80"
  "gqa-head-map|kernels/attention/fwd_kernel.cuh|const int kv_head = head / p.head_group;|const int kv_head = head % p.num_kv_heads;|AttentionFused|HOPE_EMU_CC=80"
  "rotation-sign|kernels/attention/rope_tile.cuh|return __fmaf_rn(x1, c, -__fmul_rn(x2, s));|return __fmaf_rn(x1, c, __fmul_rn(x2, s));|AttentionFused"
  "decode-split-boundary|kernels/serving/decode.cuh|const int end = min(len, start + chunk);|const int end = min(len, start + chunk - 1);|DecodeGpu"
  "decode-causal-limit|kernels/serving/decode.cuh|lim = min(end, len - nq + gr / a.group + 1);|lim = min(end, len - nq + gr / a.group);|DecodeGpu"
  "kv-append-skipped-slot|kernels/serving/kv_append.cu|    if (slot < 0) continue;|    if (slot <= 0) continue;|KvAppendGpu"
  "merge-weight|kernels/serving/merge.cu|wa = la == -INFINITY ? 0.f : expf(la - m);|wa = la == -INFINITY ? 0.f : expf(lb - m);|MergeStatesGpu"
  "merge-splits-weight|kernels/serving/decode_launch.cu|const float w = exp2f(v - mx);|const float w = exp2f(mx - v);|DecodeGpu"
  "rope-apply-sign|kernels/rope/apply.cu|y0[i] = x0[i] * c[u][i] - x1[i] * s[u][i];|y0[i] = x0[i] * c[u][i] + x1[i] * s[u][i];|RopeApplyGpu"
  "unfused-causal-mask|kernels/attention/unfused.cu|if (causal) last = min(last, static_cast<int64_t>(i) + nk - nq);|if (causal) last = min(last, static_cast<int64_t>(i) + nk - nq - 1);|AttentionUnfused"
  # SPEC §8 pairing and rotary_dim (tests/test_rotary_variants_gpu.cc and the §8 cases of test_rope_gpu.cc)
  "interleaved-pair-swap|kernels/attention/rope_tile.cuh|w[j] = pack2<T>(rope_first(x.x, x.y, c[j], s[j]), rope_second(x.x, x.y, c[j], s[j]));|w[j] = pack2<T>(rope_first(x.y, x.x, c[j], s[j]), rope_second(x.y, x.x, c[j], s[j]));|RotaryFusedAttention"
  "rotate-tile-cos-stride|kernels/attention/fwd_kernel.cuh|const int64_t off = static_cast<int64_t>(r) * rot_half;|const int64_t off = static_cast<int64_t>(r) * Traits::kHalf;|RotaryFusedAttention|HOPE_EMU_CC=80"
  "prepass-passthrough-chunk|kernels/attention/k_prepass.cu|const int ch = rot_chunks + (c - rot_items);|const int ch = rot_items + (c - rot_items);|RotaryFusedAttention"
  "decode-q-cos-stride|kernels/serving/decode.cuh|a.cos_q[token * a.rl.rot_half + i], s = a.sin_q[token * a.rl.rot_half + i];|a.cos_q[token * Tr::kHalf + i], s = a.sin_q[token * Tr::kHalf + i];|RotaryDecodeGpu"
  "kv-append-passthrough|kernels/serving/kv_append.cu|      kd[db] = k2;|      kd[db] = k1;|RotaryDecodeGpu"
  "unfused-cos-stride|kernels/attention/unfused.cu|cos[tok * rl.rot_half + c], sn = sin[tok * rl.rot_half + c];|cos[tok * half + c], sn = sin[tok * half + c];|RotaryUnfusedAttention"
  "rope-apply-passthrough|kernels/rope/apply.cu|dst[db] = e1;|dst[db] = e0;|RopeApplyGpu"
)
if [ -f scripts/mutations-sm90.txt ]; then  # the sm90 kernel's mutations, same format (lines; # comments)
  while IFS= read -r line; do [ -n "$line" ] && [ "${line#\#}" = "$line" ] && mutations+=("$line"); done < scripts/mutations-sm90.txt
fi

selected=("$@")
want() { [ ${#selected[@]} -eq 0 ] && return 0; local s; for s in "${selected[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

echo "==== mutation check: copying the tree to $src"
rm -rf "$src" "$build" && mkdir -p "$src" "$build"  # a fresh build: objects of an interrupted run are stale
git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xmf - -C "$src" || exit 2
launcher=()
command -v ccache > /dev/null && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DHOPE_EMULATED_DEVICE=ON -DHOPE_BUILD_BENCHMARKS=OFF \
  "${launcher[@]+"${launcher[@]}"}" > "$scratch/configure.log" 2>&1 || { cat "$scratch/configure.log"; exit 1; }
build_tree() { cmake --build "$build" -j"$jobs" --target hope_tests > "$scratch/build.log" 2>&1; }
run_tests() { # run_tests FILTER SCHEDULE [ENV]: 0 when every test passed (the serial repeat of the fused suites
  # with the sm80 family forced is left out: HOPE_EMU_CC=80 selects that family here)
  # shellcheck disable=SC2086
  env HOPE_EMU_SCHEDULE="$2" ${3:-} ctest --test-dir "$build" -R "$1" -E AllWithSm80FamilyForced -j"$jobs" \
    --timeout 900 --output-on-failure > "$scratch/ctest.log" 2>&1
}
build_tree || { tail -30 "$scratch/build.log"; echo "mutation-check: the unmutated tree does not build"; exit 1; }

# The targeted suites must pass before any mutation (else "caught" would mean nothing).
declare -A baseline=()
for m in "${mutations[@]}"; do
  IFS='|' read -r name file old new filter menv <<< "$m"
  want "$name" || continue
  [ -n "${baseline[$filter|$menv]:-}" ] && continue
  if run_tests "$filter" lockstep "$menv"; then baseline[$filter|$menv]=ok
  else
    echo "mutation-check: the unmutated suite '$filter' fails; fix that first"; tail -30 "$scratch/ctest.log"; exit 1
  fi
done

declare -a rows=()
missed=0
for m in "${mutations[@]}"; do
  IFS='|' read -r name file old new filter menv <<< "$m"
  want "$name" || continue
  t0=$SECONDS
  echo
  echo "==== $name ($file)"
  cp "$src/$file" "$scratch/original"
  if ! python3 - "$src/$file" "$old" "$new" << 'EOF'
import sys
path, old, new = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(path).read()
if text.count(old) < 1:
    sys.exit("mutation text not found in " + path + ": " + old)
open(path, "w").write(text.replace(old, new, 1))
EOF
  then
    rows+=("$name|$file|NOT APPLIED (the text is gone: update the mutation)|")
    missed=1
    continue
  fi
  result="MISSED"
  how=""
  if ! build_tree; then
    result="NOT BUILT"
    how=$(grep -m1 'error' "$scratch/build.log")
  else
    for s in $schedules; do
      if ! run_tests "$filter" "$s" "$menv"; then
        failed_n=$(sed -n 's/.* \([0-9]*\) tests failed out of \([0-9]*\).*/\1 of \2/p' "$scratch/ctest.log" | tail -1)
        emu=$(grep -c 'hope_emu: error' "$scratch/ctest.log")
        result="caught"
        how="schedule $s: $failed_n tests failed (emulator errors reported: $emu)"
        grep -m1 'hope_emu: error' "$scratch/ctest.log" | cut -c1-200
        break
      fi
    done
  fi
  cp "$scratch/original" "$src/$file"
  [ "$result" = caught ] || missed=1
  echo "$name: $result $how ($((SECONDS - t0)) s)"
  rows+=("$name|$file|$result|$how")
done
build_tree > /dev/null 2>&1  # leave the scratch build matching the tree

echo
echo "==== mutation check summary"
printf '%-26s %-36s %-9s %s\n' mutation file result how
for r in "${rows[@]}"; do
  IFS='|' read -r name file result how <<< "$r"
  printf '%-26s %-36s %-9s %s\n' "$name" "$file" "$result" "$how"
done
caught=$(printf '%s\n' "${rows[@]}" | grep -c '|caught|')
echo "mutation check: $caught of ${#rows[@]} mutations caught"
exit $missed
