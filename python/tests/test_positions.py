"""Positions (SPEC §1) against the pure-Python reference, bit-equal, and temporal scale selection (§2)."""
import numpy as np
import pytest

import hope_attn as ha
from reference import f32, positions_ref, splitmix64_draws

# System text, a video with its own scale, an image, a video on the default scale, text, an empty text run,
# a single-token image, and closing text: odd grids (even and odd H, W) to exercise the centring.
MIXED = [("text", 5), ("video", 3, 4, 5, 0.75), ("image", 3, 2, 0.0), ("text", 2), ("video", 2, 1, 3, 0.0),
         ("text", 0), ("image", 1, 1, 0.0), ("text", 3)]


def _to_segments(tuples):
    out = []
    for s in tuples:
        if s[0] == "text":
            out.append(ha.text(s[1]))
        elif s[0] == "image":
            out.append(ha.image(s[1], s[2], s[3]))
        else:
            out.append(ha.video(s[1], s[2], s[3], s[4]))
    return out


@pytest.mark.parametrize("layout", ["sequential", "mrope", "diagonal"])
@pytest.mark.parametrize("start,default_scale", [(0.0, 1.0), (0.0, 0.5), (17.0, 1.25), (100000.5, 1.5)])
def test_positions_match_reference(layout, start, default_scale):
    pos, nxt = ha.positions(_to_segments(MIXED), layout, default_scale=default_scale, start=start)
    rows, want_next = positions_ref(MIXED, layout, default_scale, start)
    assert pos.dtype == np.float32 and pos.shape == (3, len(rows[0]))
    np.testing.assert_array_equal(pos, np.array(rows, dtype=np.float32))
    assert nxt == want_next


def test_diagonal_values_by_hand():
    # video 2 frames of 3x3 at scale 0.5 from base 2: t = 2 + 0.5 f, h = t + y - 1, w = t + x - 1
    pos, nxt = ha.positions([ha.text(2), ha.video(2, 3, 3, 0.5), ha.text(1)], "diagonal")
    np.testing.assert_array_equal(pos[:, :2], [[0, 1], [0, 1], [0, 1]])
    np.testing.assert_array_equal(pos[:, 2], [2, 1, 1])        # f=0, y=0, x=0
    np.testing.assert_array_equal(pos[:, 2 + 9 + 8], [2.5, 3.5, 3.5])  # f=1, y=2, x=2
    assert pos[0, -1] == 3.5 and nxt == 4.5  # text resumes at 1 + max t = 3.5


def test_mrope_text_resumes_after_largest_row():
    pos, nxt = ha.positions([ha.text(1), ha.image(2, 6), ha.text(1)], "mrope")
    assert pos[2, 1 + 11] == 1 + 5 and pos[0, -1] == 7 and nxt == 8


def test_segment_forms_are_equivalent():
    tuples = [("text", 3), ("video", 2, 2, 3, 0.75), ("image", 2, 2), ("text", 1)]
    dicts = [{"kind": "text", "length": 3}, {"kind": "video", "t": 2, "h": 2, "w": 3, "scale": 0.75},
             {"kind": "image", "h": 2, "w": 2}, 1]
    segs = [ha.text(3), ha.video(2, 2, 3, scale=0.75), ha.image(2, 2), ha.text(1)]
    a = ha.positions(tuples, "diagonal")
    b = ha.positions(dicts, "diagonal")
    c = ha.positions(segs, "diagonal")
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[0], c[0])
    assert a[1] == b[1] == c[1]
    assert ha.num_tokens(segs) == 3 + 12 + 4 + 1


def test_empty_sequence():
    pos, nxt = ha.positions([], "diagonal", start=7.0)
    assert pos.shape == (3, 0) and nxt == 7.0


def test_generated_positions_continue_from_next_position():
    _, nxt = ha.positions([ha.text(4), ha.video(3, 2, 2, 0.75)], "diagonal")
    gen = ha.positions_generated(nxt, 5, 3)
    assert gen.shape == (3, 3)
    for r in range(3):
        np.testing.assert_array_equal(gen[r], np.float32([nxt + 5, nxt + 6, nxt + 7]))


def test_segment_from_vision_grid():
    s = ha.segment_from_vision_grid("video", 4, 36, 64, 2, 0.75)
    assert (s.kind, s.grid_t, s.grid_h, s.grid_w, s.temporal_scale) == (ha.SegmentKind.VIDEO, 4, 18, 32, 0.75)
    with pytest.raises(ha.HopeError) as e:
        ha.segment_from_vision_grid("image", 1, 35, 64, 2)
    assert e.value.status == ha.Status.ERROR_INVALID_VALUE and e.value.message


# ---- temporal scale selection ------------------------------------------------------------------------------

SEGS = [ha.text(10), ha.video(8, 4, 4), ha.text(3), ha.image(2, 2), ha.video(5, 2, 2), ha.text(2)]


def test_fixed_scale():
    segs, chosen = ha.select_temporal_scales(SEGS, "fixed", fixed=0.75)
    assert chosen == 0.75
    for s in segs:
        assert s.temporal_scale == (0.75 if s.kind != ha.SegmentKind.TEXT else 0.0)


def test_random_is_deterministic_splitmix64():
    cands = ha.DEFAULT_SCALE_CANDIDATES
    a, ca = ha.select_temporal_scales(SEGS, "random", seed=12345)
    b, cb = ha.select_temporal_scales(SEGS, "random", seed=12345)
    assert [s.temporal_scale for s in a] == [s.temporal_scale for s in b] and ca == cb
    draws = splitmix64_draws(12345, 3, len(cands))
    got = [s.temporal_scale for s in a if s.kind != ha.SegmentKind.TEXT]
    assert got == [f32(cands[d]) for d in draws]
    assert ca == got[0]
    # a seed above 2^63 and custom candidates
    custom = [0.25, 2.0, 3.0]
    c, _ = ha.select_temporal_scales(SEGS, "random", candidates=custom, seed=2**64 - 5)
    want = [f32(custom[d]) for d in splitmix64_draws(2**64 - 5, 3, 3)]
    assert [s.temporal_scale for s in c if s.kind != ha.SegmentKind.TEXT] == want


@pytest.mark.parametrize("budget", [1.0, 30.0, 35.0, 40.0, 1e9])
@pytest.mark.parametrize("start", [0.0, 5.0])
def test_fit_chooses_largest_fitting_candidate(budget, start):
    segs, chosen = ha.select_temporal_scales(SEGS, "fit", budget=budget, start=start)
    fits = [c for c in ha.DEFAULT_SCALE_CANDIDATES
            if ha.positions(SEGS, "diagonal", default_scale=c, start=start)[1] <= budget]
    want = max(fits) if fits else min(ha.DEFAULT_SCALE_CANDIDATES)
    assert chosen == want
    assert all(s.temporal_scale == want for s in segs if s.kind != ha.SegmentKind.TEXT)


def test_scale_selection_errors():
    with pytest.raises(ha.HopeError) as e:
        ha.select_temporal_scales(SEGS, "fixed", fixed=-1.0)
    assert e.value.status == ha.Status.ERROR_INVALID_VALUE and e.value.message
    with pytest.raises(ha.HopeError):
        ha.select_temporal_scales(SEGS, "random", candidates=[1.0, float("nan")])
    with pytest.raises(ValueError):
        ha.select_temporal_scales(SEGS, "fit")  # no budget
