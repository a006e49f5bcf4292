"""SPEC §8 model variants through the raw ctypes layer (hope_attn._lib): timed M-RoPE positions against numpy
float32 arithmetic (which rounds each product as torch's float32 tensors do), the temporal merge, model-exact
frequencies against numpy's scalar float32 power, and interleaved / partial rotation against numpy in float64."""
import ctypes

import numpy as np
import pytest

from hope_attn import _lib
from reference import timed_positions_ref as _numpy_timed

lib = _lib.lib
SUCCESS, INVALID = 0, 1


def _fp(a):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def _segments(specs):
    arr = (_lib.hope_segment_t * max(len(specs), 1))()
    for i, (kind, length, t, h, w) in enumerate(specs):
        arr[i].kind, arr[i].length, arr[i].grid_t, arr[i].grid_h, arr[i].grid_w = kind, length, t, h, w
    return arr


def _build_timed(specs, seconds, rate, start=0.0):
    segs = _segments(specs)
    n = ctypes.c_int64()
    assert lib.hope_positions_count(segs, len(specs), ctypes.byref(n)) == SUCCESS
    pos = np.full(3 * n.value, np.nan, dtype=np.float32)
    sec = np.asarray(seconds, dtype=np.float32)
    p = _lib.hope_positions_params_t(layout=3, default_temporal_scale=0.0, start=start, seconds_per_grid=_fp(sec),
                                     tokens_per_second=rate)
    nxt = ctypes.c_float()
    st = lib.hope_positions_build_ex(ctypes.byref(p), segs, len(specs), _fp(pos), n.value, ctypes.byref(nxt))
    assert st == SUCCESS, lib.hope_last_error()
    return pos.reshape(3, n.value), nxt.value


@pytest.mark.parametrize("rate", [2.0, 25.0, 10.0, 3.3])
def test_timed_positions_match_numpy_float32(rate):
    rng = np.random.default_rng(int(rate * 10))
    for _ in range(40):
        specs, seconds = [], []
        for _ in range(rng.integers(1, 6)):
            kind = int(rng.integers(0, 3))
            if kind == 0:
                specs.append((0, int(rng.integers(0, 5)), 0, 0, 0))
            else:
                t = 1 if kind == 1 else int(rng.integers(1, 30))
                specs.append((kind, 0, t, int(rng.integers(1, 5)), int(rng.integers(1, 5))))
            seconds.append(float(rng.choice([0.5, 0.0833, 1.5, 2 / 3, 0.7, rng.uniform(0, 3)])))
        start = float(rng.integers(0, 1000))
        got, nxt = _build_timed(specs, seconds, rate, start)
        want, want_next = _numpy_timed(specs, seconds, rate, start)
        np.testing.assert_array_equal(got, want)
        assert nxt == want_next


def test_timed_float32_is_not_double():
    # 0.7 s per grid at 10 tokens/s: float32 gives frame 3 -> 21 (double would truncate 20.999... to 20).
    got, nxt = _build_timed([(2, 0, 10, 1, 1)], [0.7], 10.0)
    assert list(got[0]) == [0, 7, 14, 21, 28, 35, 42, 49, 56, 62]
    assert nxt == 63


def test_timed_bad_input_is_refused_with_a_message():
    segs = _segments([(2, 0, 2, 1, 1)])
    pos = np.zeros(6, dtype=np.float32)
    for seconds, rate, needle in [([-1.0], 2.0, b"seconds_per_grid[0]"), ([np.nan], 2.0, b"seconds_per_grid[0]"),
                                  ([0.5], 0.0, b"tokens_per_second")]:
        sec = np.asarray(seconds, dtype=np.float32)
        p = _lib.hope_positions_params_t(layout=3, seconds_per_grid=_fp(sec), tokens_per_second=rate)
        assert lib.hope_positions_build_ex(ctypes.byref(p), segs, 1, _fp(pos), 2, None) == INVALID
        assert needle in lib.hope_last_error()


def test_temporal_merge():
    seg = _lib.hope_segment_t()
    assert lib.hope_segment_from_vision_grid_ex(2, 8, 28, 42, 2, 2, 0.0, ctypes.byref(seg)) == SUCCESS
    assert (seg.grid_t, seg.grid_h, seg.grid_w) == (4, 14, 21)
    assert lib.hope_segment_from_vision_grid_ex(2, 7, 28, 42, 2, 2, 0.0, ctypes.byref(seg)) == INVALID
    assert b"temporal_merge_size" in lib.hope_last_error()


def _config(kind, head_dim, sections, theta, rotary_dim=0, pairing=0, model_exact=0):
    c = _lib.hope_rope_config_t(kind=kind, head_dim=head_dim, theta=theta, pairing=pairing, rotary_dim=rotary_dim,
                                model_exact_freqs=model_exact)
    c.sections[:] = sections
    return c


def test_model_exact_frequencies_match_numpy_float32():
    # PyTorch model code: 1.0 / (theta ** (arange(0, r, 2).float() / r)) in float32. numpy's scalar float32 power
    # (the C library's powf) is correctly rounded for these configs, like the library's.
    for theta, r in [(1e6, 128), (1e4, 64), (5e5, 128), (5e6, 128)]:
        half = r // 2
        e = np.arange(0, r, 2, dtype=np.float32) / np.float32(r)
        inv = np.float32(1) / np.array([np.float32(theta) ** x for x in e], dtype=np.float32)
        pos = np.full(3, 999_983.0, dtype=np.float32)
        cos = np.zeros(half, dtype=np.float32)
        sin = np.zeros(half, dtype=np.float32)
        c = _config(0, r, [0, 0, 0], theta, model_exact=1)
        assert lib.hope_rope_cos_sin(ctypes.byref(c), _fp(pos), 1, _fp(cos), _fp(sin)) == SUCCESS
        angle = np.float64(pos[0]) * inv.astype(np.float64)
        np.testing.assert_allclose(cos, np.cos(angle), atol=2e-6, rtol=0)
        np.testing.assert_allclose(sin, np.sin(angle), atol=2e-6, rtol=0)


@pytest.mark.parametrize("pairing", [0, 1])
def test_rope_apply_interleaved_and_partial_rotary(pairing):
    # GLM-4.1V's rotary layout: head_dim 128, rotary_dim 64, M-RoPE sections (8, 12, 12), theta 1e4.
    d, r, heads, tokens = 128, 64, 3, 17
    rng = np.random.default_rng(7 + pairing)
    c = _config(1, d, [8, 12, 12], 1e4, rotary_dim=r, pairing=pairing)
    pos = rng.integers(0, 200_000, size=3 * tokens).astype(np.float32)
    cos = np.zeros(tokens * r // 2, dtype=np.float32)
    sin = np.zeros_like(cos)
    assert lib.hope_rope_cos_sin(ctypes.byref(c), _fp(pos), tokens, _fp(cos), _fp(sin)) == SUCCESS
    x = rng.standard_normal((tokens, heads, d)).astype(np.float32)
    out = np.full_like(x, np.nan)
    p = _lib.hope_rope_apply_params_t(backend=1, dtype=2, num_tokens=tokens, num_heads=heads, head_dim=d,
                                      x=x.ctypes.data, out=out.ctypes.data, cos=cos.ctypes.data, sin=sin.ctypes.data,
                                      rope_pairing=pairing, rotary_dim=r)
    assert lib.hope_rope_apply(ctypes.byref(p), None) == SUCCESS, lib.hope_last_error()
    cs = cos.reshape(tokens, 1, r // 2).astype(np.float64)
    sn = sin.reshape(tokens, 1, r // 2).astype(np.float64)
    xr = x[..., :r].astype(np.float64)
    if pairing == 1:  # the models' rotate_half for interleaved pairs: stack(-x[1::2], x[0::2])
        a, b = xr[..., 0::2], xr[..., 1::2]
        want = np.stack([a * cs - b * sn, b * cs + a * sn], axis=-1).reshape(xr.shape)
    else:
        a, b = xr[..., : r // 2], xr[..., r // 2:]
        want = np.concatenate([a * cs - b * sn, b * cs + a * sn], axis=-1)
    np.testing.assert_allclose(out[..., :r], want, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(out[..., r:], x[..., r:])
