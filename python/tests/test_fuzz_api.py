"""Property-based fuzzing of the Python API (issue 14), with Hypothesis.

For every public function a test draws a valid call (shapes, dtypes, values), then mutates it the way a hostile but
realistic user would: other memory layouts (rows apart, Fortran order, reversed, unaligned, read-only, strided),
broadcast and overlapping outputs, wrong dtypes and contradicting dtype= hints, wrong shapes, empty arrays,
lists, bytes, fake device arrays, and integers at and past the edges of their C types. The property:
  * a call with only benign changes (the binding must accept them) succeeds and equals the float64 reference;
  * any other call either raises a clean exception (HopeError, ValueError, TypeError) or succeeds and equals the
    float64 reference; it never crashes, corrupts memory (CI runs this under AddressSanitizer) or returns garbage.

Profiles (HOPE_FUZZ_PROFILE): "quick" (default, a few dozen examples per function, in the ordinary pytest run) and
"asan" (scripts/pyfuzz.sh: more examples, the library built with ASan/UBSan). Both are derandomized: the same
examples on every run. HOPE_FUZZ_EXAMPLES overrides the count."""

from __future__ import annotations

import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")  # scripts/setup.sh installs it
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import hope_attn as ha  # noqa: E402
from fuzz_util import (CLEAN, FLOAT_DTYPES, HINT_OF, LAYOUTS, ROUND, TOL, FakeCuda, assert_close, kind_of,  # noqa: E402
                       make, merge_ref, place, poisoned, values)
from reference import (attention_ref, cos_sin_ref, f32, positions_ref, rel_err, rotate_ref,  # noqa: E402
                       splitmix64_draws)

_DEFAULT_EXAMPLES = {"quick": 30, "asan": 300}
_PROFILE = os.environ.get("HOPE_FUZZ_PROFILE", "quick")
for _name, _n in _DEFAULT_EXAMPLES.items():
    settings.register_profile(_name, max_examples=int(os.environ.get("HOPE_FUZZ_EXAMPLES", _n)), derandomize=True,
                              deadline=None, database=None, print_blob=True,
                              suppress_health_check=list(HealthCheck))
settings.load_profile(_PROFILE)

NO_GPU = ha.cuda_device_count() == 0

# Integers at and past the edges of the C types, and things that are not integers at all.
INT_EXTREMES = [-1, 0, 2**31 - 1, 2**31, -2**31 - 1, 2**32 + 3, 2**63 - 1, 2**63, -2**63 - 1, 2**64 + 4, 3.0, 3.5,
                "3", None, True, np.int64(2**40), np.float32(2.0)]
FLOAT_EXTREMES = [0.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e39, -1e39, 1e-45, 3.4e38, "1.0", None,
                  1 + 2j]


class Plan:
    """What a draw did: `hostile` lists the changes a call may be refused for (empty: it must succeed), `refuse`
    those it must be refused for (the misuses of issue 14: writing a read-only or broadcast output, trusting a
    contradicting dtype=, wrapping an integer, mismatching the cache, ...). Most examples make one hostile change,
    some none and some two, so that each change is seen on its own."""

    def __init__(self, data):
        self.data = data
        self.hostile = []
        self.refuse = []
        self.limit = data.draw(st.sampled_from([0, 1, 1, 1, 2]))

    def draw(self, strategy):
        return self.data.draw(strategy)

    def maybe(self, p=0.25):
        return self.draw(st.integers(0, 99)) < int(p * 100)

    def turn(self, p=0.15):
        """Whether this site makes a hostile change (within the example's budget)."""
        return len(self.hostile) < self.limit and self.maybe(p)

    def pick(self, name, benign, hostile, p=0.15, must=False):
        """A benign value, or (on a hostile turn) one of `hostile`."""
        if hostile and self.turn(p):
            v = self.draw(st.sampled_from(hostile))
            self.bad(f"{name} = {v!r}", must)
            return v
        return self.draw(st.sampled_from(benign))

    def bad(self, what, must=False):
        self.hostile.append(what)
        if must:
            self.refuse.append(what)

    def forget(self, prefix):
        """Drops the changes named `prefix...`: the input they were made to was replaced after all."""
        self.hostile = [h for h in self.hostile if not h.startswith(prefix)]
        self.refuse = [h for h in self.refuse if not h.startswith(prefix)]

    def run(self, fn):
        """Calls fn: returns its result, or None after a clean refusal of a hostile call. The must-refuse list
        applies to this call only."""
        refuse, self.refuse = self.refuse, []
        try:
            result = fn()
        except CLEAN as e:
            if not self.hostile:
                raise AssertionError(f"a valid call was refused: {type(e).__name__}: {e}") from e
            return None
        assert not refuse, f"accepted a call it must refuse: {refuse}"
        return result


def draw_float_input(plan, rng, name, shape, dt):
    """A float array input in some layout (all layouts are valid inputs). Returns (object, float64 values)."""
    a, v = make(rng, shape, dt)
    how = plan.draw(st.sampled_from(LAYOUTS))
    return place(a, how), v


def draw_table(plan, rng, name, rows, half, values_=None):
    """A float32 table input (cos/sin, lse): some layout, float64 values or a list (converted), or broken."""
    v = rng.uniform(-1, 1, (rows, half)) if values_ is None else np.asarray(values_, np.float64)
    t = v.astype(np.float32)
    if plan.turn():
        form = plan.draw(st.sampled_from(["wrong_rows", "wrong_cols", "int8", "bool", "scalar"]))
        plan.bad(f"{name}: {form}", must=form in ("wrong_cols", "bool", "scalar"))
        if form == "scalar":
            return np.float32(1.0), None
        z = np.zeros({"wrong_rows": (max(rows - 1, 0) if rows else 1, half),
                      "wrong_cols": (rows, half + 1)}.get(form, (rows, half)),
                     {"int8": np.int8, "bool": bool}.get(form, np.float32))
        return z, z.astype(np.float64)  # wrong_rows may still be enough rows, int8 is converted: the reference
    form = plan.draw(st.sampled_from(["plain", "layout", "float64", "list" if rows else "plain"]))  # [] is 1-D
    if form == "layout":
        return place(t, plan.draw(st.sampled_from(LAYOUTS))), t.astype(np.float64)
    if form == "float64":
        return t.astype(np.float64), t.astype(np.float64)
    if form == "list":
        return t.tolist(), t.astype(np.float64)
    return t, t.astype(np.float64)


def draw_output(plan, name, shape, np_dtype, rows_ok=False):
    """None (allocated by the call), a poisoned writable array, or (hostile) something that must not be written."""
    poison = poisoned(shape, np_dtype)
    if plan.turn():
        form = plan.draw(st.sampled_from(["layout", "layout", "wrong_dtype", "wrong_shape", "broadcast", "bytes",
                                          "list"]))
        if form == "layout":
            how = plan.draw(st.sampled_from(LAYOUTS))
            placed = place(poison, how)
            plan.bad(f"{name}: layout {how}", must=not writable_as_is(placed, placed.dtype, rows_ok))
            return placed
        plan.bad(f"{name}: {form}", must=form != "broadcast" or int(np.prod(shape)) > 1)  # 1 element is real
        if form == "wrong_dtype":
            return np.zeros(shape, np.float64)
        if form == "wrong_shape":
            return np.zeros(tuple(shape[:-1]) + (shape[-1] + 1,), np_dtype)
        if form == "broadcast":
            return np.lib.stride_tricks.as_strided(np.zeros(1, np_dtype), shape=shape, strides=(0,) * len(shape),
                                                   writeable=True)
        if form == "bytes":
            return bytes(int(np.prod(shape)) * np.dtype(np_dtype).itemsize)
        return np.zeros(shape, np_dtype).tolist()
    form = plan.draw(st.sampled_from(["none", "none", "plain", "rows_apart" if rows_ok else "plain"]))
    return None if form == "none" else place(poison, form)


def draw_hint(plan, dt):
    """The dtype= argument: None where allowed or the right name; (hostile) a contradicting one, or nonsense."""
    if plan.turn():
        form = plan.draw(st.sampled_from(["other", "nonsense"] + (["none"] if dt == "bf16" else [])))
        plan.bad(f"dtype hint {form}", must=True)
        if form == "none":
            return None
        if form == "other":
            return "float32" if HINT_OF[dt] != "float32" else "float16"
        return plan.draw(st.sampled_from(["float64", "int8", 7, -1]))
    return HINT_OF[dt] if dt == "bf16" or plan.maybe(0.5) else None


def other_dtypes(dt):
    """Typed float dtypes other than dt's (raw uint16 bits are left out: dtype= may legitimately read them as
    float16 or bfloat16, whichever the cache holds)."""
    same = {"bf16", "bf16_ml"} if dt in ("bf16", "bf16_ml") else {dt}
    return [x for x in FLOAT_DTYPES if x not in same and x != "bf16"]


def np_dtype_of(a):
    return np.asarray(a).dtype


def writable_as_is(a, dtype, rows_ok=False):
    """Whether the binding can write into `a` as it is (an output, or an in-place target)."""
    if not isinstance(a, np.ndarray) or a.dtype != dtype or not a.flags.writeable:
        return False
    if a.size == 0:
        return True
    if not a.flags.aligned:
        return False
    if not rows_ok or a.ndim < 2:
        return a.flags.c_contiguous
    inner = a[0]
    return inner.flags.c_contiguous and (a.shape[0] == 1 or a.strides[0] >= inner.size * a.itemsize)


_RANGES = {"int32": (-2**31, 2**31), "int64": (-2**63, 2**63), "uint64": (0, 2**64)}


def draw_rotary(plan, d):
    """SPEC §8 pairing and rotary_dim of a call: mostly valid, sometimes a value the library must refuse (whether
    or not the call rotates). Returns (pairing, rotary_dim) as passed and (pairing, rotary dimension) in effect:
    the tables are [rows, r / 2], and d / 2 for a refused rotary_dim (the call is refused whatever they are)."""
    pairing = plan.pick("pairing", [0, 0, 1, "interleaved", "rotate_half"], [2, -1, "sideways"], p=0.08, must=True)
    rotary_dim = plan.pick("rotary_dim", [None, None, 0, d] + list(range(2, d + 1, 2)), [d + 2, 1, -2], p=0.08,
                           must=True)
    p_eff = 1 if pairing in (1, "interleaved") else 0
    r = rotary_dim if isinstance(rotary_dim, int) and 0 < rotary_dim <= d and rotary_dim % 2 == 0 else d
    return pairing, rotary_dim, p_eff, r


def maybe_int_extreme(plan, name, good, pool=None, ctype="int32"):
    """Usually `good`; on a hostile turn an integer extreme (refused when it does not fit the C type)."""
    if not plan.turn():
        return good
    v = plan.draw(st.sampled_from(pool or INT_EXTREMES))
    lo, hi = _RANGES[ctype]
    wraps = isinstance(v, (int, np.integer)) and not isinstance(v, bool) and not lo <= int(v) < hi
    plan.bad(f"{name} = {v!r}", must=wraps or isinstance(v, (float, np.floating, str)) or v is None)
    return v


# ---- rope_apply ---------------------------------------------------------------------------------------------------


@given(st.data())
def test_fuzz_rope_apply(data):
    plan = Plan(data)
    rng = np.random.default_rng(plan.draw(st.integers(0, 2**32 - 1)))
    tokens = plan.draw(st.sampled_from([0, 1, 2, 7]))
    heads = plan.draw(st.integers(1, 3))
    d = plan.draw(st.sampled_from([2, 4, 8, 16]))
    dt = plan.draw(st.sampled_from(FLOAT_DTYPES))
    two_d = heads == 1 and plan.maybe(0.3)  # [tokens, d]
    shape = (tokens, d) if two_d else (tokens, heads, d)
    x, xv = draw_float_input(plan, rng, "x", shape, dt)
    extra = plan.draw(st.integers(0, 2))  # tables may hold more rows than the call uses
    pairing, rotary_dim, p_eff, r = draw_rotary(plan, d)
    cos, cv = draw_table(plan, rng, "cos", tokens + extra, r // 2)
    sin, sv = draw_table(plan, rng, "sin", tokens + extra, r // 2)
    hint = draw_hint(plan, dt)
    out = draw_output(plan, "out", shape, np_dtype_of(x), rows_ok=True)
    in_place = out is None and plan.maybe(0.2)
    if in_place:
        out = x
        if not writable_as_is(x, x.dtype, rows_ok=True):
            plan.bad("in place into an array that cannot be written as it is", must=True)
    if plan.turn():
        x = x.astype(np.float64) if plan.maybe(0.5) else x.tolist()
        plan.bad("x: not a library dtype / not an array", must=True)
    backend = plan.pick("backend", [None, "cpu", "CPU", 1], ["cuda", "tpu", 7, 1.0, "CUDA"], must=True)
    got = plan.run(lambda: ha.rope_apply(x, cos, sin, out=out, pairing=pairing, rotary_dim=rotary_dim, dtype=hint,
                                         backend=backend))
    if got is None:
        return
    if out is not None:
        assert got is out
    x3 = xv.reshape(tokens, heads, d)
    ref = rotate_ref(x3, cv[:tokens], sv[:tokens], pairing=p_eff, rotary_dim=r).reshape(shape)
    assert_close(values(got, kind_of(got)), ref, TOL[dt], what="rope_apply")


# ---- attention ----------------------------------------------------------------------------------------------------


def draw_offsets(plan, name, lens, total):
    """cu_seqlens for `lens` in a valid form (list, int32 / int64 array, tuple, any layout) or a broken one."""
    cu = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    form = plan.pick(name, ["int32", "int32", "list", "int64", "tuple", "layout"],
                     ["float", "2d", "wrap", "past", "past", "decreasing", "empty", "bytes"], p=0.3)
    if form == "int32":
        return cu.astype(np.int32)
    if form == "list":
        return [int(c) for c in cu]
    if form == "int64":
        return cu
    if form == "tuple":
        return tuple(int(c) for c in cu)
    if form == "layout":
        return place(cu.astype(np.int32), plan.draw(st.sampled_from(LAYOUTS)))
    if form in ("float", "2d", "wrap", "past", "empty", "bytes") or (form == "decreasing" and cu[-1] > 0):
        plan.refuse.append(f"{name}: {form}")  # (with no token, [0, 0] reversed is still [0, 0])
    if form == "float":
        return cu.astype(np.float64)
    if form == "2d":
        return cu.astype(np.int32)[None, :]
    if form == "wrap":
        c = cu.copy()
        c[-1] += 2**32
        return c
    if form == "past":
        c = cu.copy()
        c[-1] = total + 1
        return c
    if form == "decreasing":
        return cu[::-1].copy()
    if form == "empty":
        return np.zeros(0, np.int32)
    return bytes(4 * len(cu))


@given(st.data())
def test_fuzz_attention(data):
    plan = Plan(data)
    rng = np.random.default_rng(plan.draw(st.integers(0, 2**32 - 1)))
    batch = plan.draw(st.integers(0, 3))
    lens_q = [plan.draw(st.integers(0, 4)) for _ in range(batch)]
    lens_k = [plan.draw(st.integers(0, 5)) for _ in range(batch)]
    hk = plan.draw(st.sampled_from([1, 2]))
    hq = hk * plan.draw(st.sampled_from([1, 2, 3]))
    d = plan.draw(st.sampled_from([2, 4, 8]))
    dt = plan.draw(st.sampled_from(FLOAT_DTYPES))
    causal = plan.draw(st.booleans())
    extra_q = plan.draw(st.sampled_from([0, 0, 1, 2]))  # rows of q no sequence covers
    total_q, total_k = sum(lens_q) + extra_q, sum(lens_k)
    q, qv = draw_float_input(plan, rng, "q", (total_q, hq, d), dt)
    k, kv = draw_float_input(plan, rng, "k", (total_k, hk, d), dt)
    v, vv = draw_float_input(plan, rng, "v", (total_k, hk, d), dt)
    cu_q = draw_offsets(plan, "cu_seqlens_q", lens_q, total_q)
    cu_k = draw_offsets(plan, "cu_seqlens_k", lens_k, total_k)
    rope = plan.draw(st.booleans())
    pairing, rotary_dim, p_eff, r = draw_rotary(plan, d)
    tabs, tab_vals = {}, {}
    if rope:
        for name, rows in (("cos_q", total_q), ("sin_q", total_q), ("cos_k", total_k), ("sin_k", total_k)):
            tabs[name], tab_vals[name] = draw_table(plan, rng, name, rows, r // 2)
        if plan.turn(0.1):
            del tabs["sin_k"]
            plan.bad("cos_k without sin_k", must=True)
    hint = draw_hint(plan, dt)
    return_lse = plan.draw(st.booleans())
    out = draw_output(plan, "out", (total_q, hq, d), np_dtype_of(q))
    covered = sum(lens_q)
    lse = draw_output(plan, "lse", (hq, covered), np.float32) if return_lse else None
    k_rot = None
    if rope and plan.maybe(0.2):
        k_rot = poisoned((total_k, hk, d), np_dtype_of(k))
    # (a finite scale whose scores overflow float32 gives NaN, as documented: not drawn)
    scale = plan.pick("softmax_scale", [None, None, 0.3, 2.0, 0.0, -1.0, 1e-45],
                      [float("nan"), float("inf"), -float("inf"), 1e39, "1.0", 1 + 2j], must=True)
    max_q = maybe_int_extreme(plan, "max_seqlen_q", max(lens_q, default=0)) if plan.maybe(0.3) else None
    if max_q is not None and type(max_q) is int and max_q < max(lens_q, default=0):
        plan.bad("max_seqlen_q below a length", must=True)
    got = plan.run(lambda: ha.attention(q, k, v, cu_q, cu_k, causal=causal, softmax_scale=scale,
                                        return_lse=return_lse, max_seqlen_q=max_q, out=out, lse=lse,
                                        k_rotated=k_rot, pairing=pairing, rotary_dim=rotary_dim, dtype=hint,
                                        **tabs))
    if got is None:
        return
    o, l_ = got if return_lse else (got, None)
    if out is not None:
        assert o is out
    cuq = np.concatenate([[0], np.cumsum(lens_q)]).astype(np.int64)
    cuk = np.concatenate([[0], np.cumsum(lens_k)]).astype(np.int64)
    eff_scale = None if scale in (None, 0.0, -1.0) or float(scale) <= 0 else float(np.float32(scale))
    ref_o, ref_l = attention_ref(qv, kv, vv, cuq, cuk, causal, scale=eff_scale, round_rotated=ROUND[dt],
                                 pairing=p_eff, rotary_dim=r, **{n: tab_vals[n] for n in tabs})
    ov = values(o, kind_of(o))
    assert np.all(np.isfinite(ov[:covered])), "attention: NaN/inf in a covered row"
    if covered:
        assert rel_err(ov[:covered], ref_o[:covered]) <= (1e-5 if dt == "f32" else 2e-3 if dt == "f16" else 1e-2)
    if out is None:
        assert np.all(ov[covered:] == 0), "attention: rows no sequence covers must be 0 in an allocated out"
    if return_lse:
        assert l_.shape == (hq, covered)
        assert_close(l_, ref_l[:, :covered], 1e-4 if dt == "f32" else 5e-3 if dt == "f16" else 2e-2, 0.0,
                     what="lse")


# ---- merge_states -------------------------------------------------------------------------------------------------


@given(st.data())
def test_fuzz_merge_states(data):
    plan = Plan(data)
    rng = np.random.default_rng(plan.draw(st.integers(0, 2**32 - 1)))
    tokens = plan.draw(st.sampled_from([0, 1, 3]))
    heads = plan.draw(st.integers(1, 2))
    d = plan.draw(st.sampled_from([1, 3, 4, 8]))
    dt = plan.draw(st.sampled_from(FLOAT_DTYPES))
    specials = [-np.inf, np.nan, np.inf, 0.0, 50.0]

    def lse_values():
        lv = rng.standard_normal((heads, tokens)) * 3
        if plan.maybe(0.5) and lv.size:
            lv.flat[plan.draw(st.integers(0, lv.size - 1))] = plan.draw(st.sampled_from(specials))
        return lv.astype(np.float32).astype(np.float64)

    o_a, av = draw_float_input(plan, rng, "o_a", (tokens, heads, d), dt)
    o_b, bv = draw_float_input(plan, rng, "o_b", (tokens, heads, d), dt)
    la, lav = draw_table(plan, rng, "lse_a", heads, tokens, lse_values())
    lb, lbv = draw_table(plan, rng, "lse_b", heads, tokens, lse_values())
    hint = draw_hint(plan, dt)
    out = draw_output(plan, "out", (tokens, heads, d), np_dtype_of(o_a))
    lse_out = draw_output(plan, "lse_out", (heads, tokens), np.float32)
    alias = plan.pick("aliasing", ["none", "none", "out=o_a", "out=o_b", "lse_out=lse_a"], ["partial"])
    if alias in ("out=o_a", "out=o_b"):  # whatever out was drawn (a wrong dtype, say), it is o_a / o_b now
        plan.forget("out: ")
        out = o_a if alias == "out=o_a" else o_b
    elif alias == "lse_out=lse_a":
        plan.forget("lse_out: ")
        lse_out = la
    elif alias == "partial" and tokens * heads * d > 1:
        # out one element into o_a's buffer: a partial overlap the library must refuse
        a, av = make(rng, (tokens, heads, d), dt)
        buf = np.concatenate([a.reshape(-1), a.reshape(-1)[:1]])
        o_a, out = buf[:-1].reshape(a.shape), buf[1:].reshape(a.shape)
        plan.bad("out partially overlaps o_a", must=True)
    if alias in ("out=o_a", "out=o_b", "lse_out=lse_a"):
        target = out if alias.startswith("out") else lse_out
        if not writable_as_is(target, np_dtype_of(o_a) if alias.startswith("out") else np.float32):
            plan.bad(f"in place ({alias}) into an array that cannot be written as it is", must=True)
    got = plan.run(lambda: ha.merge_states(o_a, la, o_b, lb, out=out, lse_out=lse_out, dtype=hint))
    if got is None:
        return
    o, l_ = got
    if out is not None:
        assert o is out
    ref_o, ref_l = merge_ref(av, lav, bv, lbv)
    # a -inf side is not read: its o may hold anything; the reference multiplies it by 0
    assert_close(values(o, kind_of(o)), ref_o, 1e-6 if dt == "f32" else TOL[dt], what="merge out")
    assert_close(l_, ref_l, 1e-5, 1e-6, what="merge lse")


# ---- kv_append and decode ------------------------------------------------------------------------------------------


def draw_cache_shape(plan, max_pages):
    """(rng, num_pages, page_size, num_kv_heads, head_dim, dtype) of a small paged cache."""
    rng = np.random.default_rng(plan.draw(st.integers(0, 2**32 - 1)))
    num_pages, ps = plan.draw(st.integers(1, max_pages)), plan.draw(st.integers(1, 4))
    hk, d = plan.draw(st.integers(1, 2)), plan.draw(st.sampled_from([2, 4, 8]))
    return rng, num_pages, ps, hk, d, plan.draw(st.sampled_from(FLOAT_DTYPES))


def draw_pages(plan, rng, dt, num_pages, ps, hk, d, written):
    """A paged cache in some layout; the binding copies what it cannot read, but writes only what it can."""
    pages, pv = make(rng, (num_pages, ps, hk, d), dt)
    how = plan.draw(st.sampled_from(["plain"] * 4 + LAYOUTS))
    if written and not writable_as_is(place(pages, how), pages.dtype):
        plan.bad(f"pages: {how}", must=True)
    return place(pages, how), pv


@given(st.data())
def test_fuzz_kv_append(data):
    plan = Plan(data)
    rng, num_pages, ps, hk, d, dt = draw_cache_shape(plan, 3)
    num_slots = num_pages * ps
    tokens = plan.draw(st.integers(0, min(num_slots, 5)))
    k_pages, kpv = draw_pages(plan, rng, dt, num_pages, ps, hk, d, written=True)
    v_pages, vpv = draw_pages(plan, rng, dt, num_pages, ps, hk, d, written=True)
    k, kv = draw_float_input(plan, rng, "k", (tokens, hk, d), dt)
    v, vv = draw_float_input(plan, rng, "v", (tokens, hk, d), dt)
    if plan.turn():
        k = make(rng, (tokens, hk, d), plan.draw(st.sampled_from(other_dtypes(dt))))[0]
        plan.bad("k: another dtype than the cache", must=True)
    if plan.turn():
        k = np.zeros((tokens, hk + 1, d), np.asarray(k).dtype)
        plan.bad("k: another head count than the cache", must=True)
    slots = rng.permutation(num_slots)[:tokens].astype(np.int64)
    if tokens and plan.maybe(0.3):
        slots[plan.draw(st.integers(0, tokens - 1))] = -1  # skipped
    slot_arg = plan.draw(st.sampled_from(["int64", "list", "int32"]))
    slot_obj = {"int64": slots, "list": slots.tolist(), "int32": slots.astype(np.int32)}[slot_arg]
    if tokens and plan.turn():
        bad = plan.draw(st.sampled_from([num_slots, 2**63 - 1, 2**63, 2**64 + 1]))
        slot_obj = slots.tolist()
        slot_obj[0] = bad
        plan.bad(f"slot {bad}", must=True)
    rope = plan.draw(st.booleans())
    pairing, rotary_dim, p_eff, r = draw_rotary(plan, d)
    cos = sin = None
    cv = sv = None
    if rope:
        cos, cv = draw_table(plan, rng, "cos_k", tokens, r // 2)
        sin, sv = draw_table(plan, rng, "sin_k", tokens, r // 2)
    hint = draw_hint(plan, dt)
    got = plan.run(lambda: ha.kv_append(k_pages, v_pages, k, v, slot_obj, cos, sin, pairing=pairing,
                                        rotary_dim=rotary_dim, dtype=hint))
    if got is None:
        return
    kref, vref = kpv.copy(), vpv.copy()
    rot = rotate_ref(kv, cv[:tokens], sv[:tokens], pairing=p_eff, rotary_dim=r) if rope else kv
    for t, s in enumerate(slots):
        if s >= 0:
            kref[s // ps, s % ps], vref[s // ps, s % ps] = rot[t], vv[t]
    assert_close(values(k_pages, dt), kref, TOL[dt], what="k_pages")
    assert_close(values(v_pages, dt), vref, 0.0, what="v_pages")


@given(st.data())
def test_fuzz_decode(data):
    plan = Plan(data)
    rng, num_pages, ps, hk, d, dt = draw_cache_shape(plan, 4)
    hq = hk * plan.draw(st.integers(1, 2))
    batch = plan.draw(st.integers(0, 3))
    max_pages = plan.draw(st.integers(1, num_pages))
    nq = [plan.draw(st.integers(1, 3)) for _ in range(batch)]
    lens = [plan.draw(st.integers(n, max_pages * ps)) if n <= max_pages * ps else n for n in nq]
    if any(n > max_pages * ps for n in nq):
        plan.bad("more queries than the pages hold")
    table = rng.integers(0, num_pages, (batch, max_pages)).astype(np.int32)
    k_pages, kpv = draw_pages(plan, rng, dt, num_pages, ps, hk, d, written=False)
    v_pages, vpv = draw_pages(plan, rng, dt, num_pages, ps, hk, d, written=False)
    extra_q = plan.draw(st.sampled_from([0, 0, 1]))
    total_q = sum(nq) + extra_q
    q, qv = draw_float_input(plan, rng, "q", (total_q, hq, d), dt)
    if plan.turn():
        q = make(rng, (total_q, hq, d), plan.draw(st.sampled_from(other_dtypes(dt))))[0]
        plan.bad("q: another dtype than the cache", must=True)
    if plan.turn():
        q = np.zeros((total_q, hq, d + 2), np.asarray(q).dtype)
        plan.bad("q: another head_dim than the cache", must=True)
    cu = draw_offsets(plan, "cu_seqlens_q", nq, total_q)
    lens_arg = np.int32(lens) if not plan.maybe(0.2) else list(lens)
    table_arg = table
    if plan.turn():
        form = plan.draw(st.sampled_from(["fewer_rows", "1d", "bad_page", "float"]))
        table_arg = {"fewer_rows": table[:-1] if batch else np.zeros((0, 1), np.int32), "1d": table.reshape(-1),
                     "bad_page": np.full_like(table, num_pages), "float": table.astype(np.float32)}[form]
        if not (form == "fewer_rows" and batch == 0) and not (form == "bad_page" and sum(lens) == 0):
            plan.bad(f"page_table: {form}", must=True)
    rope = plan.draw(st.booleans())
    pairing, rotary_dim, p_eff, r = draw_rotary(plan, d)
    tabs, tab_vals = {}, {}
    if rope:
        for name in ("cos_q", "sin_q"):
            tabs[name], tab_vals[name] = draw_table(plan, rng, name, total_q, r // 2)
    hint = draw_hint(plan, dt)
    return_lse = plan.draw(st.booleans())
    out = draw_output(plan, "out", (total_q, hq, d), np_dtype_of(q))
    lse = draw_output(plan, "lse", (hq, sum(nq)), np.float32) if return_lse else None
    splits = maybe_int_extreme(plan, "num_splits", plan.draw(st.integers(0, 3)))
    causal = plan.draw(st.booleans())
    got = plan.run(lambda: ha.decode(q, k_pages, v_pages, cu, lens_arg, table_arg, causal=causal,
                                     return_lse=return_lse, num_splits=splits, out=out, lse=lse, pairing=pairing,
                                     rotary_dim=rotary_dim, dtype=hint, **tabs))
    if got is None:
        return
    o, l_ = got if return_lse else (got, None)
    # the reference: each sequence's keys gathered from its pages (they hold rotated keys; only q is rotated)
    ks, vs = [], []
    for b, n in enumerate(lens):
        idx = [(table[b, i // ps], i % ps) for i in range(n)]
        ks += [kpv[p, s] for p, s in idx]
        vs += [vpv[p, s] for p, s in idx]
    kk = np.array(ks).reshape(-1, hk, d)
    vk = np.array(vs).reshape(-1, hk, d)
    cuq = np.concatenate([[0], np.cumsum(nq)]).astype(np.int64)
    cuk = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    rnd = ROUND[dt]
    ref_o, ref_l = attention_ref(qv, kk, vk, cuq, cuk, causal, round_rotated=rnd if rope else None,
                                 cos_q=tab_vals.get("cos_q"), sin_q=tab_vals.get("sin_q"), pairing=p_eff, rotary_dim=r)
    covered = sum(nq)
    ov = values(o, kind_of(o))
    if covered:
        assert rel_err(ov[:covered], ref_o[:covered]) <= (1e-5 if dt == "f32" else 2e-3 if dt == "f16" else 1e-2)
    if out is None:
        assert np.all(ov[covered:] == 0)
    if return_lse:
        assert_close(l_, ref_l[:, :covered], 1e-4 if dt == "f32" else 5e-3 if dt == "f16" else 2e-2, 0.0,
                     what="decode lse")


# ---- positions, scales, frequencies, caches -----------------------------------------------------------------------


# Sizes past int32 or not integers (a valid but huge size would only ask for gigabytes of positions).
SIZE_EXTREMES = [-1, 2**31, -2**31 - 1, 2**32 + 3, 2**63, 2**64 + 4, 3.0, 3.5, "3", None, np.int64(2**40),
                 np.float32(2.0)]


def draw_segment(plan):
    kind = plan.draw(st.sampled_from(["text", "image", "video"]))
    small = st.integers(1, 4)
    if kind == "text":
        n = maybe_int_extreme(plan, "text length", plan.draw(st.integers(0, 6)), SIZE_EXTREMES)
        return ("text", n), lambda: ha.text(n)
    scale = plan.pick("segment scale", [0.0, 0.5, 0.75, 1.25, -1.0], FLOAT_EXTREMES)
    h = maybe_int_extreme(plan, "grid h", plan.draw(small), SIZE_EXTREMES)
    w = plan.draw(small)
    if kind == "image":
        return ("image", h, w, scale), lambda: ha.image(h, w, scale)
    t = plan.draw(small)
    return ("video", t, h, w, scale), lambda: ha.video(t, h, w, scale)


@given(st.data())
def test_fuzz_positions_and_scales(data):
    plan = Plan(data)
    items = [draw_segment(plan) for _ in range(plan.draw(st.integers(0, 4)))]
    segs = plan.run(lambda: [make_seg() for _, make_seg in items])
    if segs is None:
        return
    layout = plan.pick("layout", ["sequential", "mrope", "diagonal", "DIAGONAL", 2], ["spiral", 9, None, 2.0],
                       must=True)
    default = plan.pick("default_scale", [1.0, 0.5, 1.5], FLOAT_EXTREMES)
    start = plan.pick("start", [0.0, 17.0, 100000.5], [3.4e38, float("nan"), 1e39, "0"])
    got = plan.run(lambda: ha.positions(segs, layout, default_scale=default, start=start))
    if got is not None:
        lay = {2: "diagonal", "DIAGONAL": "diagonal"}.get(layout, layout)
        rows, nxt = positions_ref([s for s, _ in items], lay, default, start)
        np.testing.assert_array_equal(got[0], np.array(rows, np.float32).reshape(3, -1))
        assert got[1] == nxt
    # temporal scale selection, with the candidates of HoPE, custom ones (some unbuildable), or broken ones
    policy = plan.pick("policy", ["fixed", "random", "fit", "FIT", 1], ["sometimes", 7, None], must=True)
    cands = plan.pick("candidates", [None, [0.5, 1.0], [2.0, 1e38, 0.25], []],
                      [[1e38], [float("nan")], [[1.0, 2.0]], "abc", [1e39]])
    seed = maybe_int_extreme(plan, "seed", plan.draw(st.integers(0, 2**64 - 1)), ctype="uint64")
    budget = plan.pick("budget", [10.0, 1e9, float("inf"), -1.0], [float("nan"), "10"])
    fixed = 0.75 if policy == "fixed" else plan.draw(st.sampled_from([None, 0.75]))
    if policy == "fixed" and plan.turn():
        fixed = plan.draw(st.sampled_from([None, -1.0, 0.0, float("inf"), 1e39]))
        plan.bad(f"fixed {fixed!r}", must=True)
    res = plan.run(lambda: ha.select_temporal_scales(segs, policy, candidates=cands, fixed=fixed, seed=seed,
                                                     budget=budget, start=start))
    if res is None:
        return
    chosen_segs, chosen = res
    pool = [f32(c) for c in (cands if cands else ha.DEFAULT_SCALE_CANDIDATES)]
    vision = [s for s in chosen_segs if s.kind != ha.SegmentKind.TEXT]
    if policy in ("fit", "FIT"):
        assert chosen in pool and all(s.temporal_scale == chosen for s in vision)
        # the chosen scale always builds (the library never picks one hope_positions_build would refuse)
        ha.positions(chosen_segs, "diagonal", start=start if start == start else 0.0)
    elif policy in ("random", 1):
        draws = splitmix64_draws(int(seed), len(vision), len(pool))
        assert [s.temporal_scale for s in vision] == [pool[i] for i in draws]
    else:
        assert chosen == f32(fixed)


@given(st.data())
def test_fuzz_cos_sin_components_and_cache(data):
    plan = Plan(data)
    rng = np.random.default_rng(plan.draw(st.integers(0, 2**32 - 1)))
    kind = plan.pick("kind", ["vanilla", "mrope", "mrope_interleaved", "videorope", "hope", "HOPE", 4],
                     ["rope9", 9, 4.0], must=True)  # (None is the default config)
    d = plan.draw(st.sampled_from([2, 8, 16]))
    half = d // 2
    secs = (half - 2 * (half // 3), half // 3, half // 3)
    kname = {"HOPE": "hope", 4: "hope"}.get(kind, kind)
    secs = (maybe_int_extreme(plan, "sections[0]", secs[0]), secs[1], secs[2])
    head_dim = maybe_int_extreme(plan, "head_dim", d)
    theta = plan.pick("theta", [1e4, 1e6], [float("nan"), -1.0, "1e4", 0.0])
    n = plan.draw(st.integers(0, 5))
    pos = np.float32(rng.uniform(0, 2**20, (3, n)))
    form = plan.pick("positions", ["plain", "layout", "list", "float64", "1d"], ["nan", "2rows"])
    if form == "layout":
        pos_arg = place(pos, plan.draw(st.sampled_from(LAYOUTS)))
    elif form == "list":
        pos_arg = pos.tolist()
    elif form == "float64":
        pos_arg = pos.astype(np.float64)
    elif form == "1d":
        pos = np.stack([pos[0]] * 3)
        pos_arg = pos[0].copy()
    else:
        pos_arg = pos.copy()
        if form == "nan" and n:
            pos_arg[1, 0] = np.nan
        elif form == "2rows":
            pos_arg = pos[:2].copy()
    if form == "2rows":
        plan.refuse.append("positions with 2 rows")
    got = plan.run(lambda: ha.cos_sin(kind, pos_arg, head_dim=head_dim, sections=secs, theta=theta))
    if got is not None:
        rc, rs = cos_sin_ref(kname, d, secs, float(theta), pos)
        assert_close(got[0], rc, 2e-6, 0.0, what="cos")
        assert_close(got[1], rs, 2e-6, 0.0, what="sin")
        comps = ha.rope_components(kind, head_dim=head_dim, sections=secs, theta=theta)
        assert len(comps) == half
    # a host cache: capacity, fill offset and memory name at their edges; views outlive close()
    capacity = maybe_int_extreme(plan, "capacity", n + plan.draw(st.integers(1, 3)), ctype="int64")
    memory = plan.pick("memory", ["host", "HOST", 0], ["gpu", 5, None], must=True)
    if type(capacity) in (int, np.int64) and 2**16 < capacity < 2**63:
        return  # a valid request for a huge table: not a misuse, just too much memory for a fuzzer

    cache = plan.run(lambda: ha.RopeCache(ha.RopeConfig(kind, head_dim, secs, theta), capacity, memory=memory))
    if cache is None:
        return
    offset = maybe_int_extreme(plan, "offset", plan.draw(st.integers(0, 1)), ctype="int64")
    if type(offset) is int and (offset < 0 or offset + n > cache.capacity):
        plan.bad("rows past the capacity", must=True)
    if form in ("1d", "2rows"):
        plan.bad("RopeCache.fill takes [3, n] positions", must=True)
    filled = plan.run(lambda: cache.fill(pos_arg, offset=offset))
    view = cache.cos
    if plan.draw(st.booleans()):
        cache.close()
        with pytest.raises(ValueError):
            cache.cos  # noqa: B018 - the closed cache refuses
        with pytest.raises(ValueError):
            cache.fill(pos, offset=0)
    if filled is not None and got is not None:
        assert_close(view[offset:offset + n], got[0], 0.0, 0.0, what="cache cos")
    with pytest.raises(ValueError):
        view[0, 0] = 1.0  # the library's tables are read-only
    del cache


# ---- device arrays without a device, and mixed sides ---------------------------------------------------------------


@pytest.mark.skipif(not NO_GPU, reason="fake device arrays would be dereferenced on a real GPU")
@given(st.data())
def test_fuzz_fake_device_arrays_are_refused_cleanly(data):
    plan = Plan(data)
    plan.bad("device arrays without a GPU")
    rng = np.random.default_rng(plan.draw(st.integers(0, 2**32 - 1)))
    tokens, heads, d = plan.draw(st.integers(0, 3)), plan.draw(st.integers(1, 2)), plan.draw(st.sampled_from([2, 8]))
    dt = plan.draw(st.sampled_from(["f32", "f16", "bf16"]))
    x, _ = make(rng, (tokens, heads, d), dt)
    cos = np.ones((tokens, d // 2), np.float32)
    wrap = [plan.draw(st.booleans()) for _ in range(4)]
    args = [FakeCuda(a, readonly=plan.maybe(0.2)) if w else a for a, w in zip((x, cos, cos, x.copy()), wrap)]
    fn = plan.draw(st.sampled_from(["rope_apply", "attention", "merge", "fill"]))
    hint = "bfloat16" if dt == "bf16" else None
    if fn == "rope_apply":
        plan.run(lambda: ha.rope_apply(args[0], args[1], args[2], out=args[3], dtype=hint))
    elif fn == "attention":
        cu = np.array([0, tokens], np.int32)
        plan.run(lambda: ha.attention(args[0], args[3], args[3], FakeCuda(cu), FakeCuda(cu), out=args[0],
                                      max_seqlen_q=tokens, max_seqlen_k=tokens, dtype=hint))
    elif fn == "merge":
        lse = np.zeros((heads, tokens), np.float32)
        plan.run(lambda: ha.merge_states(args[0], FakeCuda(lse) if wrap[1] else lse, args[3], lse, out=args[0],
                                         lse_out=FakeCuda(lse.copy()) if wrap[2] else None, dtype=hint))
    else:
        with ha.RopeCache(ha.RopeConfig("hope", 8, (2, 1, 1)), 4) as c:
            plan.run(lambda: c.fill(FakeCuda(np.zeros((3, 2), np.float32))))


# ---- the scalar-only functions ------------------------------------------------------------------------------------


@given(st.data())
def test_fuzz_scalar_functions(data):
    plan = Plan(data)
    # generated positions: next_position + first + j on all three rows
    nxt = plan.pick("next_position", [0.0, 17.5, 1e6], [float("nan"), float("inf"), 1e39, "1"])
    first = maybe_int_extreme(plan, "first", plan.draw(st.integers(0, 2**40)), ctype="int64")
    n = maybe_int_extreme(plan, "n", plan.draw(st.integers(0, 5)), pool=[-1, 2**63, 2**64, 3.0, None, "2"],
                          ctype="int64")
    got = plan.run(lambda: ha.positions_generated(nxt, first, n))
    if got is not None:
        want = [f32(float(nxt) + first + j) for j in range(n)]
        assert got.shape == (3, n) and all(list(r) == want for r in got.tolist())
    # a vision encoder's raw grid divided by the spatial merge size
    kind = plan.pick("kind", ["image", "video", "VIDEO", 2], ["text", "audio", 7, None])
    t = 1 if kind == "image" else plan.draw(st.integers(1, 4))
    m = plan.draw(st.integers(1, 3))
    h, w = m * plan.draw(st.integers(1, 4)), m * plan.draw(st.integers(1, 4))
    h = maybe_int_extreme(plan, "grid_h", h, pool=[0, -m, 2**31, m + 1 if m > 1 else 0, 2.0])
    merge = maybe_int_extreme(plan, "spatial_merge_size", m, pool=[0, -1, 2**32 + m, 2**31 - 1])
    seg = plan.run(lambda: ha.segment_from_vision_grid(kind, t, h, w, merge, 0.5))
    if seg is not None:
        assert (seg.grid_t, seg.grid_h, seg.grid_w) == (t, h // merge, w // merge)
        assert ha.num_tokens([seg]) == t * (h // merge) * (w // merge)
    status = plan.pick("status", [0, 1, 6, 1234, -5], [2**31, -2**40, 1.0, "1"], must=True)
    name = plan.run(lambda: ha.status_string(status))
    assert name is None or name.startswith("HOPE_")
