#!/usr/bin/env python3
"""Paged decode benchmark: hope_attn's hope_decode_forward against PyTorch SDPA on the same keys and values.

Shape (the Qwen2-VL-7B attention): bfloat16, head_dim 128, Hq 28, Hk 4, a paged KV cache with pages of 16
tokens scattered over the pool in a random order. Default cases (--shapes, BATCHxCONTEXTxQUERIES):
  1x32768x1, 1x131072x1, 64x4096x1
Rows per case:
  hope decode (q rotated in-kernel)  cos_q/sin_q given: the query rotated inside the kernel
  hope decode (no rotation)          cos_q/sin_q NULL: the attention alone (what SDPA computes)
  torch sdpa <backend>               flash, efficient and cuDNN (each where it runs) over K/V gathered from the
                                     pages into contiguous [B, Hk, N, d] tensors before the timing
  gather + sdpa <backend>            the page gather (index_select on the page pool) plus SDPA, timed together
  copy_d2d                           a device-to-device copy of the K/V pool: the bandwidth yardstick
Timing: CUDA events around each call, warm-up first, the median of the timed runs; input sets rotate between
iterations where they are smaller than the L2 cache. GB/s counts the bytes that must move: K and V read once
+ q read + out written (the same figure for every row, so it compares times). fraction_of_copy = GB/s over
copy_d2d's GB/s from the same run.

Writes exactly one file, decode_bench.json, into --out ($OUT if set, else benchmarks/results/), and appends
its markdown table to --markdown (default: bench.md in the same folder).
The library: $HOPE_ATTN_LIBRARY, else build-gpu/libhope_attn.so (then build/) under the repository root.
Without PyTorch or a CUDA device it prints why and exits 0 (skipped).
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

from _common import REPO, DecodeParams, NvtxRange, PagedKV, check, open_library  # noqa: E402

HOPE_BACKEND_CUDA = 0
HOPE_DTYPE_BFLOAT16 = 1
HQ, HK, DIM, PAGE = 28, 4, 128, 16


def time_cuda(torch, fn, sets, warmup, iters):
    """Median and minimum milliseconds of fn(set) over `iters` event-timed runs after `warmup` untimed ones;
    the input set rotates between iterations."""
    for i in range(warmup):
        fn(i % sets)
    torch.cuda.synchronize()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
    for i, (start, end) in enumerate(events):
        start.record()
        fn((warmup + i) % sets)
        end.record()
    torch.cuda.synchronize()
    times = [s.elapsed_time(e) for s, e in events]
    return statistics.median(times), min(times)


def rope_cos_sin(torch, positions, d, theta=1e6):
    """Vanilla RoPE cos/sin [n][d/2] float32 for the given float64 positions."""
    inv = theta ** (-2.0 * torch.arange(d // 2, dtype=torch.float64, device="cuda") / d)
    ang = positions.to(torch.float64)[:, None] * inv[None, :]
    return torch.cos(ang).float().contiguous(), torch.sin(ang).float().contiguous()


def parse_shapes(text):
    shapes = []
    for part in text.split(","):
        if part.strip():
            b, n, q = (int(x) for x in part.lower().split("x"))
            if not (b >= 1 and n >= q >= 1 and q <= 8):
                raise ValueError(f"bad shape {part}: need batch >= 1, 1 <= queries <= 8, context >= queries")
            shapes.append((b, n, q))
    return shapes


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="1x32768x1,1x131072x1,64x4096x1",
                    help="comma-separated BATCHxCONTEXTxQUERIES (queries 1..8)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "benchmarks" / "results"))
    ap.add_argument("--markdown", default=None, help="markdown file to append the table to (default OUT/bench.md)")
    args = ap.parse_args()
    shapes = parse_shapes(args.shapes)

    try:
        import torch
    except Exception as e:  # noqa: BLE001
        print(f"decode_bench: PyTorch is not available ({e}): skipped")
        return 0
    if not torch.cuda.is_available():
        print("decode_bench: no CUDA device: skipped")
        return 0

    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path = pathlib.Path(args.markdown) if args.markdown else out_dir / "bench.md"
    results = {"benchmark": "decode", "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
               "device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
               "shape": {"dtype": "bfloat16", "head_dim": DIM, "num_q_heads": HQ, "num_kv_heads": HK,
                         "page_size": PAGE, "pages": "random order"},
               "bytes_formula": "K and V read once + q read + out written", "rows": [], "checks": [], "errors": []}

    lib = open_library(results, [
        ("hope_decode_workspace_size", [ctypes.POINTER(DecodeParams), ctypes.POINTER(ctypes.c_size_t)]),
        ("hope_decode_forward", [ctypes.POINTER(DecodeParams), ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p])])
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        backends = [("flash", SDPBackend.FLASH_ATTENTION), ("efficient", SDPBackend.EFFICIENT_ATTENTION)]
        if hasattr(SDPBackend, "CUDNN_ATTENTION"):
            backends.append(("cudnn", SDPBackend.CUDNN_ATTENTION))
    except Exception:  # noqa: BLE001
        sdpa_kernel, backends = None, []
        results["errors"].append("torch.nn.attention.sdpa_kernel unavailable: torch SDPA rows skipped")

    F = torch.nn.functional
    scale = 1.0 / math.sqrt(DIM)
    stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
    l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 << 20) or (50 << 20)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(args.seed)
    dgen = torch.Generator(device="cuda")
    dgen.manual_seed(args.seed + 1)

    # The yardstick: a device-to-device copy of 256 MiB (bytes read + written).
    copy_gbps = 0.0
    try:
        src = [torch.empty(256 << 20, dtype=torch.uint8, device="cuda").fill_(1) for _ in range(2)]
        dst = [torch.empty_like(s) for s in src]
        with NvtxRange(torch, "decode_bench copy_d2d"):
            med, best = time_cuda(torch, lambda s: dst[s].copy_(src[s]), 2, args.warmup, args.iters)
        copy_gbps = 2 * (256 << 20) / (med * 1e-3) / 1e9
        results["rows"].append({"name": "copy_d2d", "case": "-", "ms_median": med, "ms_min": best,
                                "gbps": copy_gbps, "bytes": 2 * (256 << 20)})
        print(f"copy_d2d: {med:.3f} ms, {copy_gbps:.0f} GB/s", flush=True)
        del src, dst
    except Exception as e:  # noqa: BLE001
        results["errors"].append(f"copy_d2d: {type(e).__name__}: {e}")

    for batch, ctx, nq in shapes:
        case = f"b{batch} ctx{ctx} q{nq}"
        pages_per_seq = (ctx + PAGE - 1) // PAGE
        num_pages = batch * pages_per_seq
        total_q = batch * nq
        kv_bytes = batch * ctx * HK * DIM * 2  # one of K, V
        q_bytes = total_q * HQ * DIM * 2
        moved = 2 * kv_bytes + 2 * q_bytes
        sets = max(1, min(4, math.ceil(4 * l2 / (2 * kv_bytes))))
        print(f"== {case}: {num_pages} pages, {sets} input set(s)", flush=True)
        outputs = {}
        try:
            data = []
            for s in range(sets):
                kp = torch.randn(num_pages, PAGE, HK, DIM, generator=dgen, device="cuda", dtype=torch.bfloat16)
                vp = torch.randn(num_pages, PAGE, HK, DIM, generator=dgen, device="cuda", dtype=torch.bfloat16)
                table = torch.randperm(num_pages, generator=gen).to(torch.int32).view(batch, pages_per_seq).cuda()
                q = torch.randn(total_q, HQ, DIM, generator=dgen, device="cuda", dtype=torch.bfloat16)
                # Query i of a sequence sits at position ctx - nq + i (positions above 100 000 included).
                pos = torch.arange(ctx - nq, ctx, device="cuda", dtype=torch.float64).repeat(batch)
                cos, sin = rope_cos_sin(torch, pos, DIM)
                data.append({"kp": kp, "vp": vp, "table": table, "q": q, "cos": cos, "sin": sin,
                             "out": torch.empty_like(q), "lse": torch.empty(HQ, total_q, device="cuda")})
            cu = torch.arange(0, total_q + 1, nq, dtype=torch.int32, device="cuda")
            lens = torch.full((batch,), ctx, dtype=torch.int32, device="cuda")
        except Exception as e:  # noqa: BLE001
            results["errors"].append(f"{case}: setup: {type(e).__name__}: {e}")
            torch.cuda.empty_cache()
            continue

        def record(name, fn, note=""):
            row = {"name": name, "case": case, "batch": batch, "context": ctx, "queries": nq, "note": note,
                   "bytes": moved}
            try:
                with NvtxRange(torch, f"{name} {case}"):
                    med, best = time_cuda(torch, fn, sets, args.warmup, args.iters)
                gbps = moved / (med * 1e-3) / 1e9
                row.update(ms_median=med, ms_min=best, gbps=gbps,
                           fraction_of_copy=gbps / copy_gbps if copy_gbps > 0 else None)
                print(f"{case:22s} {name:34s} {med:9.4f} ms {gbps:8.1f} GB/s {note}", flush=True)
            except Exception as e:  # noqa: BLE001
                row["error"] = f"{type(e).__name__}: {e}"
                print(f"{case:22s} {name:34s} FAILED: {row['error']}", flush=True)
                traceback.print_exc()
                torch.cuda.synchronize()
            results["rows"].append(row)
            return "error" not in row

        if lib is not None:
            def params(d, rotate):
                p = DecodeParams()
                p.backend = HOPE_BACKEND_CUDA
                p.cache.dtype, p.cache.num_pages, p.cache.page_size = HOPE_DTYPE_BFLOAT16, num_pages, PAGE
                p.cache.num_kv_heads, p.cache.head_dim = HK, DIM
                p.cache.k_pages, p.cache.v_pages = d["kp"].data_ptr(), d["vp"].data_ptr()
                p.batch, p.num_q_heads = batch, HQ
                p.cu_seqlens_q, p.max_seqlen_q = cu.data_ptr(), nq
                p.seq_lens, p.max_seqlen_k = lens.data_ptr(), ctx
                p.page_table, p.max_pages_per_seq = d["table"].data_ptr(), pages_per_seq
                p.q, p.out, p.lse = d["q"].data_ptr(), d["out"].data_ptr(), d["lse"].data_ptr()
                if rotate:
                    p.cos_q, p.sin_q = d["cos"].data_ptr(), d["sin"].data_ptr()
                p.softmax_scale, p.causal, p.num_splits = scale, 1, 0
                return p

            for label, rotate in (("hope decode (q rotated in-kernel)", True), ("hope decode (no rotation)", False)):
                try:
                    ps = [params(d, rotate) for d in data]
                    ws_bytes = ctypes.c_size_t(0)
                    check(lib, lib.hope_decode_workspace_size(ctypes.byref(ps[0]), ctypes.byref(ws_bytes)),
                          "hope_decode_workspace_size")
                    ws = torch.empty(max(1, ws_bytes.value), dtype=torch.uint8, device="cuda")
                    wsp = ctypes.c_void_p(ws.data_ptr() if ws_bytes.value else None)

                    def run(s, ps=ps, wsp=wsp, n=ws_bytes.value):
                        check(lib, lib.hope_decode_forward(ctypes.byref(ps[s]), wsp, n, stream), "hope_decode_forward")
                    if record(label, run, f"workspace {ws_bytes.value >> 10} KiB"):
                        run(0)
                        outputs["hope_rot" if rotate else "hope_norot"] = data[0]["out"].clone()
                    del ws
                except Exception as e:  # noqa: BLE001
                    results["rows"].append({"name": label, "case": case, "error": f"{type(e).__name__}: {e}"})

        if sdpa_kernel is not None:
            group = HQ // HK

            def gather(d, expand):
                # [num_pages, 16, Hk, d] -> [B, pages, 16, Hk, d] -> [B, Hk, N, d] (contiguous)
                idx = d["table"].view(-1).long()
                k = d["kp"].index_select(0, idx).view(batch, pages_per_seq * PAGE, HK, DIM)[:, :ctx]
                v = d["vp"].index_select(0, idx).view(batch, pages_per_seq * PAGE, HK, DIM)[:, :ctx]
                k, v = k.transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous()
                if expand:
                    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
                return k, v

            # Bottom-right causal mask among the new tokens (query i sees keys < ctx - nq + i + 1).
            mask = None
            if nq > 1:
                mask = (torch.arange(ctx, device="cuda")[None, :]
                        <= torch.arange(ctx - nq, ctx, device="cuda")[:, None])
            qts = [d["q"].view(batch, nq, HQ, DIM).transpose(1, 2) for d in data]  # [B, Hq, nq, d] views

            for label, backend in backends:
                try:
                    def sdpa(qq, kk, vv, gqa, backend=backend):
                        with sdpa_kernel(backend):
                            kw = {"enable_gqa": True} if gqa else {}
                            return F.scaled_dot_product_attention(qq, kk, vv, attn_mask=mask, scale=scale, **kw)
                    gqa, k0, v0 = True, None, None
                    try:
                        k0, v0 = gather(data[0], False)
                        sdpa(qts[0], k0, v0, True)
                        torch.cuda.synchronize()
                    except Exception:  # noqa: BLE001  (no enable_gqa here, or this backend refuses it)
                        gqa = False
                    del k0, v0
                    gathered = [gather(d, not gqa) for d in data]
                    note = "" if gqa else "K/V expanded to Hq heads (no enable_gqa)"
                    res = {}

                    def plain(s, gathered=gathered, gqa=gqa, sdpa=sdpa):
                        res["o"] = sdpa(qts[s], gathered[s][0], gathered[s][1], gqa)
                    ok = record(f"torch sdpa {label}", plain, note)
                    del gathered
                    torch.cuda.empty_cache()
                    if not ok:
                        continue
                    plain_o = None
                    if "o" in res:
                        plain_o = res["o"]

                    def with_gather(s, gqa=gqa, sdpa=sdpa):
                        k, v = gather(data[s], not gqa)
                        res["o"] = sdpa(qts[s], k, v, gqa)
                    record(f"gather + sdpa {label}", with_gather, note)
                    if plain_o is not None and "sdpa_ref" not in outputs:
                        plain = sdpa(qts[0], *gather(data[0], not gqa), gqa)
                        outputs["sdpa_ref"] = plain.transpose(1, 2).reshape(total_q, HQ, DIM).contiguous()
                        outputs["sdpa_ref_label"] = label
                except Exception as e:  # noqa: BLE001
                    results["rows"].append({"name": f"torch sdpa {label}", "case": case,
                                            "error": f"{type(e).__name__}: {e}"})
                    torch.cuda.synchronize()
                torch.cuda.empty_cache()

        if "hope_norot" in outputs and "sdpa_ref" in outputs:
            ref = outputs["sdpa_ref"].float()
            rel = ((outputs["hope_norot"].float() - ref).norm() / ref.norm()).item()
            what = f"hope decode (no rotation) vs torch sdpa {outputs['sdpa_ref_label']}"
            results["checks"].append({"case": case, "what": what, "relative_error": rel})
            print(f"{case:22s} check {what}: relative error {rel:.2e}", flush=True)
        del data, outputs
        torch.cuda.empty_cache()

    json_path = out_dir / "decode_bench.json"
    json_path.write_text(json.dumps(results, indent=2))
    append_markdown(results, md_path)
    print(f"wrote {json_path}; table appended to {md_path}")
    return 0


def append_markdown(results, path):
    lines = [f"## Paged decode, {results.get('device', '?')}", "",
             f"bf16, head_dim {DIM}, Hq {HQ}, Hk {HK}, pages of {PAGE} in random order, planner's default split. "
             f"Median ms, GB/s ({results['bytes_formula']}), % of the D2D copy's GB/s. "
             f"torch {results.get('torch', '?')}, CUDA {results.get('cuda', '?')}.", "",
             "| case | row | median ms | GB/s | % copy | note |", "|---|---|---|---|---|---|"]
    for r in results["rows"]:
        if "ms_median" in r:
            frac = f"{100 * r['fraction_of_copy']:.0f}" if r.get("fraction_of_copy") else "-"
            lines.append(f"| {r['case']} | {r['name']} | {r['ms_median']:.4f} | {r['gbps']:.0f} | {frac} | "
                         f"{r.get('note', '')} |")
        else:
            lines.append(f"| {r['case']} | {r['name']} | error | | | {r.get('error', '')[:200]} |")
    if results["checks"]:
        lines += ["", "Checks:", ""]
        lines += [f"- {c['case']}: {c['what']}: relative error {c['relative_error']:.2e}" for c in results["checks"]]
    if results["errors"]:
        lines += ["", "Errors:", ""] + [f"- {e}" for e in results["errors"]]
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n\n")


if __name__ == "__main__":
    sys.exit(main())
