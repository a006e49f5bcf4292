"""Serving on the CPU backend: state merging, paged KV append, decode, against the float64 reference."""
import numpy as np
import pytest

import hope_attn as ha
from reference import attention_ref, rel_err, rotate_ref


def test_merge_states_equals_attention_over_the_union():
    rng = np.random.default_rng(20)
    nq, nk, h, d = 6, 10, 2, 16
    q = np.float32(rng.standard_normal((nq, h, d)))
    k = np.float32(rng.standard_normal((nk, h, d)))
    v = np.float32(rng.standard_normal((nk, h, d)))
    oa, la = ha.attention(q, k[:4], v[:4], return_lse=True)
    ob, lb = ha.attention(q, k[4:], v[4:], return_lse=True)
    out, lse = ha.merge_states(oa, la, ob, lb)
    ref_o, ref_l = attention_ref(q, k, v, [0, nq], [0, nk], False)
    assert rel_err(out, ref_o) <= 1e-5
    assert np.max(np.abs(lse - ref_l)) <= 1e-4


def test_merge_states_with_empty_sides():
    rng = np.random.default_rng(21)
    o = np.float32(rng.standard_normal((3, 2, 8)))
    lse = np.float32(rng.standard_normal((2, 3)))
    empty_o = np.zeros_like(o)
    empty_l = np.full((2, 3), -np.inf, np.float32)
    out, l_out = ha.merge_states(o, lse, empty_o, empty_l)
    np.testing.assert_allclose(out, o, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(l_out, lse, rtol=1e-6, atol=1e-6)
    out, l_out = ha.merge_states(empty_o, empty_l, empty_o, empty_l)
    assert np.all(out == 0) and np.all(l_out == -np.inf)
    with pytest.raises(ValueError):
        ha.merge_states(o, lse[:1], o, lse)


def _paged_setup(seq_lens, hk, d, page_size, rng):
    """Pages holding every sequence's keys (rotated) and values, scattered over shuffled pages."""
    pages_per_seq = [(n + page_size - 1) // page_size for n in seq_lens]
    num_pages = sum(pages_per_seq) + 2
    order = rng.permutation(num_pages)
    page_table = np.zeros((len(seq_lens), max(max(pages_per_seq), 1)), np.int32)
    at = 0
    for b, n in enumerate(pages_per_seq):
        page_table[b, :n] = order[at:at + n]
        at += n
    return num_pages, page_table


def test_kv_append_then_decode_matches_attention():
    rng = np.random.default_rng(22)
    hq, hk, d, page_size = 4, 2, 32, 16
    seq_lens = [1, 40, 17]           # keys per sequence, the new tokens included
    new_q = [1, 3, 2]                # decode and speculative tokens
    cfg = ha.RopeConfig("hope", d, ha.default_sections(d), 1e6)
    num_pages, page_table = _paged_setup(seq_lens, hk, d, page_size, rng)
    k_pages = np.full((num_pages, page_size, hk, d), np.nan, np.float32)
    v_pages = np.full((num_pages, page_size, hk, d), np.nan, np.float32)

    ks, vs, coss, sins, slots = [], [], [], [], []
    for b, n in enumerate(seq_lens):
        pos, _ = ha.positions([ha.text(2), ha.video(2, 3, 3, 0.75), ha.text(max(n - 20, 1) + 20)], "diagonal",
                              start=200000.0)
        c, s = ha.cos_sin(cfg, pos[:, :n])
        ks.append(np.float32(rng.standard_normal((n, hk, d))))
        vs.append(np.float32(rng.standard_normal((n, hk, d))))
        coss.append(c)
        sins.append(s)
        slots.append(np.array([page_table[b, i // page_size] * page_size + i % page_size for i in range(n)]))
    k_all, v_all = np.concatenate(ks), np.concatenate(vs)
    cos_all, sin_all = np.concatenate(coss), np.concatenate(sins)
    slot_all = np.concatenate(slots).astype(np.int64)
    slot_all_skip = slot_all.copy()
    ha.kv_append(k_pages, v_pages, k_all, v_all, slot_all, cos_all, sin_all)
    # rotated keys and raw values land in their slots
    rot = rotate_ref(k_all, cos_all, sin_all)
    for i, s in enumerate(slot_all_skip):
        p, o = divmod(int(s), page_size)
        assert np.max(np.abs(k_pages[p, o] - rot[i])) <= 1e-5
        np.testing.assert_array_equal(v_pages[p, o], v_all[i])

    cu_q = np.concatenate([[0], np.cumsum(new_q)]).astype(np.int32)
    q = np.float32(rng.standard_normal((cu_q[-1], hq, d)))
    cos_q = np.concatenate([coss[b][n - m:] for b, (n, m) in enumerate(zip(seq_lens, new_q))])
    sin_q = np.concatenate([sins[b][n - m:] for b, (n, m) in enumerate(zip(seq_lens, new_q))])
    cu_k = np.concatenate([[0], np.cumsum(seq_lens)]).astype(np.int32)
    ref_o, ref_l = attention_ref(q, k_all, v_all, cu_q, cu_k, True, cos_q=cos_q, sin_q=sin_q, cos_k=cos_all,
                                 sin_k=sin_all)
    for splits in (0, 1, 3):
        out, lse = ha.decode(q, k_pages, v_pages, cu_q, np.int32(seq_lens), page_table, cos_q=cos_q, sin_q=sin_q,
                             causal=True, return_lse=True, num_splits=splits)
        assert rel_err(out, ref_o) <= 1e-5, splits
        assert np.max(np.abs(lse - ref_l)) <= 1e-4, splits


def test_kv_append_skips_negative_slots_and_rejects_bad_ones():
    k_pages = np.zeros((2, 4, 1, 8), np.float32)
    v_pages = np.zeros((2, 4, 1, 8), np.float32)
    k = np.ones((3, 1, 8), np.float32)
    ha.kv_append(k_pages, v_pages, k, k, np.int64([0, -1, 7]))
    assert np.all(k_pages[0, 0] == 1) and np.all(k_pages[1, 3] == 1)
    assert np.count_nonzero(k_pages) == 16
    with pytest.raises(ha.HopeError) as e:
        ha.kv_append(k_pages, v_pages, k, k, np.int64([0, 1, 8]))  # slot 8 is past 2 pages of 4
    assert e.value.status == ha.Status.ERROR_INVALID_VALUE and e.value.message
