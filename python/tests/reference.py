"""Independent pure-Python / numpy float64 references of SPEC §1-§5, written from the spec (not the C code)."""

from __future__ import annotations

import math

import numpy as np

F32 = np.float32


def f32(x: float) -> float:
    return float(np.float32(x))


# ---- §1 positions ----------------------------------------------------------------------------------------
# Segments here are plain tuples: ("text", n) | ("image", h, w, scale) | ("video", t, h, w, scale).


def positions_ref(segments, layout: str, default_scale: float = 1.0, start: float = 0.0):
    """Returns (rows [3][n] as lists of float32 values, next_position). Offsets exact in double, one rounding."""
    rows = ([], [], [])
    p = 0.0  # offset from start
    k = 0    # token counter (sequential)
    dscale = f32(default_scale)
    for seg in segments:
        if seg[0] == "text":
            for j in range(seg[1]):
                v = f32(start + p + j)
                for r in rows:
                    r.append(v)
            p += seg[1]
            k += seg[1]
            continue
        if seg[0] == "image":
            T, H, W, own = 1, seg[1], seg[2], seg[3]
        else:
            T, H, W, own = seg[1], seg[2], seg[3], seg[4]
        if layout == "sequential":
            for j in range(T * H * W):
                v = f32(start + p + j)
                for r in rows:
                    r.append(v)
            p += T * H * W
        elif layout == "mrope":
            for f in range(T):
                for y in range(H):
                    for x in range(W):
                        rows[0].append(f32(start + p + f))
                        rows[1].append(f32(start + p + y))
                        rows[2].append(f32(start + p + x))
            p += max(T - 1, H - 1, W - 1) + 1
        else:  # diagonal
            s = f32(own) if f32(own) > 0 else dscale
            for f in range(T):
                t = p + f * s
                for y in range(H):
                    for x in range(W):
                        rows[0].append(f32(start + t))
                        rows[1].append(f32(start + t + y - (H - 1) // 2))
                        rows[2].append(f32(start + t + x - (W - 1) // 2))
            p += (T - 1) * s + 1
    return rows, f32(start + p)


# ---- §2 splitmix64 -----------------------------------------------------------------------------------------

M64 = (1 << 64) - 1


def timed_positions_ref(specs, seconds, rate, start=0.0):
    """SPEC §8 timed M-RoPE as Qwen2.5-VL's get_rope_index computes it, in numpy: float32 products, truncation,
    text resuming at 1 + the block's largest value. specs: (kind, length, t, h, w) per segment (kind 0 text, 1
    image, 2 video); seconds: one interval per segment (used by videos only)."""
    rows, text = [], start
    for (kind, length, t, h, w), g in zip(specs, seconds):
        if kind == 0:
            rows.append(np.tile(text + np.arange(length, dtype=np.float64), (3, 1)))
            text += length
            continue
        tf = (np.arange(t, dtype=np.float32) * np.float32(g if kind == 2 else 0.0) * np.float32(rate))
        toff = tf.astype(np.int64).astype(np.float64)
        f, y, x = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
        block = np.stack([text + toff[f.ravel()], text + y.ravel(), text + x.ravel()])
        rows.append(block)
        text = block.max() + 1
    out = np.concatenate(rows, axis=1) if rows else np.zeros((3, 0))
    return out.astype(np.float32), np.float32(text)


def splitmix64_draws(seed: int, count: int, n_candidates: int):
    state = seed & M64
    out = []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & M64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        z ^= z >> 31
        out.append(z % n_candidates)
    return out


# ---- §3 components and cos/sin -------------------------------------------------------------------------------


def components_ref(kind: str, head_dim: int, sections):
    half = head_dim // 2
    st, sh, sw = sections
    c = []
    for i in range(half):
        if kind == "vanilla":
            c.append(0)
        elif kind == "mrope":
            c.append(0 if i < st else (1 if i < st + sh else 2))
        elif kind == "mrope_interleaved":
            if i % 3 == 1 and i < 3 * sh:
                c.append(1)
            elif i % 3 == 2 and i < 3 * sw:
                c.append(2)
            else:
                c.append(0)
        elif kind in ("videorope", "hope"):
            if i < sh + sw:
                c.append(1 if i % 2 == 0 else 2)
            else:
                c.append(0 if kind == "videorope" else -1)
        else:
            raise ValueError(kind)
    return c


def cos_sin_ref(kind, head_dim, sections, theta, pos, rotary_dim=None, model_exact=False):
    """float64 cos, sin [n, rotary_dim / 2] from float32 positions [3, n] (SPEC §3, §8: rotary_dim None is
    head_dim; model_exact: the float32 inverse frequencies of PyTorch model code, the angle still in float64)."""
    pos = np.asarray(pos, dtype=np.float32).astype(np.float64)
    r = head_dim if rotary_dim is None else rotary_dim
    half = r // 2
    comp = components_ref(kind, r, sections)
    if model_exact:
        e = np.arange(0, r, 2, dtype=np.float32) / np.float32(r)
        inv = (np.float32(1) / np.array([np.float32(theta) ** x for x in e], dtype=np.float32)).astype(np.float64)
    else:
        inv = np.array([theta ** (-2.0 * i / r) for i in range(half)], dtype=np.float64)
    ang = np.zeros((pos.shape[1], half), dtype=np.float64)
    for i, c in enumerate(comp):
        if c >= 0:
            ang[:, i] = pos[c] * inv[i]
    return np.cos(ang), np.sin(ang)


# ---- §4 rotation ---------------------------------------------------------------------------------------------


def rotate_ref(x, cos, sin, pairing=0, rotary_dim=None):
    """x [..., tokens, heads, d] float64; cos/sin [tokens, rotary_dim / 2]. pairing 0: pair i is dims
    (i, i + r/2); 1: dims (2i, 2i + 1) (SPEC §8). Dims from rotary_dim (None: d) on are returned as given."""
    x = np.asarray(x, dtype=np.float64)
    r = x.shape[-1] if rotary_dim is None else rotary_dim
    half = r // 2
    c = np.asarray(cos, np.float64)[:, None, :half]
    s = np.asarray(sin, np.float64)[:, None, :half]
    xr = x[..., :r]
    if pairing == 1:
        a, b = xr[..., 0::2], xr[..., 1::2]
        rot = np.stack([a * c - b * s, b * c + a * s], axis=-1).reshape(xr.shape)
    else:
        a, b = xr[..., :half], xr[..., half:]
        rot = np.concatenate([a * c - b * s, b * c + a * s], axis=-1)
    return np.concatenate([rot, x[..., r:]], axis=-1)


# ---- §5 attention --------------------------------------------------------------------------------------------


def attention_ref(q, k, v, cu_q, cu_k, causal, scale=None, cos_q=None, sin_q=None, cos_k=None, sin_k=None,
                  round_rotated=None, pairing=0, rotary_dim=None):
    """float64 out [total_q, Hq, d] and lse [Hq, total_q]. round_rotated: a numpy dtype the rotated q and k are
    rounded to (the half-precision path), or None. pairing, rotary_dim: as rotate_ref."""
    q = np.asarray(q, np.float64)
    k = np.asarray(k, np.float64)
    v = np.asarray(v, np.float64)
    if cos_q is not None:
        q = rotate_ref(q, cos_q, sin_q, pairing, rotary_dim)
    if cos_k is not None:
        k = rotate_ref(k, cos_k, sin_k, pairing, rotary_dim)
    if isinstance(round_rotated, str) and round_rotated == "bfloat16":
        q, k = round_bf16(q), round_bf16(k)
    elif round_rotated is not None:
        q = q.astype(round_rotated).astype(np.float64)
        k = k.astype(round_rotated).astype(np.float64)
    total_q, hq, d = q.shape
    hk = k.shape[1]
    group = hq // hk
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    out = np.zeros((total_q, hq, d))
    lse = np.full((hq, total_q), -np.inf)
    for b in range(len(cu_q) - 1):
        q0, q1, k0, k1 = cu_q[b], cu_q[b + 1], cu_k[b], cu_k[b + 1]
        nq, nk = q1 - q0, k1 - k0
        for j in range(hq):
            kv = j // group
            if nq == 0:
                continue
            s = scale * q[q0:q1, j, :] @ k[k0:k1, kv, :].T  # [nq, nk]
            if causal:
                i_idx = np.arange(nq)[:, None]
                n_idx = np.arange(nk)[None, :]
                s = np.where(n_idx > i_idx + nk - nq, -np.inf, s)
            for i in range(nq):
                row = s[i]
                if nk == 0 or np.all(np.isneginf(row)):
                    continue
                m = row.max()
                e = np.exp(row - m)
                z = e.sum()
                out[q0 + i, j] = (e / z) @ v[k0:k1, kv, :]
                lse[j, q0 + i] = m + math.log(z)
    return out, lse


def round_bf16(x):
    """x rounded to bfloat16 (round to nearest even), returned as float64; no ml_dtypes needed."""
    b = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return b.astype(np.uint32).view(np.float32).astype(np.float64)


def bf16_bits(x):
    b = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_to_f64(bits):
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def rel_err(a, ref):
    a = np.asarray(a, np.float64)
    ref = np.asarray(ref, np.float64)
    den = np.linalg.norm(ref)
    return np.linalg.norm(a - ref) / (den if den > 0 else 1.0)
