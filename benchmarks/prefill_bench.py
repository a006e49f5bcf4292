#!/usr/bin/env python3
"""Prefill attention benchmark: hope_attn's fused kernels (both architecture families, three K-rotation modes)
and its unfused path against PyTorch SDPA (flash and cuDNN backends) with a torch.compile'd rotary kernel in
front, on one GPU, in one run.

Shape (the Qwen2-VL-7B attention): bfloat16, head_dim 128, causal, Hq 28, Hk 4, one sequence of N tokens,
N in {2048, 8192, 32768, 131072} (131072 skipped when it does not fit the free memory). Rows:
  hope sm90 / sm80 (cos/sin in-kernel)       q rotated in-kernel, K tiles rotated in-kernel
  hope sm90 / sm80 (k_rotated pre-pass)      K rotated once into a k_rotated buffer, then attention on it
  hope sm90 / sm80 (no rotation)             cos/sin NULL: the attention alone
      (the family is forced with HOPE_ATTN_KERNEL_FAMILY; sm90 rows report NOT_SUPPORTED off Hopper)
  hope rope_apply + unfused                  hope_rope_apply on q and k, then the cuBLAS unfused path (where
                                             its O(Hq N^2) workspace fits)
  torch sdpa flash / cudnn                   torch.nn.attention.sdpa_kernel(backend), no rotation
  torch compiled rotary + sdpa flash/cudnn   a torch.compile'd rotate-half of q and k (float32 math, rounded to
                                             bf16), then SDPA: the pipeline a user would otherwise run
Timing: CUDA events around each call, warm-up first, the median of the timed runs. TFLOP/s counts
4 * N^2 * d * Hq / 2 (causal). Derived per N: the best fused rotated hope row against the best torch pipeline
(speedup), and the sm90 rotation overhead (best rotated sm90 over sm90 without rotation). Writes two files
into --out ($OUT if set, else benchmarks/results/): prefill_bench.json and (when matplotlib is present)
prefill_bench.png, and appends its markdown table to --markdown (default: bench.md in the same folder).
Without PyTorch or a CUDA device it prints why and exits 0.

The library: $HOPE_ATTN_LIBRARY, else build-gpu/libhope_attn.so (then build/) under the repository root.
Every row is independent: a failure is recorded in the results and the next row runs.
"""
import argparse
import ctypes
import datetime
import json
import math
import os
import pathlib
import statistics
import sys
import traceback

from _common import REPO, AttentionParams, NvtxRange, RopeApplyParams, check, open_library  # noqa: E402

HOPE_BACKEND_CUDA = 0
HOPE_DTYPE_FLOAT16, HOPE_DTYPE_BFLOAT16, HOPE_DTYPE_FLOAT32 = 0, 1, 2


def ptr(t):
    return ctypes.c_void_p(t.data_ptr()) if t is not None else None


def time_cuda(torch, fn, warmup, iters):
    """Median milliseconds of fn() over `iters` event-timed runs after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times), min(times)


def rope_cos_sin(torch, n, d, theta=1e6, start=0):
    """Vanilla RoPE cos/sin [n][d/2] float32, angles in float64."""
    half = d // 2
    pos = torch.arange(start, start + n, dtype=torch.float64, device="cuda")
    inv = theta ** (-2.0 * torch.arange(half, dtype=torch.float64, device="cuda") / d)
    ang = pos[:, None] * inv[None, :]
    return torch.cos(ang).float().contiguous(), torch.sin(ang).float().contiguous()


def torch_rotate(torch, x, cos, sin):
    """Rotate-half in float32, rounded back to x's dtype. x [N, H, d]; cos/sin [N, d/2]."""
    half = x.shape[-1] // 2
    xf = x.float()
    x1, x2 = xf[..., :half], xf[..., half:]
    c, s = cos[:, None, :], sin[:, None, :]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1).to(x.dtype)


def compiled_rotary(torch, results):
    """torch_rotate of q and k in one torch.compile'd function (dynamic shapes: one compilation serves every N),
    returning [1, H, N, d] views for SDPA; the eager function (noted in results) when compilation fails."""
    def rotate_qk(q, k, cos, sin):
        return (torch_rotate(torch, q, cos, sin).unsqueeze(0).transpose(1, 2),
                torch_rotate(torch, k, cos, sin).unsqueeze(0).transpose(1, 2))
    try:
        fn = torch.compile(rotate_qk, dynamic=True)
        results["rotary"] = "torch.compile(dynamic=True)"
        return fn
    except Exception as e:  # noqa: BLE001
        results["errors"].append(f"torch.compile unavailable ({type(e).__name__}: {e}); eager rotary used")
        results["rotary"] = "eager"
        return rotate_qk


class KernelFamily:
    """`with KernelFamily("sm80"):` sets HOPE_ATTN_KERNEL_FAMILY (read by the library on every call)."""

    def __init__(self, family):
        self.family, self.saved = family, None

    def __enter__(self):
        self.saved = os.environ.get("HOPE_ATTN_KERNEL_FAMILY")
        os.environ["HOPE_ATTN_KERNEL_FAMILY"] = self.family

    def __exit__(self, *exc):
        if self.saved is None:
            os.environ.pop("HOPE_ATTN_KERNEL_FAMILY", None)
        else:
            os.environ["HOPE_ATTN_KERNEL_FAMILY"] = self.saved


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seqlens", default="2048,8192,32768,131072")
    ap.add_argument("--hq", type=int, default=28)
    ap.add_argument("--hk", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--families", default="sm90,sm80", help="hope kernel families to time (HOPE_ATTN_KERNEL_FAMILY)")
    ap.add_argument("--unfused-max-seqlen", type=int, default=8192)
    ap.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "benchmarks" / "results"))
    ap.add_argument("--markdown", default=None, help="markdown file to append the table to (default OUT/bench.md)")
    args = ap.parse_args()
    results = {"benchmark": "prefill", "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
               "shape": {"dtype": "bfloat16", "head_dim": args.head_dim, "num_q_heads": args.hq,
                         "num_kv_heads": args.hk, "causal": True, "batch": 1},
               "flops_formula": "4 * N^2 * d * Hq / 2 (causal)", "rows": [], "checks": [], "derived": [],
               "errors": []}

    try:
        import torch
    except Exception as e:  # noqa: BLE001
        print(f"prefill_bench: PyTorch is not available ({e}): skipped")
        return 0
    if not torch.cuda.is_available():
        print("prefill_bench: no CUDA device: skipped")
        return 0
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path = pathlib.Path(args.markdown) if args.markdown else out_dir / "bench.md"
    results["device"] = torch.cuda.get_device_name()
    results["compute_capability"] = "%d.%d" % torch.cuda.get_device_capability()
    results["torch"] = torch.__version__
    results["cuda"] = torch.version.cuda

    lib = open_library(results, [
        ("hope_attention_forward", [ctypes.POINTER(AttentionParams), ctypes.c_void_p]),
        ("hope_attention_unfused_workspace_size", [ctypes.POINTER(AttentionParams), ctypes.POINTER(ctypes.c_size_t)]),
        ("hope_attention_forward_unfused",
         [ctypes.POINTER(AttentionParams), ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]),
        ("hope_rope_apply", [ctypes.POINTER(RopeApplyParams), ctypes.c_void_p])])

    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except Exception:  # noqa: BLE001
        SDPBackend = sdpa_kernel = None
        results["errors"].append("torch.nn.attention.sdpa_kernel unavailable: torch SDPA rows skipped")
    rotate_qk = compiled_rotary(torch, results) if sdpa_kernel is not None else None

    d, hq, hk = args.head_dim, args.hq, args.hk
    scale = 1.0 / math.sqrt(d)
    stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
    families = [f for f in args.families.split(",") if f]

    for n in [int(x) for x in args.seqlens.split(",") if x]:
        flops = 4.0 * n * n * d * hq / 2.0
        iters = max(3, args.iters if n <= 8192 else args.iters // 2 if n <= 32768 else 3)
        warmup = args.warmup if n <= 32768 else 1
        # q, k, v, out, k_rot, cos/sin, plus the torch pipeline's rotated copies and outputs: about 4x q.
        need = 4 * (n * hq * d * 2) + 6 * (n * hk * d * 2) + 2 * n * (d // 2) * 4
        free, _ = torch.cuda.mem_get_info()
        if need > 0.7 * free:
            results["rows"].append({"name": "(all)", "seqlen": n,
                                    "skipped": f"needs about {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free"})
            print(f"N={n:6d} skipped: needs about {need / 2**30:.1f} GiB", flush=True)
            continue
        torch.manual_seed(n)
        q = torch.randn(n, hq, d, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(n, hk, d, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(n, hk, d, device="cuda", dtype=torch.bfloat16)
        cos, sin = rope_cos_sin(torch, n, d, start=100000)
        cu = torch.tensor([0, n], dtype=torch.int32, device="cuda")
        out = torch.empty_like(q)
        lse = torch.empty(hq, n, device="cuda", dtype=torch.float32)
        k_rot = torch.empty_like(k)
        outputs = {}

        def record(name, fn, note="", it=iters, wu=warmup):
            row = {"name": name, "seqlen": n, "note": note}
            try:
                with NvtxRange(torch, f"{name} N={n}"):
                    med, best = time_cuda(torch, fn, wu, it)
                row.update(ms_median=med, ms_min=best, tflops=flops / (med * 1e-3) / 1e12)
                print(f"N={n:6d} {name:40s} {med:9.3f} ms {row['tflops']:7.1f} TFLOP/s {note}", flush=True)
            except Exception as e:  # noqa: BLE001
                row["error"] = f"{type(e).__name__}: {e}"
                print(f"N={n:6d} {name:40s} FAILED: {row['error']}", flush=True)
                traceback.print_exc()
                torch.cuda.synchronize()
            results["rows"].append(row)
            return "ms_median" in row

        if lib is not None:
            def params(rotate=True, k_rotated=None):
                p = AttentionParams()
                p.backend, p.dtype, p.batch = HOPE_BACKEND_CUDA, HOPE_DTYPE_BFLOAT16, 1
                p.num_q_heads, p.num_kv_heads, p.head_dim = hq, hk, d
                p.cu_seqlens_q = p.cu_seqlens_k = cu.data_ptr()
                p.max_seqlen_q = p.max_seqlen_k = n
                p.q, p.k, p.v, p.out, p.lse = q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), lse.data_ptr()
                if rotate:
                    p.cos_q = p.cos_k = cos.data_ptr()
                    p.sin_q = p.sin_k = sin.data_ptr()
                p.softmax_scale, p.causal = scale, 1
                p.k_rotated = k_rotated.data_ptr() if k_rotated is not None else None
                return p

            p_rot, p_norot, p_pre = params(True), params(False), params(True, k_rot)
            for fam in families:
                with KernelFamily(fam):
                    for label, prm, key in (("cos/sin in-kernel", p_rot, "rot"), ("k_rotated pre-pass", p_pre, "prepass"),
                                            ("no rotation", p_norot, "norot")):
                        out.fill_(float("nan"))
                        ok = record(f"hope {fam} ({label})",
                                    lambda prm=prm: check(lib, lib.hope_attention_forward(ctypes.byref(prm), stream),
                                                          f"fused {fam}"))
                        if ok:
                            outputs[f"hope_{fam}_{key}"] = out.clone()

            # rope_apply on q and k, then the unfused cuBLAS path, where its workspace fits.
            ws_bytes = ctypes.c_size_t(0)
            try:
                check(lib, lib.hope_attention_unfused_workspace_size(ctypes.byref(p_norot), ctypes.byref(ws_bytes)),
                      "unfused workspace size")
                free, _ = torch.cuda.mem_get_info()
                if n > args.unfused_max_seqlen or ws_bytes.value > 0.6 * free:
                    results["rows"].append({"name": "hope rope_apply + unfused", "seqlen": n,
                                            "skipped": f"workspace {ws_bytes.value / 2**30:.1f} GiB"})
                else:
                    ws = torch.empty(max(1, ws_bytes.value), dtype=torch.uint8, device="cuda")
                    q_r, k_r = torch.empty_like(q), torch.empty_like(k)
                    p_unf = params(False)
                    p_unf.q, p_unf.k = q_r.data_ptr(), k_r.data_ptr()

                    def rope(x, xo, heads):
                        r = RopeApplyParams()
                        r.backend, r.dtype, r.num_tokens, r.num_heads, r.head_dim = (
                            HOPE_BACKEND_CUDA, HOPE_DTYPE_BFLOAT16, n, heads, d)
                        r.x, r.out, r.cos, r.sin = x.data_ptr(), xo.data_ptr(), cos.data_ptr(), sin.data_ptr()
                        return r
                    rq, rk = rope(q, q_r, hq), rope(k, k_r, hk)

                    def unfused():
                        check(lib, lib.hope_rope_apply(ctypes.byref(rq), stream), "rope_apply q")
                        check(lib, lib.hope_rope_apply(ctypes.byref(rk), stream), "rope_apply k")
                        check(lib, lib.hope_attention_forward_unfused(ctypes.byref(p_unf), ctypes.c_void_p(ws.data_ptr()),
                                                                      ws_bytes.value, stream), "unfused")
                    if record("hope rope_apply + unfused", unfused, f"workspace {ws_bytes.value / 2**30:.2f} GiB"):
                        outputs["hope_unfused_rot"] = out.clone()
                    del ws, q_r, k_r
            except Exception as e:  # noqa: BLE001
                results["rows"].append({"name": "hope rope_apply + unfused", "seqlen": n,
                                        "error": f"{type(e).__name__}: {e}"})

        if sdpa_kernel is not None:
            F = torch.nn.functional
            qt, kt, vt = (x.unsqueeze(0).transpose(1, 2) for x in (q, k, v))  # [1, H, N, d] views
            group = hq // hk
            for label, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
                # GQA: enable_gqa where the backend takes it, else K/V expanded once outside the timing.
                mode = {"gqa": True}

                def sdpa(qq, kk, vv, mode=mode, backend=backend):
                    with sdpa_kernel(backend):
                        if mode["gqa"]:
                            return F.scaled_dot_product_attention(qq, kk, vv, is_causal=True, scale=scale, enable_gqa=True)
                        return F.scaled_dot_product_attention(qq, kk.repeat_interleave(group, 1) if kk.shape[1] != qq.shape[1] else kk,
                                                              vv.repeat_interleave(group, 1) if vv.shape[1] != qq.shape[1] else vv,
                                                              is_causal=True, scale=scale)
                try:
                    sdpa(qt, kt, vt)
                    torch.cuda.synchronize()
                except Exception:  # noqa: BLE001
                    mode["gqa"] = False
                kx, vx = (kt, vt) if mode["gqa"] else (kt.repeat_interleave(group, 1), vt.repeat_interleave(group, 1))
                note = "" if mode["gqa"] else "K/V expanded to Hq heads outside the timing (no enable_gqa)"
                res = {}

                def plain(kx=kx, vx=vx):
                    res["o"] = sdpa(qt, kx, vx)
                record(f"torch sdpa {label}", plain, note)

                def rotated(vx=vx):
                    qr, kr = rotate_qk(q, k, cos, sin)
                    if not mode["gqa"]:
                        kr = kr.repeat_interleave(group, 1)
                    res["o"] = sdpa(qr, kr, vx)
                if record(f"torch compiled rotary + sdpa {label}", rotated,
                          note + ("; " if note else "") + f"rotate-half of q and k by {results.get('rotary')}"):
                    outputs[f"torch_{label}_rot"] = res["o"][0].transpose(0, 1).contiguous()
                res.clear()

        # Cross-checks: every rotated result against the first torch one; the two K paths of one family bit for
        # bit; sm90 against sm80.
        ref_key = next((k_ for k_ in ("torch_flash_rot", "torch_cudnn_rot") if k_ in outputs), None)
        for key, val in outputs.items():
            if key.endswith("_norot") or key == ref_key or ref_key is None:
                continue
            ref = outputs[ref_key].float()
            rel = ((val.float() - ref).norm() / ref.norm()).item()
            results["checks"].append({"seqlen": n, "what": f"{key} vs {ref_key}", "relative_error": rel})
            print(f"N={n:6d} check {key} vs {ref_key}: relative error {rel:.2e}", flush=True)
        for fam in families:
            a_, b_ = outputs.get(f"hope_{fam}_rot"), outputs.get(f"hope_{fam}_prepass")
            if a_ is not None and b_ is not None:
                same = bool(torch.equal(a_, b_))
                results["checks"].append({"seqlen": n, "value": same,
                                          "what": f"{fam}: in-kernel vs pre-pass K rotation bit-identical"})
                print(f"N={n:6d} check {fam} in-kernel vs pre-pass K rotation identical: {same}", flush=True)
        if "hope_sm90_norot" in outputs and "hope_sm80_norot" in outputs:
            a_, b_ = outputs["hope_sm90_norot"].float(), outputs["hope_sm80_norot"].float()
            rel = ((a_ - b_).norm() / b_.norm()).item()
            results["checks"].append({"seqlen": n, "what": "sm90 vs sm80 (no rotation)", "relative_error": rel})
            print(f"N={n:6d} check sm90 vs sm80 (no rotation): relative error {rel:.2e}", flush=True)
        derive(results, n)
        del q, k, v, out, lse, k_rot, outputs
        torch.cuda.empty_cache()

    (out_dir / "prefill_bench.json").write_text(json.dumps(results, indent=2))
    append_markdown(results, md_path)
    write_plot(results, out_dir / "prefill_bench.png")
    print(f"wrote {out_dir / 'prefill_bench.json'} (and prefill_bench.png with matplotlib); table appended to {md_path}")
    return 0


def derive(results, n):
    """The issue's two figures for N: the best fused rotated hope row against the best torch pipeline with
    rotation, and the sm90 rotation overhead (its best rotated row over its unrotated row)."""
    ms = {r["name"]: r["ms_median"] for r in results["rows"] if r["seqlen"] == n and "ms_median" in r}
    hope_rot = {k: v for k, v in ms.items() if k.startswith("hope sm") and "no rotation" not in k}
    torch_rot = {k: v for k, v in ms.items() if k.startswith("torch compiled rotary")}
    d = {"seqlen": n}
    if hope_rot and torch_rot:
        hb, tb = min(hope_rot, key=hope_rot.get), min(torch_rot, key=torch_rot.get)
        d.update(best_hope=hb, best_hope_ms=hope_rot[hb], best_torch=tb, best_torch_ms=torch_rot[tb],
                 speedup=torch_rot[tb] / hope_rot[hb])
    sm90 = {k: v for k, v in hope_rot.items() if k.startswith("hope sm90")}
    if sm90 and "hope sm90 (no rotation)" in ms:
        best = min(sm90.values())
        d.update(sm90_rotation_overhead=best / ms["hope sm90 (no rotation)"] - 1.0)
    if len(d) > 1:
        results["derived"].append(d)
        print(f"N={n:6d} derived: {d}", flush=True)


def append_markdown(results, path):
    seqlens = sorted({r["seqlen"] for r in results["rows"]})
    names = list(dict.fromkeys(r["name"] for r in results["rows"]))
    lines = [f"## Prefill attention, {results.get('device', '?')}", "",
             f"bf16, head_dim {results['shape']['head_dim']}, causal, Hq {results['shape']['num_q_heads']}, "
             f"Hk {results['shape']['num_kv_heads']}, batch 1. Median ms (TFLOP/s, {results['flops_formula']}). "
             f"torch {results.get('torch', '?')}, CUDA {results.get('cuda', '?')}, rotary "
             f"{results.get('rotary', '?')}.", "",
             "| row | " + " | ".join(f"N={s}" for s in seqlens) + " |",
             "|---|" + "---|" * len(seqlens)]
    for name in names:
        cells = []
        for s in seqlens:
            r = next((r for r in results["rows"] if r["name"] == name and r["seqlen"] == s), None)
            if r is None:
                cells.append("")
            elif "ms_median" in r:
                cells.append(f"{r['ms_median']:.3f} ({r['tflops']:.0f})")
            elif "skipped" in r:
                cells.append(f"skipped: {r['skipped']}")
            else:
                cells.append("error")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if results["derived"]:
        lines += ["", "Derived (best fused rotated hope row vs best torch compiled-rotary pipeline; sm90 rotation "
                  "overhead = best rotated sm90 / sm90 without rotation - 1):", ""]
        for d in results["derived"]:
            parts = [f"N={d['seqlen']}"]
            if "speedup" in d:
                parts.append(f"{d['best_hope']} {d['best_hope_ms']:.3f} ms vs {d['best_torch']} "
                             f"{d['best_torch_ms']:.3f} ms: {d['speedup']:.2f}x")
            if "sm90_rotation_overhead" in d:
                parts.append(f"sm90 rotation overhead {100 * d['sm90_rotation_overhead']:+.1f}%")
            lines.append("- " + "; ".join(parts))
    if results["checks"]:
        lines += ["", "Checks:", ""]
        for c in results["checks"]:
            val = c.get("relative_error", c.get("value"))
            lines.append(f"- N={c['seqlen']}: {c['what']}: {val:.2e}" if isinstance(val, float)
                         else f"- N={c['seqlen']}: {c['what']}: {val}")
    errs = [f"- {r['name']} N={r['seqlen']}: {r['error']}" for r in results["rows"] if "error" in r]
    errs += [f"- {e}" for e in results["errors"]]
    if errs:
        lines += ["", "Errors:", ""] + errs
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n\n")


def write_plot(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # noqa: BLE001
        print("matplotlib not available: no plot", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(8, 5))
    for name in dict.fromkeys(r["name"] for r in results["rows"]):
        pts = sorted((r["seqlen"], r["tflops"]) for r in results["rows"] if r["name"] == name and "tflops" in r)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sequence length N")
    ax.set_ylabel("TFLOP/s (causal)")
    ax.set_title(f"Prefill attention, bf16 d{results['shape']['head_dim']}, {results.get('device', '')}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
