"""Attention on the CPU backend (SPEC §5) against the numpy float64 reference."""
import numpy as np
import pytest

import hope_attn as ha
from reference import attention_ref, bf16_bits, bf16_to_f64, rel_err


def _inputs(lens_q, lens_k, hq, hk, d, dtype=np.float32, seed=0, rope=True):
    rng = np.random.default_rng(seed)
    cu_q = np.concatenate([[0], np.cumsum(lens_q)]).astype(np.int32)
    cu_k = np.concatenate([[0], np.cumsum(lens_k)]).astype(np.int32)
    q = rng.standard_normal((cu_q[-1], hq, d)).astype(dtype)
    k = rng.standard_normal((cu_k[-1], hk, d)).astype(dtype)
    v = rng.standard_normal((cu_k[-1], hk, d)).astype(dtype)
    tabs = {}
    if rope:
        # Each sequence's queries are its last Nq tokens (bottom-right alignment), in diagonal positions of a
        # video prompt that starts above 100 000.
        segs = [ha.text(3), ha.video(2, 3, 4, 0.75), ha.text(max(max(lens_k), 1))]
        pos, _ = ha.positions(segs, "diagonal", start=100000.0)
        pos_k = np.concatenate([pos[:, :n] for n in lens_k], axis=1) if cu_k[-1] else np.zeros((3, 0), np.float32)
        pos_q = np.concatenate([pos[:, np.arange(nk - nq, nk) % pos.shape[1]] for nq, nk in zip(lens_q, lens_k)],
                               axis=1) if cu_q[-1] else np.zeros((3, 0), np.float32)
        cfg = ha.RopeConfig("hope", d, ha.default_sections(d), 1e6)
        tabs["cos_q"], tabs["sin_q"] = ha.cos_sin(cfg, pos_q)
        tabs["cos_k"], tabs["sin_k"] = ha.cos_sin(cfg, pos_k)
    return q, k, v, cu_q, cu_k, tabs


def _check_f32(out, lse, ref_o, ref_l):
    assert np.all(np.isfinite(out))
    assert rel_err(out, ref_o) <= 1e-5
    fin = np.isfinite(ref_l)
    assert np.array_equal(np.isfinite(lse), fin)
    assert np.all(lse[~fin] == -np.inf)
    if fin.any():
        assert np.max(np.abs(lse[fin] - ref_l[fin])) <= 1e-4


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("hq,hk", [(4, 4), (4, 1), (6, 2)])
def test_varlen_float32_with_rope(causal, hq, hk):
    # an empty sequence, a length-1 sequence, Nq < Nk (prefill continuation), and an odd length
    lens_q, lens_k = [5, 0, 1, 3, 13], [5, 0, 1, 7, 13]
    q, k, v, cu_q, cu_k, t = _inputs(lens_q, lens_k, hq, hk, 32, seed=hq * 10 + hk)
    out, lse = ha.attention(q, k, v, cu_q, cu_k, causal=causal, return_lse=True, **t)
    assert out.shape == q.shape and lse.shape == (hq, q.shape[0])
    ref_o, ref_l = attention_ref(q, k, v, cu_q, cu_k, causal, **t)
    _check_f32(out, lse, ref_o, ref_l)


def test_all_masked_rows_and_sequence_without_keys():
    # causal with Nq > Nk: query i sees keys n <= i + Nk - Nq, so the first Nq - Nk rows see nothing
    lens_q, lens_k = [5, 3], [2, 0]
    q, k, v, cu_q, cu_k, t = _inputs(lens_q, lens_k, 2, 1, 16, seed=9)
    out, lse = ha.attention(q, k, v, cu_q, cu_k, causal=True, return_lse=True, **t)
    ref_o, ref_l = attention_ref(q, k, v, cu_q, cu_k, True, **t)
    assert np.all(out[:3] == 0) and np.all(lse[:, :3] == -np.inf)   # all-masked rows
    assert np.all(out[5:] == 0) and np.all(lse[:, 5:] == -np.inf)   # the sequence with no keys
    _check_f32(out, lse, ref_o, ref_l)


def test_without_rope_and_custom_scale():
    q, k, v, cu_q, cu_k, _ = _inputs([7, 4], [7, 9], 3, 3, 64, seed=11, rope=False)
    out = ha.attention(q, k, v, cu_q, cu_k, causal=True, softmax_scale=0.3)
    ref_o, _ = attention_ref(q, k, v, cu_q, cu_k, True, scale=0.3)
    assert rel_err(out, ref_o) <= 1e-5


def test_single_sequence_defaults():
    q, k, v, _, _, t = _inputs([9], [9], 2, 2, 16, seed=12)
    out = ha.attention(q, k, v, causal=True, **t)
    ref_o, _ = attention_ref(q, k, v, [0, 9], [0, 9], True, **t)
    assert rel_err(out, ref_o) <= 1e-5


def test_k_rotated_output_and_preallocated_out():
    q, k, v, cu_q, cu_k, t = _inputs([4, 6], [4, 6], 2, 1, 16, seed=13)
    out = np.full(q.shape, np.nan, np.float32)
    lse = np.full((2, q.shape[0]), np.nan, np.float32)
    krot = np.full(k.shape, np.nan, np.float32)
    r = ha.attention(q, k, v, cu_q, cu_k, causal=True, out=out, lse=lse, k_rotated=krot, **t)
    assert r is out and np.all(np.isfinite(out)) and np.all(np.isfinite(lse))
    from reference import rotate_ref
    assert np.max(np.abs(krot - rotate_ref(k, t["cos_k"], t["sin_k"]))) <= 1e-5


def test_float16():
    lens = [1, 0, 37, 64]
    q, k, v, cu_q, cu_k, t = _inputs(lens, lens, 4, 2, 64, dtype=np.float16, seed=14)
    out, lse = ha.attention(q, k, v, cu_q, cu_k, causal=True, return_lse=True, **t)
    assert out.dtype == np.float16 and np.all(np.isfinite(out))
    ref_o, ref_l = attention_ref(q, k, v, cu_q, cu_k, True, round_rotated=np.float16, **t)
    assert rel_err(out, ref_o) <= 2e-3
    fin = np.isfinite(ref_l)
    assert np.max(np.abs(lse[fin] - ref_l[fin])) <= 5e-3


def test_bfloat16_as_uint16_bits():
    lens = [3, 29]
    q, k, v, cu_q, cu_k, t = _inputs(lens, lens, 2, 1, 32, seed=15)
    qb, kb, vb = bf16_bits(q), bf16_bits(k), bf16_bits(v)
    out, lse = ha.attention(qb, kb, vb, cu_q, cu_k, causal=True, return_lse=True, dtype="bfloat16", **t)
    assert out.dtype == np.uint16
    ref_o, ref_l = attention_ref(bf16_to_f64(qb), bf16_to_f64(kb), bf16_to_f64(vb), cu_q, cu_k, True,
                                 round_rotated="bfloat16", **t)
    assert rel_err(bf16_to_f64(out), ref_o) <= 1e-2
    assert np.max(np.abs(lse - ref_l)) <= 2e-2


def test_bfloat16_ml_dtypes_arrays_when_installed():
    if ha.BFLOAT16_NP is None:  # optional dependency (scripts/setup.sh installs it); the uint16 path runs anyway
        with pytest.raises(ValueError):
            ha.attention(*(np.zeros((2, 1, 8), np.uint16),) * 3)  # uint16 without dtype= is not bfloat16
        return
    bf16 = ha.BFLOAT16_NP
    lens = [3, 29]
    q, k, v, cu_q, cu_k, t = _inputs(lens, lens, 2, 1, 32, seed=16)
    q, k, v = q.astype(bf16), k.astype(bf16), v.astype(bf16)
    out, lse = ha.attention(q, k, v, cu_q, cu_k, causal=True, return_lse=True, **t)
    assert out.dtype == bf16
    ref_o, ref_l = attention_ref(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64), cu_q, cu_k,
                                 True, round_rotated="bfloat16", **t)
    assert rel_err(out.astype(np.float64), ref_o) <= 1e-2
    assert np.max(np.abs(lse - ref_l)) <= 2e-2


def test_attention_errors_from_python_and_c():
    q = np.zeros((4, 2, 8), np.float32)
    with pytest.raises(ValueError):
        ha.attention(q, q, q.astype(np.float16))  # mixed dtypes
    with pytest.raises(ValueError):
        ha.attention(q, q, q, [0, 4], [0, 2, 4])  # batch mismatch
    with pytest.raises(ha.HopeError) as e:
        ha.attention(q, q, q, [0, 4], [0, 4], max_seqlen_q=2)  # max_seqlen_q below a true length
    assert e.value.status == ha.Status.ERROR_INVALID_VALUE and e.value.message
    with pytest.raises(ValueError):
        ha.attention(q, q, q, [0, 5], [0, 4])  # cu_seqlens_q runs past the 4 query tokens
    with pytest.raises(ha.HopeError) as e:
        ha.attention(q, q, q, [0, 3, 2], [0, 2, 4])  # decreasing cu_seqlens (checked by the C library)
    assert e.value.status == ha.Status.ERROR_INVALID_VALUE and e.value.message
    with pytest.raises(ha.HopeError) as e:
        ha.attention(q[:, :, :7], q[:, :, :7], q[:, :, :7])  # odd head_dim
    assert e.value.status == ha.Status.ERROR_INVALID_VALUE and e.value.message
