// SPEC §3: the pair -> component map of every kind, and hope_rope_cos_sin against the long-double reference.
#include <cmath>
#include <string>
#include <vector>

#include "reference/reference.h"
#include "test_util.h"

namespace {

constexpr int T = HOPE_COMPONENT_T, H = HOPE_COMPONENT_H, W = HOPE_COMPONENT_W, N = HOPE_COMPONENT_NONE;

hope_rope_config_t make_config(int kind, int head_dim, int st, int sh, int sw, double theta = 1e6) {
  hope_rope_config_t c{};
  c.kind = kind;
  c.head_dim = head_dim;
  c.sections[0] = st;
  c.sections[1] = sh;
  c.sections[2] = sw;
  c.theta = theta;
  return c;
}

std::vector<int> library_components(const hope_rope_config_t &c) {
  std::vector<int32_t> out(c.head_dim / 2, 77);
  hope_status_t s = hope_rope_components(&c, out.data());
  EXPECT_EQ(s, HOPE_SUCCESS) << hope_last_error();
  return std::vector<int>(out.begin(), out.end());
}

const char *kind_name(int kind) {
  switch (kind) {
    case HOPE_ROPE_VANILLA: return "vanilla";
    case HOPE_ROPE_MROPE: return "mrope";
    case HOPE_ROPE_MROPE_INTERLEAVED: return "mrope_interleaved";
    case HOPE_ROPE_VIDEOROPE: return "videorope";
    default: return "hope";
  }
}

// ---- components: hand-written tables ---------------------------------------------------------------------

TEST(RopeComponents, HandWrittenHeadDim16Sections233) {
  // head_dim 16: 8 pairs, sections (st, sh, sw) = (2, 3, 3).
  EXPECT_EQ(library_components(make_config(HOPE_ROPE_VANILLA, 16, 2, 3, 3)),
            (std::vector<int>{T, T, T, T, T, T, T, T}));
  EXPECT_EQ(library_components(make_config(HOPE_ROPE_MROPE, 16, 2, 3, 3)),
            (std::vector<int>{T, T, H, H, H, W, W, W}));
  EXPECT_EQ(library_components(make_config(HOPE_ROPE_MROPE_INTERLEAVED, 16, 2, 3, 3)),
            (std::vector<int>{T, H, W, T, H, W, T, H}));
  EXPECT_EQ(library_components(make_config(HOPE_ROPE_VIDEOROPE, 16, 2, 3, 3)),
            (std::vector<int>{H, W, H, W, H, W, T, T}));
  EXPECT_EQ(library_components(make_config(HOPE_ROPE_HOPE, 16, 2, 3, 3)),
            (std::vector<int>{H, W, H, W, H, W, N, N}));
}

TEST(RopeComponents, HandWrittenInterleavedBounds) {
  // h limited by 3*sh, w by 3*sw.
  EXPECT_EQ(library_components(make_config(HOPE_ROPE_MROPE_INTERLEAVED, 16, 4, 2, 2)),
            (std::vector<int>{T, H, W, T, H, W, T, T}));
  EXPECT_EQ(library_components(make_config(HOPE_ROPE_MROPE_INTERLEAVED, 16, 2, 4, 2)),
            (std::vector<int>{T, H, W, T, H, W, T, H}));
  EXPECT_EQ(library_components(make_config(HOPE_ROPE_MROPE_INTERLEAVED, 16, 2, 1, 5)),
            (std::vector<int>{T, H, W, T, T, W, T, T}));
  // Zero-sized sections.
  EXPECT_EQ(library_components(make_config(HOPE_ROPE_MROPE, 8, 0, 0, 4)), (std::vector<int>{W, W, W, W}));
  EXPECT_EQ(library_components(make_config(HOPE_ROPE_HOPE, 8, 4, 0, 0)), (std::vector<int>{N, N, N, N}));
  EXPECT_EQ(library_components(make_config(HOPE_ROPE_HOPE, 8, 0, 2, 2)), (std::vector<int>{H, W, H, W}));
  EXPECT_EQ(library_components(make_config(HOPE_ROPE_VIDEOROPE, 8, 1, 2, 1)), (std::vector<int>{H, W, H, T}));
  EXPECT_EQ(library_components(make_config(HOPE_ROPE_MROPE, 2, 1, 0, 0)), (std::vector<int>{T}));
}

TEST(RopeComponents, Qwen2VlSectionsHeadDim128) {
  const std::vector<int> mrope = library_components(make_config(HOPE_ROPE_MROPE, 128, 16, 24, 24));
  const std::vector<int> hope = library_components(make_config(HOPE_ROPE_HOPE, 128, 16, 24, 24));
  const std::vector<int> video = library_components(make_config(HOPE_ROPE_VIDEOROPE, 128, 16, 24, 24));
  const std::vector<int> inter = library_components(make_config(HOPE_ROPE_MROPE_INTERLEAVED, 128, 24, 20, 20));
  ASSERT_EQ(mrope.size(), 64u);
  int counts[4] = {0, 0, 0, 0};
  for (int i = 0; i < 64; ++i) {
    EXPECT_EQ(mrope[i], i < 16 ? T : i < 40 ? H : W) << "mrope pair " << i;
    EXPECT_EQ(hope[i], i < 48 ? (i % 2 == 0 ? H : W) : N) << "hope pair " << i;
    EXPECT_EQ(video[i], i < 48 ? (i % 2 == 0 ? H : W) : T) << "videorope pair " << i;
    EXPECT_EQ(inter[i], (i % 3 == 1 && i < 60) ? H : (i % 3 == 2 && i < 60) ? W : T) << "interleaved pair " << i;
    ++counts[inter[i] + 1];
  }
  // Qwen3-VL (24, 20, 20): 24 t, 20 h, 20 w pairs.
  EXPECT_EQ(counts[T + 1], 24);
  EXPECT_EQ(counts[H + 1], 20);
  EXPECT_EQ(counts[W + 1], 20);
}

TEST(RopeComponents, MatchReferenceOverAllSectionSplits) {
  for (int kind = HOPE_ROPE_MROPE; kind <= HOPE_ROPE_HOPE; ++kind) {
    for (int half : {1, 3, 8, 13}) {
      for (int st = 0; st <= half; ++st) {
        for (int sh = 0; st + sh <= half; ++sh) {
          const hope_rope_config_t c = make_config(kind, 2 * half, st, sh, half - st - sh);
          EXPECT_EQ(library_components(c), hope_ref::components(c))
              << kind_name(kind) << " half " << half << " sections " << st << "," << sh;
        }
      }
    }
  }
  // Vanilla ignores the sections.
  EXPECT_EQ(library_components(make_config(HOPE_ROPE_VANILLA, 64, -3, 999, 0)), std::vector<int>(32, T));
}

TEST(RopeComponents, NullOutputOnlyValidates) {
  const hope_rope_config_t c = make_config(HOPE_ROPE_HOPE, 128, 16, 24, 24);
  EXPECT_HOPE_OK(hope_rope_components(&c, nullptr));
}

// Every invalid config, for both hope_rope_components and hope_rope_cos_sin.
std::vector<std::pair<std::string, hope_rope_config_t>> bad_configs() {
  return {
      {"kind -1", make_config(-1, 16, 2, 3, 3)},
      {"kind 5", make_config(5, 16, 2, 3, 3)},
      {"head_dim 0", make_config(HOPE_ROPE_VANILLA, 0, 0, 0, 0)},
      {"head_dim odd", make_config(HOPE_ROPE_VANILLA, 15, 2, 3, 3)},
      {"head_dim negative", make_config(HOPE_ROPE_VANILLA, -16, 2, 3, 3)},
      {"head_dim 1026", make_config(HOPE_ROPE_VANILLA, 1026, 513, 0, 0)},
      {"theta 1", make_config(HOPE_ROPE_VANILLA, 16, 2, 3, 3, 1.0)},
      {"theta 0.5", make_config(HOPE_ROPE_VANILLA, 16, 2, 3, 3, 0.5)},
      {"theta nan", make_config(HOPE_ROPE_MROPE, 16, 2, 3, 3, NAN)},
      {"theta inf", make_config(HOPE_ROPE_MROPE, 16, 2, 3, 3, INFINITY)},
      {"sections sum short", make_config(HOPE_ROPE_MROPE, 16, 2, 3, 2)},
      {"sections sum long", make_config(HOPE_ROPE_HOPE, 16, 2, 3, 4)},
      {"section negative", make_config(HOPE_ROPE_VIDEOROPE, 16, -1, 5, 4)},
      {"sections overflow", make_config(HOPE_ROPE_MROPE_INTERLEAVED, 16, 2147483647, 2147483647, 4)},
  };
}

TEST(RopeComponents, RejectsBadConfigs) {
  int32_t out[600];
  EXPECT_HOPE_FAIL(hope_rope_components(nullptr, out), HOPE_ERROR_INVALID_VALUE);
  for (const auto &bad : bad_configs()) {
    SCOPED_TRACE(bad.first);
    EXPECT_HOPE_FAIL(hope_rope_components(&bad.second, out), HOPE_ERROR_INVALID_VALUE);
  }
  // The extremes that are valid.
  const hope_rope_config_t lo = make_config(HOPE_ROPE_VANILLA, 2, 0, 0, 0, 1.0000001);
  const hope_rope_config_t hi = make_config(HOPE_ROPE_MROPE, 1024, 512, 0, 0, 1e30);
  EXPECT_HOPE_OK(hope_rope_components(&lo, out));
  EXPECT_HOPE_OK(hope_rope_components(&hi, out));
}

// ---- cos/sin -------------------------------------------------------------------------------------------

// Positions [3][n] whose three rows differ, including the hard values of SPEC §3.
std::vector<float> hard_positions(int64_t n, std::mt19937_64 &rng) {
  const float special[] = {0.0f, 1.0f, 1048576.0f, 1048575.5f, 131071.0f, -1.0f, -131071.0f, -1048576.0f,
                           100000.25f, 262144.0f, 999999.0f, 0.5f, 65535.75f, 524287.5f};
  const int64_t ns = sizeof special / sizeof special[0];
  std::uniform_real_distribution<float> dist(-1048576.0f, 1048576.0f);
  std::vector<float> p(3 * n);
  for (int r = 0; r < 3; ++r)
    for (int64_t k = 0; k < n; ++k)
      p[r * n + k] = k < ns ? special[(k + 5 * r) % ns] : dist(rng);
  return p;
}

struct CosSinCase {
  int kind, head_dim, st, sh, sw;
  double theta;
};

class RopeCosSin : public ::testing::TestWithParam<CosSinCase> {};

TEST_P(RopeCosSin, MatchesLongDoubleReferenceUpTo2Pow20) {
  const CosSinCase &cs = GetParam();
  const hope_rope_config_t c = make_config(cs.kind, cs.head_dim, cs.st, cs.sh, cs.sw, cs.theta);
  std::mt19937_64 rng(1234 + cs.kind);
  const int64_t n = 257;
  const int half = cs.head_dim / 2;
  const std::vector<float> pos = hard_positions(n, rng);
  std::vector<float> cos_out(n * half), sin_out(n * half);
  std::memset(cos_out.data(), 0xff, cos_out.size() * 4);
  std::memset(sin_out.data(), 0xff, sin_out.size() * 4);
  ASSERT_HOPE_OK(hope_rope_cos_sin(&c, pos.data(), n, cos_out.data(), sin_out.data()));
  std::vector<double> rc, rs;
  hope_ref::cos_sin(c, pos.data(), n, &rc, &rs);
  EXPECT_TRUE(hope_test::all_close(std::vector<double>(cos_out.begin(), cos_out.end()), rc, 2e-6));
  EXPECT_TRUE(hope_test::all_close(std::vector<double>(sin_out.begin(), sin_out.end()), rs, 2e-6));
  // "none" pairs are exactly cos 1, sin 0; the others follow their row.
  const std::vector<int> comp = hope_ref::components(c);
  for (int64_t k = 0; k < n; ++k)
    for (int i = 0; i < half; ++i)
      if (comp[i] == HOPE_COMPONENT_NONE) {
        ASSERT_EQ(cos_out[k * half + i], 1.0f) << "token " << k << " pair " << i;
        ASSERT_EQ(sin_out[k * half + i], 0.0f) << "token " << k << " pair " << i;
      }
}

INSTANTIATE_TEST_SUITE_P(
    RopeKinds, RopeCosSin,
    ::testing::Values(CosSinCase{HOPE_ROPE_VANILLA, 128, 0, 0, 0, 1e6},
                      CosSinCase{HOPE_ROPE_VANILLA, 64, 0, 0, 0, 10000.0},
                      CosSinCase{HOPE_ROPE_MROPE, 128, 16, 24, 24, 1e6},
                      CosSinCase{HOPE_ROPE_MROPE_INTERLEAVED, 128, 24, 20, 20, 5e6},
                      CosSinCase{HOPE_ROPE_VIDEOROPE, 128, 16, 24, 24, 1e6},
                      CosSinCase{HOPE_ROPE_HOPE, 128, 16, 24, 24, 1e6},
                      CosSinCase{HOPE_ROPE_HOPE, 16, 2, 3, 3, 10000.0},
                      CosSinCase{HOPE_ROPE_MROPE, 2, 1, 0, 0, 10000.0},
                      CosSinCase{HOPE_ROPE_HOPE, 1024, 100, 200, 212, 1e6}),
    [](const ::testing::TestParamInfo<CosSinCase> &info) {
      return std::string(kind_name(info.param.kind)) + "_d" + std::to_string(info.param.head_dim) + "_theta" +
             std::to_string(static_cast<long long>(info.param.theta));
    });

TEST(RopeCosSinRows, EachPairFollowsItsComponentRow) {
  // With t = 0 everywhere, every t pair has angle 0; h and w rows drive only their pairs.
  const hope_rope_config_t c = make_config(HOPE_ROPE_MROPE, 16, 2, 3, 3, 10000.0);
  const int64_t n = 3;
  const std::vector<float> pos = {0, 0, 0, /* h */ 5, 6, 7, /* w */ 100001, 100002, 100003};
  std::vector<float> co(n * 8), si(n * 8);
  ASSERT_HOPE_OK(hope_rope_cos_sin(&c, pos.data(), n, co.data(), si.data()));
  for (int k = 0; k < n; ++k) {
    for (int i = 0; i < 8; ++i) {
      const double inv = std::pow(10000.0, -2.0 * i / 16);
      const double p = i < 2 ? 0.0 : i < 5 ? pos[3 + k] : pos[6 + k];
      EXPECT_NEAR(co[k * 8 + i], std::cos(p * inv), 2e-7) << k << "," << i;
      EXPECT_NEAR(si[k * 8 + i], std::sin(p * inv), 2e-7) << k << "," << i;
    }
  }
}

TEST(RopeCosSinRows, ManyTokensUseThreadsAndStayExact) {
  // Large enough for hopei_parallel_for to split; the result must not depend on the split.
  const hope_rope_config_t c = make_config(HOPE_ROPE_VIDEOROPE, 128, 16, 24, 24);
  std::mt19937_64 rng(7);
  const int64_t n = 4099;
  const std::vector<float> pos = hard_positions(n, rng);
  std::vector<float> co(n * 64), si(n * 64), co1(64), si1(64);
  ASSERT_HOPE_OK(hope_rope_cos_sin(&c, pos.data(), n, co.data(), si.data()));
  for (int64_t k : {int64_t{0}, int64_t{1}, int64_t{2048}, n - 1}) {
    const float one[3] = {pos[k], pos[n + k], pos[2 * n + k]};
    ASSERT_HOPE_OK(hope_rope_cos_sin(&c, one, 1, co1.data(), si1.data()));
    for (int i = 0; i < 64; ++i) {
      ASSERT_EQ(co[k * 64 + i], co1[i]) << k << "," << i;
      ASSERT_EQ(si[k * 64 + i], si1[i]) << k << "," << i;
    }
  }
  std::vector<double> rc, rs;
  hope_ref::cos_sin(c, pos.data(), n, &rc, &rs);
  EXPECT_TRUE(hope_test::all_close(std::vector<double>(co.begin(), co.end()), rc, 2e-6));
  EXPECT_TRUE(hope_test::all_close(std::vector<double>(si.begin(), si.end()), rs, 2e-6));
}

TEST(RopeCosSinRows, ZeroTokensIsANoOp) {
  const hope_rope_config_t c = make_config(HOPE_ROPE_HOPE, 128, 16, 24, 24);
  EXPECT_HOPE_OK(hope_rope_cos_sin(&c, nullptr, 0, nullptr, nullptr));
}

TEST(RopeCosSinRows, RejectsBadInput) {
  const hope_rope_config_t c = make_config(HOPE_ROPE_HOPE, 16, 2, 3, 3);
  std::vector<float> pos(3 * 4, 1.0f), co(4 * 8), si(4 * 8);
  EXPECT_HOPE_FAIL(hope_rope_cos_sin(nullptr, pos.data(), 4, co.data(), si.data()), HOPE_ERROR_INVALID_VALUE);
  for (const auto &bad : bad_configs()) {
    SCOPED_TRACE(bad.first);
    EXPECT_HOPE_FAIL(hope_rope_cos_sin(&bad.second, pos.data(), 4, co.data(), si.data()),
                     HOPE_ERROR_INVALID_VALUE);
  }
  EXPECT_HOPE_FAIL(hope_rope_cos_sin(&c, pos.data(), -1, co.data(), si.data()), HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_rope_cos_sin(&c, nullptr, 4, co.data(), si.data()), HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_rope_cos_sin(&c, pos.data(), 4, nullptr, si.data()), HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_rope_cos_sin(&c, pos.data(), 4, co.data(), nullptr), HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_rope_cos_sin(&c, pos.data(), INT64_MAX / 2, co.data(), si.data()),
                   HOPE_ERROR_INVALID_VALUE);
  // A non-finite position in a row some pair reads is INVALID_VALUE (the message names row and token).
  pos[4 + 2] = NAN;  // row h, token 2
  EXPECT_HOPE_FAIL(hope_rope_cos_sin(&c, pos.data(), 4, co.data(), si.data()), HOPE_ERROR_INVALID_VALUE);
  EXPECT_NE(std::string(hope_last_error()).find("token 2"), std::string::npos) << hope_last_error();
  pos[4 + 2] = 1.0f;
  pos[8 + 3] = INFINITY;  // row w
  EXPECT_HOPE_FAIL(hope_rope_cos_sin(&c, pos.data(), 4, co.data(), si.data()), HOPE_ERROR_INVALID_VALUE);
  // HoPE never reads row t: a NaN there is harmless.
  pos[8 + 3] = 1.0f;
  pos[1] = NAN;
  EXPECT_HOPE_OK(hope_rope_cos_sin(&c, pos.data(), 4, co.data(), si.data()));
}

}  // namespace
