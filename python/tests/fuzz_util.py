"""Helpers shared by the fuzzer (test_fuzz_api.py) and the hostile-input regression tests: arrays of each library
dtype with their float64 values, the same values in other memory layouts, fake device arrays, and the
element-wise comparison against a float64 reference."""

from __future__ import annotations

import numpy as np

import hope_attn as ha
from reference import bf16_bits, bf16_to_f64

# The exceptions a misuse may raise; anything else (or a crash) is a finding.
CLEAN = (ha.HopeError, ValueError, TypeError)

# float dtypes as the fuzzer draws them: "bf16" is raw bfloat16 bits in uint16 (needs dtype="bfloat16"),
# "bf16_ml" the ml_dtypes type (when installed).
FLOAT_DTYPES = ["f32", "f16", "bf16"] + (["bf16_ml"] if ha.BFLOAT16_NP is not None else [])
HINT_OF = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "bf16_ml": "bfloat16"}
TOL = {"f32": 1e-5, "f16": 2e-3, "bf16": 1.6e-2, "bf16_ml": 1.6e-2}
ROUND = {"f32": None, "f16": np.float16, "bf16": "bfloat16", "bf16_ml": "bfloat16"}


def make(rng, shape, dt, scale=1.0):
    """A random array of float dtype `dt` and its values as float64."""
    x = rng.standard_normal(shape) * scale
    if dt == "f32":
        a = x.astype(np.float32)
    elif dt == "f16":
        a = x.astype(np.float16)
    elif dt == "bf16":
        a = bf16_bits(x)
    else:
        a = x.astype(ha.BFLOAT16_NP)
    return a, values(a, dt)


def poisoned(shape, np_dtype):
    """An output buffer filled with NaN (NaN bits 0x7FC0 for 16-bit storage and bfloat16)."""
    if np.dtype(np_dtype).kind == "f":
        return np.full(shape, np.nan, np_dtype)
    return np.full(shape, 0x7FC0, np.uint16).view(np_dtype)


def values(a, dt):
    a = np.asarray(a)
    return bf16_to_f64(a) if dt == "bf16" else a.astype(np.float64)


def kind_of(a):
    """The fuzzer's dtype name of an array the library returned."""
    a = np.asarray(a)
    if a.dtype == np.uint16:
        return "bf16"
    if ha.BFLOAT16_NP is not None and a.dtype == ha.BFLOAT16_NP:
        return "bf16_ml"
    return {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16"}[a.dtype]


# ---- the same values in another memory layout -------------------------------------------------------------

LAYOUTS = ["plain", "rows_apart", "fortran", "reversed", "unaligned", "readonly", "strided_inner"]


def place(a, how):
    """A new array holding a's values in layout `how`. Every layout is a valid input (the binding copies what the
    library cannot read); as an output only "plain" (and "rows_apart" where rows may be apart) can be written."""
    a = np.asarray(a)
    if how == "plain":
        return a.copy()
    if how == "rows_apart" and a.ndim >= 1:
        big = np.zeros((a.shape[0], 2) + a.shape[1:], a.dtype)
        big[:, 0] = a
        return big[:, 0]
    if how == "fortran":
        return np.asfortranarray(a)
    if how == "reversed" and a.ndim >= 1:
        return a[::-1].copy()[::-1]
    if how == "unaligned" and a.itemsize > 1:
        raw = bytearray(a.nbytes + 1)
        v = np.frombuffer(raw, dtype=a.dtype, offset=1, count=a.size).reshape(a.shape)
        v[...] = a
        return v
    if how == "readonly":
        c = a.copy()
        c.flags.writeable = False
        return c
    if how == "strided_inner" and a.ndim >= 1:
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        v = big[..., ::2]
        v[...] = a
        return v
    return a.copy()


class FakeCuda:
    """A numpy array presented as a CUDA array (host memory behind __cuda_array_interface__; on a machine without a
    GPU the library refuses it with HOPE_ERROR_NO_DEVICE before touching it)."""

    def __init__(self, a, stream=None, strides=True, readonly=False):
        self.a = a
        self.__cuda_array_interface__ = {
            "shape": a.shape, "typestr": a.dtype.str, "data": (a.ctypes.data, readonly),
            "strides": a.strides if strides else None, "version": 3, "stream": stream}


# ---- comparison ------------------------------------------------------------------------------------------------


def assert_close(got, ref, atol, rtol=None, what=""):
    """Every element: NaN where the reference has NaN, the same infinity, else within atol + rtol * |ref|."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    rtol = atol if rtol is None else rtol
    nan = np.isnan(ref)
    inf = np.isinf(ref)
    fin = ~(nan | inf)
    bad = np.zeros(ref.shape, bool)
    bad |= nan & ~np.isnan(got)
    bad |= inf & (got != ref)
    with np.errstate(invalid="ignore", over="ignore"):
        bad |= fin & ~(np.abs(got - ref) <= atol + rtol * np.abs(ref))
    if bad.any():
        i = tuple(int(j) for j in np.argwhere(bad)[0])
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} elements differ; first at {i}: got {got[i]}, "
                             f"expected {ref[i]} (atol {atol}, rtol {rtol})")


def merge_ref(o_a, lse_a, o_b, lse_b):
    """float64 merge of two partial states (header rule: a -inf side contributes nothing; both -inf gives 0 and
    -inf; a NaN or +inf lse on either side gives NaN)."""
    o_a, o_b = np.asarray(o_a, np.float64), np.asarray(o_b, np.float64)
    la, lb = np.asarray(lse_a, np.float64), np.asarray(lse_b, np.float64)
    tokens, heads, d = o_a.shape
    out = np.zeros_like(o_a)
    lse = np.full((heads, tokens), -np.inf)
    for t in range(tokens):
        for h in range(heads):
            a, b = la[h, t], lb[h, t]
            if np.isnan(a) or np.isnan(b) or a == np.inf or b == np.inf:
                out[t, h], lse[h, t] = np.nan, np.nan
            elif a == -np.inf and b == -np.inf:
                continue
            else:
                m = max(a, b)
                wa = 0.0 if a == -np.inf else np.exp(a - m)
                wb = 0.0 if b == -np.inf else np.exp(b - m)
                out[t, h] = ((o_a[t, h] * wa if wa else 0) + (o_b[t, h] * wb if wb else 0)) / (wa + wb)
                lse[h, t] = m + np.log(wa + wb)
    return out, lse
