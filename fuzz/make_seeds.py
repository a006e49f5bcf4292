#!/usr/bin/env python3
"""make_seeds.py — writes the hand-made seed inputs of fuzz/corpus/<harness>/ (run it after changing how a harness
reads its bytes; the files are kept in the repository). Each seed is spelled out byte by byte in the order the
harness's Reader consumes them (see fuzz_util.h: u8, u32/u64 little endian, range() = lo + byte % span,
edge_*() = an index into the harness's table of edge values when the byte is small)."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def u8(*v):
    return bytes(x & 0xFF for x in v)


def u32(v):
    return struct.pack("<I", v & 0xFFFFFFFF)


def u64(v):
    return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)


def write(harness, name, data):
    d = os.path.join(HERE, "corpus", harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- fuzz_positions: mode, num_segments, null_segments, segments..., null_count, layout, default scale, start,
#      num_tokens selector, null_positions, null_next, then sample indices / generated-token parameters.
def text_seg(n):          # kind byte 0 (text), flag odd -> length = range(0, 40), grid small, scale 0
    return u8(0, 1, n, 0, 1, 1, 1, 0)


def video_seg(t, h, w, scale_byte=0):  # kind byte 2 (video), length flag even -> edge_i32(0) = 0
    return u8(2, 0, 0, 0, t - 1, h - 1, w - 1, scale_byte)


def image_seg(h, w):       # kind byte 1, g odd -> grid_t = 1
    return u8(1, 0, 0, 1, h - 1, w - 1, 0)


def positions_tail(layout, scale_byte=3, start_byte=0):
    # null_count no, layout selector < 230 then range byte, default scale, start, num_tokens = truth, no NULLs
    return u8(0, 0, layout, scale_byte, start_byte, 0, 0, 0) + u32(7) * 8 + u8(1, 3, 1, 4, 0)


write("fuzz_positions", "text_video_text_diagonal", u8(0, 3, 0) + text_seg(5) + video_seg(3, 4, 6) + text_seg(2)
      + positions_tail(2))
write("fuzz_positions", "image_video_mrope", u8(0, 2, 0) + image_seg(5, 3) + video_seg(2, 3, 3) + positions_tail(1))
write("fuzz_positions", "sequential_start_1000", u8(0, 2, 0) + text_seg(9) + video_seg(2, 2, 2) + positions_tail(0, 0, 101))
write("fuzz_positions", "own_scale_075_diagonal", u8(0, 2, 0) + video_seg(4, 3, 5, 70) + text_seg(3)
      + positions_tail(2, 1))
# a video whose grid comes from the edge table: 2^20 x 2^20 x 2^20 frames (token count overflows int32 and int64)
write("fuzz_positions", "huge_grid_overflow", u8(0, 1, 0, 2, 0, 0, 250, 15, 15, 15, 0) + positions_tail(2))
write("fuzz_positions", "nan_default_scale", u8(0, 1, 0) + video_seg(2, 2, 2) + u8(0, 0, 2, 200, 11, 0, 0, 0, 0))
write("fuzz_positions", "vision_grid_helper", u8(7, 1, 1, 1, 2, 1, 28, 1, 56, 1, 3, 5, 0))
write("fuzz_positions", "empty_list", u8(0, 0, 0, 0, 0, 2, 3, 0, 0, 0, 0))


# Mode 6: hope_positions_build_ex. After the start byte: tokens-per-second byte (< 100: 2, < 150: 25), one
# seconds-per-grid byte per segment (< 120: (0.5, 0.0833, 1.5, 2/3, 0.7, 1, 0, 2)[byte % 8]), a NULLs byte.
def timed_tail(layout, rate_byte, interval_bytes, scale_byte=3, start_byte=0):
    return (u8(0, 0, layout, scale_byte, start_byte, rate_byte) + u8(*interval_bytes) + u8(0)
            + u8(0, 0, 0) + u32(7) * 8 + u8(1, 3, 1, 4, 0))


write("fuzz_positions", "timed_qwen25_two_thirds", u8(6, 3, 0) + text_seg(5) + video_seg(4, 2, 3) + text_seg(2)
      + timed_tail(3, 0, [0, 3, 0]))
write("fuzz_positions", "timed_omni_0833_and_image", u8(6, 3, 0) + video_seg(5, 1, 2) + image_seg(2, 2) + video_seg(3, 2, 2)
      + timed_tail(3, 100, [1, 7, 4], start_byte=120))
write("fuzz_positions", "build_ex_diagonal_default_scale_0", u8(6, 2, 0) + video_seg(3, 3, 3) + text_seg(1)
      + timed_tail(2, 0, [0, 0], scale_byte=0))
# Mode 7 with bit 1 of the kind byte: hope_segment_from_vision_grid_ex, raw (8, 28, 56), spatial 2, temporal 2.
write("fuzz_positions", "vision_grid_ex_temporal_merge", u8(7, 3, 2, 1, 8, 1, 28, 1, 56, 1, 3, 5, 0, 1, 3))


# ---- fuzz_scales: policy, num_candidates selector, candidates..., candidates NULL?, fixed scale, seed, budget,
#      start, null params, null chosen, num_segments, null segments, segments (kind, length, grid, scale)...
def scales(policy, ncand_sel, cands, fixed, seed, budget, segs):
    b = u8(0, policy, ncand_sel) + u8(*cands) + u8(0, fixed) + u64(seed) + u8(budget, 1, 0, 0)
    b += u8(len(segs), 0)
    for kind, length, t, h, w, sc in segs:
        b += u8(kind, 1, length, 0, t, h, w, sc)
    return b


segs = [(0, 4, 0, 0, 0, 0), (2, 0, 3, 2, 2, 0), (1, 0, 0, 1, 1, 200), (2, 0, 7, 3, 3, 0), (0, 9, 0, 0, 0, 0)]
write("fuzz_scales", "fixed_125", scales(0, 0, [], 4, 0, 10, segs))
write("fuzz_scales", "random_default_set", scales(1, 0, [], 0, 0x1234567, 10, segs))
write("fuzz_scales", "random_own_candidates", scales(1, 103, [1, 3, 5], 0, 42, 10, segs))
write("fuzz_scales", "fit_budget_40", scales(2, 0, [], 0, 0, 10, segs))
write("fuzz_scales", "fit_nothing_fits", scales(2, 104, [3, 5, 7, 1], 0, 0, 0, segs))


# ---- fuzz_rope: selector 0 (components + cos/sin), 1 (cache), 2 (apply)
def rope_config(kind, hd_byte, a, b, theta_sel):
    # kind selector < 240 then range byte; head_dim = 2*(1 + byte % 40); sections (a, b, rest); theta selector
    return u8(0, kind, hd_byte, 0, a, b, theta_sel)


write("fuzz_rope", "hope_components_cos_sin", u8(0) + rope_config(4, 31, 4, 6, 150) + u8(0, 1, 3) + u8(*range(0, 9 * 3)))
write("fuzz_rope", "mrope_interleaved_large_positions",
      u8(0) + rope_config(2, 63, 20, 22, 150) + u8(0, 1, 5) + (u8(130) + u32(1048575)) * 15)
write("fuzz_rope", "cache_fill_ld", u8(1) + rope_config(4, 15, 2, 3, 150) + u8(1, 20, 0)
      + u8(1, 3, 1, 5, 200, 0, 0) + u8(*range(10, 40)))
write("fuzz_rope", "cache_capacity_2_40", u8(1) + rope_config(0, 63, 0, 0, 150) + u8(0, 10, 0))
write("fuzz_rope", "apply_f16_strided", u8(2, 0, 0, 0, 1, 5, 1, 2, 7, 200, 200, 100, 0) + u64(7))
write("fuzz_rope", "apply_bf16_in_place", u8(2, 0, 0, 1, 1, 7, 1, 3, 15, 0, 0, 10, 0) + u64(9))
# SPEC §8: a kind byte >= 5 (dtype byte >= 3 for apply) asks for pairing, rotary_dim (and model-exact) bytes.
write("fuzz_rope", "interleaved_partial_model_exact",
      u8(0) + rope_config(5 + 1, 63, 4, 8, 150) + u8(1, 70, 1) + u8(0, 1, 5) + (u8(130) + u32(1048575)) * 15)
write("fuzz_rope", "cache_partial_rotate_half", u8(1) + rope_config(5 + 4, 15, 2, 3, 150) + u8(0, 66, 0) + u8(1, 20, 0)
      + u8(1, 3, 1, 5, 200, 0, 0) + u8(*range(10, 40)))
write("fuzz_rope", "apply_f16_interleaved_partial", u8(2, 0, 0, 3, 1, 5, 1, 2, 7, 200, 200, 100, 0) + u64(7) + u8(1, 70))


# ---- fuzz_attention: backend, dtype, batch, kv heads, group, head_dim, scale, causal, 3 strides, cu_q (len bytes
#      + corrupt byte), cu_k, max_q, max_k, options (rot q, rot k, lse, k_rotated; any of the high 4 bits: the
#      SPEC §8 pairing and rotary_dim bytes follow), nulls, rng seed
def attention(dtype, batch, hk, g, hd, causal, lens_q, lens_k, opts, strides=(0, 0, 0), corrupt=0, scale=0,
              rotary=()):
    b = u8(0, 0, dtype, batch, hk, g, hd, scale, causal) + u8(*strides)
    b += u8(*lens_q) + u8(corrupt) + u8(*lens_k) + u8(corrupt) + u8(0, 0, opts) + u8(*rotary) + u8(0) + u64(1)
    return b


write("fuzz_attention", "f32_gqa_causal_rotated", attention(2, 2, 1, 3, 15, 200, [5, 3], [5, 4], 15))
write("fuzz_attention", "f16_strided_lse", attention(0, 1, 0, 1, 31, 0, [37], [33], 5, (160, 170, 180)))
write("fuzz_attention", "bf16_empty_and_masked", attention(1, 3, 2, 0, 7, 200, [0, 5, 2], [3, 0, 1], 7))
write("fuzz_attention", "cu_seqlens_corrupt", attention(2, 2, 0, 0, 3, 0, [2, 2], [2, 2], 0, corrupt=240))
# pairing byte (< 250: its low bit), rotary_dim byte (< 64: 0 = head_dim; < 240: 2 (1 + b % (head_dim / 2)))
write("fuzz_attention", "f32_gqa_interleaved_rotary14_of_32", attention(2, 2, 1, 3, 15, 200, [5, 3], [5, 4], 31,
                                                                       rotary=(1, 70)))
write("fuzz_attention", "bf16_rotate_half_rotary4_of_16_krot", attention(1, 1, 0, 1, 7, 0, [4], [6], 31,
                                                                         rotary=(0, 65)))
write("fuzz_attention", "rotary_dim_edge_refused", attention(2, 1, 0, 0, 3, 0, [2], [2], 19, rotary=(1, 250, 1)))
write("fuzz_attention", "cpu_unfused_refused", attention(2, 1, 0, 0, 3, 0, [1], [1], 0)[:-9] + u8(0, 0, 0, 203) + u64(1))


# ---- fuzz_serving: selector 0 kv_append, 1 decode, 2 merge
def cache_bytes(dtype, pages, page_size, heads, hd_byte):
    return u8(0, dtype, 0, pages, 0, page_size, 0, heads, hd_byte, 0)


write("fuzz_serving", "kv_append_rotated", u8(0, 0) + u64(3) + cache_bytes(2, 4, 4, 2, 3) + u8(1, 3, 0, 0, 1, 0)
      + u8(1, 7, 200, 14))
write("fuzz_serving", "kv_append_interleaved_partial", u8(0, 0) + u64(3) + cache_bytes(2, 4, 4, 2, 3)
      + u8(1, 3, 0, 0, 3, 1, 65, 0) + u8(1, 7, 200, 14))
write("fuzz_serving", "decode_two_seqs", u8(1, 0) + u64(5) + cache_bytes(0, 6, 4, 2, 31) + u8(1, 1, 2, 0, 3, 0, 200, 0, 1, 1, 0)
      + u8(1, 9, 2, 13) + u8(0, 1, 2, 3, 4, 5) + u8(0, 0, 0))
write("fuzz_serving", "decode_interleaved_rotary_partial", u8(1, 0) + u64(5) + cache_bytes(0, 6, 4, 2, 31)
      + u8(1, 1, 2, 0, 3, 0, 200, 0, 3, 1) + u8(1, 70) + u8(0) + u8(1, 9, 2, 13) + u8(0, 1, 2, 3, 4, 5) + u8(0, 0, 0))
write("fuzz_serving", "decode_forced_splits", u8(1, 0) + u64(6) + cache_bytes(2, 5, 3, 1, 7) + u8(0, 1, 2, 0, 3, 0, 0, 153, 1, 0, 0)
      + u8(1, 12) + u8(0, 1, 2, 3) + u8(0, 0, 0))
write("fuzz_serving", "merge_f16_alias", u8(2, 0, 0, 1, 5, 0, 3, 0, 16, 1, 1, 0) + u64(11) + u8(*range(0, 250, 7)))
write("fuzz_serving", "merge_all_neg_inf", u8(2, 0, 2, 1, 3, 0, 2, 0, 8, 0, 1, 0) + u64(12) + u8(210) * 12)
print("seeds written under", os.path.join(HERE, "corpus"))
