// Timed M-RoPE (SPEC §8, Qwen2.5-VL / Qwen2.5-Omni) through hope_positions_build_ex, the other layouts through
// the same call, and the temporal merge of hope_segment_from_vision_grid_ex: hand-worked examples, the float32
// products PyTorch evaluates (tables computed with numpy float32, which rounds like torch), bit-exact agreement
// with the float64 reference on random sequences, and bad input.
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "reference/reference.h"
#include "test_util.h"

namespace {

using hope_test::image_segment;
using hope_test::text_segment;
using hope_test::video_segment;

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

constexpr int64_t kGuard = 8;
constexpr uint32_t kPoison = 0xffffffffu;

// The params point into `seconds`: keep it alive while they are used.
hope_positions_params_t timed_params(const std::vector<float> &seconds, float tokens_per_second, float start = 0.f) {
  hope_positions_params_t p;
  std::memset(&p, 0, sizeof p);
  p.layout = HOPE_LAYOUT_MROPE_TIMED;
  p.start = start;
  p.seconds_per_grid = seconds.empty() ? nullptr : seconds.data();
  p.tokens_per_second = tokens_per_second;
  return p;
}

struct Rows {
  std::vector<float> t, h, w;
  float next = 0.f;
};

// Builds through hope_positions_build_ex into a poisoned buffer with guards; checks the guards.
Rows build_ex(const hope_positions_params_t &p, const std::vector<hope_segment_t> &segs) {
  Rows r;
  int64_t n = 0;
  EXPECT_HOPE_OK(hope_positions_count(segs.data(), static_cast<int32_t>(segs.size()), &n));
  std::vector<uint32_t> buf(3 * n + 2 * kGuard, kPoison);
  float *pos = reinterpret_cast<float *>(buf.data() + kGuard);
  float next = std::numeric_limits<float>::quiet_NaN();
  EXPECT_HOPE_OK(hope_positions_build_ex(&p, segs.data(), static_cast<int32_t>(segs.size()), pos, n, &next));
  for (int64_t g = 0; g < kGuard; ++g) {
    EXPECT_EQ(buf[g], kPoison) << "guard before the rows written at " << g;
    EXPECT_EQ(buf[kGuard + 3 * n + g], kPoison) << "guard after the rows written at " << g;
  }
  r.t.assign(pos, pos + n);
  r.h.assign(pos + n, pos + 2 * n);
  r.w.assign(pos + 2 * n, pos + 3 * n);
  r.next = next;
  return r;
}

::testing::AssertionResult same_bits(const Rows &got, const hope_ref::Positions &ref) {
  if (got.t.size() != ref.t.size())
    return ::testing::AssertionFailure() << "count " << got.t.size() << " != reference " << ref.t.size();
  for (size_t k = 0; k < got.t.size(); ++k) {
    const float g[3] = {got.t[k], got.h[k], got.w[k]};
    const double r[3] = {ref.t[k], ref.h[k], ref.w[k]};
    for (int c = 0; c < 3; ++c)
      if (bits(g[c]) != bits(static_cast<float>(r[c])))
        return ::testing::AssertionFailure() << "token " << k << " row " << "thw"[c] << ": got " << g[c]
                                             << ", reference " << r[c];
  }
  if (bits(got.next) != bits(static_cast<float>(ref.next_position)))
    return ::testing::AssertionFailure() << "next_position " << got.next << " != " << ref.next_position;
  return ::testing::AssertionSuccess();
}

// ---- hand-worked ------------------------------------------------------------------------------------------

TEST(PositionsTimed, HandWorkedTwoThirdsSecondLandsOnInteger) {
  // text 2 | video T=4, H=2, W=3 at g = 2/3 s per grid, r = 2 tokens/s | image 2 x 2 | text 1, from 0.
  // float32(2/3) = 0.666666686534881591796875; frame 3: 3 * g = 2.0000000596... rounds to exactly 2.0f, times 2
  // is 4.0f: t offsets (0, 1.33 -> 1, 2.67 -> 2, 4). The video's base is 2, its largest value 2 + 4 = 6 (t beats
  // h 3 and w 4), so the image starts at 7: (7, 7 + y, 7 + x), largest 8; the text resumes at 9; next 10.
  const std::vector<hope_segment_t> segs = {text_segment(2), video_segment(4, 2, 3), image_segment(2, 2),
                                            text_segment(1)};
  const std::vector<float> seconds = {0.f, 2.f / 3.f, 123.f /* image: ignored */, 0.f};
  const Rows r = build_ex(timed_params(seconds, 2.f), segs);
  std::vector<float> t = {0, 1}, h = {0, 1}, w = {0, 1};
  const float toff[4] = {0, 1, 2, 4};
  for (int f = 0; f < 4; ++f)
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 3; ++x) {
        t.push_back(2 + toff[f]);
        h.push_back(2.f + y);
        w.push_back(2.f + x);
      }
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 2; ++x) {
      t.push_back(7);
      h.push_back(7.f + y);
      w.push_back(7.f + x);
    }
  t.push_back(9);
  h.push_back(9);
  w.push_back(9);
  EXPECT_EQ(r.t, t);
  EXPECT_EQ(r.h, h);
  EXPECT_EQ(r.w, w);
  EXPECT_EQ(r.next, 10.f);
}

TEST(PositionsTimed, HandWorkedWidthDominatesAndStartShifts) {
  // video T=3, H=1, W=5 at g = 0.5, r = 2 (t offsets 0, 1, 2) from start 100: the largest value is w = 104, so the
  // text resumes at 105 even though t only reaches 102.
  const std::vector<hope_segment_t> segs = {video_segment(3, 1, 5), text_segment(2)};
  const Rows r = build_ex(timed_params({0.5f, 0.f}, 2.f, 100.f), segs);
  ASSERT_EQ(r.t.size(), 17u);
  for (int f = 0; f < 3; ++f)
    for (int x = 0; x < 5; ++x) {
      EXPECT_EQ(r.t[f * 5 + x], 100.f + f);
      EXPECT_EQ(r.h[f * 5 + x], 100.f);
      EXPECT_EQ(r.w[f * 5 + x], 100.f + x);
    }
  EXPECT_EQ(r.t[15], 105.f);
  EXPECT_EQ(r.t[16], 106.f);
  EXPECT_EQ(r.next, 107.f);
}

// t offsets of a 13-frame video, (np.arange(13, dtype=np.float32) * np.float32(g) * np.float32(r)).astype(np.int64)
// (numpy float32 multiplies round like torch's float32 tensors).
struct TimedTable {
  float g, r;
  std::vector<int> offsets;
};

TEST(PositionsTimed, FractionalIntervalsMatchFloat32Products) {
  const std::vector<TimedTable> tables = {
      {0.5f, 2.f, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
      {0.0833f, 2.f, {0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1}},
      {1.5f, 2.f, {0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33, 36}},
      {2.f / 3.f, 2.f, {0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 16}},
      {0.0833f, 25.f, {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24}},
      {2.f / 3.f, 25.f, {0, 16, 33, 50, 66, 83, 100, 116, 133, 150, 166, 183, 200}},
      // float32 differs from exact and from double arithmetic here: frame 3 gives 21 (double: 20.999... -> 20),
      // frame 6 gives 42 (double 41), frame 9 gives 62 (double 63).
      {0.7f, 10.f, {0, 7, 14, 21, 28, 35, 42, 49, 56, 62, 70, 77, 84}},
      {0.f, 2.f, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
  };
  for (const TimedTable &tt : tables) {
    const std::vector<hope_segment_t> segs = {video_segment(13, 1, 1)};
    const Rows r = build_ex(timed_params({tt.g}, tt.r), segs);
    ASSERT_EQ(r.t.size(), 13u);
    for (int f = 0; f < 13; ++f) {
      EXPECT_EQ(r.t[f], static_cast<float>(tt.offsets[f])) << "g " << tt.g << " r " << tt.r << " frame " << f;
      EXPECT_EQ(hope_ref::timed_frame_offset(f, tt.g, tt.r), tt.offsets[f])
          << "reference, g " << tt.g << " frame " << f;
    }
    EXPECT_EQ(r.next, static_cast<float>(tt.offsets[12] + 1));
  }
}

TEST(PositionsTimed, OneSecondOneTokenIsPlainMrope) {
  // g = 1 and r = 1 give t = base + f: exactly the mrope layout, on random sequences.
  std::mt19937_64 rng(11);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<hope_segment_t> segs;
    std::vector<float> seconds;
    const int n = 1 + static_cast<int>(rng() % 6);
    for (int i = 0; i < n; ++i) {
      const int kind = static_cast<int>(rng() % 3);
      if (kind == 0) segs.push_back(text_segment(static_cast<int32_t>(rng() % 5)));
      else if (kind == 1) segs.push_back(image_segment(1 + rng() % 5, 1 + rng() % 5));
      else segs.push_back(video_segment(1 + rng() % 9, 1 + rng() % 4, 1 + rng() % 4));
      seconds.push_back(1.f);
    }
    const Rows timed = build_ex(timed_params(seconds, 1.f, 3.f), segs);
    hope_positions_params_t plain = timed_params(seconds, 1.f, 3.f);
    plain.layout = HOPE_LAYOUT_MROPE;
    const Rows mrope = build_ex(plain, segs);
    EXPECT_EQ(timed.t, mrope.t);
    EXPECT_EQ(timed.h, mrope.h);
    EXPECT_EQ(timed.w, mrope.w);
    EXPECT_EQ(timed.next, mrope.next);
  }
}

// ---- random sequences against the reference ----------------------------------------------------------------

TEST(PositionsTimed, MatchesReferenceBitExactOnRandomSequences) {
  std::mt19937_64 rng(2026);
  const float intervals[] = {0.5f, 0.0833f, 1.5f, 2.f / 3.f, 0.7f, 1.f, 0.f, 2.f, 1.f / 24.f};
  const float rates[] = {2.f, 25.f, 1.f, 4.f, 0.5f, 3.3f};
  std::uniform_real_distribution<float> any_interval(0.f, 3.f);
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<hope_segment_t> segs;
    std::vector<float> seconds;
    const int n = static_cast<int>(rng() % 8);
    for (int i = 0; i < n; ++i) {
      switch (rng() % 4) {
        case 0: segs.push_back(text_segment(static_cast<int32_t>(rng() % 7))); break;
        case 1: segs.push_back(image_segment(1 + rng() % 6, 1 + rng() % 6)); break;
        default: segs.push_back(video_segment(1 + rng() % 40, 1 + rng() % 5, 1 + rng() % 5)); break;
      }
      seconds.push_back(rng() % 3 == 0 ? any_interval(rng) : intervals[rng() % 9]);
    }
    const float r = rng() % 4 == 0 ? std::uniform_real_distribution<float>(0.1f, 30.f)(rng) : rates[rng() % 6];
    const float start = rng() % 2 ? 0.f : static_cast<float>(rng() % 500000) + 0.5f * static_cast<float>(rng() % 2);
    const Rows got = build_ex(timed_params(seconds, r, start), segs);
    const hope_ref::Positions ref = hope_ref::build_positions_timed(segs, seconds, r, start);
    ASSERT_TRUE(same_bits(got, ref)) << "trial " << trial;
  }
}

TEST(PositionsBuildEx, OtherLayoutsMatchHopePositionsBuild) {
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 60; ++trial) {
    const std::vector<hope_segment_t> segs = {text_segment(static_cast<int32_t>(rng() % 4)),
                                              video_segment(1 + rng() % 5, 1 + rng() % 4, 1 + rng() % 4,
                                                            rng() % 2 ? 0.75f : 0.f),
                                              image_segment(1 + rng() % 4, 1 + rng() % 4), text_segment(2)};
    for (int layout : {HOPE_LAYOUT_SEQUENTIAL, HOPE_LAYOUT_MROPE, HOPE_LAYOUT_DIAGONAL}) {
      for (float scale : {0.f, 0.5f, 1.25f}) {
        hope_positions_params_t p;
        std::memset(&p, 0, sizeof p);
        p.layout = layout;
        p.default_temporal_scale = scale;
        p.start = 7.f;
        const Rows ex = build_ex(p, segs);
        int64_t n = 0;
        ASSERT_HOPE_OK(hope_positions_count(segs.data(), 4, &n));
        std::vector<float> pos(3 * n);
        float next = 0.f;
        ASSERT_HOPE_OK(hope_positions_build(segs.data(), 4, static_cast<hope_layout_t>(layout),
                                            scale == 0.f ? 1.f : scale, 7.f, pos.data(), n, &next));
        EXPECT_EQ(ex.t, std::vector<float>(pos.begin(), pos.begin() + n));
        EXPECT_EQ(ex.h, std::vector<float>(pos.begin() + n, pos.begin() + 2 * n));
        EXPECT_EQ(ex.w, std::vector<float>(pos.begin() + 2 * n, pos.end()));
        EXPECT_EQ(ex.next, next);
      }
    }
  }
}

TEST(PositionsTimed, EmptyAndTextOnlyNeedNoIntervals) {
  hope_positions_params_t p = timed_params({}, 2.f, 4.f);
  float next = 0.f;
  ASSERT_HOPE_OK(hope_positions_build_ex(&p, nullptr, 0, nullptr, 0, &next));
  EXPECT_EQ(next, 4.f);
  const std::vector<hope_segment_t> segs = {text_segment(3), image_segment(2, 3)};
  const Rows r = build_ex(p, segs);  // no video: seconds_per_grid may be NULL
  EXPECT_EQ(r.t, (std::vector<float>{4, 5, 6, 7, 7, 7, 7, 7, 7}));
  EXPECT_EQ(r.next, 10.f);
}

TEST(PositionsTimed, HugeButFiniteIntervalIsValidAndOverflowIsRefused) {
  // g = 1e30: frame 1 sits at 2e30, a finite float; frame 1 of g = 3e38 overflows to inf.
  const std::vector<hope_segment_t> segs = {video_segment(2, 1, 1)};
  const Rows r = build_ex(timed_params({1e30f}, 2.f), segs);
  EXPECT_EQ(r.t[1], 2e30f);
  const std::vector<float> huge = {3e38f};  // named: the params keep a pointer to it
  hope_positions_params_t p = timed_params(huge, 2.f);
  std::vector<float> pos(6);
  EXPECT_HOPE_FAIL(hope_positions_build_ex(&p, segs.data(), 1, pos.data(), 2, nullptr), HOPE_ERROR_INVALID_VALUE);
  EXPECT_NE(std::string(hope_last_error()).find("segments[0]"), std::string::npos) << hope_last_error();
}

// ---- bad input ----------------------------------------------------------------------------------------------

void expect_invalid(const hope_positions_params_t *p, const std::vector<hope_segment_t> &segs, const char *needle) {
  std::vector<float> pos(3 * 64);
  int64_t n = 0;
  ASSERT_HOPE_OK(hope_positions_count(segs.data(), static_cast<int32_t>(segs.size()), &n));
  EXPECT_HOPE_FAIL(hope_positions_build_ex(p, segs.data(), static_cast<int32_t>(segs.size()), pos.data(), n, nullptr),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_NE(std::string(hope_last_error()).find(needle), std::string::npos)
      << "message \"" << hope_last_error() << "\" lacks \"" << needle << "\"";
}

TEST(PositionsTimed, BadInputIsRefusedWithAMessage) {
  const std::vector<hope_segment_t> segs = {text_segment(1), video_segment(2, 2, 2)};
  expect_invalid(nullptr, segs, "params");
  hope_positions_params_t p = timed_params({0.f, 0.5f}, 2.f);
  p.seconds_per_grid = nullptr;
  expect_invalid(&p, segs, "seconds_per_grid");
  const std::vector<float> negative = {0.f, -0.5f}, nan = {0.f, NAN}, inf = {0.f, INFINITY};
  for (const auto *bad : {&negative, &nan, &inf}) {
    p = timed_params(*bad, 2.f);
    expect_invalid(&p, segs, "seconds_per_grid[1]");
  }
  const std::vector<float> ok = {0.f, 0.5f};
  for (float r : {0.f, -2.f, NAN, INFINITY}) {
    p = timed_params(ok, r);
    expect_invalid(&p, segs, "tokens_per_second");
  }
  p = timed_params(ok, 2.f);
  p.layout = 4;
  expect_invalid(&p, segs, "layout");
  p.layout = -1;
  expect_invalid(&p, segs, "layout");
  p = timed_params(ok, 2.f);
  p.start = NAN;
  expect_invalid(&p, segs, "start");
  p = timed_params(ok, 2.f);
  p.layout = HOPE_LAYOUT_DIAGONAL;
  p.default_temporal_scale = -1.f;
  expect_invalid(&p, segs, "default_temporal_scale");
  // The old call has no timing arguments: it refuses the timed layout and says what to use.
  std::vector<float> pos(3 * 9);
  EXPECT_HOPE_FAIL(hope_positions_build(segs.data(), 2, HOPE_LAYOUT_MROPE_TIMED, 1.f, 0.f, pos.data(), 9, nullptr),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_NE(std::string(hope_last_error()).find("hope_positions_build_ex"), std::string::npos);
  // A wrong token count and a bad segment still fail as in hope_positions_build.
  p = timed_params(ok, 2.f);
  EXPECT_HOPE_FAIL(hope_positions_build_ex(&p, segs.data(), 2, pos.data(), 8, nullptr), HOPE_ERROR_INVALID_VALUE);
  const std::vector<hope_segment_t> broken = {text_segment(1), video_segment(0, 2, 2)};
  EXPECT_HOPE_FAIL(hope_positions_build_ex(&p, broken.data(), 2, pos.data(), 1, nullptr), HOPE_ERROR_INVALID_VALUE);
}

// ---- temporal merge ------------------------------------------------------------------------------------------

TEST(SegmentFromVisionGridEx, TemporalMergeDividesTheVideoFrames) {
  // ERNIE-4.5-VL: a raw video grid (8, 28, 42) with spatial merge 2 and temporal merge 2 is (4, 14, 21) tokens.
  hope_segment_t s{};
  ASSERT_HOPE_OK(hope_segment_from_vision_grid_ex(HOPE_SEGMENT_VIDEO, 8, 28, 42, 2, 2, 0.75f, &s));
  EXPECT_EQ(s.kind, HOPE_SEGMENT_VIDEO);
  EXPECT_EQ(s.length, 0);
  EXPECT_EQ(s.grid_t, 4);
  EXPECT_EQ(s.grid_h, 14);
  EXPECT_EQ(s.grid_w, 21);
  EXPECT_EQ(s.temporal_scale, 0.75f);
  // An image keeps its single frame whatever the temporal merge.
  ASSERT_HOPE_OK(hope_segment_from_vision_grid_ex(HOPE_SEGMENT_IMAGE, 1, 4, 6, 2, 2, 0.f, &s));
  EXPECT_EQ(s.kind, HOPE_SEGMENT_IMAGE);
  EXPECT_EQ(s.grid_t, 1);
  EXPECT_EQ(s.grid_h, 2);
  EXPECT_EQ(s.grid_w, 3);
  // Temporal merge 1 is hope_segment_from_vision_grid.
  hope_segment_t a{}, b{};
  ASSERT_HOPE_OK(hope_segment_from_vision_grid_ex(HOPE_SEGMENT_VIDEO, 3, 4, 6, 2, 1, 0.5f, &a));
  ASSERT_HOPE_OK(hope_segment_from_vision_grid(HOPE_SEGMENT_VIDEO, 3, 4, 6, 2, 0.5f, &b));
  EXPECT_EQ(std::memcmp(&a, &b, sizeof a), 0);
}

TEST(SegmentFromVisionGridEx, BadInputIsRefusedWithAMessage) {
  hope_segment_t s{};
  EXPECT_HOPE_FAIL(hope_segment_from_vision_grid_ex(HOPE_SEGMENT_VIDEO, 3, 4, 4, 2, 2, 0.f, &s),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_NE(std::string(hope_last_error()).find("temporal_merge_size 2 does not divide"), std::string::npos)
      << hope_last_error();
  EXPECT_HOPE_FAIL(hope_segment_from_vision_grid_ex(HOPE_SEGMENT_VIDEO, 4, 4, 4, 2, 0, 0.f, &s),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_segment_from_vision_grid_ex(HOPE_SEGMENT_VIDEO, 4, 4, 4, 2, -2, 0.f, &s),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_segment_from_vision_grid_ex(HOPE_SEGMENT_VIDEO, 4, 4, 5, 2, 2, 0.f, &s),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_segment_from_vision_grid_ex(HOPE_SEGMENT_IMAGE, 2, 4, 4, 2, 2, 0.f, &s),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_segment_from_vision_grid_ex(HOPE_SEGMENT_TEXT, 2, 4, 4, 2, 2, 0.f, &s),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_segment_from_vision_grid_ex(HOPE_SEGMENT_VIDEO, 2, 4, 4, 2, 2, 0.f, nullptr),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_segment_from_vision_grid_ex(HOPE_SEGMENT_VIDEO, 2, 4, 4, 2, 2, NAN, &s),
                   HOPE_ERROR_INVALID_VALUE);
}

}  // namespace
