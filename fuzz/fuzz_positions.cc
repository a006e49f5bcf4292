// fuzz_positions.cc — libFuzzer harness for hope_positions_count, hope_positions_build, hope_positions_build_ex
// (every layout, the timed M-RoPE of SPEC §8 included), hope_positions_generated and
// hope_segment_from_vision_grid(_ex) (SPEC §1, §8).
//
// Inputs: arbitrary segment arrays (unknown kinds, negative lengths, grids up to INT32_MAX whose token count
// overflows int32 and int64), layouts, default scales and starts including NaN, infinities, negatives and
// denormals, seconds per grid and tokens per second (fractional, zero, negative, NaN, huge), temporal merge sizes,
// NULL pointers, and num_tokens that disagree with the count.
// Checks: count equals the count recomputed here (or the segments are invalid per SPEC §1 and the call fails);
// build either fails with a message, or its values at the first, last, a few fuzzer-chosen and (for short
// sequences) all tokens, and next_position, equal the SPEC formulas evaluated here in double and rounded to
// float32 (bit-equal when the double value is a float32, else within one float32 ulp); an invalid call fails and
// leaves `positions` untouched.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "fuzz_util.h"

using namespace hope_fuzz;

namespace {

constexpr int32_t kMaxSegments = 48;
constexpr int64_t kMaxTokens = static_cast<int64_t>(kMaxBufferBytes / (3 * sizeof(float)));

struct Expected {
  bool segments_valid = true;  // every segment well-formed and the total fits 2^31 - 1
  __int128 total = 0;
};

Expected validate_segments(const hope_segment_t *s, int32_t n) {
  Expected e;
  for (int32_t i = 0; i < n; ++i) {
    switch (s[i].kind) {
      case HOPE_SEGMENT_TEXT:
        if (s[i].length < 0) e.segments_valid = false;
        else e.total += s[i].length;
        break;
      case HOPE_SEGMENT_IMAGE:
      case HOPE_SEGMENT_VIDEO:
        if (s[i].grid_t < 1 || s[i].grid_h < 1 || s[i].grid_w < 1) e.segments_valid = false;
        else if (s[i].kind == HOPE_SEGMENT_IMAGE && s[i].grid_t != 1) e.segments_valid = false;
        else if (!std::isfinite(s[i].temporal_scale)) e.segments_valid = false;
        else e.total += static_cast<__int128>(s[i].grid_t) * s[i].grid_h * s[i].grid_w;
        break;
      default: e.segments_valid = false;
    }
  }
  if (e.total > INT32_MAX) e.segments_valid = false;
  return e;
}

// SPEC §1 in double, written from the text: the absolute value of each row, and the text resumption rule.
// Timed M-RoPE's t offset of frame f (SPEC §8): each float32 product is the exact product (exact in double)
// rounded once to float32, then truncated toward zero.
double timed_offset(int64_t f, float g, float r) {
  const float fg = static_cast<float>(static_cast<double>(static_cast<float>(f)) * static_cast<double>(g));
  return std::trunc(static_cast<double>(static_cast<float>(static_cast<double>(fg) * static_cast<double>(r))));
}

struct Reference {
  const hope_segment_t *seg;
  int32_t n;
  int32_t layout;
  double default_scale, start;
  const float *seconds = nullptr;  // timed layout: per segment (read for videos)
  float rate = 0.0f;               // timed layout: tokens per second
  std::vector<double> seg_base;     // where each segment starts (the next text position), absolute
  std::vector<int64_t> seg_first;   // first token index of each segment
  double next = 0;

  double scale_of(const hope_segment_t &s) const {
    return s.temporal_scale > 0.0f ? static_cast<double>(s.temporal_scale) : default_scale;
  }
  float interval(int32_t i) const { return seg[i].kind == HOPE_SEGMENT_VIDEO ? seconds[i] : 0.0f; }
  int64_t tokens_of(const hope_segment_t &s) const {
    return s.kind == HOPE_SEGMENT_TEXT ? s.length : static_cast<int64_t>(s.grid_t) * s.grid_h * s.grid_w;
  }
  void plan() {
    double p = start;
    int64_t k = 0;
    for (int32_t i = 0; i < n; ++i) {
      const hope_segment_t &s = seg[i];
      seg_base.push_back(p);
      seg_first.push_back(k);
      k += tokens_of(s);
      if (s.kind == HOPE_SEGMENT_TEXT || layout == HOPE_LAYOUT_SEQUENTIAL) {
        p += static_cast<double>(tokens_of(s));
      } else if (layout == HOPE_LAYOUT_MROPE) {
        // 1 + the largest value in any row: base + max(T-1, H-1, W-1) + 1.
        const double largest = p + static_cast<double>(std::max({s.grid_t, s.grid_h, s.grid_w}) - 1);
        p = largest + 1.0;
      } else if (layout == HOPE_LAYOUT_MROPE_TIMED) {
        // The same with the last frame's timed offset (the offsets never decrease with f) for T - 1.
        const double t_top = timed_offset(s.grid_t - 1, interval(i), rate);
        p = p + std::max(t_top, static_cast<double>(std::max(s.grid_h, s.grid_w) - 1)) + 1.0;
      } else {
        // 1 + the largest t: t = base + f*s, largest at f = T-1 (s > 0).
        const double largest_t = p + static_cast<double>(s.grid_t - 1) * scale_of(s);
        p = largest_t + 1.0;
      }
    }
    next = p;
  }
  // Row values of token k.
  void token(int64_t k, double *t, double *h, double *w) const {
    // The last segment starting at or before k contains it (empty segments start where the next one does).
    const int32_t i =
        static_cast<int32_t>(std::upper_bound(seg_first.begin(), seg_first.end(), k) - seg_first.begin()) - 1;
    const hope_segment_t &s = seg[i];
    const double base = seg_base[i];
    const int64_t local = k - seg_first[i];
    if (s.kind == HOPE_SEGMENT_TEXT || layout == HOPE_LAYOUT_SEQUENTIAL) {
      *t = *h = *w = base + static_cast<double>(local);
      return;
    }
    const int64_t f = local / (static_cast<int64_t>(s.grid_h) * s.grid_w);
    const int64_t y = (local / s.grid_w) % s.grid_h;
    const int64_t x = local % s.grid_w;
    if (layout == HOPE_LAYOUT_MROPE || layout == HOPE_LAYOUT_MROPE_TIMED) {
      *t = base + (layout == HOPE_LAYOUT_MROPE ? static_cast<double>(f) : timed_offset(f, interval(i), rate));
      *h = base + static_cast<double>(y);
      *w = base + static_cast<double>(x);
      return;
    }
    const double tt = base + static_cast<double>(f) * scale_of(s);
    *t = tt;
    *h = tt + static_cast<double>(y - (s.grid_h - 1) / 2);  // floor((H-1)/2), H >= 1
    *w = tt + static_cast<double>(x - (s.grid_w - 1) / 2);
  }
};

// Bit-equal to the float32 rounding when the double value is a float32; else within one float32 ulp. `magnitude`
// bounds the operands the value was summed from (start, the block's base, frame * scale): with fractional scales
// two correct orders of double additions may differ by a few double ulps of it, which matters only where the
// result is near 0 (e.g. h = t + y - floor((H-1)/2) = 0); that much slack is allowed too.
bool position_matches(float got, double ref, double magnitude = 0.0) {
  if (std::isnan(ref)) return std::isnan(got);
  const float r = static_cast<float>(ref);
  if (got == r) return true;
  if (!std::isfinite(got)) return false;
  const double slack = 8.0 * 2.220446049250313e-16 * (1.0 + std::fabs(magnitude));
  if (std::fabs(static_cast<double>(got) - ref) <= slack) return true;
  if (static_cast<double>(r) == ref) return false;
  const double ulp = std::fabs(static_cast<double>(std::nextafter(r, INFINITY)) - static_cast<double>(r));
  return std::fabs(static_cast<double>(got) - ref) <= ulp;
}

void fuzz_vision_grid(Reader &in) {
  const uint8_t kb = in.u8();  // bit 0: a small kind; bit 1 (0 in the older seeds): the _ex call
  const bool ex = (kb & 2) != 0;
  const int32_t kind = (kb & 1) ? in.range(0, 3) : in.edge_i32();
  const int32_t t = in.flag() ? in.range(0, 9) : in.edge_i32();
  const int32_t h = in.flag() ? in.range(0, 64) : in.edge_i32();
  const int32_t w = in.flag() ? in.range(0, 64) : in.edge_i32();
  const int32_t m = in.flag() ? in.range(-1, 4) : in.edge_i32();
  const float scale = in.edge_float();
  const bool null_out = in.u8() == 7;
  const int32_t tm = !ex ? 1 : in.flag() ? in.range(-1, 4) : in.edge_i32();
  hope_segment_t seg;
  std::memset(&seg, 0xab, sizeof seg);
  const hope_segment_t before = seg;
  const hope_status_t s = ex ? hope_segment_from_vision_grid_ex(kind, t, h, w, m, tm, scale, null_out ? nullptr : &seg)
                             : hope_segment_from_vision_grid(kind, t, h, w, m, scale, null_out ? nullptr : &seg);
  // An image keeps its one frame: the temporal merge applies to videos.
  const int32_t t_merge = kind == HOPE_SEGMENT_VIDEO ? tm : 1;
  const bool valid = !null_out && (kind == HOPE_SEGMENT_IMAGE || kind == HOPE_SEGMENT_VIDEO) && m >= 1 && t >= 1 &&
                     h >= 1 && w >= 1 && (kind != HOPE_SEGMENT_IMAGE || t == 1) && h % m == 0 && w % m == 0 &&
                     std::isfinite(scale) && tm >= 1 && t % t_merge == 0;
  if (!valid) {
    expect_failure_message(s, "hope_segment_from_vision_grid(invalid)");
    FUZZ_CHECK(std::memcmp(&seg, &before, sizeof seg) == 0, "hope_segment_from_vision_grid wrote on failure");
    return;
  }
  FUZZ_CHECK(s == HOPE_SUCCESS, "hope_segment_from_vision_grid(kind %d, %d x %d x %d, merge %d) failed", kind, t, h, w, m);
  FUZZ_CHECK(seg.kind == kind && seg.grid_t == t / t_merge && seg.grid_h == h / m && seg.grid_w == w / m &&
                 (seg.temporal_scale == scale),
             "hope_segment_from_vision_grid: wrong segment (%d %d %d %d %g)", seg.kind, seg.grid_t, seg.grid_h,
             seg.grid_w, (double)seg.temporal_scale);
}

void fuzz_generated(Reader &in, float next) {
  const int64_t first = in.flag() ? in.range(0, 100) : in.edge_i64();
  const int64_t n = in.flag() ? in.range(0, 16) : in.edge_i64();
  const bool null_pos = in.u8() == 3;
  if (n > 4096 && !null_pos) return;  // would need a big buffer
  Buffer pos(null_pos || n <= 0 ? 0 : static_cast<size_t>(3 * n) * sizeof(float));
  const hope_status_t s = hope_positions_generated(next, first, n, null_pos ? nullptr : pos.as<float>());
  int64_t end;
  const bool valid = std::isfinite(next) && first >= 0 && n >= 0 && add_ok(first, n, &end) && (n == 0 || !null_pos);
  if (!valid) {
    expect_failure_message(s, "hope_positions_generated(invalid)");
    return;
  }
  FUZZ_CHECK(s == HOPE_SUCCESS, "hope_positions_generated(next %g, first %lld, n %lld) failed", (double)next,
             (long long)first, (long long)n);
  for (int64_t j = 0; j < n; ++j)
    for (int r = 0; r < 3; ++r)
      FUZZ_CHECK(position_matches(pos.as<float>()[r * n + j], static_cast<double>(next) + static_cast<double>(first + j)),
                 "hope_positions_generated: row %d token %lld is %.9g, expected %.17g", r, (long long)j,
                 (double)pos.as<float>()[r * n + j], static_cast<double>(next) + static_cast<double>(first + j));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Reader in(data, size);
  const uint8_t mode = in.u8();

  if (mode % 8 == 7) {
    fuzz_vision_grid(in);
    return 0;
  }
  const bool ex = mode % 8 == 6;  // hope_positions_build_ex (every layout, the timed one included)

  // ---- the segment list ----
  int32_t num = in.size_i32(6);
  const bool null_segments = in.u8() == 5;
  const int32_t stored = num < 0 ? 1 : std::min(num, kMaxSegments);
  if (num > kMaxSegments) num = kMaxSegments;  // the array must hold what we claim
  Buffer seg_buf(static_cast<size_t>(stored) * sizeof(hope_segment_t));
  hope_segment_t *seg = seg_buf.as<hope_segment_t>();
  for (int32_t i = 0; i < stored; ++i) {
    hope_segment_t &s = seg[i];
    const uint8_t k = in.u8();
    s.kind = k < 240 ? k % 3 : in.edge_i32();
    s.length = in.flag() ? in.range(0, 40) : in.edge_i32();
    const uint8_t g = in.u8();
    if (g < 200) {  // small grids
      s.grid_t = s.kind == HOPE_SEGMENT_IMAGE && (g & 1) ? 1 : in.range(1, 5);
      s.grid_h = in.range(1, 9);
      s.grid_w = in.range(1, 9);
    } else {
      s.grid_t = in.edge_i32();
      s.grid_h = in.edge_i32();
      s.grid_w = in.edge_i32();
    }
    const uint8_t sc = in.u8();
    s.temporal_scale = sc < 64 ? 0.0f : sc < 160 ? static_cast<float>(sc % 7) * 0.25f : in.edge_float();
  }
  const hope_segment_t *segp = null_segments ? nullptr : seg;

  // ---- count ----
  const Expected e = validate_segments(seg, std::max(num, 0));
  const bool count_valid = num >= 0 && (segp != nullptr || num == 0) && e.segments_valid;
  int64_t count = -12345;
  const bool null_count = in.u8() == 9;
  hope_status_t s = hope_positions_count(segp, num, null_count ? nullptr : &count);
  if (null_count || !count_valid) {
    expect_failure_message(s, "hope_positions_count(invalid)");
    if (!null_count) FUZZ_CHECK(count == -12345, "hope_positions_count wrote num_tokens on failure");
  } else {
    FUZZ_CHECK(s == HOPE_SUCCESS, "hope_positions_count failed on valid segments");
    FUZZ_CHECK(count == static_cast<int64_t>(e.total), "hope_positions_count: %lld, expected %lld", (long long)count,
               (long long)e.total);
  }

  // ---- build ----
  const int32_t layout = in.u8() < 230 ? in.range(0, ex ? 3 : 2) : in.edge_i32();
  const uint8_t ds = in.u8();
  float default_scale = ds < 128 ? 0.25f * static_cast<float>(1 + ds % 8) : in.edge_float();
  if (ex && ds < 32) default_scale = 0.0f;  // build_ex: 0 means 1.0
  const uint8_t st = in.u8();
  const float start = st < 100 ? 0.0f : st < 160 ? static_cast<float>(st) * 1000.0f : in.edge_float();
  // build_ex's timing: tokens per second, seconds per grid of every stored segment, NULL params or seconds.
  float rate = 0.0f;
  Buffer seconds(static_cast<size_t>(stored) * sizeof(float));
  bool null_params = false, null_seconds = false, timing_ok = true;
  if (ex) {
    static const float kIntervals[] = {0.5f, 0.0833f, 1.5f, 2.0f / 3.0f, 0.7f, 1.0f, 0.0f, 2.0f};
    const uint8_t rs = in.u8();
    rate = rs < 100 ? 2.0f : rs < 150 ? 25.0f : rs < 200 ? 0.5f * static_cast<float>(rs % 8) : in.edge_float();
    for (int32_t i = 0; i < stored; ++i) {
      const uint8_t gs = in.u8();
      seconds.as<float>()[i] = gs < 120 ? kIntervals[gs % 8] : gs < 200 ? 0.125f * static_cast<float>(gs % 16)
                                                                         : in.edge_float();
    }
    const uint8_t nulls = in.u8();
    null_params = nulls == 19;
    null_seconds = nulls == 23;
    if (layout == HOPE_LAYOUT_MROPE_TIMED) {
      timing_ok = std::isfinite(rate) && rate > 0.0f;
      for (int32_t i = 0; i < std::max(num, 0); ++i)
        if (seg[i].kind == HOPE_SEGMENT_VIDEO)
          timing_ok = timing_ok && !null_seconds && std::isfinite(seconds.as<float>()[i]) &&
                      seconds.as<float>()[i] >= 0.0f;
    }
  }
  const int64_t truth = e.segments_valid ? static_cast<int64_t>(e.total) : 0;
  const uint8_t nt = in.u8();
  int64_t num_tokens = nt < 200 ? truth : nt < 220 ? truth + in.range(-2, 2) : in.edge_i64();
  const bool null_positions = in.u8() == 11;
  const bool null_next = in.u8() == 13;

  const bool scale_ok = std::isfinite(default_scale) && (default_scale > 0.0f || (ex && default_scale == 0.0f));
  const bool call_valid = num >= 0 && (segp != nullptr || num == 0) && e.segments_valid &&
                          (layout >= 0 && layout <= (ex ? 3 : 2)) && scale_ok && num_tokens == truth &&
                          (!null_positions || truth == 0) && !null_params && timing_ok;

  // Buffer: exactly num_tokens rows when that is small; else a tiny one (the call must then refuse).
  const bool big = num_tokens > kMaxTokens || num_tokens < 0;
  if (call_valid && big) return 0;  // a valid call that would need more memory than a fuzz run should use
  Buffer pos(null_positions ? 0 : static_cast<size_t>(big ? 3 : 3 * num_tokens) * sizeof(float));
  pos.fill(0x7f);
  const std::vector<uint8_t> before = pos.snapshot();
  float next = -777.0f;
  if (ex) {
    hope_positions_params_t params;
    std::memset(&params, 0, sizeof params);
    params.layout = layout;
    params.default_temporal_scale = default_scale;
    params.start = start;
    params.seconds_per_grid = null_seconds ? nullptr : seconds.as<float>();
    params.tokens_per_second = rate;
    set_context("hope_positions_build_ex(layout %d, scale %g, start %g, rate %g, %d segments)", layout,
                (double)default_scale, (double)start, (double)rate, num);
    s = hope_positions_build_ex(null_params ? nullptr : &params, segp, num, null_positions ? nullptr : pos.as<float>(),
                                num_tokens, null_next ? nullptr : &next);
  } else {
    s = hope_positions_build(segp, num, static_cast<hope_layout_t>(layout), default_scale, start,
                             null_positions ? nullptr : pos.as<float>(), num_tokens, null_next ? nullptr : &next);
  }
  if (!call_valid) {
    expect_failure_message(s, "hope_positions_build(invalid)");
    FUZZ_CHECK(pos.equals(before), "hope_positions_build wrote positions on failure");
    return 0;
  }

  Reference ref{seg, num, layout, default_scale == 0.0f ? 1.0 : static_cast<double>(default_scale),
                static_cast<double>(start), seconds.as<float>(), rate, {}, {}, 0};
  ref.plan();
  if (s != HOPE_SUCCESS) {
    // The only acceptable refusals of a valid call: a start that is not finite, or values beyond float32.
    expect_failure_message(s, "hope_positions_build(valid)");
    bool out_of_range = !std::isfinite(start) || !std::isfinite(static_cast<float>(ref.next));
    for (int64_t k = 0; k < truth && !out_of_range; ++k) {
      double t, h, w;
      ref.token(k, &t, &h, &w);
      out_of_range = !std::isfinite(static_cast<float>(t)) || !std::isfinite(static_cast<float>(h)) ||
                     !std::isfinite(static_cast<float>(w));
    }
    FUZZ_CHECK(out_of_range, "hope_positions_build refused a valid call with %s", hope_status_string(s));
    return 0;
  }
  if (!null_next)
    FUZZ_CHECK(position_matches(next, ref.next, std::fabs(static_cast<double>(start)) + std::fabs(ref.next)),
               "next_position is %.9g, expected %.17g", (double)next, ref.next);

  const float *P = pos.as<float>();
  auto check_token = [&](int64_t k) {
    double v[3];
    ref.token(k, &v[0], &v[1], &v[2]);
    const double magnitude = std::fabs(static_cast<double>(start)) + std::fabs(v[0]) + std::fabs(ref.next);
    for (int r = 0; r < 3; ++r)
      FUZZ_CHECK(position_matches(P[r * truth + k], v[r], magnitude), "layout %d token %lld row %d: got %.9g, expected %.17g",
                 layout, (long long)k, r, (double)P[r * truth + k], v[r]);
  };
  if (truth <= 4096) {
    for (int64_t k = 0; k < truth; ++k) check_token(k);
  } else {
    check_token(0);
    check_token(truth - 1);
    for (int i = 0; i < 8; ++i) check_token(static_cast<int64_t>(in.u32() % static_cast<uint64_t>(truth)));
  }
  if (!null_next) fuzz_generated(in, next);
  return 0;
}
