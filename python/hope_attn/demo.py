"""hope-attn-demo / python -m hope_attn: one multimodal prefill through hope_attn, checked — the Python twin of
examples/hope_attn_demo.c, with the same options, the same random inputs (splitmix64 + Box-Muller from --seed)
and the same report.

Builds the (t, h, w) positions of a text + video + image prompt, chooses the videos' temporal scale, fills a
cos/sin cache, runs causal attention with the rotary embedding fused in on the CPU backend (on the GPU when one
is usable and PyTorch can hold the device arrays), and checks a sample of rows against a float64 computation done
here from scratch; on a GPU also against the CPU backend. Exit status: 0 PASS, 1 FAIL or a library error, 2 bad
arguments.

    hope-attn-demo                                   # system text 24 + video 8x18x32 + question text 40
    hope-attn-demo --text 32 --video 16x18x32 --image 18x32 --text 64 --scale fit:8192 --heads 28:4
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from . import api as _api
from ._build_info import build_info
from ._lib import DType, HopeError, SegmentKind, Status

_ROPES = ["vanilla", "mrope", "mrope_interleaved", "videorope", "hope"]
_LAYOUTS = ["sequential", "mrope", "diagonal"]
_DTYPES = {"fp16": DType.FLOAT16, "float16": DType.FLOAT16, "bf16": DType.BFLOAT16, "bfloat16": DType.BFLOAT16,
           "fp32": DType.FLOAT32, "float32": DType.FLOAT32}
_DTYPE_NAMES = {DType.FLOAT16: "fp16", DType.BFLOAT16: "bf16", DType.FLOAT32: "fp32"}
_TOL = {DType.FLOAT32: (1e-5, 1e-4), DType.FLOAT16: (2e-3, 5e-3), DType.BFLOAT16: (1e-2, 2e-2)}  # SPEC §6


# ---- arguments (the C demo's, in prompt order) -----------------------------------------------------------------

def _grid(text: str, n: int, what: str, expect: str) -> tuple:
    parts = text.lower().split("x")
    if len(parts) != n or not all(p.isdigit() and 1 <= int(p) <= 100000 for p in parts):
        raise argparse.ArgumentTypeError(f"bad {what} '{text}': {expect}")
    return tuple(int(p) for p in parts)


class _Segment(argparse.Action):
    """--text / --video / --image append to one list, so the prompt keeps the command line's order."""

    def __call__(self, parser, ns, value, option):
        segs = list(getattr(ns, "segments", None) or [])
        if option == "--text":
            if not value.isdigit() or int(value) > 100000000:
                parser.error(f"bad --text '{value}': expected a token count >= 0")
            segs.append(_api.text(int(value)))
        elif option == "--video":
            try:
                segs.append(_api.video(*_grid(value, 3, "--video", "expected TxHxW, e.g. 16x18x32 (each >= 1)")))
            except argparse.ArgumentTypeError as e:
                parser.error(str(e))
        else:
            try:
                segs.append(_api.image(*_grid(value, 2, "--image", "expected HxW, e.g. 18x32 (each >= 1)")))
            except argparse.ArgumentTypeError as e:
                parser.error(str(e))
        if len(segs) > 256:
            parser.error("at most 256 segments")
        ns.segments = segs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hope-attn-demo",
        description="One causal multimodal prefill through hope_attn, checked against float64 (and the CPU "
                    "backend when a GPU is used). Without segments: --text 24 --video 8x18x32 --text 40.")
    for opt, meta, help_ in (("--text", "N", "N text tokens"),
                             ("--video", "TxHxW", "a video: T frames of HxW LLM tokens (after the spatial merge)"),
                             ("--image", "HxW", "an image of HxW LLM tokens")):
        p.add_argument(opt, action=_Segment, metavar=meta, dest="segments", help=help_)
    p.add_argument("--rope", choices=_ROPES, default="hope")
    p.add_argument("--layout", choices=_LAYOUTS, default=None,
                   help="default: diagonal for hope/videorope, mrope for the mrope kinds, sequential for vanilla")
    p.add_argument("--scale", default="fit:32768", metavar="POLICY",
                   help="fit:BUDGET | fixed:S | random:SEED (default fit:32768)")
    p.add_argument("--heads", default=None, metavar="Q:KV", help="default 28:4 on a GPU, 4:1 on the CPU")
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--sections", default=None, metavar="T,H,W", help="default: Qwen2-VL's 1/4, 3/8, 3/8")
    p.add_argument("--theta", type=float, default=1e6)
    p.add_argument("--dtype", choices=sorted(_DTYPES), default="bf16")
    p.add_argument("--backend", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--check-rows", type=int, default=64)
    p.add_argument("--start", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=1)
    return p


def _options(argv):
    p = _parser()
    o = p.parse_args(argv)
    o.segments = o.segments or [_api.text(24), _api.video(8, 18, 32), _api.text(40)]
    kind, _, value = o.scale.partition(":")
    try:
        if kind == "fit":
            o.scale_policy, o.scale_value = "fit", float(value)
        elif kind == "fixed":
            o.scale_policy, o.scale_value = "fixed", float(value)
            if not o.scale_value > 0:
                raise ValueError
        elif kind == "random" and value.isdigit():
            o.scale_policy, o.scale_value, o.scale_seed = "random", 0.0, int(value)
        else:
            raise ValueError
    except ValueError:
        p.error(f"bad --scale '{o.scale}': expected fit:BUDGET, fixed:SCALE or random:SEED")
    if o.heads is not None:
        q, _, kv = o.heads.partition(":")
        if not (q.isdigit() and kv.isdigit() and 1 <= int(kv) <= int(q) <= 1024 and int(q) % int(kv) == 0):
            p.error(f"bad --heads '{o.heads}': expected Q:KV with Q a multiple of KV, e.g. 28:4")
    d = o.head_dim
    if not (2 <= d <= 1024 and d % 2 == 0):
        p.error(f"bad --head-dim '{d}': expected an even number in 2..1024")
    if o.sections is None:
        sh = (3 * (d // 2)) // 8
        o.sections = (d // 2 - 2 * sh, sh, sh)
    else:
        parts = o.sections.split(",")
        if len(parts) != 3 or not all(x.isdigit() for x in parts):
            p.error(f"bad --sections '{o.sections}': expected T,H,W pair counts, e.g. 16,24,24")
        o.sections = tuple(int(x) for x in parts)
        if o.rope != "vanilla" and sum(o.sections) != d // 2:
            p.error(f"bad --sections '{o.sections}': the three must add up to head_dim / 2 = {d // 2}")
    if not o.theta > 1:
        p.error(f"bad --theta '{o.theta}': expected a number > 1")
    if o.layout is None:
        o.layout = {"vanilla": "sequential", "mrope": "mrope", "mrope_interleaved": "mrope"}.get(o.rope, "diagonal")
    if o.check_rows < 0 or o.seed < 0:
        p.error("--check-rows and --seed take numbers >= 0")
    o.dtype = _DTYPES[o.dtype]
    return o


# ---- numbers: the C demo's random inputs and dtype rounding -------------------------------------------------

_U64 = np.uint64


def _splitmix_states(seed: int, first_call: int, count: int) -> np.ndarray:
    """splitmix64 outputs of calls first_call .. first_call + count - 1 (0-based) from state `seed`."""
    with np.errstate(over="ignore"):
        k = np.arange(first_call + 1, first_call + 1 + count, dtype=_U64)
        z = _U64(seed & 0xFFFFFFFFFFFFFFFF) + k * _U64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
        return z ^ (z >> _U64(31))


def _normals(seed: int, first: int, count: int) -> np.ndarray:
    """The C demo's normal() for draws first .. first + count - 1: Box-Muller on two splitmix64 uniforms."""
    z = _splitmix_states(seed, 2 * first, 2 * count)
    u01 = ((z >> _U64(11)).astype(np.float64) + 0.5) * 2.0 ** -53
    u, v = u01[0::2], u01[1::2]
    return (np.sqrt(-2.0 * np.log(u)) * np.cos(6.283185307179586 * v)).astype(np.float32)


def _to_bf16_bits(x: np.ndarray) -> np.ndarray:
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    nan = (b & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    with np.errstate(over="ignore"):
        r = ((b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)
    return np.where(nan, ((b >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16), r)


def _from_bf16_bits(b: np.ndarray) -> np.ndarray:
    return (b.astype(np.uint32) << np.uint32(16)).view(np.float32)


def _store(x: np.ndarray, dtype: DType) -> np.ndarray:
    """The buffer the library reads: float32, float16, or bfloat16 bits in uint16."""
    if dtype == DType.FLOAT16:
        return x.astype(np.float16)
    if dtype == DType.BFLOAT16:
        return _to_bf16_bits(x)
    return x


def _load(buf: np.ndarray, dtype: DType) -> np.ndarray:
    return (_from_bf16_bits(buf) if dtype == DType.BFLOAT16 else buf).astype(np.float64)


def _round(x: np.ndarray, dtype: DType) -> np.ndarray:
    """A float64 value as the kernels hold it after rotation: rounded to the tensor dtype (float32 keeps it)."""
    if dtype == DType.FLOAT32:
        return x
    return _load(_store(x.astype(np.float32), dtype), dtype)


def _components(kind: str, half: int, sections) -> np.ndarray:
    """SPEC §3, written out here independently of the library: the position row of each pair (-1: none)."""
    st, sh, sw = sections
    i = np.arange(half)
    if kind == "vanilla":
        return np.zeros(half, int)
    if kind == "mrope":
        return np.where(i < st, 0, np.where(i < st + sh, 1, 2))
    if kind == "mrope_interleaved":
        return np.where((i % 3 == 1) & (i < 3 * sh), 1, np.where((i % 3 == 2) & (i < 3 * sw), 2, 0))
    hw = np.where(i % 2 == 0, 1, 2)
    return np.where(i < sh + sw, hw, 0 if kind == "videorope" else -1)


def _rotate(x: np.ndarray, pos3: np.ndarray, o) -> np.ndarray:
    """Rotates x [tokens, heads, d] (or [heads, d] of one token) with the tokens' positions pos3 [tokens, 3] (or
    [3]) in float64, then rounds to the dtype as the kernels hold rotated q and k (SPEC §4)."""
    d = x.shape[-1]
    half = d // 2
    comp = _components(o.rope, half, o.sections)
    inv = np.power(o.theta, -2.0 * np.arange(half) / d)
    angle = np.where(comp >= 0, np.take(pos3, np.maximum(comp, 0), axis=-1).astype(np.float64) * inv, 0.0)
    cs, sn = np.cos(angle)[..., None, :], np.sin(angle)[..., None, :]
    lo, hi = x[..., :half], x[..., half:]
    return _round(np.concatenate([lo * cs - hi * sn, hi * cs + lo * sn], axis=-1), o.dtype)


# ---- the demo -------------------------------------------------------------------------------------------------

def _describe(segments, n: int) -> str:
    parts = []
    for s in segments:
        if s.kind == SegmentKind.TEXT:
            parts.append(f"text {s.length}")
        elif s.kind == SegmentKind.IMAGE:
            parts.append(f"image {s.grid_h}x{s.grid_w}")
        else:
            parts.append(f"video {s.grid_t}x{s.grid_h}x{s.grid_w}")
    return " + ".join(parts) + f" = {n} tokens"


def _torch_cuda():
    """PyTorch with a usable CUDA device, or None."""
    try:
        import torch
        return torch if torch.cuda.is_available() else None
    except Exception:
        return None


def _attention_gpu(torch, q, k, v, n, o, rope, positions):
    """The C demo's GPU run: device cos/sin cache, fused kernel (unfused cuBLAS path when it is not covered),
    a warm-up and 10 runs timed with CUDA events. Returns (out, lse, ms, path, device name)."""
    dev = torch.device("cuda")
    tdt = {DType.FLOAT16: torch.float16, DType.BFLOAT16: torch.bfloat16, DType.FLOAT32: torch.float32}[o.dtype]

    def upload(a):
        t = torch.from_numpy(a.view(np.int16) if o.dtype == DType.BFLOAT16 else a)
        return t.to(dev).view(tdt)

    dq, dk, dv = upload(q), upload(k), upload(v)
    cu = torch.tensor([0, n], dtype=torch.int32, device=dev)
    cache = _api.RopeCache(rope, n, memory="device").fill(positions)  # filled from the host positions
    cos, sin = cache.cos, cache.sin
    path = "fused"

    def run(unfused):
        return _api.attention(dq, dk, dv, cu, cu, causal=True, cos_q=cos, sin_q=sin, cos_k=cos, sin_k=sin,
                              return_lse=True, max_seqlen_q=n, max_seqlen_k=n, unfused=unfused)

    try:
        out, lse = run(False)
    except HopeError as e:
        if e.status != Status.ERROR_NOT_SUPPORTED:
            raise
        print(f"  note       : fused kernel: {e.message}; using the unfused GPU path")
        path = "unfused"
        out, lse = run(True)
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(10):
        out, lse = run(path == "unfused")
    e1.record()
    e1.synchronize()
    ms = e0.elapsed_time(e1) / 10
    host = out.cpu()
    host = host.view(torch.int16).numpy().view(np.uint16) if o.dtype == DType.BFLOAT16 else host.numpy()
    return host, lse.cpu().numpy(), ms, path, torch.cuda.get_device_name(dev)


def _check_float64(o, positions, q, k, v, out, lse, n, hq, hk, d):
    """Sample rows against float64 computed here from the positions. Returns (line, ok)."""
    tol_rel, tol_lse = _TOL[o.dtype]
    rows = min(o.check_rows, n)
    t0 = time.perf_counter()
    pos3 = positions.T  # [n, 3]
    # per kv head, contiguous: [hk, n, d]
    krot = np.ascontiguousarray(_rotate(_load(k, o.dtype).reshape(n, hk, d), pos3, o).transpose(1, 0, 2))
    vd = np.ascontiguousarray(_load(v, o.dtype).reshape(n, hk, d).transpose(1, 0, 2))
    got = _load(out, o.dtype).reshape(n, hq, d)
    qd = _load(q, o.dtype).reshape(n, hq, d)
    scale = 1.0 / math.sqrt(d)
    err2 = ref2 = max_abs = lse_max = 0.0
    for r in range(rows):
        i = n - 1 if rows == 1 else int(r * (n - 1) / (rows - 1))
        qr = _rotate(qd[i], pos3[i], o)  # [hq, d]
        for h in range(hq):
            kvh = h // (hq // hk)
            s = scale * (krot[kvh, : i + 1] @ qr[h])
            m = s.max()
            w = np.exp(s - m)
            z = w.sum()
            ref = (w @ vd[kvh, : i + 1]) / z
            e = np.abs(got[i, h] - ref)
            err2 += float(np.sum(e * e))
            ref2 += float(np.sum(ref * ref))
            max_abs = max(max_abs, float(e.max())) if np.all(np.isfinite(e)) else math.inf
            le = abs(float(lse[h, i]) - (m + math.log(z)))
            lse_max = max(lse_max, le) if math.isfinite(le) else math.inf
    rel = math.sqrt(err2) / (math.sqrt(ref2) if ref2 > 0 else 1.0)
    ok = rel <= tol_rel and lse_max <= tol_lse
    line = (f"  vs float64 : {rows} rows x {hq} heads: max abs err {max_abs:.3g}, rel err {rel:.3g} "
            f"(tol {tol_rel:.0e}), lse err {lse_max:.3g} (tol {tol_lse:.0e}) {'ok' if ok else 'TOO LARGE'} "
            f"[{(time.perf_counter() - t0) * 1e3:.0f} ms]")
    return line, ok


def run(argv=None) -> int:
    o = _options(argv)
    devices = _api.cuda_device_count()
    torch = _torch_cuda() if devices > 0 else None
    on_gpu = o.backend == "cuda" or (o.backend == "auto" and torch is not None)
    if on_gpu and (devices == 0 or torch is None):
        if build_info()["cuda"] == "off":
            why = "this hope_attn was built without CUDA"
        elif devices == 0:
            why = "no usable CUDA device was found"
        else:
            why = "PyTorch with CUDA is needed for the device arrays"
        print(f"hope-attn-demo: --backend cuda, but {why}", file=sys.stderr)
        return 1
    if o.heads is None:
        hq, hk = (28, 4) if on_gpu else (4, 1)  # Qwen2-VL-7B's 28:4 on a GPU; a lighter 4:1 keeps the CPU run short
    else:
        hq, hk = (int(x) for x in o.heads.split(":"))
    d = o.head_dim

    # 1. Temporal scale, then positions (SPEC §1-2).
    kw = {"fit": {"budget": o.scale_value}, "fixed": {"fixed": o.scale_value},
          "random": {"seed": getattr(o, "scale_seed", 0)}}[o.scale_policy]
    segments, chosen = _api.select_temporal_scales(o.segments, o.scale_policy, start=o.start, **kw)
    n = _api.num_tokens(segments)
    if n == 0:
        print("hope-attn-demo: the prompt has no tokens", file=sys.stderr)
        return 2
    positions, next_position = _api.positions(segments, o.layout, 1.0, o.start)

    # 2. Random q, k, v in the chosen dtype (the C demo's generator: q, then k, then v).
    nq, nk = n * hq * d, n * hk * d
    q = _store(_normals(o.seed, 0, nq), o.dtype)
    k = _store(_normals(o.seed, nq, nk), o.dtype)
    v = _store(_normals(o.seed, nq + nk, nk), o.dtype)

    # 3-4. The cos/sin tables and the set-up.
    rope = _api.rope_config(kind=o.rope, head_dim=d, sections=o.sections, theta=o.theta)
    print(f"hope_attn demo (library {'.'.join(str(x) for x in _api.version())})")
    print(f"  sequence   : {_describe(segments, n)}")
    print(f"  rope       : {o.rope}, head_dim {d}, sections ({o.sections[0]},{o.sections[1]},{o.sections[2]}), "
          f"theta {o.theta:g}; layout {o.layout}")
    vision = [s for s in segments if s.kind != SegmentKind.TEXT]
    if o.scale_policy == "fit":
        scale = f"fit:{o.scale_value:g} -> {chosen:g}"
    elif o.scale_policy == "fixed":
        scale = f"fixed -> {chosen:g}"
    else:
        scale = f"random:{o.scale_seed} ->" + ",".join(f" {s.temporal_scale:g}" for s in vision)
    if not vision:
        scale += " (no vision segment)"
    elif o.layout != "diagonal":
        scale += f" (unused by the {o.layout} layout)"
    print(f"  scale      : {scale}; next position {next_position:g}")

    # 5. Attention.
    if on_gpu:
        out, lse, ms, path, name = _attention_gpu(torch, q, k, v, n, o, rope, positions)
        print(f"  attention  : causal, heads {hq} q / {hk} kv, {_DTYPE_NAMES[o.dtype]}, backend cuda ({name}, "
              f"{path} kernel)")
        print(f"  time       : {ms:.3f} ms (mean of 10, CUDA events)")
    else:
        cache = _api.RopeCache(rope, n, memory="host").fill(positions)
        cu = np.array([0, n], np.int32)
        t0 = time.perf_counter()
        out, lse = _api.attention(q.reshape(n, hq, d), k.reshape(n, hk, d), v.reshape(n, hk, d), cu, cu, causal=True, cos_q=cache.cos, sin_q=cache.sin,
                                  cos_k=cache.cos, sin_k=cache.sin, return_lse=True,
                                  dtype="bfloat16" if o.dtype == DType.BFLOAT16 else None, backend="cpu")
        ms = (time.perf_counter() - t0) * 1e3
        where = " (built without CUDA)" if build_info()["cuda"] == "off" else " (no GPU found)" if devices == 0 else ""
        print(f"  attention  : causal, heads {hq} q / {hk} kv, {_DTYPE_NAMES[o.dtype]}, backend cpu{where}")
        print(f"  time       : {ms:.3f} ms")

    # 6. Sample rows against float64.
    ok = bool(np.all(np.isfinite(_load(out, o.dtype))))
    if not ok:
        print("  check      : NaN/Inf in the output")
    if min(o.check_rows, n) > 0:
        line, good = _check_float64(o, positions, q, k, v, out, lse, n, hq, hk, d)
        print(line)
        ok = ok and good

    # 7. With a GPU: the CPU backend on a prefix (causal rows depend only on earlier keys).
    if on_gpu:
        tol_rel, tol_lse = _TOL[o.dtype]
        m = min(n, 1024)
        host = _api.RopeCache(rope, m, memory="host").fill(positions[:, :m])
        cu = np.array([0, m], np.int32)
        t0 = time.perf_counter()
        c_out, c_lse = _api.attention(q.reshape(n, hq, d)[:m], k.reshape(n, hk, d)[:m], v.reshape(n, hk, d)[:m], cu,
                                      cu, causal=True, cos_q=host.cos, sin_q=host.sin, cos_k=host.cos,
                                      sin_k=host.sin, return_lse=True, backend="cpu",
                                      dtype="bfloat16" if o.dtype == DType.BFLOAT16 else None)
        cpu_ms = (time.perf_counter() - t0) * 1e3
        a = _load(out, o.dtype).reshape(n, hq, d)[:m]
        b = _load(c_out, o.dtype)
        diff = np.abs(a - b)
        rel = math.sqrt(float(np.sum(diff * diff))) / (math.sqrt(float(np.sum(b * b))) or 1.0)
        lse_diff = float(np.max(np.abs(lse[:, :m].astype(np.float64) - c_lse)))
        good = rel <= 2 * tol_rel and lse_diff <= 2 * tol_lse  # two implementations, each within tol of float64
        print(f"  vs cpu     : first {m} rows, all heads: max abs diff {float(diff.max()):.3g}, rel diff {rel:.3g} "
              f"(tol {2 * tol_rel:.0e}), lse diff {lse_diff:.3g} {'ok' if good else 'TOO LARGE'} "
              f"[cpu {cpu_ms:.0f} ms]")
        ok = ok and good

    print(f"  result     : {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def main(argv=None) -> int:
    """The console entry point: exit status 0 PASS, 1 FAIL or a library error, 2 bad arguments."""
    try:
        return run(argv)
    except HopeError as e:
        print(f"hope-attn-demo: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # the library could not be loaded
        print(f"hope-attn-demo: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
