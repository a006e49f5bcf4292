"""Frequencies and cos/sin tables (SPEC §3), the rotation (§4), and host cos/sin caches."""
import numpy as np
import pytest

import hope_attn as ha
from reference import components_ref, cos_sin_ref, rotate_ref

KINDS = ["vanilla", "mrope", "mrope_interleaved", "videorope", "hope"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("head_dim,sections", [(128, (16, 24, 24)), (64, (8, 12, 12)), (16, (2, 3, 3))])
def test_components_match_table(kind, head_dim, sections):
    got = ha.rope_components(kind, head_dim=head_dim, sections=sections)
    assert got.tolist() == components_ref(kind, head_dim, sections)


def test_default_sections_are_qwen2vl():
    assert ha.default_sections(128) == (16, 24, 24)
    assert sum(ha.default_sections(80)) == 40


@pytest.mark.parametrize("kind", KINDS)
def test_cos_sin_matches_float64_on_large_positions(kind):
    rng = np.random.default_rng(1)
    n = 257
    pos = np.float32(rng.uniform(0, 2**20, size=(3, n)))
    pos[:, :3] = [[0, 1, 131071], [0, 2, 131071], [0, 3, 2**20]]
    cos, sin = ha.cos_sin(kind, pos, head_dim=128, sections=(16, 24, 24), theta=1e6)
    assert cos.shape == sin.shape == (n, 64) and cos.dtype == sin.dtype == np.float32
    rc, rs = cos_sin_ref(kind, 128, (16, 24, 24), 1e6, pos)
    assert np.max(np.abs(cos - rc)) <= 2e-6
    assert np.max(np.abs(sin - rs)) <= 2e-6


def test_cos_sin_known_values():
    pos = np.float32([[0, 1, 2], [0, 10, 20], [0, 100, 200]])
    cos, sin = ha.cos_sin(ha.RopeConfig("mrope", 8, (2, 1, 1), 10000.0), pos)
    # pair 0 (t, inv 1), pair 1 (t, inv 0.1), pair 2 (h, inv 0.01), pair 3 (w, inv 0.001)
    want = np.array([[0, 0, 0, 0], [1, 0.1, 0.1, 0.1], [2, 0.2, 0.2, 0.2]])
    np.testing.assert_allclose(cos, np.cos(want), atol=2e-7)
    np.testing.assert_allclose(sin, np.sin(want), atol=2e-7)


def test_hope_zero_frequency_pairs():
    pos = np.float32(np.random.default_rng(2).uniform(0, 1e5, size=(3, 31)))
    cos, sin = ha.cos_sin("hope", pos, head_dim=128, sections=(16, 24, 24))
    np.testing.assert_array_equal(cos[:, 48:], 1.0)
    np.testing.assert_array_equal(sin[:, 48:], 0.0)


def test_one_dimensional_positions():
    p = np.arange(5, dtype=np.float32)
    a = ha.cos_sin("vanilla", p, head_dim=16)
    b = ha.cos_sin("vanilla", np.stack([p, p, p]), head_dim=16)
    np.testing.assert_array_equal(a[0], b[0])


def _tables(n, d, seed=0):
    pos = np.float32(np.random.default_rng(seed).uniform(0, 2e5, size=(3, n)))
    return ha.cos_sin("hope", pos, head_dim=d, sections=ha.default_sections(d))


@pytest.mark.parametrize("tokens,heads,d", [(1, 1, 8), (7, 3, 64), (129, 4, 128)])
def test_rope_apply_float32(tokens, heads, d):
    rng = np.random.default_rng(tokens)
    x = np.float32(rng.standard_normal((tokens, heads, d)))
    cos, sin = _tables(tokens, d)
    out = ha.rope_apply(x, cos, sin)
    assert out.shape == x.shape and out.dtype == np.float32
    assert np.max(np.abs(out - rotate_ref(x, cos, sin))) <= 1e-5


def test_rope_apply_in_place_and_two_dimensional():
    rng = np.random.default_rng(3)
    x = np.float32(rng.standard_normal((9, 32)))
    cos, sin = _tables(9, 32)
    want = rotate_ref(x[:, None, :], cos, sin)[:, 0]
    y = x.copy()
    r = ha.rope_apply(y, cos, sin, out=y)
    assert r is y
    assert np.max(np.abs(y - want)) <= 1e-5


def test_rope_apply_strided_rows_of_a_fused_qkv_buffer():
    rng = np.random.default_rng(4)
    tokens, hq, hk, d = 11, 4, 2, 16
    qkv = np.float32(rng.standard_normal((tokens, (hq + 2 * hk) * d)))
    qk = qkv[:, : (hq + hk) * d].reshape(tokens, hq + hk, d)  # a view: rows are (hq + 2hk) * d apart
    assert not qk.flags.c_contiguous
    cos, sin = _tables(tokens, d)
    out = ha.rope_apply(qk, cos, sin)
    assert np.max(np.abs(out - rotate_ref(qk, cos, sin))) <= 1e-5
    before_v = qkv[:, (hq + hk) * d:].copy()
    ha.rope_apply(qk, cos, sin, out=qk)  # in place inside the fused buffer
    assert np.max(np.abs(qk - out)) == 0
    np.testing.assert_array_equal(qkv[:, (hq + hk) * d:], before_v)  # v untouched


def test_rope_apply_float16():
    rng = np.random.default_rng(5)
    x = np.float16(rng.standard_normal((33, 2, 64)))
    cos, sin = _tables(33, 64)
    out = ha.rope_apply(x, cos, sin)
    assert out.dtype == np.float16
    ref = rotate_ref(x.astype(np.float64), cos, sin)
    # one float16 rounding of the float32 result
    assert np.max(np.abs(out.astype(np.float64) - ref) / np.maximum(np.abs(ref), 1.0)) <= 2 ** -10


def _bf16_bits(a):
    b = np.asarray(a, np.float32).view(np.uint32)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)


def _bf16_float(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def test_rope_apply_bfloat16_bits_as_uint16():
    rng = np.random.default_rng(6)
    xb = _bf16_bits(rng.standard_normal((17, 3, 32)))
    cos, sin = _tables(17, 32)
    out = ha.rope_apply(xb, cos, sin, dtype="bfloat16")
    assert out.dtype == np.uint16 or out.dtype == ha.BFLOAT16_NP
    ref = rotate_ref(_bf16_float(xb), cos, sin)
    got = _bf16_float(np.asarray(out).view(np.uint16))
    assert np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1.0)) <= 2 ** -7


def test_rope_apply_bfloat16_ml_dtypes_when_installed():
    if ha.BFLOAT16_NP is None:  # optional dependency (scripts/setup.sh installs it); the uint16 path runs anyway
        with pytest.raises(ValueError):
            ha.rope_apply(np.zeros((5, 2, 16), np.uint16), *_tables(5, 16))  # uint16 without dtype=
        return
    x = np.random.default_rng(7).standard_normal((5, 2, 16)).astype(ha.BFLOAT16_NP)
    cos, sin = _tables(5, 16)
    out = ha.rope_apply(x, cos, sin)
    assert out.dtype == x.dtype
    ref = rotate_ref(x.astype(np.float64), cos, sin)
    assert np.max(np.abs(out.astype(np.float64) - ref) / np.maximum(np.abs(ref), 1.0)) <= 2 ** -7


def test_rope_apply_errors():
    x = np.zeros((4, 2, 8), np.float32)
    cos, sin = _tables(4, 8)
    with pytest.raises(ValueError):
        ha.rope_apply(x, cos[:3], sin[:3])  # too few rows
    with pytest.raises(ValueError):
        ha.rope_apply(np.zeros((4, 2, 8), np.float64), cos, sin)  # float64 is not a library dtype
    with pytest.raises(ha.HopeError) as e:
        ha.rope_apply(np.zeros((4, 2, 7), np.float32), np.zeros((4, 3), np.float32), np.zeros((4, 3), np.float32))
    assert e.value.status == ha.Status.ERROR_INVALID_VALUE and e.value.message


def test_host_rope_cache_matches_cos_sin():
    cfg = ha.RopeConfig("hope", 64, (8, 12, 12), 1e6)
    pos, _ = ha.positions([ha.text(5), ha.video(3, 4, 4, 0.75), ha.text(4)], "diagonal", start=123456.0)
    n = pos.shape[1]
    with ha.RopeCache(cfg, n + 10, memory="host") as cache:
        assert cache.capacity == n + 10 and cache.memory == ha.Memory.HOST
        cache.fill(pos[:, :20], offset=0)
        cache.fill(pos[:, 20:], offset=20)
        cos, sin = ha.cos_sin(cfg, pos)
        np.testing.assert_array_equal(cache.cos[:n], cos)
        np.testing.assert_array_equal(cache.sin[:n], sin)
        with pytest.raises(ha.HopeError) as e:
            cache.fill(pos, offset=11)  # past the capacity
        assert e.value.status == ha.Status.ERROR_INVALID_VALUE and e.value.message
    keep = ha.RopeCache(cfg, 4).cos  # the view keeps its cache alive
    assert keep.shape == (4, 32)


def test_rope_apply_broadcast_and_reversed_inputs_are_copied_not_misread():
    rng = np.random.default_rng(8)
    row = np.float32(rng.standard_normal((1, 2, 16)))
    x = np.broadcast_to(row, (6, 2, 16))  # token stride 0
    cos, sin = _tables(6, 16)
    out = ha.rope_apply(x, cos, sin)
    assert np.max(np.abs(out - rotate_ref(x, cos, sin))) <= 1e-5
    y = np.float32(rng.standard_normal((6, 2, 16)))[::-1]  # negative token stride
    out = ha.rope_apply(y, cos, sin)
    assert np.max(np.abs(out - rotate_ref(y, cos, sin))) <= 1e-5
