"""SPEC §8 model variants through the high-level binding (hope_attn.positions, segment_from_vision_grid,
video_frame_segments, cos_sin / RopeConfig, rope_apply, attention, kv_append, decode) on the CPU backend, against
the independent numpy references of reference.py on fresh random inputs; outputs poisoned where the binding
takes them; bad input raises HopeError carrying the library's message (or ValueError / TypeError from the
binding's own checks), never a crash."""
import numpy as np
import pytest

import hope_attn as ha
from reference import attention_ref, cos_sin_ref, rel_err, rotate_ref, timed_positions_ref

# ---- timed M-RoPE (Qwen2.5-VL, Qwen2.5-Omni) ---------------------------------------------------------------------


@pytest.mark.parametrize("rate", [2.0, 25.0])
def test_timed_positions_match_numpy(rate):
    rng = np.random.default_rng(int(rate))
    intervals = [0.5, 1 / 12, 1.5, 2 / 3, 1.0, 0.0]  # 1/12: Qwen2.5-VL's 2 frames at 24 fps
    for trial in range(6):
        specs, seconds, per_video = [], [], []
        for _ in range(int(rng.integers(1, 6))):
            kind = int(rng.integers(0, 3))
            if kind == 0:
                specs.append((0, int(rng.integers(0, 9)), 0, 0, 0))
                seconds.append(0.0)
            else:
                t = 1 if kind == 1 else int(rng.integers(1, 40))
                specs.append((kind, 0, t, int(rng.integers(1, 5)), int(rng.integers(1, 5))))
                g = float(intervals[int(rng.integers(0, len(intervals)))])
                seconds.append(g if kind == 2 else 0.0)
                if kind == 2:
                    per_video.append(g)
        segs = [ha.text(n) if k == 0 else (ha.image(h, w) if k == 1 else ha.video(t, h, w))
                for k, n, t, h, w in specs]
        start = float(rng.integers(0, 50))
        pos, nxt = ha.positions(segs, "mrope_timed", start=start, second_per_grid_t=per_video,
                                tokens_per_second=rate)
        want, want_next = timed_positions_ref(specs, seconds, rate, start)
        np.testing.assert_array_equal(pos, want, err_msg=f"trial {trial}: {specs} {per_video}")
        assert nxt == want_next


def test_timed_positions_hand_worked():
    # 2/3 s per grid at 2 tokens/s: float32(float32(f * 0.6666667) * 2) = 0, 1.3333334, 2.6666667, 4.0 (f = 3 lands
    # exactly on an integer) -> t offsets 0, 1, 2, 4; text resumes at 1 + max(4, h 1, w 2) = 5.
    pos, nxt = ha.positions([ha.video(4, 2, 3)], "mrope_timed", second_per_grid_t=[2 / 3], tokens_per_second=2)
    assert pos[0].reshape(4, 6)[:, 0].tolist() == [0, 1, 2, 4]
    assert pos[1].reshape(4, 2, 3)[0, :, 0].tolist() == [0, 1]
    assert pos[2].reshape(4, 2, 3)[0, 0, :].tolist() == [0, 1, 2]
    assert nxt == 5.0


def test_timed_positions_bad_input():
    segs = [ha.text(3), ha.video(4, 2, 2)]
    with pytest.raises(ha.HopeError, match=r"segments\[1\]"):  # the library names the video
        ha.positions(segs, "mrope_timed", second_per_grid_t=[-0.5])
    with pytest.raises(ha.HopeError, match="seconds_per_grid"):  # a video without its interval
        ha.positions(segs, "mrope_timed")
    with pytest.raises(ha.HopeError, match="tokens_per_second"):
        ha.positions(segs, "mrope_timed", second_per_grid_t=[1.0], tokens_per_second=0.0)
    with pytest.raises(ha.HopeError, match=r"segments\[1\]"):
        ha.positions(segs, "mrope_timed", second_per_grid_t=[float("nan")])
    with pytest.raises(ValueError, match="1 video"):
        ha.positions(segs, "mrope_timed", second_per_grid_t=[1.0, 2.0])
    with pytest.raises(TypeError):
        ha.positions(segs, "mrope_timed", second_per_grid_t=["1.0"])


# ---- temporal merge and per-frame video segments ------------------------------------------------------------------


def test_segment_from_vision_grid_temporal_merge():
    s = ha.segment_from_vision_grid("video", 8, 28, 42, spatial_merge_size=2, temporal_merge_size=2)
    assert (s.kind, s.grid_t, s.grid_h, s.grid_w) == (ha.SegmentKind.VIDEO, 4, 14, 21)
    assert ha.segment_from_vision_grid("video", 8, 28, 42, 2).grid_t == 8  # default: no temporal merge
    img = ha.segment_from_vision_grid("image", 1, 28, 42, 2, temporal_merge_size=2)
    assert (img.grid_t, img.grid_h, img.grid_w) == (1, 14, 21)
    with pytest.raises(ha.HopeError, match="temporal_merge_size"):
        ha.segment_from_vision_grid("video", 7, 28, 42, 2, temporal_merge_size=2)
    with pytest.raises(ha.HopeError, match="temporal_merge_size"):
        ha.segment_from_vision_grid("video", 8, 28, 42, 2, temporal_merge_size=0)


def _per_frame_ref(start_text, frames, h, w, ts_counts):
    """Qwen3-VL / GLM-4.1V get_rope_index for text then a video split into T = 1 frames, each after its
    timestamp text, in plain Python: text tokens count up; a frame block at base gets (base, base + y, base + x);
    text resumes at base + max(h, w) (1 + the block's largest value)."""
    rows, nxt = [], 0
    for i in range(start_text):
        rows.append((i, i, i))
    nxt = start_text
    for f in range(frames):
        for i in range(ts_counts[f]):
            rows.append((nxt + i,) * 3)
        nxt += ts_counts[f]
        for y in range(h):
            for x in range(w):
                rows.append((nxt, nxt + y, nxt + x))
        nxt += max(h, w)
    return np.array(rows, dtype=np.float32).T.reshape(3, -1), float(nxt)


def test_video_frame_segments_match_per_frame_rope_index():
    rng = np.random.default_rng(5)
    for _ in range(5):
        frames, h, w = int(rng.integers(1, 6)), int(rng.integers(1, 5)), int(rng.integers(1, 5))
        counts = [int(c) for c in rng.integers(0, 7, size=frames)]
        segs = ha.video_frame_segments(2 * frames, 2 * h, 2 * w, counts, spatial_merge_size=2, temporal_merge_size=2)
        assert sum(s.kind == ha.SegmentKind.VIDEO for s in segs) == frames
        assert all(s.grid_t == 1 for s in segs if s.kind == ha.SegmentKind.VIDEO)
        pos, nxt = ha.positions([ha.text(4)] + segs, "mrope")
        want, want_next = _per_frame_ref(4, frames, h, w, counts)
        np.testing.assert_array_equal(pos, want)
        assert nxt == want_next
    # One count for every frame; LLM-token grids by default.
    segs = ha.video_frame_segments(3, 2, 2, 5)
    assert [(s.kind, s.num_tokens) for s in segs] == [(ha.SegmentKind.TEXT, 5), (ha.SegmentKind.VIDEO, 4)] * 3


def test_video_frame_segments_bad_input():
    with pytest.raises(ValueError, match="3 counts for a video of 2 frames"):
        ha.video_frame_segments(4, 2, 2, [1, 1, 1], temporal_merge_size=2)
    with pytest.raises(ValueError):
        ha.video_frame_segments(2, 2, 2, [1, -1])
    with pytest.raises(TypeError):
        ha.video_frame_segments(2, 2, 2, "12")
    with pytest.raises(ha.HopeError, match="temporal_merge_size"):
        ha.video_frame_segments(3, 2, 2, 1, temporal_merge_size=2)


# ---- rope config: pairing, rotary_dim, model-exact frequencies --------------------------------------------------

GLM = dict(kind="mrope", head_dim=128, sections=(8, 12, 12), theta=1e4, pairing="interleaved", rotary_dim=64)
ERNIE = dict(kind="videorope", head_dim=128, sections=(20, 22, 22), theta=5e5, pairing="interleaved")
PARTIAL34 = dict(kind="mrope_interleaved", head_dim=64, sections=(5, 6, 6), theta=1e6, pairing=0, rotary_dim=34)
LAYOUTS = {"glm": GLM, "ernie": ERNIE, "partial34": PARTIAL34}


def _rot(layout):
    return layout.get("rotary_dim") or layout["head_dim"]


def _pair(layout):
    return 1 if layout["pairing"] in (1, "interleaved") else 0


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_cos_sin_and_components_with_rotary_dim(name):
    L = LAYOUTS[name]
    rng = np.random.default_rng(len(name))
    pos = rng.integers(0, 1 << 20, size=(3, 23)).astype(np.float32)
    cos, sin = ha.cos_sin(**L, positions=pos)
    r = _rot(L)
    assert cos.shape == sin.shape == (23, r // 2)
    rc, rs = cos_sin_ref(L["kind"], L["head_dim"], L["sections"], L["theta"], pos, rotary_dim=r)
    assert np.max(np.abs(cos - rc)) <= 2e-6 and np.max(np.abs(sin - rs)) <= 2e-6
    cfg = ha.rope_config(**L)
    assert cfg.rotary_width == r
    comp = ha.rope_components(cfg)
    assert comp.shape == (r // 2,)
    with ha.RopeCache(cfg, capacity=23) as cache:
        cache.fill(pos)
        np.testing.assert_array_equal(cache.cos, cos)
        np.testing.assert_array_equal(cache.sin, sin)


def test_model_exact_frequencies():
    pos = np.array([[999_983.0, 3.0, 12_345.0]] * 3, dtype=np.float32)
    for theta, r in [(1e6, 128), (1e4, 64)]:
        cfg = ha.RopeConfig(kind="vanilla", head_dim=128, theta=theta, rotary_dim=r, model_exact_freqs=True)
        cos, sin = ha.cos_sin(cfg, pos)
        rc, rs = cos_sin_ref("vanilla", 128, (0, 0, 0), theta, pos, rotary_dim=r, model_exact=True)
        assert np.max(np.abs(cos - rc)) <= 2e-6 and np.max(np.abs(sin - rs)) <= 2e-6
        # the switch matters: double frequencies move the angle at position ~1e6
        dc, _ = ha.cos_sin(cfg, pos, model_exact_freqs=False)
        assert np.max(np.abs(dc[0] - cos[0])) > 1e-4


def test_rope_config_bad_values_raise_the_library_message():
    pos = np.zeros((3, 2), np.float32)
    for kw, needle in [(dict(rotary_dim=33), "rotary_dim 33"), (dict(rotary_dim=130), "head_dim 128"),
                       (dict(pairing=2), "pairing 2"), (dict(model_exact_freqs=2), "model_exact_freqs"),
                       (dict(rotary_dim=64, sections=(16, 24, 24)), "rotary_dim / 2 is 32")]:
        cfg = dict(kind="mrope", head_dim=128, sections=(8, 12, 12) if "rotary_dim" in kw else (16, 24, 24))
        cfg.update(kw)
        with pytest.raises(ha.HopeError, match=needle):
            ha.cos_sin(positions=pos, **cfg)
        with pytest.raises(ha.HopeError, match=needle):
            ha.RopeCache(ha.rope_config(**cfg), capacity=2)
    with pytest.raises(ValueError, match="pairing"):
        ha.rope_config(kind="mrope", pairing="sideways").to_c()
    with pytest.raises(TypeError, match="model_exact_freqs"):
        ha.RopeConfig(model_exact_freqs="yes").to_c()


# ---- rotation inside rope_apply, attention, kv_append, decode -----------------------------------------------------


def _tables(L, n, rng):
    pos = rng.integers(100_000, 400_000, size=(3, n)).astype(np.float32)
    return ha.cos_sin(**L, positions=pos)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_rope_apply_pairing_and_rotary_dim(name, dtype):
    L = LAYOUTS[name]
    rng = np.random.default_rng(11)
    tokens, heads, d, r = 19, 3, L["head_dim"], _rot(L)
    cos, sin = _tables(L, tokens, rng)
    x = rng.standard_normal((tokens, heads, d)).astype(dtype)
    out = np.full_like(x, np.nan)
    ha.rope_apply(x, cos, sin, out, pairing=L["pairing"], rotary_dim=L.get("rotary_dim"))
    want = rotate_ref(x, cos, sin, _pair(L), r)
    tol = 1e-5 if dtype == np.float32 else 2e-3
    np.testing.assert_allclose(out[..., :r].astype(np.float64), want[..., :r], atol=tol * 4, rtol=tol)
    np.testing.assert_array_equal(out[..., r:], x[..., r:])


@pytest.mark.parametrize("name", sorted(LAYOUTS))
@pytest.mark.parametrize("causal", [False, True])
def test_attention_pairing_and_rotary_dim(name, causal):
    L = LAYOUTS[name]
    rng = np.random.default_rng(3 + causal)
    cu_q, cu_k = [0, 7, 7, 40], [0, 9, 12, 53]
    hq, hk, d = 4, 2, L["head_dim"]
    q = rng.standard_normal((cu_q[-1], hq, d)).astype(np.float32)
    k = rng.standard_normal((cu_k[-1], hk, d)).astype(np.float32)
    v = rng.standard_normal((cu_k[-1], hk, d)).astype(np.float32)
    cq, sq = _tables(L, cu_q[-1], rng)
    ck, sk = _tables(L, cu_k[-1], rng)
    out = np.full_like(q, np.nan)
    krot = np.full_like(k, np.nan)
    lse = np.full((hq, cu_q[-1]), np.nan, np.float32)
    ha.attention(q, k, v, cu_q, cu_k, causal=causal, cos_q=cq, sin_q=sq, cos_k=ck, sin_k=sk, out=out, lse=lse,
                 k_rotated=krot, pairing=L["pairing"], rotary_dim=L.get("rotary_dim"))
    ref_o, ref_l = attention_ref(q, k, v, cu_q, cu_k, causal, cos_q=cq, sin_q=sq, cos_k=ck, sin_k=sk,
                                 pairing=_pair(L), rotary_dim=_rot(L))
    assert rel_err(out, ref_o) <= 1e-5
    np.testing.assert_allclose(lse, ref_l, atol=1e-4, rtol=0)
    np.testing.assert_allclose(krot, rotate_ref(k, ck, sk, _pair(L), _rot(L)), atol=1e-5, rtol=0)


def test_kv_append_then_decode_with_glm_layout():
    L = GLM
    rng = np.random.default_rng(17)
    hq, hk, d, page, r = 4, 2, 128, 4, 64
    lens, nq = [9, 3], [2, 1]
    pages_per_seq = [(n + page - 1) // page for n in lens]
    order = rng.permutation(sum(pages_per_seq) + 2)  # shuffled pages, two left unused
    table = np.full((2, max(pages_per_seq)), -1, np.int32)
    slots, used = [], 0
    for b, n in enumerate(lens):
        table[b, :pages_per_seq[b]] = order[used:used + pages_per_seq[b]]
        used += pages_per_seq[b]
        slots += [int(table[b, i // page]) * page + i % page for i in range(n)]
    total_k = sum(lens)
    k = rng.standard_normal((total_k, hk, d)).astype(np.float32)
    v = rng.standard_normal((total_k, hk, d)).astype(np.float32)
    ck, sk = _tables(L, total_k, rng)
    k_pages = np.full((len(order), page, hk, d), np.nan, np.float32)
    v_pages = np.full_like(k_pages, np.nan)
    ha.kv_append(k_pages, v_pages, k, v, np.array(slots, np.int64), ck, sk, pairing="interleaved", rotary_dim=r)
    k_rot = rotate_ref(k, ck, sk, 1, r)
    flat = k_pages.reshape(-1, hk, d)
    np.testing.assert_allclose(flat[slots], k_rot, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(flat[slots][..., r:], k[..., r:])
    # q: each sequence's last nq tokens
    cu_q = np.array([0, nq[0], nq[0] + nq[1]], np.int32)
    q = rng.standard_normal((cu_q[-1], hq, d)).astype(np.float32)
    cq, sq = _tables(L, int(cu_q[-1]), rng)
    out = np.full_like(q, np.nan)
    ha.decode(q, k_pages, v_pages, cu_q, np.array(lens, np.int32), table, cos_q=cq, sin_q=sq, out=out,
              pairing="interleaved", rotary_dim=r)
    cu_k = [0, lens[0], total_k]
    ref_o, _ = attention_ref(q, k_rot, v, cu_q, cu_k, True, cos_q=cq, sin_q=sq, pairing=1, rotary_dim=r)
    assert rel_err(out, ref_o) <= 1e-5


def test_rotary_fields_bad_values_raise_the_library_message():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 1, 64)).astype(np.float32)
    cs = np.ones((2, 32), np.float32)
    sn = np.zeros((2, 32), np.float32)
    pages = np.zeros((2, 4, 1, 64), np.float32)
    bad = [(dict(rotary_dim=33), "rotary_dim 33 must be even"), (dict(rotary_dim=66), "must be <= head_dim 64"),
           (dict(rotary_dim=-2), "must be >= 2"), (dict(pairing=2), "rope_pairing 2"),
           (dict(pairing=-1), "rope_pairing -1")]
    for kw, needle in bad:
        with pytest.raises(ha.HopeError, match=needle):
            ha.rope_apply(x, cs, sn, **kw)
        with pytest.raises(ha.HopeError, match=needle):
            ha.attention(x, x, x, cos_q=cs, sin_q=sn, cos_k=cs, sin_k=sn, **kw)
        with pytest.raises(ha.HopeError, match=needle):
            ha.kv_append(pages, pages.copy(), x, x, np.array([0, 1], np.int64), cs, sn, **kw)
        with pytest.raises(ha.HopeError, match=needle):
            ha.decode(x[:1], pages, pages, [0, 1], [2], [[0]], cos_q=cs[:1], sin_q=sn[:1], **kw)
    with pytest.raises(ValueError, match="pairing"):
        ha.rope_apply(x, cs, sn, pairing="diagonal")
    with pytest.raises(TypeError, match="rotary_dim"):
        ha.rope_apply(x, cs, sn, rotary_dim=32.0)
    # tables of the wrong width for the rotary dimension: the binding's shape check names them
    with pytest.raises(ValueError, match="cos"):
        ha.rope_apply(x, cs, sn, rotary_dim=16)
