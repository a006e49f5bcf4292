"""Regression tests for every class of finding of issue 14 (a hostile but realistic user of the Python binding).

The classes that crashed the interpreter or corrupted the heap before the fix run in a fresh interpreter each
(run_probe), so a regression fails this test instead of killing the whole pytest run. The others run in-process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import hope_attn as ha
from fuzz_util import merge_ref
from reference import attention_ref, rel_err

HERE = os.path.dirname(os.path.abspath(__file__))

# Imported by every probe: the package, numpy, and `refused`, which asserts a clean exception naming `names`.
PRELUDE = '''
import mmap, tempfile
import numpy as np
import hope_attn as ha

def refused(fn, *names, exc=(ValueError, TypeError)):
    try:
        fn()
    except exc as e:
        for n in names:
            assert n in str(e), f"message {str(e)!r} does not name {n!r}"
        return e
    raise AssertionError("accepted: " + fn.__doc__ if fn.__doc__ else "a misuse was accepted")
'''


def run_probe(code: str) -> str:
    """Runs `code` (after PRELUDE) in a fresh interpreter with this test's environment (library path, and under
    scripts/pyfuzz.sh the preloaded ASan runtime). A crash or a failed assertion there fails the calling test."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(HERE), HERE] + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    r = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code) + "\nprint('probe done')\n"], env=env,
                       capture_output=True, text=True, timeout=300)
    how = f"killed by signal {-r.returncode}" if r.returncode < 0 else f"exit code {r.returncode}"
    assert r.returncode == 0 and "probe done" in r.stdout, (
        f"probe failed ({how})\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-6000:]}")
    return r.stdout


# ---- classes that crashed the interpreter (one process each) ------------------------------------------------


def test_dtype_hint_contradicting_the_arrays_is_refused():
    # float16 arrays read as float32 aborted with "double free or corruption" (attention), corrupted the heap
    # (rope_apply), segfaulted (kv_append, decode); the reverse returned garbage with success.
    run_probe('''
        h = np.zeros((4, 2, 8), np.float16)
        f = np.zeros((4, 2, 8), np.float32)
        cos = np.ones((4, 4), np.float32); sin = np.zeros((4, 4), np.float32)
        pages16 = np.zeros((2, 4, 2, 8), np.float16)
        refused(lambda: ha.attention(h, h, h, dtype="float32"), "q", "float32", "float16")
        refused(lambda: ha.attention(f, f, f, dtype="float16"), "q")
        refused(lambda: ha.rope_apply(h, cos, sin, dtype="float32"), "x")
        refused(lambda: ha.rope_apply(f, cos, sin, dtype="bfloat16"), "x")
        refused(lambda: ha.kv_append(pages16, pages16.copy(), h, h, [0, 1, 2, 3], dtype="float32"), "k_pages")
        refused(lambda: ha.decode(h[:1], pages16, pages16, [0, 1], [1], [[0, 1]], dtype="float32"), "k_pages")
        refused(lambda: ha.merge_states(h, np.zeros((2, 4)), h, np.zeros((2, 4)), dtype="float32"), "o_a")
        refused(lambda: ha.rope_apply(h.view(np.uint16), cos, sin), "x", "dtype='bfloat16'")  # no hint: ambiguous
        refused(lambda: ha.rope_apply(f, cos, sin, dtype="float64"), "dtype")
        # the hint's one job: reading 16-bit integer storage as bfloat16 (or float16)
        out = ha.rope_apply(h.view(np.uint16), cos, sin, dtype="bfloat16")
        assert out.dtype == np.uint16 and out.shape == h.shape
    ''')


def test_decode_checks_every_array():
    # cu_seqlens_q past q's rows read and wrote past q and out (SIGSEGV); a page table with fewer than batch rows
    # was read past; q of another dtype / head_dim / head count than the cache, and any lse, went unchecked.
    run_probe('''
        pages = np.zeros((2, 4, 2, 8), np.float32)
        q = np.ones((2, 4, 8), np.float32)
        table = np.array([[0, 1]], np.int32)
        refused(lambda: ha.decode(q, pages, pages, [0, 64], [64], table), "cu_seqlens_q", "exceeds")
        refused(lambda: ha.decode(q, pages, pages, [0, 1, 2], [1, 1], table), "page_table")
        refused(lambda: ha.decode(q.astype(np.float16), pages, pages, [0, 2], [2], table), "q", "float16")
        refused(lambda: ha.decode(np.ones((2, 4, 6), np.float32), pages, pages, [0, 2], [2], table), "q")
        refused(lambda: ha.decode(np.ones((2, 3, 8), np.float32), pages, pages, [0, 2], [2], table),
                exc=ha.HopeError)  # 3 query heads over 2 kv heads: the library's message
        refused(lambda: ha.decode(q, pages, pages, [0, 2], [2], table, lse=np.zeros((4, 2))), "lse", "float32")
        refused(lambda: ha.decode(q, pages, pages, [0, 2], [2], table, lse=np.zeros(1, np.float32)), "lse")
        refused(lambda: ha.decode(q, pages, pages, [0, 2], [2], table, out=np.zeros((1, 4, 8), np.float32)), "out")
        refused(lambda: ha.decode(q, pages, pages, [0, 2], [2, 2], table), "seq_lens")
        out, lse = ha.decode(q, pages, pages, [0, 2], [2], table, return_lse=True)
        assert out.shape == (2, 4, 8) and lse.shape == (4, 2) and np.all(np.isfinite(lse))
    ''')


def test_kv_append_checks_keys_against_the_cache():
    # keys of another dtype, head count or head_dim than the cache were read out of bounds or stored wrongly
    run_probe('''
        kp = np.zeros((2, 4, 2, 8), np.float32); vp = kp.copy()
        k = np.ones((3, 2, 8), np.float32)
        refused(lambda: ha.kv_append(kp, vp, k.astype(np.float16), k, [0, 1, 2]), "k", "float16")
        refused(lambda: ha.kv_append(kp, vp, k, k.astype(np.float16), [0, 1, 2]), "v", "float16")
        refused(lambda: ha.kv_append(kp, vp, np.ones((3, 1, 8), np.float32), k, [0, 1, 2]), "k", "hk")
        refused(lambda: ha.kv_append(kp, vp, np.ones((3, 2, 4), np.float32), k, [0, 1, 2]), "k", "d")
        refused(lambda: ha.kv_append(kp, vp.astype(np.float16), k, k, [0, 1, 2]), "v_pages")
        refused(lambda: ha.kv_append(kp, vp, k, k, [0, 1]), "slot_mapping")
        refused(lambda: ha.kv_append(kp, vp, k, k, [0, 1, 2**64]), "slot_mapping[2]")
        ro = kp.copy(); ro.flags.writeable = False
        refused(lambda: ha.kv_append(ro, vp, k, k, [0, 1, 2]), "k_pages", "read-only")
        refused(lambda: ha.kv_append(kp[:, ::2], vp[:, ::2], k, k, [0, 1, 2]), "k_pages")
        ha.kv_append(kp, vp, k, k, [0, -1, 7])
        assert np.all(kp[0, 0] == 1) and np.all(kp[1, 3] == 1) and np.count_nonzero(kp) == 32
    ''')


def test_outputs_must_be_real_writable_packed_arrays():
    # a transposed lse_out got wrong values, a broadcast view segfaulted, read-only arrays and an immutable bytes
    # buffer were written, a read-only mapping segfaulted
    run_probe('''
        o = np.ones((4, 2, 8), np.float32); l = np.zeros((2, 4), np.float32)
        refused(lambda: ha.merge_states(o, l, o, l, lse_out=np.zeros((4, 2), np.float32).T), "lse_out")
        bc = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (4, 2, 8), (0, 0, 0), writeable=True)
        refused(lambda: ha.merge_states(o, l, o, l, out=bc), "out")
        refused(lambda: ha.merge_states(o, l, o, l, out=np.broadcast_to(o[:1], o.shape)), "out")
        ro = o.copy(); ro.flags.writeable = False
        refused(lambda: ha.merge_states(o, l, o, l, out=ro), "out", "read-only")
        refused(lambda: ha.merge_states(o, l, o, l, out=bytes(o.nbytes)), "out")
        frozen = np.frombuffer(bytes(o.nbytes), np.float32).reshape(o.shape)
        refused(lambda: ha.merge_states(o, l, o, l, out=frozen), "out", "read-only")
        f = tempfile.TemporaryFile(); f.write(bytes(o.nbytes)); f.flush()
        mapped = np.frombuffer(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), np.float32).reshape(o.shape)
        refused(lambda: ha.merge_states(o, l, o, l, out=mapped), "out", "read-only")
        cos = np.ones((4, 4), np.float32); sin = np.zeros((4, 4), np.float32)
        refused(lambda: ha.rope_apply(o, cos, sin, out=mapped), "out")
        refused(lambda: ha.rope_apply(o, cos, sin, out=np.zeros((8, 2, 8), np.float32)[::2][::-1]), "out")
        refused(lambda: ha.rope_apply(o, cos, sin, out=o.tolist()), "out")
        raw = bytearray(o.nbytes + 1)
        unaligned = np.frombuffer(raw, np.float32, count=o.size, offset=1).reshape(o.shape)
        refused(lambda: ha.rope_apply(o, cos, sin, out=unaligned), "out")
        q = np.ones((4, 2, 8), np.float32)
        refused(lambda: ha.attention(q, q, q, out=np.asfortranarray(np.zeros_like(q))), "out")
        refused(lambda: ha.attention(q, q, q, return_lse=True, lse=np.zeros((4, 2), np.float32).T), "lse")
        refused(lambda: ha.attention(q, q, q, k_rotated=ro), "k_rotated")
        # inputs in those layouts are fine: they are read (copied when the library cannot read them as they are)
        ref = ha.rope_apply(o, cos, sin)
        assert np.array_equal(ha.rope_apply(frozen + 1 - 1, cos, sin), ha.rope_apply(np.zeros_like(o), cos, sin))
        assert np.array_equal(ha.rope_apply(np.broadcast_to(o[:1], o.shape), cos, sin), ref)
        assert np.array_equal(ha.rope_apply(unaligned * 0 + o, cos, sin), ref)
    ''')


def test_rope_cache_views_keep_the_tables_alive():
    # .cos / .sin views outlived close() and the with block: reading was a use-after-free, writing corrupted the heap
    run_probe('''
        import gc
        cfg = ha.RopeConfig("hope", 64, (8, 12, 12), 1e6)
        pos, _ = ha.positions([ha.text(5), ha.video(2, 3, 3, 0.75)], "diagonal")
        want_cos, want_sin = ha.cos_sin(cfg, pos)
        cache = ha.RopeCache(cfg, pos.shape[1])
        cache.fill(pos)
        cos = cache.cos
        cache.close()
        del cache
        gc.collect()
        junk = [np.full(4096, 7.0) for _ in range(256)]  # reuse freed memory, if the tables had been freed
        assert np.array_equal(cos, want_cos)
        with ha.RopeCache(cfg, pos.shape[1]) as c2:
            c2.fill(pos)
            sin = c2.sin
        gc.collect()
        assert np.array_equal(sin, want_sin)
        refused(lambda: sin.__setitem__((0, 0), 1.0), "read-only")  # the library's tables are const
        refused(lambda: c2.cos, "closed")
        refused(lambda: c2.fill(pos), "closed")
        del cos, sin
        gc.collect()  # the last views go: the tables are destroyed now (ASan would see a leak or a double free)
    ''')


# ---- classes that returned wrong results or raised the wrong exception (in-process) ---------------------------


def test_python_ints_never_wrap_into_c_types():
    cfg = ha.RopeConfig("hope", 16, (2, 3, 3))
    q = np.zeros((4, 2, 8), np.float32)
    cases = [
        (lambda: ha.positions([ha.text(2**32 + 3)]), "text length"),
        (lambda: ha.positions([("video", 2**31, 1, 1)]), "video t"),
        (lambda: ha.positions([{"kind": "image", "h": 1, "w": 2**40}]), "image w"),
        (lambda: ha.RopeCache(cfg, 2**64 + 4), "capacity"),
        (lambda: ha.cos_sin("hope", np.zeros((3, 1), np.float32), head_dim=16, sections=(2**40, 0, 8)),
         "sections[0]"),
        (lambda: ha.attention(q, q, q, [0, 2**32 + 4], [0, 4]), "cu_seqlens_q[1]"),
        (lambda: ha.attention(q, q, q, np.array([0, 2**32 + 4], np.int64), [0, 4]), "cu_seqlens_q[1]"),
        (lambda: ha.attention(q, q, q, [0, 4], [0, 4], max_seqlen_q=2**32 + 4), "max_seqlen_q"),
        (lambda: ha.select_temporal_scales([ha.video(2, 2, 2)], "random", seed=-1), "seed"),
        (lambda: ha.select_temporal_scales([ha.video(2, 2, 2)], "random", seed=2**64), "seed"),
        (lambda: ha.positions_generated(5.0, 2**63, 1), "first"),
        (lambda: ha.status_string(2**40), "status"),
        (lambda: ha.segment_from_vision_grid("video", 2**33, 2, 2), "grid_t"),
        (lambda: ha.rope_apply(q, np.ones((4, 4), np.float32), np.ones((4, 4), np.float32), stream=-1), "stream"),
    ]
    for fn, name in cases:
        with pytest.raises(ValueError, match=name.replace("[", r"\[").replace("]", r"\]")):
            fn()
    # floats (and strings) where integers are required are refused, not truncated; 2-D where 1-D is required too
    for fn, name in [(lambda: ha.text(3.5), "text length"), (lambda: ha.text(3.0), "text length"),
                     (lambda: ha.video("2", 2, 2), "video t"),
                     (lambda: ha.attention(q, q, q, [0, 4.0], [0, 4]), "cu_seqlens_q"),
                     (lambda: ha.attention(q, q, q, np.array([0.0, 4.0]), [0, 4]), "cu_seqlens_q"),
                     (lambda: ha.RopeCache(cfg, 4.0), "capacity"),
                     (lambda: ha.decode(q[:1], np.zeros((1, 4, 2, 8), np.float32), np.zeros((1, 4, 2, 8), np.float32),
                                        [0, 1], [1], [[0]], num_splits=1.5), "num_splits")]:
        with pytest.raises(TypeError, match=name):
            fn()
    with pytest.raises(ValueError, match="cu_seqlens_q"):
        ha.attention(q, q, q, [[0, 4]], [[0, 4]])
    with pytest.raises(ValueError, match="candidates"):
        ha.select_temporal_scales([ha.video(2, 2, 2)], "random", candidates=[[0.5, 1.0]])
    # the edges themselves are fine
    assert ha.num_tokens([ha.text(2**31 - 1)]) == 2**31 - 1
    segs, _ = ha.select_temporal_scales([ha.video(2, 2, 2)], "random", seed=2**64 - 1)
    assert segs[0].temporal_scale in ha.DEFAULT_SCALE_CANDIDATES


class FakeTorchCpu:
    """A host tensor as PyTorch presents one (data_ptr(), stride(), dtype "torch.float32"); an empty one has a
    NULL data pointer, as torch gives it."""

    __module__ = "torch.fake"

    def __init__(self, a):
        self.a = np.ascontiguousarray(a)
        self.shape, self.dtype, self.is_cuda = self.a.shape, f"torch.{self.a.dtype}", False

    def data_ptr(self):
        return 0 if self.a.size == 0 else self.a.ctypes.data

    def stride(self):
        return tuple(s // self.a.itemsize for s in self.a.strides)

    def element_size(self):
        return self.a.itemsize


def test_empty_inputs_are_valid():
    # numpy gives empty arrays zero strides and torch a NULL data pointer; both were refused with misleading
    # messages although the library handles 0 tokens
    e, e_tab = np.zeros((0, 2, 8), np.float32), np.zeros((0, 4), np.float32)
    assert e.strides == (0, 0, 0) or e.size == 0
    assert ha.rope_apply(e, e_tab, e_tab).shape == (0, 2, 8)
    out = FakeTorchCpu(e)
    assert ha.rope_apply(FakeTorchCpu(e), FakeTorchCpu(e_tab), FakeTorchCpu(e_tab), out=out) is out
    o, lse = ha.attention(e, e, e, return_lse=True)
    assert o.shape == (0, 2, 8) and lse.shape == (2, 0)
    q = np.ones((3, 2, 8), np.float32)
    o = ha.attention(q, e, e, [0, 3], [0, 0])  # a sequence without keys: o = 0
    assert np.all(o == 0)
    m, ml = ha.merge_states(e, np.zeros((2, 0), np.float32), e, np.zeros((2, 0), np.float32))
    assert m.shape == (0, 2, 8) and ml.shape == (2, 0)
    pages = np.zeros((1, 4, 2, 8), np.float32)
    ha.kv_append(pages, pages.copy(), e, e, np.zeros(0, np.int64), e_tab, e_tab)
    ha.kv_append(pages, pages.copy(), e, e, [])
    assert ha.decode(e, pages, pages, [0], [], np.zeros((0, 1), np.int32)).shape == (0, 2, 8)
    c, s = ha.cos_sin("hope", np.zeros((3, 0), np.float32), head_dim=8, sections=(2, 1, 1))
    assert c.shape == s.shape == (0, 4)
    with ha.RopeCache(ha.RopeConfig("hope", 8, (2, 1, 1)), 4) as cache:
        cache.fill(np.zeros((3, 0), np.float32), offset=4)
    assert ha.positions([])[0].shape == (3, 0)


def test_uncovered_rows_are_defined_and_unknown_names_are_value_errors():
    rng = np.random.default_rng(5)
    q = np.float32(rng.standard_normal((6, 2, 8)))
    k = np.float32(rng.standard_normal((4, 2, 8)))
    # rows 4 and 5 of q belong to no sequence: the library does not touch them; an out allocated here has 0 there
    o, lse = ha.attention(q, k, k, [0, 4], [0, 4], causal=True, return_lse=True)
    assert np.all(o[4:] == 0) and lse.shape == (2, 4)  # lse is laid out [Hq][cu_seqlens_q[-1]], as in the library
    ref_o, ref_l = attention_ref(q[:4], k, k, [0, 4], [0, 4], True)
    assert rel_err(o[:4], ref_o) <= 1e-5 and np.max(np.abs(lse - ref_l)) <= 1e-4
    pages = np.float32(rng.standard_normal((1, 4, 2, 8)))
    d = ha.decode(q[:3], pages, pages, [0, 1], [4], [[0]])
    assert np.all(d[1:] == 0) and np.all(np.isfinite(d[0]))
    for fn, name in [(lambda: ha.rope_apply(q, np.ones((6, 4), np.float32), np.ones((6, 4), np.float32),
                                            backend="tpu"), "backend"),
                     (lambda: ha.RopeCache(ha.RopeConfig("hope", 8, (2, 1, 1)), 4, memory="gpu"), "memory"),
                     (lambda: ha.positions([ha.text(2)], "spiral"), "layout"),
                     (lambda: ha.select_temporal_scales([], "sometimes"), "policy"),
                     (lambda: ha.rope_components("rope9"), "rope kind"),
                     (lambda: ha.segment_from_vision_grid("audio", 1, 2, 2), "kind"),
                     (lambda: ha.attention(q, k, k, dtype="float64"), "dtype")]:
        with pytest.raises(ValueError, match=name) as e:
            fn()
        assert not isinstance(e.value, KeyError)


# ---- the C-side fixes, seen from Python ---------------------------------------------------------------------


def test_merge_nan_on_either_side_and_partial_overlap():
    o_a = np.float32(np.random.default_rng(6).standard_normal((2, 1, 4)))
    o_b = o_a + 1
    for la, lb in (([np.nan, 0.0], [0.0, 0.0]), ([0.0, 0.0], [np.nan, 0.0]), ([0.0, 1.0], [np.inf, 0.0])):
        la, lb = np.float32([la]), np.float32([lb])
        out, lse = ha.merge_states(o_a, la, o_b, lb)
        ref_o, ref_l = merge_ref(o_a, la, o_b, lb)
        assert np.all(np.isnan(out[0])) and np.isnan(lse[0, 0])  # whichever side holds it
        np.testing.assert_allclose(out[1], ref_o[1], rtol=1e-6)
        np.testing.assert_allclose(lse[0, 1], ref_l[0, 1], rtol=1e-6)
    buf = np.zeros(2 * 1 * 4 + 1, np.float32)
    a, shifted = buf[:-1].reshape(2, 1, 4), buf[1:].reshape(2, 1, 4)
    with pytest.raises(ha.HopeError, match="overlap"):
        ha.merge_states(a, np.zeros((1, 2), np.float32), o_b, np.zeros((1, 2), np.float32), out=shifted)
    out, _ = ha.merge_states(a, np.zeros((1, 2), np.float32), o_b, np.zeros((1, 2), np.float32), out=a)
    assert out is a  # exact aliasing: an in-place merge


def test_fit_never_picks_a_scale_the_build_refuses():
    segs = [ha.text(3), ha.video(5, 2, 2)]
    chosen_segs, chosen = ha.select_temporal_scales(segs, "fit", candidates=[1.0, 1e38], budget=float("inf"))
    assert chosen == 1.0
    ha.positions(chosen_segs, "diagonal")  # builds
    with pytest.raises(ha.HopeError, match="float32"):
        ha.select_temporal_scales(segs, "fit", candidates=[1e38, 3e38], budget=float("inf"))


def test_library_messages_give_the_real_numbers():
    with ha.RopeCache(ha.RopeConfig("hope", 8, (2, 1, 1)), 8) as cache:
        with pytest.raises(ha.HopeError, match="offset 6 and n 3 end past the capacity 8"):
            cache.fill(np.zeros((3, 3), np.float32), offset=6)
