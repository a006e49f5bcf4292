// Temporal scale selection (SPEC §2): fixed, random (splitmix64) and fit policies, against hand-worked values
// and the float64 reference, and bad input.
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
using hope_test::video_segment;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kTextMarker = 123.0f;  // text segments carry this scale; the library must leave it alone

hope_segment_t text(int32_t n) {
  hope_segment_t s = hope_test::text_segment(n);
  s.temporal_scale = kTextMarker;
  return s;
}
bool is_vision(const hope_segment_t &s) { return s.kind != HOPE_SEGMENT_TEXT; }

hope_scale_params_t params_of(int32_t policy) {
  hope_scale_params_t p;
  std::memset(&p, 0, sizeof p);
  p.policy = policy;
  return p;
}

// Expects every field but temporal_scale of vision segments to be unchanged, and text scales untouched.
void expect_only_vision_scales_changed(const std::vector<hope_segment_t> &before,
                                       const std::vector<hope_segment_t> &after) {
  ASSERT_EQ(before.size(), after.size());
  for (size_t i = 0; i < before.size(); ++i) {
    hope_segment_t a = before[i], b = after[i];
    if (is_vision(a)) a.temporal_scale = b.temporal_scale = 0.0f;
    EXPECT_EQ(std::memcmp(&a, &b, sizeof a), 0) << "segment " << i << " changed beyond its temporal_scale";
  }
}

// Applies the library and checks each vision scale against the reference's choice.
void expect_matches_reference(const hope_scale_params_t &p, const std::vector<hope_segment_t> &segs,
                              const char *what) {
  SCOPED_TRACE(what);
  std::vector<hope_segment_t> got = segs;
  float chosen = kNaN;
  ASSERT_HOPE_OK(hope_temporal_scales_select(&p, got.data(), static_cast<int32_t>(got.size()), &chosen));
  expect_only_vision_scales_changed(segs, got);
  const std::vector<double> ref = hope_ref::select_scales(p, segs);
  bool first = true;
  float first_ref = 0.0f;
  for (size_t i = 0; i < segs.size(); ++i) {
    if (!is_vision(segs[i])) continue;
    EXPECT_EQ(got[i].temporal_scale, static_cast<float>(ref[i])) << "segment " << i;
    if (first) first_ref = static_cast<float>(ref[i]);
    first = false;
  }
  if (p.policy == HOPE_SCALE_RANDOM) {
    EXPECT_EQ(chosen, first ? 0.0f : first_ref);
  } else if (!first) {
    EXPECT_EQ(chosen, first_ref);
  }
}

// ---- splitmix64 by hand -----------------------------------------------------------------------------

// The header's formula, written out again here.
uint64_t by_hand(uint64_t *state) {
  *state += 0x9E3779B97F4A7C15ull;
  uint64_t z = *state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

TEST(ScalesRandom, Splitmix64KnownOutputs) {
  // The first outputs of splitmix64 from seed 0 (the published test values of the generator).
  uint64_t s = 0;
  EXPECT_EQ(hope_ref::splitmix64_next(&s), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(hope_ref::splitmix64_next(&s), 0x6E789E6AA1B965F4ull);
  EXPECT_EQ(hope_ref::splitmix64_next(&s), 0x06C45D188009454Full);
  EXPECT_EQ(hope_ref::splitmix64_next(&s), 0xF88BB8A8724C81ECull);
  uint64_t a = 987654321, b = 987654321;
  for (int i = 0; i < 100; ++i) EXPECT_EQ(hope_ref::splitmix64_next(&a), by_hand(&b));
}

TEST(ScalesRandom, SeedZeroFirstDraws) {
  // Seed 0: outputs mod 5 are 0, 0, 4, 4 -> {0.5, 0.5, 1.5, 1.5} from the default set; text in between
  // does not consume draws.
  EXPECT_EQ(0xE220A8397B1DCDAFull % 5, 0u);
  EXPECT_EQ(0x6E789E6AA1B965F4ull % 5, 0u);
  EXPECT_EQ(0x06C45D188009454Full % 5, 4u);
  EXPECT_EQ(0xF88BB8A8724C81ECull % 5, 4u);
  std::vector<hope_segment_t> segs = {
      text(3), video_segment(2, 2, 2), text(1), image_segment(2, 2), video_segment(4, 1, 1),
      text(0), video_segment(1, 3, 3)};
  const std::vector<hope_segment_t> before = segs;
  hope_scale_params_t p = params_of(HOPE_SCALE_RANDOM);
  p.seed = 0;
  float chosen = kNaN;
  ASSERT_HOPE_OK(hope_temporal_scales_select(&p, segs.data(), static_cast<int32_t>(segs.size()), &chosen));
  EXPECT_EQ(segs[1].temporal_scale, 0.5f);
  EXPECT_EQ(segs[3].temporal_scale, 0.5f);
  EXPECT_EQ(segs[4].temporal_scale, 1.5f);
  EXPECT_EQ(segs[6].temporal_scale, 1.5f);
  EXPECT_EQ(chosen, 0.5f);
  expect_only_vision_scales_changed(before, segs);
  // With three custom candidates: outputs mod 3 are 1, 0, 1, 1.
  const float cands[3] = {0.25f, 2.0f, 0.6f};
  p.num_candidates = 3;
  p.candidates = cands;
  segs = before;
  ASSERT_HOPE_OK(hope_temporal_scales_select(&p, segs.data(), static_cast<int32_t>(segs.size()), &chosen));
  EXPECT_EQ(segs[1].temporal_scale, 2.0f);
  EXPECT_EQ(segs[3].temporal_scale, 0.25f);
  EXPECT_EQ(segs[4].temporal_scale, 2.0f);
  EXPECT_EQ(segs[6].temporal_scale, 2.0f);
  EXPECT_EQ(chosen, 2.0f);
}

TEST(ScalesRandom, SameSeedSameDrawsDifferentSeedDiffers) {
  std::vector<hope_segment_t> segs;
  for (int i = 0; i < 64; ++i) {
    segs.push_back(text(i % 5));
    segs.push_back(video_segment(1 + i % 3, 2, 2));
  }
  auto draw = [&](uint64_t seed) {
    std::vector<hope_segment_t> s = segs;
    hope_scale_params_t p = params_of(HOPE_SCALE_RANDOM);
    p.seed = seed;
    EXPECT_HOPE_OK(hope_temporal_scales_select(&p, s.data(), static_cast<int32_t>(s.size()), nullptr));
    std::vector<float> out;
    for (const hope_segment_t &x : s)
      if (is_vision(x)) out.push_back(x.temporal_scale);
    return out;
  };
  const std::vector<float> a = draw(0x1234), b = draw(0x1234), c = draw(0x1235);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  // Every draw is a candidate, and all five occur over 64 draws.
  int seen[5] = {0, 0, 0, 0, 0};
  const float cands[] = HOPE_DEFAULT_SCALE_CANDIDATES;
  for (float x : a) {
    bool found = false;
    for (int k = 0; k < 5; ++k)
      if (x == cands[k]) found = true, ++seen[k];
    EXPECT_TRUE(found) << x;
  }
  for (int k = 0; k < 5; ++k) EXPECT_GT(seen[k], 0) << "candidate " << cands[k] << " never drawn";
}

TEST(ScalesRandom, NoVisionSegments) {
  std::vector<hope_segment_t> segs = {text(4), text(0)};
  const std::vector<hope_segment_t> before = segs;
  hope_scale_params_t p = params_of(HOPE_SCALE_RANDOM);
  p.seed = 99;
  float chosen = kNaN;
  EXPECT_HOPE_OK(hope_temporal_scales_select(&p, segs.data(), 2, &chosen));
  EXPECT_EQ(chosen, 0.0f);
  EXPECT_EQ(std::memcmp(segs.data(), before.data(), sizeof(hope_segment_t) * 2), 0);
  chosen = kNaN;
  EXPECT_HOPE_OK(hope_temporal_scales_select(&p, nullptr, 0, &chosen));
  EXPECT_EQ(chosen, 0.0f);
}

// ---- fixed --------------------------------------------------------------------------------------------

TEST(ScalesFixed, WritesEveryVisionSegmentAndLeavesTextAlone) {
  std::vector<hope_segment_t> segs = {text(2), video_segment(3, 2, 2, 1.25f), image_segment(4, 4), text(7),
                                      video_segment(1, 1, 1, -1.0f)};
  const std::vector<hope_segment_t> before = segs;
  hope_scale_params_t p = params_of(HOPE_SCALE_FIXED);
  p.fixed_scale = 0.75f;
  float chosen = kNaN;
  ASSERT_HOPE_OK(hope_temporal_scales_select(&p, segs.data(), static_cast<int32_t>(segs.size()), &chosen));
  EXPECT_EQ(chosen, 0.75f);
  for (const hope_segment_t &s : segs) EXPECT_EQ(s.temporal_scale, is_vision(s) ? 0.75f : kTextMarker);
  expect_only_vision_scales_changed(before, segs);
  // A fixed scale outside the candidate set is allowed; chosen may be NULL.
  p.fixed_scale = 3.0f;
  ASSERT_HOPE_OK(hope_temporal_scales_select(&p, segs.data(), static_cast<int32_t>(segs.size()), nullptr));
  EXPECT_EQ(segs[4].temporal_scale, 3.0f);
}

// ---- fit ----------------------------------------------------------------------------------------------

// text 10 + video 5 x 2 x 2 + text 3: diagonal next_position = start + 10 + 4 s + 1 + 3 = start + 14 + 4 s.
std::vector<hope_segment_t> fit_sequence() { return {text(10), video_segment(5, 2, 2), text(3)}; }

float fit(double budget, float start, const float *cands = nullptr, int32_t n = 0,
          std::vector<hope_segment_t> *segs_out = nullptr) {
  std::vector<hope_segment_t> segs = fit_sequence();
  hope_scale_params_t p = params_of(HOPE_SCALE_FIT);
  p.position_budget = budget;
  p.start = start;
  p.candidates = cands;
  p.num_candidates = n;
  float chosen = kNaN;
  EXPECT_HOPE_OK(hope_temporal_scales_select(&p, segs.data(), static_cast<int32_t>(segs.size()), &chosen));
  EXPECT_EQ(segs[1].temporal_scale, chosen);
  EXPECT_EQ(segs[0].temporal_scale, kTextMarker);
  if (segs_out) *segs_out = segs;
  return chosen;
}

TEST(ScalesFit, BudgetEdges) {
  // next_position for 0.5, 0.75, 1.0, 1.25, 1.5: 16, 17, 18, 19, 20.
  EXPECT_EQ(fit(20.0, 0.0f), 1.5f);
  EXPECT_EQ(fit(19.999, 0.0f), 1.25f);
  EXPECT_EQ(fit(18.0, 0.0f), 1.0f);        // exactly a candidate's next_position picks it
  EXPECT_EQ(fit(17.999999, 0.0f), 0.75f);  // just below picks the next smaller
  EXPECT_EQ(fit(16.0, 0.0f), 0.5f);
  EXPECT_EQ(fit(15.9, 0.0f), 0.5f);  // none fits: the smallest
  EXPECT_EQ(fit(-1.0e9, 0.0f), 0.5f);
  EXPECT_EQ(fit(std::numeric_limits<double>::infinity(), 0.0f), 1.5f);
  EXPECT_EQ(fit(-std::numeric_limits<double>::infinity(), 0.0f), 0.5f);
  // The start counts: from 100 000 the values are 100 016 ... 100 020.
  EXPECT_EQ(fit(100018.0, 100000.0f), 1.0f);
  EXPECT_EQ(fit(100017.5, 100000.0f), 0.75f);
  EXPECT_EQ(fit(18.0, 100000.0f), 0.5f);
}

TEST(ScalesFit, ChosenScaleReallyFits) {
  std::vector<hope_segment_t> segs;
  const float chosen = fit(18.5, 0.0f, nullptr, 0, &segs);
  EXPECT_EQ(chosen, 1.0f);
  int64_t n = 0;
  ASSERT_HOPE_OK(hope_positions_count(segs.data(), 3, &n));
  std::vector<float> pos(3 * n);
  float next = 0.0f;
  // The default scale does not matter: every vision segment now carries its own.
  ASSERT_HOPE_OK(hope_positions_build(segs.data(), 3, HOPE_LAYOUT_DIAGONAL, 1.5f, 0.0f, pos.data(), n, &next));
  EXPECT_EQ(next, 18.0f);
}

TEST(ScalesFit, CustomCandidates) {
  // Unsorted, with a duplicate: next_position = 14 + 4 s.
  const float cands[] = {2.0f, 0.3f, 1.1f, 2.0f, 0.9f};
  EXPECT_EQ(fit(22.0, 0.0f, cands, 5), 2.0f);                              // 22
  EXPECT_EQ(fit(21.9, 0.0f, cands, 5), 1.1f);                              // 18.4
  EXPECT_EQ(fit(static_cast<float>(14 + 4 * 0.9), 0.0f, cands, 5), 0.9f);  // 17.6 (as float32)
  EXPECT_EQ(fit(15.0, 0.0f, cands, 5), 0.3f);                              // 15.2 does not fit: smallest
  const float one[] = {0.75f};
  EXPECT_EQ(fit(0.0, 0.0f, one, 1), 0.75f);
  EXPECT_EQ(fit(1e9, 0.0f, one, 1), 0.75f);
}

// A candidate hope_positions_build would refuse (positions beyond float32) is never chosen: 1e38 "fits" an infinite
// budget by next_position alone, but frame 4 of the video would sit at 4e38. None buildable: INVALID_VALUE.
TEST(ScalesFit, NeverChoosesAScaleTheBuildRefuses) {
  const double inf = std::numeric_limits<double>::infinity();
  const float huge[] = {1e38f, 0.5f, 3e38f, 2.0f};
  std::vector<hope_segment_t> segs;
  float chosen = 0.0f;
  for (const double budget : {inf, 1e300, 1e39}) {
    segs = fit_sequence();
    hope_scale_params_t p = params_of(HOPE_SCALE_FIT);
    p.position_budget = budget;
    p.candidates = huge;
    p.num_candidates = 4;
    ASSERT_HOPE_OK(hope_temporal_scales_select(&p, segs.data(), static_cast<int32_t>(segs.size()), &chosen));
    EXPECT_EQ(chosen, 2.0f) << budget;
    int64_t n = 0;
    ASSERT_HOPE_OK(hope_positions_count(segs.data(), 3, &n));
    std::vector<float> pos(3 * n);
    float next = 0.0f;
    EXPECT_HOPE_OK(hope_positions_build(segs.data(), 3, HOPE_LAYOUT_DIAGONAL, 1.0f, 0.0f, pos.data(), n, &next));
  }
  // None fits a small budget: the smallest *buildable* one (0.5 here, as before).
  EXPECT_EQ(fit(1.0, 0.0f, huge, 4), 0.5f);
  // The start counts too: from 3e38 a scale of 2e37 overflows (3e38 + 8e37 > FLT_MAX), 1e-3 does not.
  const float near_max[] = {2e37f, 1e-3f};
  EXPECT_EQ(fit(inf, 3e38f, near_max, 2), 1e-3f);
  const float only_huge[] = {1e38f, 3e38f};
  segs = fit_sequence();
  hope_scale_params_t p = params_of(HOPE_SCALE_FIT);
  p.position_budget = inf;
  p.candidates = only_huge;
  p.num_candidates = 2;
  const std::vector<hope_segment_t> before = segs;
  EXPECT_HOPE_FAIL(hope_temporal_scales_select(&p, segs.data(), static_cast<int32_t>(segs.size()), &chosen),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_NE(std::strstr(hope_last_error(), "float32"), nullptr) << hope_last_error();
  EXPECT_EQ(std::memcmp(segs.data(), before.data(), sizeof(hope_segment_t) * segs.size()), 0);  // nothing written
}

TEST(ScalesFit, TextOnlyFitsOrNot) {
  std::vector<hope_segment_t> segs = {text(100)};
  hope_scale_params_t p = params_of(HOPE_SCALE_FIT);
  p.position_budget = 100.0;
  float chosen = kNaN;
  EXPECT_HOPE_OK(hope_temporal_scales_select(&p, segs.data(), 1, &chosen));
  EXPECT_EQ(chosen, 1.5f);  // every candidate fits: the largest
  EXPECT_EQ(segs[0].temporal_scale, kTextMarker);
  p.position_budget = 99.0;
  EXPECT_HOPE_OK(hope_temporal_scales_select(&p, segs.data(), 1, &chosen));
  EXPECT_EQ(chosen, 0.5f);
}

// ---- against the reference ----------------------------------------------------------------------------

TEST(ScalesSelect, MatchesReferenceOnRandomSequences) {
  std::mt19937_64 rng(4242);
  std::uniform_int_distribution<int> num(0, 8), kind(0, 2), len(0, 30), small(1, 5), side(1, 6);
  std::uniform_real_distribution<float> cand(0.1f, 3.0f), start(0.0f, 200000.0f);
  for (int iter = 0; iter < 200; ++iter) {
    std::vector<hope_segment_t> segs;
    const int n = num(rng);
    for (int i = 0; i < n; ++i) {
      const int k = kind(rng);
      segs.push_back(k == 0   ? text(len(rng))
                     : k == 1 ? image_segment(side(rng), side(rng))
                              : video_segment(small(rng), side(rng), side(rng)));
    }
    std::vector<float> cands;
    if (iter % 2) {
      const int nc = 1 + static_cast<int>(rng() % 7);
      for (int c = 0; c < nc; ++c) cands.push_back(cand(rng));
    }
    hope_scale_params_t p = params_of(HOPE_SCALE_RANDOM);
    p.num_candidates = static_cast<int32_t>(cands.size());
    p.candidates = cands.empty() ? nullptr : cands.data();
    p.seed = rng();
    expect_matches_reference(p, segs, "random");
    p.policy = HOPE_SCALE_FIXED;
    p.fixed_scale = cand(rng);
    expect_matches_reference(p, segs, "fixed");
    p.policy = HOPE_SCALE_FIT;
    p.start = iter % 3 ? start(rng) : 0.0f;
    // A budget near the middle of the reachable range, so that both outcomes occur.
    const hope_ref::Positions lo = hope_ref::build_positions(segs, HOPE_LAYOUT_DIAGONAL, 0.1, p.start);
    const hope_ref::Positions hi = hope_ref::build_positions(segs, HOPE_LAYOUT_DIAGONAL, 3.0, p.start);
    std::uniform_real_distribution<double> budget(lo.next_position - 2.0, hi.next_position + 2.0);
    p.position_budget = budget(rng);
    expect_matches_reference(p, segs, "fit");
  }
}

// ---- bad input ------------------------------------------------------------------------------------------

void expect_select_fails(const hope_scale_params_t *p, std::vector<hope_segment_t> segs, int32_t num_segments,
                         bool null_segments, const char *what) {
  SCOPED_TRACE(what);
  const std::vector<hope_segment_t> before = segs;
  float chosen = -77.0f;
  EXPECT_HOPE_FAIL(hope_temporal_scales_select(p, null_segments ? nullptr : segs.data(), num_segments, &chosen),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_EQ(chosen, -77.0f);
  EXPECT_EQ(std::memcmp(segs.data(), before.data(), sizeof(hope_segment_t) * segs.size()), 0)
      << "segments were written on failure";
}

TEST(ScalesSelect, RejectsBadInput) {
  const std::vector<hope_segment_t> segs = {text(2), video_segment(3, 2, 2, 1.0f), image_segment(2, 2)};
  const int32_t n = 3;
  hope_scale_params_t p = params_of(HOPE_SCALE_RANDOM);
  expect_select_fails(nullptr, segs, n, false, "NULL params");
  expect_select_fails(&p, segs, n, true, "NULL segments");
  expect_select_fails(&p, segs, -1, false, "negative num_segments");
  for (int32_t policy : {3, -1, 100}) {
    p = params_of(policy);
    p.fixed_scale = 1.0f;
    expect_select_fails(&p, segs, n, false, "unknown policy");
  }
  const float nan_cands[] = {0.5f, kNaN};
  const float zero_cands[] = {0.0f, 1.0f};
  const float neg_cands[] = {1.0f, -0.5f};
  const float inf_cands[] = {kInf, 1.0f};
  for (int32_t policy : {HOPE_SCALE_FIXED, HOPE_SCALE_RANDOM, HOPE_SCALE_FIT}) {
    p = params_of(policy);
    p.fixed_scale = 1.0f;
    p.position_budget = 100.0;
    p.num_candidates = -1;
    expect_select_fails(&p, segs, n, false, "negative num_candidates");
    p.num_candidates = 2;
    p.candidates = nullptr;
    expect_select_fails(&p, segs, n, false, "NULL candidates");
    for (const float *c : {nan_cands, zero_cands, neg_cands, inf_cands}) {
      p.candidates = c;
      expect_select_fails(&p, segs, n, false, "bad candidate");
    }
    p.num_candidates = 0;
    p.candidates = nullptr;
    expect_select_fails(&p, {text(2), video_segment(0, 2, 2)}, 2, false, "grid 0");
    expect_select_fails(&p, {text(2), video_segment(2, 2, 2, kNaN)}, 2, false, "NaN segment scale");
    expect_select_fails(&p, {text(-1), video_segment(2, 2, 2)}, 2, false, "negative text length");
    expect_select_fails(&p, {video_segment(1 << 16, 1 << 16, 1 << 16)}, 1, false, "token count overflow");
    expect_select_fails(&p, {text(INT32_MAX), image_segment(1, 1)}, 2, false, "token count overflow in the sum");
  }
  p = params_of(HOPE_SCALE_FIXED);
  for (float bad : {0.0f, -1.0f, kNaN, kInf}) {
    p.fixed_scale = bad;
    expect_select_fails(&p, segs, n, false, "bad fixed_scale");
  }
  p = params_of(HOPE_SCALE_FIT);
  p.position_budget = std::numeric_limits<double>::quiet_NaN();
  expect_select_fails(&p, segs, n, false, "NaN budget");
  p.position_budget = 100.0;
  p.start = kNaN;
  expect_select_fails(&p, segs, n, false, "NaN start");
  p.start = kInf;
  expect_select_fails(&p, segs, n, false, "inf start");
  // The message names the broken segment.
  p = params_of(HOPE_SCALE_FIXED);
  p.fixed_scale = 1.0f;
  std::vector<hope_segment_t> broken = {text(2), text(2), image_segment(0, 0)};
  EXPECT_EQ(hope_temporal_scales_select(&p, broken.data(), 3, nullptr), HOPE_ERROR_INVALID_VALUE);
  EXPECT_NE(std::string(hope_last_error()).find("segments[2]"), std::string::npos) << hope_last_error();
}

}  // namespace
