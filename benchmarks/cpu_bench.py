#!/usr/bin/env python3
"""CPU benchmark: hope_attn's CPU backend against PyTorch on the CPU, in one process, same thread count.

Prefill (hope_attention_forward, HOPE_BACKEND_CPU): one sequence of N tokens, Hq 8, head_dim 128, GQA 4 (Hk 2)
and GQA 1 (Hk 8), causal and not, bfloat16 and float32, q and k rotated from cos/sin tables (rotate-half)
inside the call. The peer is what a PyTorch model runs: an eager rotate-half (q * cos + rotate_half(q) * sin,
for q and k) then torch.nn.functional.scaled_dot_product_attention (its CPU flash kernel; enable_gqa for
GQA). Rows: tokens, dtype, causal, gqa, hope ms, torch ms, torch / hope (> 1: hope faster), GFLOP/s
(4 N^2 d Hq, halved when causal), and the relative difference of the two outputs.

Decode (hope_decode_forward over a paged cache): bfloat16, Hq 8, Hk 2, head_dim 128, pages of 16 tokens in a
shuffled order, --decode shapes BATCHxCONTEXTxQUERIES (queries causal among themselves). The figure of merit
is GB/s of K/V read (every key and value of every sequence once) against the machine's read bandwidth,
measured here: the best of several numpy / torch reductions over 1 GiB, on one thread and on two. Cache pages
come from a pool several times larger than the L3 cache, a different set of pages each iteration, so the
reads come from memory. The torch peer (informative): SDPA over the same K/V gathered into contiguous tensors
before the timing.

Decode ceilings (benchmarks/cpu_read_bw.c, compiled here with the system C compiler; skipped without one): the
page-read ceiling is the best of several ways to read every byte of the very pages a decode call reads (the
same numpy arrays and page tables, rotating sets the same way): whole K and V pages in table order, 1 to 16
pages at a time interleaved line by line, with or without software prefetch ahead, on 1 thread and on
--threads; no arithmetic, so no decode over these pages can read faster. The compute ceiling is the measured
vdpbf16ps peak (the instruction the bfloat16 decode kernels multiply with) divided by the R floating-point
operations decode does per byte of K/V (R = query rows per kv head = queries x Hq / Hk).

Paired ratio (the figure to trust on a shared machine, whose load changes between two measurements taken seconds
apart): --decode-iters rounds of one decode call, right after it a contiguous read of the same cache set's K and V
bytes, then a read of its pages in table order (4 at a time, prefetch 2 pages ahead), both on --threads threads
(cpu_read_bw.c); the table gives each read's median GB/s and the median over the rounds of decode GB/s / its GB/s.

Timing: time.perf_counter around each call, --warmup untimed calls first, the median (and min) of --iters.
--quiet-wait S: before each decode shape, wait up to S seconds until the CPUs were 90% idle over 2 s (other users'
builds); the table gives that idle fraction and the load average after the shape.
The thread count (--threads, default 2) is set for both: HOPE_NUM_THREADS and torch.set_num_threads.
PyTorch is optional: without it the script says so and times hope_attn alone (install the CPU wheel with
`pip install torch --index-url https://download.pytorch.org/whl/cpu`). matplotlib is optional (the PNG).

Writes cpu_bench.json, cpu_bench.md and (with matplotlib) cpu_bench.png into --out (default
benchmarks/results/). The library: $HOPE_ATTN_LIBRARY, else build-gpu/ or build/libhope_attn.so.

  python3 benchmarks/cpu_bench.py                              # everything (about 20-30 minutes on 2 cores)
  python3 benchmarks/cpu_bench.py --tokens 4096,8192 --no-decode
  python3 benchmarks/cpu_bench.py --no-prefill --decode 1x32768x1,8x4096x1
"""
import argparse
import ctypes
import datetime
import json
import math
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from _common import REPO, AttentionParams, DecodeParams, PagedKV, check, find_library, load_library  # noqa: E402

HOPE_BACKEND_CPU = 1
HOPE_DTYPE_BFLOAT16, HOPE_DTYPE_FLOAT32 = 1, 2
HQ, DIM, PAGE, DECODE_HK = 8, 128, 16, 2


def load():
    """The library ($HOPE_ATTN_LIBRARY, else build-gpu/ or build/) with the entry points declared."""
    path = find_library()
    if path is None:
        sys.exit("cpu_bench: libhope_attn.so not found (build it, or set HOPE_ATTN_LIBRARY)")
    args = [("hope_attention_forward", [ctypes.POINTER(AttentionParams), ctypes.c_void_p]),
            ("hope_decode_workspace_size", [ctypes.POINTER(DecodeParams), ctypes.POINTER(ctypes.c_size_t)]),
            ("hope_decode_forward", [ctypes.POINTER(DecodeParams), ctypes.c_void_p, ctypes.c_size_t,
                                     ctypes.c_void_p])]
    return load_library(path, args), path


def ptr(a):
    return ctypes.c_void_p(a.ctypes.data)


def timed(fn, warmup, iters):
    """Median and min milliseconds of `iters` calls of fn(i) after `warmup` untimed ones."""
    for i in range(warmup):
        fn(i)
    times = []
    for i in range(iters):
        t0 = time.perf_counter()
        fn(warmup + i)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times), times


def bf16_bits(np, x):
    """float32 array -> bfloat16 bit patterns (uint16), round to nearest even."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_to_f32(np, b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def cos_sin(np, n, d, theta=1e6, start=0):
    inv = theta ** (-np.arange(0, d // 2, dtype=np.float64) * 2.0 / d)
    ang = (np.arange(start, start + n, dtype=np.float64))[:, None] * inv[None, :]
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


# ---- memory bandwidth ---------------------------------------------------------------------------------------

def measure_bandwidth(np, torch, threads):
    """GB/s of the best read-only reduction over a 1 GiB array, on 1 thread and on `threads` threads."""
    a = np.ones(1 << 28, dtype=np.float32)
    nbytes = a.nbytes
    res = {}

    def best(fn, reps=5):
        fn()
        return min(_t(fn) for _ in range(reps))

    def _t(fn):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    kernels = {
        "numpy max": lambda x: x.max(),
        "numpy sum": lambda x: x.sum(),
        "numpy or-reduce u64": lambda x: np.bitwise_or.reduce(x.view(np.uint64)),
    }
    for name, k in kernels.items():
        res[f"{name} 1t"] = nbytes / best(lambda: k(a)) / 1e9
        parts = np.array_split(a, threads)

        def par(k=k):
            ts = [threading.Thread(target=k, args=(p,)) for p in parts]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
        res[f"{name} {threads}t"] = nbytes / best(par) / 1e9
    if torch is not None:
        ta = torch.from_numpy(a)
        old = torch.get_num_threads()
        for nt in (1, threads):
            torch.set_num_threads(nt)
            res[f"torch sum {nt}t"] = nbytes / best(lambda: ta.sum()) / 1e9
            res[f"torch amax {nt}t"] = nbytes / best(lambda: ta.amax()) / 1e9
        torch.set_num_threads(old)
    one = max(v for k, v in res.items() if k.endswith(" 1t"))
    many = max(v for k, v in res.items() if k.endswith(f" {threads}t"))
    return {"single_thread_gbps": one, "threads_gbps": max(one, many), "all": res}


# ---- prefill ------------------------------------------------------------------------------------------------

def prefill_case(np, torch, lib, n, dtype, causal, gqa, warmup, iters):
    hk = HQ // gqa
    rng = np.random.default_rng(n * 7 + gqa * 3 + causal)
    f32 = {k: rng.standard_normal((n, h, DIM), dtype=np.float32) for k, h in (("q", HQ), ("k", hk), ("v", hk))}
    if dtype == "bf16":
        arrays = {k: bf16_bits(np, v) for k, v in f32.items()}
        out = np.zeros((n, HQ, DIM), dtype=np.uint16)
        hd = HOPE_DTYPE_BFLOAT16
    else:
        arrays = f32
        out = np.zeros((n, HQ, DIM), dtype=np.float32)
        hd = HOPE_DTYPE_FLOAT32
    cs, sn = cos_sin(np, n, DIM)
    cu = np.array([0, n], dtype=np.int32)
    p = AttentionParams()
    p.backend, p.dtype, p.batch = HOPE_BACKEND_CPU, hd, 1
    p.num_q_heads, p.num_kv_heads, p.head_dim = HQ, hk, DIM
    p.cu_seqlens_q = p.cu_seqlens_k = ptr(cu)
    p.max_seqlen_q = p.max_seqlen_k = n
    p.q, p.k, p.v, p.out = ptr(arrays["q"]), ptr(arrays["k"]), ptr(arrays["v"]), ptr(out)
    p.cos_q = p.cos_k = ptr(cs)
    p.sin_q = p.sin_k = ptr(sn)
    p.causal = int(causal)

    def run_hope(_):
        check(lib, lib.hope_attention_forward(ctypes.byref(p), None), "hope_attention_forward")

    row = {"tokens": n, "dtype": dtype, "causal": bool(causal), "gqa": gqa, "num_q_heads": HQ, "num_kv_heads": hk,
           "head_dim": DIM}
    flops = 4.0 * n * n * DIM * HQ / (2 if causal else 1)
    med, mn, ts = timed(run_hope, warmup, iters)
    row.update(hope_ms=med, hope_min_ms=mn, hope_times_ms=ts, hope_gflops=flops / med / 1e6)
    if torch is None:
        return row
    tdt = torch.bfloat16 if dtype == "bf16" else torch.float32
    if dtype == "bf16":
        tq, tk, tv = (torch.from_numpy(arrays[x].view(np.int16)).view(torch.bfloat16) for x in ("q", "k", "v"))
    else:
        tq, tk, tv = (torch.from_numpy(arrays[x]) for x in ("q", "k", "v"))
    # [1, H, N, d] views, as a model holds them after its projections
    tq, tk, tv = (x.view(1, n, -1, DIM).transpose(1, 2) for x in (tq, tk, tv))
    cos = torch.from_numpy(np.concatenate([cs, cs], axis=1)).to(tdt).view(1, 1, n, DIM)
    sin = torch.from_numpy(np.concatenate([sn, sn], axis=1)).to(tdt).view(1, 1, n, DIM)

    def rotate_half(x):
        x1, x2 = x[..., : DIM // 2], x[..., DIM // 2:]
        return torch.cat((-x2, x1), dim=-1)

    def run_torch(_):
        qr = tq * cos + rotate_half(tq) * sin
        kr = tk * cos + rotate_half(tk) * sin
        return torch.nn.functional.scaled_dot_product_attention(qr, kr, tv, is_causal=bool(causal),
                                                                enable_gqa=gqa > 1)

    with torch.inference_mode():
        med_t, mn_t, ts_t = timed(run_torch, warmup, iters)
        ref = run_torch(0).transpose(1, 2).reshape(n, HQ, DIM).float().numpy()
    got = bf16_to_f32(np, out) if dtype == "bf16" else out
    rel = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
    row.update(torch_ms=med_t, torch_min_ms=mn_t, torch_times_ms=ts_t, torch_gflops=flops / med_t / 1e6,
               speedup=med_t / med, rel_diff_vs_torch=rel)
    return row


# ---- decode -------------------------------------------------------------------------------------------------

def decode_case(np, torch, lib, rb, threads, batch, context, nq, warmup, iters, l3_bytes):
    hk = DECODE_HK
    rng = np.random.default_rng(batch * 131 + context + nq)
    pages_per_seq = (context + PAGE - 1) // PAGE
    kv_bytes = 2 * batch * context * hk * DIM * 2
    sets = max(2, math.ceil(3 * l3_bytes / kv_bytes))
    num_pages = sets * batch * pages_per_seq
    perm = rng.permutation(num_pages).astype(np.int32)
    shape = (num_pages, PAGE, hk, DIM)
    k_pages = bf16_bits(np, rng.standard_normal(shape, dtype=np.float32))
    v_pages = bf16_bits(np, rng.standard_normal(shape, dtype=np.float32))
    tables = perm.reshape(sets, batch, pages_per_seq).copy()
    q = bf16_bits(np, rng.standard_normal((batch * nq, HQ, DIM), dtype=np.float32))
    out = np.zeros((batch * nq, HQ, DIM), dtype=np.uint16)
    cs, sn = cos_sin(np, batch * nq, DIM, start=context - nq)
    cu = np.arange(0, batch * nq + 1, nq, dtype=np.int32)
    lens = np.full(batch, context, dtype=np.int32)
    p = DecodeParams()
    p.backend = HOPE_BACKEND_CPU
    p.cache = PagedKV(HOPE_DTYPE_BFLOAT16, num_pages, PAGE, hk, DIM, ptr(k_pages), ptr(v_pages))
    p.batch, p.num_q_heads = batch, HQ
    p.cu_seqlens_q, p.max_seqlen_q = ptr(cu), nq
    p.seq_lens, p.max_seqlen_k = ptr(lens), context
    p.max_pages_per_seq = pages_per_seq
    p.q, p.out = ptr(q), ptr(out)
    p.cos_q, p.sin_q = ptr(cs), ptr(sn)
    p.causal = 1
    p.page_table = ptr(tables[0])
    ws_bytes = ctypes.c_size_t(0)
    check(lib, lib.hope_decode_workspace_size(ctypes.byref(p), ctypes.byref(ws_bytes)), "workspace")
    ws = np.zeros(max(1, ws_bytes.value // 4 + 16), dtype=np.float32)

    def run_hope(i):
        p.page_table = ptr(tables[i % sets])
        check(lib, lib.hope_decode_forward(ctypes.byref(p), ptr(ws), ctypes.c_size_t(ws_bytes.value), None),
              "hope_decode_forward")

    med, mn, ts = timed(run_hope, warmup, iters)
    row = {"batch": batch, "context": context, "queries": nq, "num_q_heads": HQ, "num_kv_heads": hk,
           "head_dim": DIM, "page_size": PAGE, "kv_bytes": kv_bytes, "cache_sets": sets,
           "workspace_bytes": ws_bytes.value, "hope_ms": med, "hope_min_ms": mn, "hope_times_ms": ts,
           "hope_gbps": kv_bytes / med / 1e6}
    if rb is not None:
        row.update(paired_read(np, rb, run_hope, k_pages, v_pages, tables, threads, kv_bytes, iters))
        row.update(read_ceiling(np, rb, k_pages, v_pages, tables, threads, max(5, iters // 2)))
    if torch is None:
        return row
    # the peer: SDPA over contiguous [B, Hk, L, d] K/V gathered before the timing (one cache set)
    kk = torch.from_numpy(k_pages.view(np.int16)).view(torch.bfloat16)
    vv = torch.from_numpy(v_pages.view(np.int16)).view(torch.bfloat16)
    idx = torch.from_numpy(tables[0].astype(np.int64))
    kc = kk[idx].reshape(batch, pages_per_seq * PAGE, hk, DIM)[:, :context].transpose(1, 2).contiguous()
    vc = vv[idx].reshape(batch, pages_per_seq * PAGE, hk, DIM)[:, :context].transpose(1, 2).contiguous()
    tq = torch.from_numpy(q.view(np.int16)).view(torch.bfloat16).view(batch, nq, HQ, DIM).transpose(1, 2)
    mask = None
    if nq > 1:  # bottom-right causal among the new tokens
        mask = torch.ones(nq, context, dtype=torch.bool).tril(diagonal=context - nq)

    def run_torch(_):
        return torch.nn.functional.scaled_dot_product_attention(tq, kc, vc, attn_mask=mask, enable_gqa=True)

    with torch.inference_mode():
        med_t, mn_t, ts_t = timed(run_torch, warmup, iters)
    row.update(torch_ms=med_t, torch_min_ms=mn_t, torch_times_ms=ts_t, torch_gbps=kv_bytes / med_t / 1e6)
    return row


def wait_for_quiet(max_wait_s, idle_wanted=0.9):
    """Waits (at most max_wait_s) until the machine's CPUs were idle for at least idle_wanted of the last 2 s (other
    users' builds on a shared machine); returns the idle fraction of the last 2 s, None without /proc/stat."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    t_end = time.monotonic() + max_wait_s
    try:
        while True:
            t0, i0 = sample()
            time.sleep(2)
            t1, i1 = sample()
            idle = (i1 - i0) / max(1, t1 - t0)
            if idle >= idle_wanted or time.monotonic() >= t_end:
                return idle
    except OSError:
        return None


# ---- decode ceilings ----------------------------------------------------------------------------------------

def load_read_bw():
    """benchmarks/cpu_read_bw.c compiled into a shared object with the system C compiler ($CC, else cc); None (with
    a message) when that fails."""
    src = REPO / "benchmarks" / "cpu_read_bw.c"
    so = pathlib.Path(tempfile.mkdtemp(prefix="hope_readbw_")) / "libhope_readbw.so"
    cmd = [os.environ.get("CC", "cc"), "-O2", "-shared", "-fPIC", "-pthread", str(src), "-o", str(so)]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        detail = e.stderr.strip() if isinstance(e, subprocess.CalledProcessError) else str(e)
        print(f"cpu_bench: could not compile {src.name} ({detail}): no decode ceilings", file=sys.stderr)
        return None
    rb = ctypes.CDLL(str(so))
    u64p = ctypes.POINTER(ctypes.c_uint64)
    rb.hope_readbw_pages.restype = ctypes.c_double
    rb.hope_readbw_pages.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                     ctypes.c_int64, ctypes.c_int, ctypes.c_int, ctypes.c_int, u64p]
    rb.hope_readbw_contiguous.restype = ctypes.c_double
    rb.hope_readbw_contiguous.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, u64p]
    rb.hope_readbw_dpbf16_gflops.restype = ctypes.c_double
    rb.hope_readbw_dpbf16_gflops.argtypes = [ctypes.c_int, ctypes.c_int64]
    return rb


def paired_read(np, rb, run_hope, k_pages, v_pages, tables, threads, kv_bytes, iters):
    """The decode's share of the read bandwidth, robust to the load of a shared machine: `iters` rounds of one
    decode call, then a contiguous read (cpu_read_bw.c, `threads` threads) of the same cache set's K and V bytes,
    then a read of the same pages in table order (4 pages at a time, software prefetch 2 ahead: the way that came
    out best here); per way the median GB/s and the median over the rounds of decode GB/s / that way's GB/s."""
    sets = tables.shape[0]
    flat = [np.ascontiguousarray(t.reshape(-1)) for t in tables]
    entries, page_bytes = flat[0].size, k_pages[0].nbytes
    nbytes = 2 * entries * page_bytes
    hope, contig, pages = [], [], []
    for i in range(iters + 1):
        t0 = time.perf_counter()
        run_hope(i)
        t_hope = time.perf_counter() - t0
        s = i % sets
        t_contig = rb.hope_readbw_contiguous(k_pages.ctypes.data + s * entries * page_bytes,
                                             v_pages.ctypes.data + s * entries * page_bytes,
                                             entries * page_bytes, threads, None)
        t_pages = rb.hope_readbw_pages(ptr(k_pages), ptr(v_pages), page_bytes, ptr(flat[s]), entries, threads, 4, 2,
                                       None)
        if i > 0:  # the first round warms up
            hope.append(kv_bytes / t_hope / 1e9)
            contig.append(nbytes / t_contig / 1e9)
            pages.append(nbytes / t_pages / 1e9)
    return {"paired_read_gbps": statistics.median(contig),
            "paired_fraction": statistics.median(h / c for h, c in zip(hope, contig)),
            "paired_page_read_gbps": statistics.median(pages),
            "paired_page_fraction": statistics.median(h / p for h, p in zip(hope, pages)),
            "paired_hope_gbps": hope, "paired_contiguous_gbps": contig, "paired_pages_gbps": pages}


def read_ceiling(np, rb, k_pages, v_pages, tables, threads, iters):
    """The page-read ceiling of one decode shape: GB/s (median of `iters`, rotating the cache sets) of every way
    tried to read all K/V pages of the tables, the best on `threads` threads and on one, and a contiguous read of
    the same byte count."""
    sets = tables.shape[0]
    flat = [np.ascontiguousarray(t.reshape(-1)) for t in tables]
    entries, page_bytes = flat[0].size, k_pages[0].nbytes
    nbytes = 2 * entries * page_bytes

    def gbps(fn):
        times = [fn(i) for i in range(iters + 1)][1:]
        return nbytes / statistics.median(times) / 1e9

    ways = {}
    for nt in sorted({1, threads}):
        for inflight in (1, 2, 4, 8, 16):
            for pf in (0, 1, 2):
                ways[f"{nt}t pages x{inflight} prefetch {pf}"] = gbps(
                    lambda i: rb.hope_readbw_pages(ptr(k_pages), ptr(v_pages), page_bytes, ptr(flat[i % sets]),
                                                   entries, nt, inflight, pf, None))
        ways[f"{nt}t contiguous"] = gbps(
            lambda i: rb.hope_readbw_contiguous(k_pages.ctypes.data + (i % sets) * entries * page_bytes,
                                                v_pages.ctypes.data + (i % sets) * entries * page_bytes,
                                                entries * page_bytes, nt, None))

    def best(prefix):
        name = max((k for k in ways if k.startswith(prefix) and "contiguous" not in k), key=ways.get)
        return ways[name], name

    top, top_name = best(f"{threads}t ")
    one, one_name = best("1t ")
    if one > top:
        top, top_name = one, one_name
    return {"page_read_gbps": top, "page_read_way": top_name, "page_read_1t_gbps": one,
            "contiguous_gbps": max(ways[f"{nt}t contiguous"] for nt in {1, threads}), "ways": ways}


# ---- output -------------------------------------------------------------------------------------------------

def markdown(res):
    lines = [f"## CPU benchmark ({res['date']}, {res['cpu']}, {res['threads']} threads, load {res['load_before']})",
             ""]
    if res["prefill"]:
        lines += ["| tokens | dtype | causal | GQA | hope ms | torch ms | torch / hope | hope GFLOP/s | rel. diff |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in res["prefill"]:
            t = f"{r['torch_ms']:.1f}" if "torch_ms" in r else "-"
            s = f"{r['speedup']:.2f}x" if "speedup" in r else "-"
            d = f"{r['rel_diff_vs_torch']:.1e}" if "rel_diff_vs_torch" in r else "-"
            lines.append(f"| {r['tokens']} | {r['dtype']} | {'yes' if r['causal'] else 'no'} | {r['gqa']} | "
                         f"{r['hope_ms']:.1f} | {t} | {s} | {r['hope_gflops']:.0f} | {d} |")
        lines.append("")
    if res["decode"]:
        bw = res["bandwidth"]
        lines += [f"Read bandwidth measured: {bw['single_thread_gbps']:.1f} GB/s on 1 thread, "
                  f"{bw['threads_gbps']:.1f} GB/s on {res['threads']} threads (numpy / torch reductions over 1 GiB).",
                  ""]
        peak = res.get("dpbf16_gflops")
        if peak:
            lines += [f"vdpbf16ps peak: {peak:.0f} GFLOP/s on {res['threads']} threads. Decode with R query rows per "
                      f"kv head does R FLOP per byte of K/V: compute ceiling = peak / R.", ""]
        lines += ["| batch x context x queries | K/V MB | hope ms | hope GB/s | % of bandwidth | paired: contiguous read "
                  "GB/s, hope / it | paired: page read GB/s, hope / it | page-read ceiling GB/s | % of ceiling | "
                  "compute ceiling GB/s | torch ms | torch GB/s | idle before, load after |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in res["decode"]:
            t = f"{r['torch_ms']:.2f}" if "torch_ms" in r else "-"
            tg = f"{r['torch_gbps']:.1f}" if "torch_gbps" in r else "-"
            ceil = f"{r['page_read_gbps']:.1f}" if "page_read_gbps" in r else "-"
            pct = f"{100 * r['hope_gbps'] / r['page_read_gbps']:.0f}%" if "page_read_gbps" in r else "-"
            comp = f"{r['compute_ceiling_gbps']:.1f}" if "compute_ceiling_gbps" in r else "-"
            idle = f"{100 * r['idle_before']:.0f}%, " if r.get("idle_before") is not None else "-, "
            paired = f"{r['paired_read_gbps']:.1f}, {100 * r['paired_fraction']:.0f}% | " \
                     f"{r['paired_page_read_gbps']:.1f}, {100 * r['paired_page_fraction']:.0f}%" \
                if "paired_fraction" in r else "- | -"
            lines.append(f"| {r['batch']} x {r['context']} x {r['queries']} | {r['kv_bytes'] / 1e6:.1f} | "
                         f"{r['hope_ms']:.2f} | {r['hope_gbps']:.1f} | {100 * r['fraction_of_bandwidth']:.0f}% | {paired} | "
                         f"{ceil} | {pct} | {comp} | {t} | {tg} | {idle}{r.get('load_after', '-')} |")
        lines.append("")
        ways = [r for r in res["decode"] if "page_read_way" in r]
        if ways:
            lines += ["Page-read ceiling: the best way found to read the same pages (see cpu_read_bw.c); its "
                      "contiguous-read peer reads the same byte count in address order:", ""]
            for r in ways:
                lines.append(f"- {r['batch']} x {r['context']}: {r['page_read_gbps']:.1f} GB/s ({r['page_read_way']}); "
                             f"best on 1 thread {r['page_read_1t_gbps']:.1f} GB/s; contiguous "
                             f"{r['contiguous_gbps']:.1f} GB/s")
            lines.append("")
    return "\n".join(lines)


def plot(res, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = (1 if res["prefill"] else 0) + (1 if res["decode"] else 0)
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.5))
    axes = list(axes) if hasattr(axes, "__len__") else [axes]
    if res["prefill"]:
        plot_prefill(res, axes.pop(0))
    if res["decode"]:
        plot_decode(res, axes.pop(0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def plot_prefill(res, ax):
    for (dtype, causal, gqa) in sorted({(r["dtype"], r["causal"], r["gqa"]) for r in res["prefill"]}):
        rows = [r for r in res["prefill"] if (r["dtype"], r["causal"], r["gqa"]) == (dtype, causal, gqa)]
        if not rows or "speedup" not in rows[0]:
            continue
        ax.plot([r["tokens"] for r in rows], [r["speedup"] for r in rows], marker="o",
                label=f"{dtype} {'causal' if causal else 'full'} GQA {gqa}")
    ax.axhline(1.2, color="gray", linestyle="--", linewidth=1, label="goal 1.2x")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("tokens")
    ax.set_ylabel("torch time / hope time")
    ax.set_title(f"prefill, {res['threads']} threads (Hq 8, d 128, rotation included)")
    ax.legend(fontsize=7)


def plot_decode(res, ax):
    names = [f"{r['batch']}x{r['context']}x{r['queries']}" for r in res["decode"]]
    ax.bar(names, [r["hope_gbps"] for r in res["decode"]], label="hope decode")
    if all("torch_gbps" in r for r in res["decode"]):
        ax.plot(names, [r["torch_gbps"] for r in res["decode"]], "o", color="C1", label="torch SDPA (gathered)")
    if all("paired_fraction" in r for r in res["decode"]):
        ax.plot(names, [r["paired_fraction"] * res["bandwidth"]["threads_gbps"] for r in res["decode"]], "D",
                color="C2", markersize=5, label="hope, paired ratio x read bandwidth")
    if all("page_read_gbps" in r for r in res["decode"]):
        ax.plot(names, [r["page_read_gbps"] for r in res["decode"]], "_", color="k", markersize=30, mew=2,
                label="page-read ceiling (same pages)")
    low = [(n, r["compute_ceiling_gbps"]) for n, r in zip(names, res["decode"])
           if r.get("compute_ceiling_gbps", 1e9) < res["bandwidth"]["threads_gbps"]]
    if low:  # the compute ceilings below the memory bandwidth (the others are off the chart)
        ax.plot([n for n, _ in low], [g for _, g in low], "v", color="C3", markersize=9,
                label="compute ceiling (bf16 dot peak / R)")
    bw = res["bandwidth"]["threads_gbps"]
    ax.axhline(bw, color="gray", linestyle="-", linewidth=1, label=f"measured read bandwidth {bw:.0f} GB/s")
    ax.axhline(bw / 2, color="gray", linestyle="--", linewidth=1, label="goal: 50%")
    ax.set_ylabel("GB/s of K/V read")
    ax.set_title("decode, bf16, Hq 8 / Hk 2, d 128, page 16")
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=7)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", default="1024,2048,4096,8192,16384")
    ap.add_argument("--dtypes", default="bf16,fp32")
    ap.add_argument("--causal", default="1,0", help="1 causal, 0 full")
    ap.add_argument("--gqa", default="4,1")
    ap.add_argument("--decode",
                    default="1x32768x1,1x32768x4,1x32768x8,8x4096x1,8x4096x4,8x4096x8,32x1024x1,32x1024x8",
                    help="BATCHxCONTEXTxQUERIES list")
    ap.add_argument("--no-prefill", action="store_true")
    ap.add_argument("--no-decode", action="store_true")
    ap.add_argument("--no-torch", action="store_true", help="time hope_attn alone")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--decode-iters", type=int, default=20)
    ap.add_argument("--l3-mb", type=float, default=32.0, help="last-level cache size the decode pool exceeds 3x")
    ap.add_argument("--quiet-wait", type=float, default=0.0,
                    help="before each decode shape, wait up to this many seconds for the CPUs to be 90%% idle")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    ap.add_argument("--name", default="cpu_bench", help="file name stem of the outputs")
    args = ap.parse_args()

    os.environ["HOPE_NUM_THREADS"] = str(args.threads)
    import numpy as np
    torch = None
    if not args.no_torch:
        try:
            import torch as _torch
            torch = _torch
            torch.set_num_threads(args.threads)
        except ImportError:
            print("cpu_bench: PyTorch not installed: timing hope_attn alone (pip install torch --index-url "
                  "https://download.pytorch.org/whl/cpu)", file=sys.stderr)
    lib, lib_path = load()
    cpu = platform.processor() or "cpu"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    res = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "cpu": cpu, "threads": args.threads,
           "library": str(lib_path), "commit": commit, "torch": torch.__version__ if torch else None,
           "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
           "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
           "warmup": args.warmup, "iters": args.iters, "prefill": [], "decode": []}
    if not args.no_prefill:
        for n in (int(x) for x in args.tokens.split(",")):
            for dtype in args.dtypes.split(","):
                for causal in (int(x) for x in args.causal.split(",")):
                    for gqa in (int(x) for x in args.gqa.split(",")):
                        r = prefill_case(np, torch, lib, n, dtype, causal, gqa, args.warmup, args.iters)
                        res["prefill"].append(r)
                        msg = f"prefill {n:6d} {dtype} causal={causal} gqa={gqa}: hope {r['hope_ms']:9.1f} ms"
                        if "torch_ms" in r:
                            msg += f"  torch {r['torch_ms']:9.1f} ms  torch/hope {r['speedup']:.2f}x" \
                                   f"  rel.diff {r['rel_diff_vs_torch']:.1e}"
                        print(msg, flush=True)
    if not args.no_decode:
        rb = load_read_bw()
        if rb is not None:
            res["dpbf16_gflops"] = rb.hope_readbw_dpbf16_gflops(args.threads, 2_000_000) or None
        res["bandwidth"] = measure_bandwidth(np, torch, args.threads)
        print("read bandwidth: %.1f GB/s (1 thread), %.1f GB/s (%d threads)" %
              (res["bandwidth"]["single_thread_gbps"], res["bandwidth"]["threads_gbps"], args.threads), flush=True)
        for shape in args.decode.split(","):
            b, c, q = (int(x) for x in shape.split("x"))
            idle = wait_for_quiet(args.quiet_wait) if args.quiet_wait > 0 else None
            r = decode_case(np, torch, lib, rb, args.threads, b, c, q, 3, args.decode_iters,
                            int(args.l3_mb * 2 ** 20))
            r["fraction_of_bandwidth"] = r["hope_gbps"] / res["bandwidth"]["threads_gbps"]
            r["idle_before"] = idle
            r["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
            if res.get("dpbf16_gflops"):
                r["compute_ceiling_gbps"] = res["dpbf16_gflops"] / (q * HQ / DECODE_HK)
            res["decode"].append(r)
            msg = f"decode {shape}: hope {r['hope_ms']:.2f} ms {r['hope_gbps']:.1f} GB/s " \
                  f"({100 * r['fraction_of_bandwidth']:.0f}% of bandwidth)"
            if "paired_fraction" in r:
                msg += f"  paired: {100 * r['paired_fraction']:.0f}% of {r['paired_read_gbps']:.1f} GB/s contiguous, " \
                       f"{100 * r['paired_page_fraction']:.0f}% of {r['paired_page_read_gbps']:.1f} GB/s page read"
            if "page_read_gbps" in r:
                msg += f"  page-read ceiling {r['page_read_gbps']:.1f} GB/s ({r['page_read_way']})"
            if "torch_ms" in r:
                msg += f"  torch {r['torch_ms']:.2f} ms {r['torch_gbps']:.1f} GB/s"
            print(msg, flush=True)
    res["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(res, indent=1) + "\n")
    md = markdown(res)
    (out / f"{args.name}.md").write_text(f"Command: `{res['command']}` (commit {commit})\n\n" + md + "\n")
    print(md)
    if res["prefill"] or res["decode"]:
        if plot(res, out / f"{args.name}.png"):
            print(f"cpu_bench: wrote {out / (args.name + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
