// Positions (SPEC §1): hand-worked examples per layout, next_position, bit-exact agreement with the float64
// reference on random sequences, generated tokens, the vision-grid helper, and bad input for each entry point.
#include <array>
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

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

constexpr int64_t kGuard = 16;
constexpr uint32_t kPoisonBits = 0xffffffffu;  // a NaN pattern

// Builds through the library into a poisoned buffer with guard zones around it, and checks that every
// element was written and nothing outside it was.
struct Built {
  std::vector<std::array<float, 3>> tok;  // (t, h, w) per token
  float next = 0.0f;
  int64_t n = 0;
};

Built build(const std::vector<hope_segment_t> &segs, hope_layout_t layout, float default_scale, float start) {
  Built b;
  EXPECT_HOPE_OK(hope_positions_count(segs.data(), static_cast<int32_t>(segs.size()), &b.n));
  std::vector<uint32_t> buf(3 * b.n + 2 * kGuard, kPoisonBits);
  float *pos = reinterpret_cast<float *>(buf.data() + kGuard);
  float next = kNaN;
  EXPECT_HOPE_OK(hope_positions_build(segs.data(), static_cast<int32_t>(segs.size()), layout, default_scale, start,
                                      pos, b.n, &next));
  b.next = next;
  for (int64_t g = 0; g < kGuard; ++g) {
    EXPECT_EQ(buf[g], kPoisonBits) << "guard before the output was written at " << g;
    EXPECT_EQ(buf[kGuard + 3 * b.n + g], kPoisonBits) << "guard after the output was written at " << g;
  }
  b.tok.resize(b.n);
  for (int64_t k = 0; k < b.n; ++k) b.tok[k] = {pos[k], pos[b.n + k], pos[2 * b.n + k]};
  return b;
}

::testing::AssertionResult rows_equal(const Built &got, const std::vector<std::array<float, 3>> &want) {
  if (got.tok.size() != want.size())
    return ::testing::AssertionFailure() << "token count " << got.tok.size() << " != " << want.size();
  for (size_t k = 0; k < want.size(); ++k)
    for (int r = 0; r < 3; ++r)
      if (bits(got.tok[k][r]) != bits(want[k][r]))
        return ::testing::AssertionFailure() << "token " << k << " row " << "thw"[r] << ": got " << got.tok[k][r]
                                             << ", expected " << want[k][r];
  return ::testing::AssertionSuccess();
}

// Bit-exact comparison with the float64 reference rounded to float32.
::testing::AssertionResult matches_reference(const std::vector<hope_segment_t> &segs, hope_layout_t layout,
                                             float default_scale, float start) {
  const Built got = build(segs, layout, default_scale, start);
  const hope_ref::Positions ref = hope_ref::build_positions(segs, layout, default_scale, start);
  if (static_cast<int64_t>(ref.t.size()) != got.n)
    return ::testing::AssertionFailure() << "count " << got.n << " != reference " << ref.t.size();
  for (int64_t k = 0; k < got.n; ++k) {
    const double r[3] = {ref.t[k], ref.h[k], ref.w[k]};
    for (int c = 0; c < 3; ++c)
      if (bits(got.tok[k][c]) != bits(static_cast<float>(r[c])))
        return ::testing::AssertionFailure() << "token " << k << " row " << "thw"[c] << ": got " << got.tok[k][c]
                                             << ", reference " << r[c];
  }
  if (bits(got.next) != bits(static_cast<float>(ref.next_position)))
    return ::testing::AssertionFailure() << "next_position " << got.next << " != reference " << ref.next_position;
  return ::testing::AssertionSuccess();
}

const char *layout_name(hope_layout_t l) {
  return l == HOPE_LAYOUT_SEQUENTIAL ? "sequential" : l == HOPE_LAYOUT_MROPE ? "mrope" : "diagonal";
}

// ---- hand-worked examples -------------------------------------------------------------------------------

// text 3 + video (T, H, W) = (2, 2, 3) + text 2, default scale 0.5, start 10.
std::vector<hope_segment_t> example_a() { return {text_segment(3), video_segment(2, 2, 3), text_segment(2)}; }

TEST(PositionsBuild, DiagonalHandWorked) {
  // Video base 13; floor((H-1)/2) = 0, floor((W-1)/2) = 1; t = 13 + 0.5 f; text resumes at 13.5 + 1.
  const Built b = build(example_a(), HOPE_LAYOUT_DIAGONAL, 0.5f, 10.0f);
  EXPECT_TRUE(rows_equal(b, {{10, 10, 10}, {11, 11, 11}, {12, 12, 12},
                             {13, 13, 12}, {13, 13, 13}, {13, 13, 14},
                             {13, 14, 12}, {13, 14, 13}, {13, 14, 14},
                             {13.5f, 13.5f, 12.5f}, {13.5f, 13.5f, 13.5f}, {13.5f, 13.5f, 14.5f},
                             {13.5f, 14.5f, 12.5f}, {13.5f, 14.5f, 13.5f}, {13.5f, 14.5f, 14.5f},
                             {14.5f, 14.5f, 14.5f}, {15.5f, 15.5f, 15.5f}}));
  EXPECT_EQ(b.next, 16.5f);
}

TEST(PositionsBuild, MropeHandWorked) {
  // Video base 13: (13 + f, 13 + y, 13 + x); largest value 15, so text resumes at 16. Scale is ignored.
  const Built b = build(example_a(), HOPE_LAYOUT_MROPE, 0.5f, 10.0f);
  EXPECT_TRUE(rows_equal(b, {{10, 10, 10}, {11, 11, 11}, {12, 12, 12},
                             {13, 13, 13}, {13, 13, 14}, {13, 13, 15},
                             {13, 14, 13}, {13, 14, 14}, {13, 14, 15},
                             {14, 13, 13}, {14, 13, 14}, {14, 13, 15},
                             {14, 14, 13}, {14, 14, 14}, {14, 14, 15},
                             {16, 16, 16}, {17, 17, 17}}));
  EXPECT_EQ(b.next, 18.0f);
}

TEST(PositionsBuild, SequentialHandWorked) {
  const Built b = build(example_a(), HOPE_LAYOUT_SEQUENTIAL, 0.5f, 10.0f);
  std::vector<std::array<float, 3>> want;
  for (int k = 0; k < 17; ++k) want.push_back({10.0f + k, 10.0f + k, 10.0f + k});
  EXPECT_TRUE(rows_equal(b, want));
  EXPECT_EQ(b.next, 27.0f);
}

TEST(PositionsBuild, ImageDiagonalAndMrope) {
  // text 1 + image 3 x 4 + text 1 from 0. Diagonal: base 1, floor(2/2) = 1, floor(3/2) = 1, so h = y, w = x.
  const std::vector<hope_segment_t> segs = {text_segment(1), image_segment(3, 4), text_segment(1)};
  const Built d = build(segs, HOPE_LAYOUT_DIAGONAL, 1.0f, 0.0f);
  EXPECT_TRUE(rows_equal(d, {{0, 0, 0},
                             {1, 0, 0}, {1, 0, 1}, {1, 0, 2}, {1, 0, 3},
                             {1, 1, 0}, {1, 1, 1}, {1, 1, 2}, {1, 1, 3},
                             {1, 2, 0}, {1, 2, 1}, {1, 2, 2}, {1, 2, 3},
                             {2, 2, 2}}));
  EXPECT_EQ(d.next, 3.0f);
  // M-RoPE: (1, 1 + y, 1 + x); largest value 4, text resumes at 5.
  const Built m = build(segs, HOPE_LAYOUT_MROPE, 1.0f, 0.0f);
  EXPECT_TRUE(rows_equal(m, {{0, 0, 0},
                             {1, 1, 1}, {1, 1, 2}, {1, 1, 3}, {1, 1, 4},
                             {1, 2, 1}, {1, 2, 2}, {1, 2, 3}, {1, 2, 4},
                             {1, 3, 1}, {1, 3, 2}, {1, 3, 3}, {1, 3, 4},
                             {5, 5, 5}}));
  EXPECT_EQ(m.next, 6.0f);
}

TEST(PositionsBuild, SegmentScaleOverridesDefault) {
  // Two 3 x 1 x 1 videos from 0, default 1.0: the first uses it (scale 0 and a negative scale both mean
  // default), the second carries 0.25, giving fractional positions.
  const Built b = build({video_segment(3, 1, 1, 0.0f), video_segment(3, 1, 1, 0.25f), video_segment(2, 1, 1, -3.0f)},
                        HOPE_LAYOUT_DIAGONAL, 1.0f, 0.0f);
  EXPECT_TRUE(rows_equal(b, {{0, 0, 0}, {1, 1, 1}, {2, 2, 2},
                             {3, 3, 3}, {3.25f, 3.25f, 3.25f}, {3.5f, 3.5f, 3.5f},
                             {4.5f, 4.5f, 4.5f}, {5.5f, 5.5f, 5.5f}}));
  EXPECT_EQ(b.next, 6.5f);
  // The scale does not matter in M-RoPE.
  const Built m = build({video_segment(3, 1, 1, 0.0f), video_segment(3, 1, 1, 0.25f)}, HOPE_LAYOUT_MROPE, 1.0f, 0.0f);
  EXPECT_TRUE(rows_equal(m, {{0, 0, 0}, {1, 0, 0}, {2, 0, 0}, {3, 3, 3}, {4, 3, 3}, {5, 3, 3}}));
  EXPECT_EQ(m.next, 6.0f);
}

TEST(PositionsBuild, EndingWithVision) {
  // text 2 + video 4 x 1 x 2 at scale 0.75 from 0.
  const std::vector<hope_segment_t> segs = {text_segment(2), video_segment(4, 1, 2, 0.75f)};
  const Built d = build(segs, HOPE_LAYOUT_DIAGONAL, 1.0f, 0.0f);
  // t = 2, 2.75, 3.5, 4.25; floor(0/2) = 0, floor(1/2) = 0, so h = t and w = t + x.
  EXPECT_TRUE(rows_equal(d, {{0, 0, 0}, {1, 1, 1},
                             {2, 2, 2}, {2, 2, 3},
                             {2.75f, 2.75f, 2.75f}, {2.75f, 2.75f, 3.75f},
                             {3.5f, 3.5f, 3.5f}, {3.5f, 3.5f, 4.5f},
                             {4.25f, 4.25f, 4.25f}, {4.25f, 4.25f, 5.25f}}));
  EXPECT_EQ(d.next, 5.25f);  // 1 + largest t; the larger w (5.25) is not considered
  const Built m = build(segs, HOPE_LAYOUT_MROPE, 1.0f, 0.0f);
  EXPECT_EQ(m.next, 6.0f);  // largest of (2 + 3, 2 + 0, 2 + 1) is 5
  EXPECT_EQ(m.tok.back()[0], 5.0f);
  EXPECT_EQ(m.tok.back()[1], 2.0f);
  EXPECT_EQ(m.tok.back()[2], 3.0f);
  const Built s = build(segs, HOPE_LAYOUT_SEQUENTIAL, 1.0f, 0.0f);
  EXPECT_EQ(s.next, 10.0f);
}

TEST(PositionsBuild, MropeResumesAfterTallestAxis) {
  // The largest of the three rows decides: here H (5) beats T (2) and W (3).
  const Built m = build({video_segment(2, 5, 3), text_segment(1)}, HOPE_LAYOUT_MROPE, 1.0f, 7.0f);
  EXPECT_EQ(m.tok.back()[0], 12.0f);
  EXPECT_EQ(m.next, 13.0f);
  // Diagonal: H = 5 gives h up to t + 2, which does not move the text.
  const Built d = build({video_segment(2, 5, 3), text_segment(1)}, HOPE_LAYOUT_DIAGONAL, 1.0f, 7.0f);
  EXPECT_EQ(d.tok.back()[0], 9.0f);
  EXPECT_EQ(d.next, 10.0f);
}

TEST(PositionsBuild, AllTextAndEmptyTextSegments) {
  for (hope_layout_t layout : {HOPE_LAYOUT_SEQUENTIAL, HOPE_LAYOUT_MROPE, HOPE_LAYOUT_DIAGONAL}) {
    SCOPED_TRACE(layout_name(layout));
    const Built b = build({text_segment(5), text_segment(0), text_segment(3), text_segment(0)}, layout, 1.0f, 7.0f);
    std::vector<std::array<float, 3>> want;
    for (int k = 0; k < 8; ++k) want.push_back({7.0f + k, 7.0f + k, 7.0f + k});
    EXPECT_TRUE(rows_equal(b, want));
    EXPECT_EQ(b.next, 15.0f);
  }
  // An empty text segment between blocks changes nothing.
  const Built with =
      build({video_segment(2, 1, 1), text_segment(0), video_segment(1, 1, 1)}, HOPE_LAYOUT_DIAGONAL, 0.5f, 0.0f);
  EXPECT_TRUE(rows_equal(with, {{0, 0, 0}, {0.5f, 0.5f, 0.5f}, {1.5f, 1.5f, 1.5f}}));
  EXPECT_EQ(with.next, 2.5f);
}

TEST(PositionsBuild, OneToken) {
  for (hope_layout_t layout : {HOPE_LAYOUT_SEQUENTIAL, HOPE_LAYOUT_MROPE, HOPE_LAYOUT_DIAGONAL}) {
    SCOPED_TRACE(layout_name(layout));
    const Built t = build({text_segment(1)}, layout, 1.0f, 0.0f);
    EXPECT_TRUE(rows_equal(t, {{0, 0, 0}}));
    EXPECT_EQ(t.next, 1.0f);
    const Built i = build({image_segment(1, 1, 0.5f)}, layout, 1.0f, 42.5f);
    EXPECT_TRUE(rows_equal(i, {{42.5f, 42.5f, 42.5f}}));
    EXPECT_EQ(i.next, 43.5f);
  }
}

TEST(PositionsBuild, EmptyList) {
  for (hope_layout_t layout : {HOPE_LAYOUT_SEQUENTIAL, HOPE_LAYOUT_MROPE, HOPE_LAYOUT_DIAGONAL}) {
    SCOPED_TRACE(layout_name(layout));
    int64_t n = -1;
    EXPECT_HOPE_OK(hope_positions_count(nullptr, 0, &n));
    EXPECT_EQ(n, 0);
    float next = kNaN;
    EXPECT_HOPE_OK(hope_positions_build(nullptr, 0, layout, 1.0f, 123.25f, nullptr, 0, &next));
    EXPECT_EQ(next, 123.25f);
    // Only empty text: still 0 tokens.
    const hope_segment_t empty = text_segment(0);
    next = kNaN;
    EXPECT_HOPE_OK(hope_positions_build(&empty, 1, layout, 1.0f, 5.0f, nullptr, 0, &next));
    EXPECT_EQ(next, 5.0f);
  }
  // next_position may be NULL.
  const hope_segment_t one = text_segment(1);
  float p[3] = {kNaN, kNaN, kNaN};
  EXPECT_HOPE_OK(hope_positions_build(&one, 1, HOPE_LAYOUT_DIAGONAL, 1.0f, 2.0f, p, 1, nullptr));
  EXPECT_EQ(p[0], 2.0f);
  EXPECT_EQ(p[2], 2.0f);
}

TEST(PositionsBuild, AboveOneHundredThousand) {
  // A long text prefix, then a video at scale 0.75, from start 1000.5: base 151000.5.
  const std::vector<hope_segment_t> segs = {text_segment(150000), video_segment(3, 3, 3, 0.75f), text_segment(2)};
  const Built d = build(segs, HOPE_LAYOUT_DIAGONAL, 1.0f, 1000.5f);
  ASSERT_EQ(d.n, 150000 + 27 + 2);
  EXPECT_EQ(d.tok[149999][0], 150999.5f);
  // Video token (f, y, x) = (2, 0, 2): t = 151000.5 + 1.5, h = t - 1, w = t + 1.
  const auto &v = d.tok[150000 + (2 * 3 + 0) * 3 + 2];
  EXPECT_EQ(v[0], 151002.0f);
  EXPECT_EQ(v[1], 151001.0f);
  EXPECT_EQ(v[2], 151003.0f);
  EXPECT_EQ(d.tok[150027][0], 151003.0f);
  EXPECT_EQ(d.next, 151005.0f);
  EXPECT_TRUE(matches_reference(segs, HOPE_LAYOUT_DIAGONAL, 1.0f, 1000.5f));
  EXPECT_TRUE(matches_reference(segs, HOPE_LAYOUT_MROPE, 1.0f, 1000.5f));
  EXPECT_TRUE(matches_reference(segs, HOPE_LAYOUT_SEQUENTIAL, 1.0f, 1000.5f));
  // A start near 2^20 with a fractional scale: values are rounded to float32 once.
  const std::vector<hope_segment_t> far = {video_segment(5, 2, 2, 0.3f), text_segment(3)};
  EXPECT_TRUE(matches_reference(far, HOPE_LAYOUT_DIAGONAL, 1.0f, 1048000.0f));
  EXPECT_TRUE(matches_reference(far, HOPE_LAYOUT_DIAGONAL, 1.0f, 3.0e7f));
}

TEST(PositionsBuild, FractionalScalesAreExact) {
  // 0.3 is not a dyadic number; t = base + f * float(0.3) is rounded once, not accumulated.
  const float s = 0.3f;
  const Built b = build({video_segment(4, 1, 1, s)}, HOPE_LAYOUT_DIAGONAL, 1.0f, 0.0f);
  for (int f = 0; f < 4; ++f) EXPECT_EQ(bits(b.tok[f][0]), bits(static_cast<float>(f * static_cast<double>(s))));
  EXPECT_EQ(bits(b.next), bits(static_cast<float>(3 * static_cast<double>(s) + 1.0)));
}

// ---- random sequences against the reference ---------------------------------------------------------

std::vector<hope_segment_t> random_sequence(std::mt19937_64 &rng) {
  std::uniform_int_distribution<int> kind(0, 2), num(0, 7), len(0, 40), small(1, 6), side(1, 9);
  std::uniform_int_distribution<int> scale_kind(0, 3);
  std::uniform_real_distribution<float> any_scale(0.05f, 2.0f);
  const float cands[] = HOPE_DEFAULT_SCALE_CANDIDATES;
  std::vector<hope_segment_t> segs;
  const int n = num(rng);
  for (int i = 0; i < n; ++i) {
    const int k = kind(rng);
    if (k == 0) {
      segs.push_back(text_segment(len(rng)));
      continue;
    }
    float scale = 0.0f;
    switch (scale_kind(rng)) {
      case 0: scale = 0.0f; break;
      case 1: scale = cands[rng() % 5]; break;
      case 2: scale = any_scale(rng); break;
      default: scale = -1.0f; break;
    }
    segs.push_back(k == 1 ? image_segment(side(rng), side(rng), scale)
                          : video_segment(small(rng), side(rng), side(rng), scale));
  }
  return segs;
}

TEST(PositionsBuild, MatchesReferenceOnRandomSequences) {
  std::mt19937_64 rng(20261123);
  std::uniform_real_distribution<float> start_dist(0.0f, 300000.0f), default_dist(0.1f, 2.0f);
  for (int iter = 0; iter < 300; ++iter) {
    const std::vector<hope_segment_t> segs = random_sequence(rng);
    const float start = iter % 4 == 0 ? 0.0f : start_dist(rng);
    const float def = iter % 3 == 0 ? 1.0f : default_dist(rng);
    for (hope_layout_t layout : {HOPE_LAYOUT_SEQUENTIAL, HOPE_LAYOUT_MROPE, HOPE_LAYOUT_DIAGONAL}) {
      ASSERT_TRUE(matches_reference(segs, layout, def, start))
          << "iteration " << iter << ", layout " << layout_name(layout) << ", start " << start << ", default "
          << def << ", " << segs.size() << " segments";
    }
  }
}

TEST(PositionsBuild, ChainedBuildsContinueFromNextPosition) {
  // Building two halves with the second starting at the first's next_position equals building the whole,
  // when every value is exact in float32 (dyadic scales; an arbitrary scale would round the restart point).
  std::mt19937_64 rng(7);
  auto dyadic = [](std::vector<hope_segment_t> segs) {
    for (hope_segment_t &s : segs)
      if (s.temporal_scale > 0.0f && std::ldexp(s.temporal_scale, 2) != std::floor(std::ldexp(s.temporal_scale, 2)))
        s.temporal_scale = 1.25f;
    return segs;
  };
  for (int iter = 0; iter < 50; ++iter) {
    std::vector<hope_segment_t> a = dyadic(random_sequence(rng)), b = dyadic(random_sequence(rng));
    std::vector<hope_segment_t> all = a;
    all.insert(all.end(), b.begin(), b.end());
    for (hope_layout_t layout : {HOPE_LAYOUT_SEQUENTIAL, HOPE_LAYOUT_MROPE, HOPE_LAYOUT_DIAGONAL}) {
      const Built first = build(a, layout, 0.75f, 3.0f);
      const Built second = build(b, layout, 0.75f, first.next);
      const Built whole = build(all, layout, 0.75f, 3.0f);
      ASSERT_EQ(whole.n, first.n + second.n);
      std::vector<std::array<float, 3>> joined = first.tok;
      joined.insert(joined.end(), second.tok.begin(), second.tok.end());
      ASSERT_TRUE(rows_equal(whole, joined)) << "iteration " << iter << " " << layout_name(layout);
      ASSERT_EQ(whole.next, second.next);
    }
  }
}

// ---- bad input --------------------------------------------------------------------------------------

TEST(PositionsCount, RejectsBadInput) {
  const hope_segment_t ok[2] = {text_segment(3), video_segment(2, 2, 2)};
  int64_t n = -7;
  EXPECT_HOPE_FAIL(hope_positions_count(ok, 2, nullptr), HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_positions_count(nullptr, 2, &n), HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_positions_count(ok, -1, &n), HOPE_ERROR_INVALID_VALUE);
  EXPECT_EQ(n, -7);

  struct Case {
    const char *what;
    hope_segment_t bad;
  };
  hope_segment_t unknown = text_segment(1);
  unknown.kind = 3;
  hope_segment_t negative_kind = text_segment(1);
  negative_kind.kind = -1;
  const Case cases[] = {
      {"negative text length", text_segment(-1)},
      {"grid_t 0", video_segment(0, 2, 2)},
      {"grid_h 0", video_segment(2, 0, 2)},
      {"grid_w 0", video_segment(2, 2, 0)},
      {"negative grid", video_segment(2, -2, 2)},
      {"image grid 0", image_segment(0, 3)},
      {"image with grid_t 2", [] { hope_segment_t s = image_segment(2, 2); s.grid_t = 2; return s; }()},
      {"NaN scale", video_segment(1, 1, 1, kNaN)},
      {"inf scale", video_segment(1, 1, 1, kInf)},
      {"-inf scale", image_segment(1, 1, -kInf)},
      {"unknown kind", unknown},
      {"negative kind", negative_kind},
      {"one video over 2^31 - 1 tokens", video_segment(1, 65536, 32768)},
      {"grid product overflows int64", video_segment(1 << 30, 1 << 30, 1 << 30)},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.what);
    const hope_segment_t segs[3] = {text_segment(1), c.bad, text_segment(1)};
    n = -7;
    EXPECT_HOPE_FAIL(hope_positions_count(segs, 3, &n), HOPE_ERROR_INVALID_VALUE);
    EXPECT_EQ(n, -7);
    // The message names the segment.
    EXPECT_NE(std::string(hope_last_error()).find("segments[1]"), std::string::npos) << hope_last_error();
  }
  // The total overflows although each segment fits.
  const hope_segment_t two[2] = {text_segment(INT32_MAX), text_segment(1)};
  EXPECT_HOPE_FAIL(hope_positions_count(two, 2, &n), HOPE_ERROR_INVALID_VALUE);
  EXPECT_EQ(n, -7);
  const hope_segment_t max[2] = {text_segment(INT32_MAX - 1), text_segment(1)};
  EXPECT_HOPE_OK(hope_positions_count(max, 2, &n));
  EXPECT_EQ(n, INT32_MAX);
  // A huge grid times a huge text.
  const hope_segment_t mix[2] = {video_segment(1024, 1024, 1024), text_segment(INT32_MAX)};
  EXPECT_HOPE_FAIL(hope_positions_count(mix, 2, &n), HOPE_ERROR_INVALID_VALUE);
  // Text segments ignore their grid and scale fields.
  hope_segment_t odd_text = text_segment(2);
  odd_text.grid_t = -5;
  odd_text.temporal_scale = kNaN;
  EXPECT_HOPE_OK(hope_positions_count(&odd_text, 1, &n));
  EXPECT_EQ(n, 2);
}

// Calls build with one broken argument and checks nothing was written.
void expect_build_fails(const std::vector<hope_segment_t> &segs, int32_t num_segments, int32_t layout,
                        float default_scale, float start, bool null_positions, int64_t num_tokens,
                        const char *what) {
  SCOPED_TRACE(what);
  std::vector<uint32_t> buf(3 * 64 + 2 * kGuard, kPoisonBits);
  float next = -12345.0f;
  EXPECT_HOPE_FAIL(hope_positions_build(segs.empty() ? nullptr : segs.data(), num_segments,
                                        static_cast<hope_layout_t>(layout), default_scale, start,
                                        null_positions ? nullptr : reinterpret_cast<float *>(buf.data() + kGuard),
                                        num_tokens, &next),
                   HOPE_ERROR_INVALID_VALUE);
  for (size_t i = 0; i < buf.size(); ++i) ASSERT_EQ(buf[i], kPoisonBits) << "element " << i << " was written";
  EXPECT_EQ(next, -12345.0f);
}

TEST(PositionsBuild, RejectsBadInput) {
  const std::vector<hope_segment_t> segs = {text_segment(3), video_segment(2, 2, 3), text_segment(2)};  // 17 tokens
  const int32_t n = 3;
  const int D = HOPE_LAYOUT_DIAGONAL;
  expect_build_fails(segs, n, D, 1.0f, 0.0f, false, 16, "num_tokens too small");
  expect_build_fails(segs, n, D, 1.0f, 0.0f, false, 18, "num_tokens too large");
  expect_build_fails(segs, n, D, 1.0f, 0.0f, false, -1, "negative num_tokens");
  expect_build_fails(segs, n, D, 1.0f, 0.0f, true, 17, "NULL positions");
  expect_build_fails({}, 2, D, 1.0f, 0.0f, false, 17, "NULL segments");
  expect_build_fails(segs, -1, D, 1.0f, 0.0f, false, 0, "negative num_segments");
  expect_build_fails(segs, n, 3, 1.0f, 0.0f, false, 17, "unknown layout");
  expect_build_fails(segs, n, -1, 1.0f, 0.0f, false, 17, "negative layout");
  for (float bad : {0.0f, -1.0f, kNaN, kInf, -kInf}) {
    for (int layout : {HOPE_LAYOUT_SEQUENTIAL, HOPE_LAYOUT_MROPE, HOPE_LAYOUT_DIAGONAL})
      expect_build_fails(segs, n, layout, bad, 0.0f, false, 17, "bad default scale");
  }
  for (float bad : {kNaN, kInf, -kInf}) expect_build_fails(segs, n, D, 1.0f, bad, false, 17, "bad start");
  expect_build_fails({text_segment(3), video_segment(2, 2, 3, kNaN), text_segment(2)}, n, D, 1.0f, 0.0f, false, 17,
                     "NaN segment scale");
  expect_build_fails({text_segment(3), video_segment(2, 0, 3), text_segment(2)}, n, D, 1.0f, 0.0f, false, 11, "grid 0");
  expect_build_fails({text_segment(3), video_segment(2, 2, 3), text_segment(-2)}, n, D, 1.0f, 0.0f, false, 15,
                     "negative text length");
  expect_build_fails({text_segment(1), video_segment(1 << 20, 1 << 20, 1 << 20)}, 2, D, 1.0f, 0.0f, false, 64,
                     "huge grid");
  // Positions that do not fit in float32: a start near FLT_MAX with a huge scale.
  expect_build_fails({video_segment(4, 1, 1, 3.0e38f)}, 1, D, 1.0f, 1.0e38f, false, 4, "float32 overflow");
  expect_build_fails({video_segment(4, 1, 1, 3.0e38f), text_segment(1)}, 2, D, 1.0f, 0.0f, false, 5,
                     "float32 overflow at the end");
  // The message names the broken segment.
  float pos[64];
  EXPECT_EQ(
      hope_positions_build(std::vector<hope_segment_t>{text_segment(3), text_segment(2), image_segment(0, 1)}.data(), 3,
                           HOPE_LAYOUT_DIAGONAL, 1.0f, 0.0f, pos, 5, nullptr),
      HOPE_ERROR_INVALID_VALUE);
  EXPECT_NE(std::string(hope_last_error()).find("segments[2]"), std::string::npos) << hope_last_error();
}

// ---- generated tokens -------------------------------------------------------------------------------

TEST(PositionsGenerated, ContinueFromNextPosition) {
  std::vector<uint32_t> buf(3 * 4 + 2 * kGuard, kPoisonBits);
  float *p = reinterpret_cast<float *>(buf.data() + kGuard);
  // Tokens 3..6 after next_position 16.5.
  EXPECT_HOPE_OK(hope_positions_generated(16.5f, 3, 4, p));
  const float want[4] = {19.5f, 20.5f, 21.5f, 22.5f};
  for (int r = 0; r < 3; ++r)
    for (int j = 0; j < 4; ++j) EXPECT_EQ(p[r * 4 + j], want[j]) << "row " << r << " token " << j;
  for (int64_t g = 0; g < kGuard; ++g) {
    EXPECT_EQ(buf[g], kPoisonBits);
    EXPECT_EQ(buf[kGuard + 12 + g], kPoisonBits);
  }
  // Above 100 000, and rounded once to float32: 2^24 + 1 is not a float32, 2^24 + 2 is.
  float q[6];
  EXPECT_HOPE_OK(hope_positions_generated(16777216.0f, 1, 2, q));
  EXPECT_EQ(q[0], static_cast<float>(16777217.0));
  EXPECT_EQ(q[1], 16777218.0f);
  EXPECT_EQ(q[5], 16777218.0f);
  EXPECT_HOPE_OK(hope_positions_generated(100000.25f, 0, 1, q));
  EXPECT_EQ(q[0], 100000.25f);
  EXPECT_EQ(q[1], 100000.25f);
  EXPECT_EQ(q[2], 100000.25f);
  // n == 0 with NULL is fine.
  EXPECT_HOPE_OK(hope_positions_generated(1.0f, 5, 0, nullptr));
}

TEST(PositionsGenerated, MatchesNextPositionOfAFullBuild) {
  // The first generated token takes the position a trailing 1-token text segment would take, on every row.
  const std::vector<hope_segment_t> segs = {text_segment(4), video_segment(3, 2, 2, 0.75f), image_segment(2, 3)};
  for (hope_layout_t layout : {HOPE_LAYOUT_SEQUENTIAL, HOPE_LAYOUT_MROPE, HOPE_LAYOUT_DIAGONAL}) {
    const Built b = build(segs, layout, 1.0f, 100000.0f);
    std::vector<hope_segment_t> longer = segs;
    longer.push_back(text_segment(3));
    const Built l = build(longer, layout, 1.0f, 100000.0f);
    float g[9];
    EXPECT_HOPE_OK(hope_positions_generated(b.next, 0, 3, g));
    for (int j = 0; j < 3; ++j)
      for (int r = 0; r < 3; ++r) EXPECT_EQ(g[r * 3 + j], l.tok[b.n + j][r]) << layout_name(layout);
  }
}

TEST(PositionsGenerated, RejectsBadInput) {
  float p[6];
  for (float &x : p) x = -1.0f;
  EXPECT_HOPE_FAIL(hope_positions_generated(1.0f, 0, -1, p), HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_positions_generated(1.0f, -1, 2, p), HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_positions_generated(kNaN, 0, 2, p), HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_positions_generated(kInf, 0, 2, p), HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_positions_generated(-kInf, 0, 2, p), HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_positions_generated(1.0f, 0, 2, nullptr), HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_positions_generated(1.0f, INT64_MAX, 2, p), HOPE_ERROR_INVALID_VALUE);
  for (float x : p) EXPECT_EQ(x, -1.0f);
}

// ---- the vision-grid helper -------------------------------------------------------------------------

TEST(PositionsGrid, DividesByMergeSize) {
  hope_segment_t s;
  std::memset(&s, 0xab, sizeof s);
  EXPECT_HOPE_OK(hope_segment_from_vision_grid(HOPE_SEGMENT_IMAGE, 1, 28, 42, 2, 0.0f, &s));
  EXPECT_EQ(s.kind, HOPE_SEGMENT_IMAGE);
  EXPECT_EQ(s.length, 0);
  EXPECT_EQ(s.grid_t, 1);
  EXPECT_EQ(s.grid_h, 14);
  EXPECT_EQ(s.grid_w, 21);
  EXPECT_EQ(s.temporal_scale, 0.0f);
  std::memset(&s, 0xab, sizeof s);
  EXPECT_HOPE_OK(hope_segment_from_vision_grid(HOPE_SEGMENT_VIDEO, 8, 36, 64, 2, 0.75f, &s));
  EXPECT_EQ(s.kind, HOPE_SEGMENT_VIDEO);
  EXPECT_EQ(s.length, 0);
  EXPECT_EQ(s.grid_t, 8);  // the temporal patching is already in grid_t
  EXPECT_EQ(s.grid_h, 18);
  EXPECT_EQ(s.grid_w, 32);
  EXPECT_EQ(s.temporal_scale, 0.75f);
  EXPECT_HOPE_OK(hope_segment_from_vision_grid(HOPE_SEGMENT_VIDEO, 3, 5, 7, 1, -1.0f, &s));
  EXPECT_EQ(s.grid_h, 5);
  EXPECT_EQ(s.grid_w, 7);
  EXPECT_EQ(s.temporal_scale, -1.0f);
  // The result feeds the builder.
  int64_t n = 0;
  EXPECT_HOPE_OK(hope_positions_count(&s, 1, &n));
  EXPECT_EQ(n, 3 * 5 * 7);
}

TEST(PositionsGrid, RejectsBadInput) {
  struct Case {
    const char *what;
    int32_t kind, t, h, w, merge;
    float scale;
  };
  const Case cases[] = {
      {"h not divisible", HOPE_SEGMENT_IMAGE, 1, 27, 28, 2, 0.0f},
      {"w not divisible", HOPE_SEGMENT_VIDEO, 2, 28, 30, 4, 0.0f},
      {"merge 0", HOPE_SEGMENT_VIDEO, 2, 28, 28, 0, 0.0f},
      {"negative merge", HOPE_SEGMENT_VIDEO, 2, 28, 28, -2, 0.0f},
      {"grid_t 0", HOPE_SEGMENT_VIDEO, 0, 28, 28, 2, 0.0f},
      {"grid_h 0", HOPE_SEGMENT_VIDEO, 1, 0, 28, 2, 0.0f},
      {"grid_w negative", HOPE_SEGMENT_VIDEO, 1, 28, -28, 2, 0.0f},
      {"image with grid_t 2", HOPE_SEGMENT_IMAGE, 2, 28, 28, 2, 0.0f},
      {"text kind", HOPE_SEGMENT_TEXT, 1, 28, 28, 2, 0.0f},
      {"unknown kind", 9, 1, 28, 28, 2, 0.0f},
      {"NaN scale", HOPE_SEGMENT_VIDEO, 1, 28, 28, 2, kNaN},
      {"inf scale", HOPE_SEGMENT_VIDEO, 1, 28, 28, 2, kInf},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.what);
    hope_segment_t s, before;
    std::memset(&s, 0xcd, sizeof s);
    before = s;
    EXPECT_HOPE_FAIL(hope_segment_from_vision_grid(c.kind, c.t, c.h, c.w, c.merge, c.scale, &s),
                     HOPE_ERROR_INVALID_VALUE);
    EXPECT_EQ(std::memcmp(&s, &before, sizeof s), 0) << "the output segment was written";
  }
  EXPECT_HOPE_FAIL(hope_segment_from_vision_grid(HOPE_SEGMENT_IMAGE, 1, 28, 28, 2, 0.0f, nullptr),
                   HOPE_ERROR_INVALID_VALUE);
}

}  // namespace
