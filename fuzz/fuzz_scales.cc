// fuzz_scales.cc — libFuzzer harness for hope_temporal_scales_select (SPEC §2): the fixed, random and fit
// policies with arbitrary candidate sets (NaN, infinities, zeros, negatives, NULL), seeds, budgets and segment
// lists (invalid kinds, grids, NaN scales).
// Checks: a failure has a message and leaves the segments untouched; a success wrote exactly the policy's scale
// into every vision segment and nothing into text segments: fixed_scale; the documented splitmix64 draw per
// vision segment; among the candidates hope_positions_build accepts (every diagonal position a finite float32),
// the largest whose diagonal next_position (as float32) is <= position_budget, else the smallest; none such is
// INVALID_VALUE. For short sequences the fit result is cross-checked against hope_positions_build.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "fuzz_util.h"

using namespace hope_fuzz;

namespace {

bool is_vision(const hope_segment_t &s) { return s.kind == HOPE_SEGMENT_IMAGE || s.kind == HOPE_SEGMENT_VIDEO; }

bool segments_valid(const hope_segment_t *s, int32_t n, int64_t *total_out) {
  __int128 total = 0;
  for (int32_t i = 0; i < n; ++i) {
    if (s[i].kind == HOPE_SEGMENT_TEXT) {
      if (s[i].length < 0) return false;
      total += s[i].length;
    } else if (is_vision(s[i])) {
      if (s[i].grid_t < 1 || s[i].grid_h < 1 || s[i].grid_w < 1) return false;
      if (s[i].kind == HOPE_SEGMENT_IMAGE && s[i].grid_t != 1) return false;
      if (!std::isfinite(s[i].temporal_scale)) return false;
      total += static_cast<__int128>(s[i].grid_t) * s[i].grid_h * s[i].grid_w;
    } else {
      return false;
    }
  }
  if (total > INT32_MAX) return false;
  *total_out = static_cast<int64_t>(total);
  return true;
}

uint64_t splitmix64(uint64_t *state) {  // as documented in hope_attn.h
  *state += 0x9E3779B97F4A7C15ull;
  uint64_t z = *state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Diagonal next_position with every vision segment at scale c (SPEC §1), in double, then as float32.
float diagonal_next(const hope_segment_t *s, int32_t n, double c, float start) {
  double p = 0.0;  // offset from start ("everything is shifted by it")
  for (int32_t i = 0; i < n; ++i) {
    if (s[i].kind == HOPE_SEGMENT_TEXT) p += s[i].length;
    else p = p + static_cast<double>(s[i].grid_t - 1) * c + 1.0;
  }
  return static_cast<float>(static_cast<double>(start) + p);
}

// Whether every diagonal position (SPEC §1: t = base + f c, h = t + y - floor((H-1)/2), w likewise) and the
// next_position are finite float32 with every vision segment at scale c: the candidates FIT may choose.
bool diagonal_in_range(const hope_segment_t *s, int32_t n, double c, float start) {
  const double st = static_cast<double>(start);
  auto finite = [st](double offset) { return std::isfinite(static_cast<float>(st + offset)); };
  double p = 0.0;
  for (int32_t i = 0; i < n; ++i) {
    if (s[i].kind == HOPE_SEGMENT_TEXT) {
      if (s[i].length > 0 && !(finite(p) && finite(p + (s[i].length - 1)))) return false;
      p += s[i].length;
      continue;
    }
    const int32_t ch = (s[i].grid_h - 1) / 2, cw = (s[i].grid_w - 1) / 2;
    const double t_last = p + static_cast<double>(s[i].grid_t - 1) * c;
    const double lowest = p - std::max(ch, cw);
    const double highest = t_last + std::max(s[i].grid_h - 1 - ch, s[i].grid_w - 1 - cw);
    if (!(finite(lowest) && finite(highest))) return false;
    p = t_last + 1.0;
  }
  return finite(p);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Reader in(data, size);
  hope_scale_params_t params;
  std::memset(&params, 0, sizeof params);
  params.policy = in.u8() < 240 ? in.range(0, 2) : in.edge_i32();
  const uint8_t nc = in.u8();
  params.num_candidates = nc < 100 ? 0 : nc < 240 ? nc % 7 : in.edge_i32();
  const int32_t stored_candidates = params.num_candidates > 0 ? std::min(params.num_candidates, 16) : 0;
  if (params.num_candidates > 16) params.num_candidates = 16;
  Buffer cand(static_cast<size_t>(stored_candidates) * sizeof(float));
  for (int32_t c = 0; c < stored_candidates; ++c) {
    const uint8_t v = in.u8();
    cand.as<float>()[c] = v < 200 ? 0.25f * static_cast<float>(1 + v % 8) : in.edge_float();
  }
  params.candidates = in.u8() == 17 ? nullptr : cand.as<float>();
  const uint8_t fs = in.u8();
  params.fixed_scale = fs < 200 ? 0.25f * static_cast<float>(1 + fs % 8) : in.edge_float();
  params.seed = in.u64();
  const uint8_t pb = in.u8();
  params.position_budget = pb < 200 ? static_cast<double>(pb) * 4.0 : in.edge_double();
  const uint8_t st = in.u8();
  params.start = st < 200 ? static_cast<float>(st % 16) : in.edge_float();
  const bool null_params = in.u8() == 19;
  const bool null_chosen = in.u8() == 23;

  int32_t num = in.size_i32(6);
  if (num > 32) num = 32;
  const bool null_segments = in.u8() == 29;
  const int32_t stored = num < 0 ? 1 : num;
  Buffer seg_buf(static_cast<size_t>(stored) * sizeof(hope_segment_t));
  hope_segment_t *seg = seg_buf.as<hope_segment_t>();
  for (int32_t i = 0; i < stored; ++i) {
    const uint8_t k = in.u8();
    seg[i].kind = k < 245 ? k % 3 : in.edge_i32();
    seg[i].length = in.flag() ? in.range(0, 30) : in.edge_i32();
    if (in.u8() < 220) {
      seg[i].grid_t = seg[i].kind == HOPE_SEGMENT_IMAGE ? 1 : in.range(1, 9);
      seg[i].grid_h = in.range(1, 6);
      seg[i].grid_w = in.range(1, 6);
    } else {
      seg[i].grid_t = in.edge_i32();
      seg[i].grid_h = in.edge_i32();
      seg[i].grid_w = in.edge_i32();
    }
    const uint8_t sc = in.u8();
    seg[i].temporal_scale = sc < 128 ? 0.0f : sc < 250 ? 0.5f : in.edge_float();
  }
  const std::vector<uint8_t> before = seg_buf.snapshot();

  float chosen = -99.0f;
  const hope_status_t s = hope_temporal_scales_select(null_params ? nullptr : &params,
                                                      null_segments ? nullptr : seg, num,
                                                      null_chosen ? nullptr : &chosen);

  // What the contract requires.
  static const float kDefault[] = HOPE_DEFAULT_SCALE_CANDIDATES;
  const float *cands = params.num_candidates > 0 ? params.candidates : kDefault;
  const int32_t ncand = params.num_candidates > 0 ? params.num_candidates : 5;
  bool candidates_ok = params.num_candidates >= 0 && cands != nullptr;
  for (int32_t c = 0; candidates_ok && c < ncand; ++c)
    candidates_ok = std::isfinite(cands[c]) && cands[c] > 0.0f;
  int64_t total = 0;
  const bool segs_ok = num >= 0 && (num == 0 || !null_segments) && segments_valid(seg, std::max(num, 0), &total);
  const int32_t policy = params.policy;
  const bool policy_ok = policy >= HOPE_SCALE_FIXED && policy <= HOPE_SCALE_FIT;
  bool must_fail = null_params || !policy_ok || !segs_ok || params.num_candidates < 0;
  bool may_fail = false;
  if (!must_fail) {
    if (policy == HOPE_SCALE_FIXED) {
      must_fail = !(std::isfinite(params.fixed_scale) && params.fixed_scale > 0.0f);
      may_fail = !candidates_ok;  // unused by FIXED, but the header asks every candidate to be valid
    } else {
      must_fail = !candidates_ok;
      if (policy == HOPE_SCALE_FIT) {
        may_fail = std::isnan(params.position_budget) || !std::isfinite(params.start);
        bool any_buildable = false;
        for (int32_t c = 0; !must_fail && c < ncand; ++c)
          any_buildable = any_buildable || diagonal_in_range(seg, num, cands[c], params.start);
        must_fail = must_fail || (!may_fail && !any_buildable);
      }
    }
  }
  if (must_fail || (may_fail && s != HOPE_SUCCESS)) {
    expect_failure_message(s, "hope_temporal_scales_select(invalid)");
    FUZZ_CHECK(seg_buf.equals(before), "hope_temporal_scales_select changed the segments on failure");
    if (!null_chosen) FUZZ_CHECK(chosen == -99.0f, "hope_temporal_scales_select wrote *chosen on failure");
    return 0;
  }
  FUZZ_CHECK(s == HOPE_SUCCESS, "hope_temporal_scales_select(policy %d) failed on a valid call", policy);

  // The expected scale of every vision segment.
  const hope_segment_t *orig = reinterpret_cast<const hope_segment_t *>(before.data());
  std::vector<float> expect(static_cast<size_t>(num), 0.0f);
  float expect_chosen = 0.0f;
  if (policy == HOPE_SCALE_FIXED) {
    std::fill(expect.begin(), expect.end(), params.fixed_scale);
    expect_chosen = params.fixed_scale;
  } else if (policy == HOPE_SCALE_RANDOM) {
    uint64_t state = params.seed;
    bool first = true;
    for (int32_t i = 0; i < num; ++i) {
      if (!is_vision(orig[i])) continue;
      expect[i] = cands[splitmix64(&state) % static_cast<uint64_t>(ncand)];
      if (first) expect_chosen = expect[i];
      first = false;
    }
  } else {
    bool found = false, buildable = false;
    float best = 0.0f, smallest = 0.0f;
    for (int32_t c = 0; c < ncand; ++c) {
      if (!diagonal_in_range(orig, num, cands[c], params.start)) continue;
      smallest = buildable ? std::min(smallest, cands[c]) : cands[c];
      buildable = true;
      const float next = diagonal_next(orig, num, cands[c], params.start);
      if (static_cast<double>(next) <= params.position_budget && (!found || cands[c] > best)) {
        best = cands[c];
        found = true;
      }
    }
    expect_chosen = found ? best : smallest;
    std::fill(expect.begin(), expect.end(), expect_chosen);
  }
  for (int32_t i = 0; i < num; ++i) {
    if (is_vision(orig[i])) {
      FUZZ_CHECK(seg[i].temporal_scale == expect[i], "policy %d: segment %d got scale %g, expected %g", policy, i,
                 (double)seg[i].temporal_scale, (double)expect[i]);
      hope_segment_t a = seg[i], b = orig[i];
      a.temporal_scale = b.temporal_scale = 0.0f;
      FUZZ_CHECK(std::memcmp(&a, &b, sizeof a) == 0, "policy %d: segment %d changed beyond its scale", policy, i);
    } else {
      FUZZ_CHECK(std::memcmp(&seg[i], &orig[i], sizeof seg[i]) == 0, "policy %d: text segment %d changed", policy, i);
    }
  }
  if (!null_chosen)
    FUZZ_CHECK(chosen == expect_chosen, "policy %d: *chosen %g, expected %g", policy, (double)chosen,
               (double)expect_chosen);

  // Fit: the positions built with the chosen scale end where the selection said (short sequences only).
  if (policy == HOPE_SCALE_FIT && total <= 4096 && std::isfinite(params.start)) {
    Buffer pos(static_cast<size_t>(3 * total) * sizeof(float));
    float next = 0.0f;
    const hope_status_t b = hope_positions_build(seg, num, HOPE_LAYOUT_DIAGONAL, 1.0f, params.start,
                                                 pos.as<float>(), total, &next);
    check_status_sane(b, "hope_positions_build after FIT");
    if (b == HOPE_SUCCESS) {
      const float want = diagonal_next(orig, num, expect_chosen, params.start);
      FUZZ_CHECK(next == want, "FIT: hope_positions_build next_position %.9g, selection computed %.9g",
                 (double)next, (double)want);
    }
  }
  return 0;
}
