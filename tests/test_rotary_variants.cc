// SPEC §8 rotary variants on the CPU paths: the config's rotary dimension, pairing and model-exact frequencies
// (hope_rope_components, hope_rope_cos_sin, host caches), interleaved pairs and partial rotary in
// hope_rope_apply, hope_kv_append, hope_attention_forward and hope_decode_forward over the paged cache (the
// models' layouts of rotary_variants_util.h, shared with the GPU tests), against the float64 reference;
// hand-worked examples; bad rotary fields refused with a message by every entry point that takes them. (GPU:
// test_rope_gpu.cc and test_rotary_variants_gpu.cc.)
#include <algorithm>
#include <cmath>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "reference/reference.h"
#include "paged_test_util.h"
#include "rope_test_util.h"
#include "rotary_variants_util.h"
#include "test_util.h"

namespace {

using hope_test::big_positions;
using hope_test::partial_config_of;
using hope_test::rotated_close;
using hope_test::Tensor;

const char *pairing_name(int pairing) { return pairing == HOPE_PAIRING_INTERLEAVED ? "interleaved" : "rotate_half"; }

void expect_message_has(const char *needle) {
  EXPECT_NE(std::string(hope_last_error()).find(needle), std::string::npos)
      << "message \"" << hope_last_error() << "\" lacks \"" << needle << "\"";
}

// ---- config: components and cos/sin over the first rotary_dim dims --------------------------------------------

TEST(RotaryConfig, GlmPartialRotaryHasHalfWidthTables) {
  // GLM-4.1V: head_dim 128, partial rotary factor 0.5 -> rotary_dim 64, M-RoPE sections (8, 12, 12) over its 32
  // pairs, interleaved pairs, theta 10000.
  hope_rope_config_t c{};
  c.kind = HOPE_ROPE_MROPE;
  c.head_dim = 128;
  c.rotary_dim = 64;
  c.pairing = HOPE_PAIRING_INTERLEAVED;
  c.sections[0] = 8;
  c.sections[1] = 12;
  c.sections[2] = 12;
  c.theta = 10000.0;
  std::vector<int32_t> comp(64, 99);
  ASSERT_HOPE_OK(hope_rope_components(&c, comp.data()));
  for (int i = 0; i < 32; ++i)
    EXPECT_EQ(comp[i], i < 8 ? HOPE_COMPONENT_T : i < 20 ? HOPE_COMPONENT_H : HOPE_COMPONENT_W) << i;
  for (int i = 32; i < 64; ++i) EXPECT_EQ(comp[i], 99) << "components written past rotary_dim / 2 at " << i;

  // The tables are [n][32], with inv_i = 10000^(-2i/64): pair 1 has 10000^(-1/32).
  const int64_t n = 5;
  const std::vector<float> pos = big_positions(n, 3);
  std::vector<float> cos(n * 32 + 1, 7.f), sin(n * 32 + 1, 7.f);
  ASSERT_HOPE_OK(hope_rope_cos_sin(&c, pos.data(), n, cos.data(), sin.data()));
  EXPECT_EQ(cos[n * 32], 7.f) << "cos written past [n][rotary_dim/2]";
  EXPECT_EQ(sin[n * 32], 7.f) << "sin written past [n][rotary_dim/2]";
  const double a = static_cast<double>(pos[0]) * std::pow(10000.0, -1.0 / 32.0);  // token 0, pair 1 (t)
  EXPECT_NEAR(cos[1], std::cos(a), 2e-6);
  EXPECT_NEAR(sin[1], std::sin(a), 2e-6);
  std::vector<double> rc, rs;
  hope_ref::cos_sin(c, pos.data(), n, &rc, &rs);
  EXPECT_TRUE(hope_test::all_close(hope_test::to_double(std::vector<float>(cos.begin(), cos.end() - 1)), rc, 2e-6));
  EXPECT_TRUE(hope_test::all_close(hope_test::to_double(std::vector<float>(sin.begin(), sin.end() - 1)), rs, 2e-6));
}

struct TableCase {
  int kind, head_dim, rotary_dim, model_exact;
};

class RotaryTables : public ::testing::TestWithParam<TableCase> {};

TEST_P(RotaryTables, CosSinAndHostCacheMatchFloat64UpTo2Pow20) {
  const TableCase &tc = GetParam();
  hope_rope_config_t c = partial_config_of(tc.kind, tc.head_dim, tc.rotary_dim, HOPE_PAIRING_INTERLEAVED);
  c.model_exact_freqs = tc.model_exact;
  const int half = tc.rotary_dim / 2;
  std::mt19937_64 rng(tc.head_dim * 31 + tc.rotary_dim);
  const int64_t n = 257;
  std::vector<float> pos = big_positions(n, rng);
  pos[0] = 1048576.f;  // 2^20 on every row
  pos[n] = 1048576.f;
  pos[2 * n] = 1048576.f;
  std::vector<float> cos(n * half), sin(n * half);
  ASSERT_HOPE_OK(hope_rope_cos_sin(&c, pos.data(), n, cos.data(), sin.data()));
  std::vector<double> rc, rs;
  hope_ref::cos_sin(c, pos.data(), n, &rc, &rs);
  EXPECT_TRUE(hope_test::all_close(hope_test::to_double(cos), rc, 2e-6));
  EXPECT_TRUE(hope_test::all_close(hope_test::to_double(sin), rs, 2e-6));

  // A host cache of the same config gives the same bits, in rows of rotary_dim / 2.
  hope_rope_cache_t cache = nullptr;
  ASSERT_HOPE_OK(hope_rope_cache_create(&c, n + 3, HOPE_MEMORY_HOST, &cache));
  ASSERT_HOPE_OK(hope_rope_cache_fill(cache, 3, pos.data(), n, 0, HOPE_MEMORY_HOST, nullptr));
  const float *cc = nullptr, *cs = nullptr;
  ASSERT_HOPE_OK(hope_rope_cache_get(cache, &cc, &cs, nullptr, nullptr));
  EXPECT_EQ(std::memcmp(cc + 3 * half, cos.data(), cos.size() * 4), 0);
  EXPECT_EQ(std::memcmp(cs + 3 * half, sin.data(), sin.size() * 4), 0);
  ASSERT_HOPE_OK(hope_rope_cache_destroy(cache));
}

std::vector<TableCase> table_cases() {
  std::vector<TableCase> cases;
  for (int exact : {0, 1}) {
    for (int kind = HOPE_ROPE_VANILLA; kind <= HOPE_ROPE_HOPE; ++kind) cases.push_back({kind, 128, 64, exact});
    cases.push_back({HOPE_ROPE_MROPE, 128, 128, exact});
    cases.push_back({HOPE_ROPE_VIDEOROPE, 96, 2, exact});
    cases.push_back({HOPE_ROPE_MROPE_INTERLEAVED, 1024, 1000, exact});
  }
  return cases;
}

std::string table_name(const ::testing::TestParamInfo<TableCase> &info) {
  static const char *const kKinds[] = {"vanilla", "mrope", "mrope_interleaved", "videorope", "hope"};
  return std::string(kKinds[info.param.kind]) + "_d" + std::to_string(info.param.head_dim) + "_r" +
         std::to_string(info.param.rotary_dim) + (info.param.model_exact ? "_model_exact" : "_double");
}

INSTANTIATE_TEST_SUITE_P(Variants, RotaryTables, ::testing::ValuesIn(table_cases()), table_name);

TEST(RotaryConfig, ModelExactFrequenciesHandWorked) {
  // theta 10000, rotary_dim 4 (head_dim 6): exponents float32(0/4) = 0 and float32(2/4) = 0.5; 10000^0.5 = 100
  // exactly, and float32(1/100) = 0.00999999977648258209228515625, not 0.01. At position 10^6 the pair-1 angle
  // is 9999.99977648258... rad instead of 10000.
  hope_rope_config_t c{};
  c.kind = HOPE_ROPE_VANILLA;
  c.head_dim = 6;
  c.rotary_dim = 4;
  c.theta = 10000.0;
  c.model_exact_freqs = 1;
  const std::vector<float> pos = {1e6f, 1e6f, 1e6f};
  float cos[2], sin[2];
  ASSERT_HOPE_OK(hope_rope_cos_sin(&c, pos.data(), 1, cos, sin));
  const double inv1 = 0.00999999977648258209228515625;
  EXPECT_EQ(static_cast<double>(0.01f), inv1);
  EXPECT_NEAR(cos[0], std::cos(1e6), 2e-6);
  EXPECT_NEAR(sin[0], std::sin(1e6), 2e-6);
  EXPECT_NEAR(cos[1], std::cos(1e6 * inv1), 2e-6);
  EXPECT_NEAR(sin[1], std::sin(1e6 * inv1), 2e-6);
  // The double frequency gives a visibly different angle (2.2e-4 rad apart).
  c.model_exact_freqs = 0;
  float dcos[2], dsin[2];
  ASSERT_HOPE_OK(hope_rope_cos_sin(&c, pos.data(), 1, dcos, dsin));
  EXPECT_NEAR(dsin[1], std::sin(10000.0), 2e-6);
  EXPECT_GT(std::fabs(dsin[1] - sin[1]), 1e-4);
}

TEST(RotaryConfig, ModelExactDiffersFromDoubleFrequenciesAtLongPositions) {
  // Qwen2-VL's config (theta 1e6, head_dim 128): at positions near 10^6 the float32 frequencies move angles by
  // up to ~4e-2, and the switch follows the reference's float32 frequencies to 2e-6.
  hope_rope_config_t c = hope_test::config_of(HOPE_ROPE_MROPE, 128);
  c.model_exact_freqs = 1;
  const int64_t n = 64;
  std::mt19937_64 rng(8);
  std::vector<float> pos(3 * n);
  for (auto &p : pos) p = static_cast<float>(900000 + rng() % 100000);
  std::vector<float> cos(n * 64), sin(n * 64);
  ASSERT_HOPE_OK(hope_rope_cos_sin(&c, pos.data(), n, cos.data(), sin.data()));
  std::vector<double> exact_c, exact_s, dbl_c, dbl_s;
  hope_ref::cos_sin(c, pos.data(), n, &exact_c, &exact_s);
  hope_rope_config_t d = c;
  d.model_exact_freqs = 0;
  hope_ref::cos_sin(d, pos.data(), n, &dbl_c, &dbl_s);
  EXPECT_TRUE(hope_test::all_close(hope_test::to_double(sin), exact_s, 2e-6));
  EXPECT_TRUE(hope_test::all_close(hope_test::to_double(cos), exact_c, 2e-6));
  double largest = 0.0;
  for (size_t i = 0; i < sin.size(); ++i) largest = std::max(largest, std::fabs(sin[i] - dbl_s[i]));
  EXPECT_GT(largest, 1e-3) << "model-exact frequencies should differ visibly from the double ones at 10^6";
}

TEST(RotaryConfig, BadValuesAreRefusedWithAMessage) {
  hope_rope_config_t good = partial_config_of(HOPE_ROPE_MROPE, 128, 64, HOPE_PAIRING_INTERLEAVED);
  ASSERT_HOPE_OK(hope_rope_components(&good, nullptr));
  struct Bad {
    int pairing, rotary_dim, model_exact;
    const char *needle;
  };
  const Bad bad[] = {{0, 63, 0, "rotary_dim 63 must be even"},  {0, 130, 0, "must be <= head_dim 128"},
                     {0, -2, 0, "must be >= 2"},                {0, -3, 0, "must be even"},
                     {2, 64, 0, "pairing 2"},                   {-1, 64, 0, "pairing -1"},
                     {0, 64, 2, "model_exact_freqs 2"},         {0, 64, -1, "model_exact_freqs -1"}};
  for (const Bad &b : bad) {
    hope_rope_config_t c = good;
    c.pairing = b.pairing;
    c.rotary_dim = b.rotary_dim;
    c.model_exact_freqs = b.model_exact;
    EXPECT_HOPE_FAIL(hope_rope_components(&c, nullptr), HOPE_ERROR_INVALID_VALUE);
    expect_message_has(b.needle);
    float cs[64], sn[64], pos[3] = {1, 2, 3};
    EXPECT_HOPE_FAIL(hope_rope_cos_sin(&c, pos, 1, cs, sn), HOPE_ERROR_INVALID_VALUE);
    hope_rope_cache_t cache = reinterpret_cast<hope_rope_cache_t>(&c);
    EXPECT_HOPE_FAIL(hope_rope_cache_create(&c, 4, HOPE_MEMORY_HOST, &cache), HOPE_ERROR_INVALID_VALUE);
    EXPECT_EQ(cache, nullptr);
  }
  // Sections must sum to rotary_dim / 2, not head_dim / 2.
  hope_rope_config_t c = good;
  c.sections[0] = 16;
  c.sections[1] = 24;
  c.sections[2] = 24;
  EXPECT_HOPE_FAIL(hope_rope_components(&c, nullptr), HOPE_ERROR_INVALID_VALUE);
  expect_message_has("rotary_dim / 2 is 32");
  // Model-exact frequencies compute in float32: a theta beyond its range is refused.
  c = good;
  c.model_exact_freqs = 1;
  c.theta = 1e39;
  EXPECT_HOPE_FAIL(hope_rope_components(&c, nullptr), HOPE_ERROR_INVALID_VALUE);
  expect_message_has("theta");
}

// ---- hope_rope_apply on the CPU: pairing x rotary_dim x dtype -----------------------------------------------

using hope_test::cpu_apply_params;

TEST(RopeApplyVariants, HandWorkedInterleavedAndRotateHalfPartial) {
  // x = (1, 2, 3, 4, 5, 6), rotary_dim 4, pair 0 at 90 degrees (cos 0, sin 1), pair 1 at 0 (cos 1, sin 0).
  const float x[6] = {1, 2, 3, 4, 5, 6}, cos[2] = {0, 1}, sin[2] = {1, 0};
  float out[6];
  // Interleaved: pair 0 is dims (0, 1): (1*0 - 2*1, 2*0 + 1*1) = (-2, 1); pair 1 (2, 3) unchanged; 4, 5 pass.
  hope_rope_apply_params_t p =
      cpu_apply_params(HOPE_DTYPE_FLOAT32, 1, 1, 6, x, out, cos, sin, HOPE_PAIRING_INTERLEAVED, 4);
  ASSERT_HOPE_OK(hope_rope_apply(&p, nullptr));
  EXPECT_EQ(std::vector<float>(out, out + 6), (std::vector<float>{-2, 1, 3, 4, 5, 6}));
  // Rotate-half within rotary_dim 4: pair 0 is dims (0, 2): (1*0 - 3*1, 3*0 + 1*1) = (-3, 1); pair 1 (1, 3)
  // unchanged; 4, 5 pass.
  p.rope_pairing = HOPE_PAIRING_ROTATE_HALF;
  ASSERT_HOPE_OK(hope_rope_apply(&p, nullptr));
  EXPECT_EQ(std::vector<float>(out, out + 6), (std::vector<float>{-3, 2, 1, 4, 5, 6}));
}

struct VariantCase {
  int dtype, pairing, head_dim, rotary_dim;
  int64_t tokens;
  int heads;
};

std::string variant_name(const VariantCase &c) {
  return std::string(hope_test::dtype_name(c.dtype)) + "_" + pairing_name(c.pairing) + "_d" +
         std::to_string(c.head_dim) + "_r" + std::to_string(c.rotary_dim) + "_tokens" + std::to_string(c.tokens) +
         "_heads" + std::to_string(c.heads);
}

std::vector<VariantCase> variant_cases() {
  std::vector<VariantCase> cases;
  for (int dtype : {HOPE_DTYPE_FLOAT16, HOPE_DTYPE_BFLOAT16, HOPE_DTYPE_FLOAT32})
    for (int pairing : {HOPE_PAIRING_ROTATE_HALF, HOPE_PAIRING_INTERLEAVED}) {
      cases.push_back({dtype, pairing, 128, 64, 129, 3});
      cases.push_back({dtype, pairing, 128, 128, 7, 2});
      cases.push_back({dtype, pairing, 64, 0, 1037, 1});
      cases.push_back({dtype, pairing, 34, 2, 1, 5});
      cases.push_back({dtype, pairing, 96, 80, 33, 4});
    }
  return cases;
}

class RopeApplyVariants : public ::testing::TestWithParam<VariantCase> {};

TEST_P(RopeApplyVariants, MatchesFloat64ReferenceAndPassesTheRestThrough) {
  const VariantCase &tc = GetParam();
  const int rot = tc.rotary_dim != 0 ? tc.rotary_dim : tc.head_dim, half = rot / 2;
  const hope_rope_config_t cfg = partial_config_of(HOPE_ROPE_MROPE_INTERLEAVED, tc.head_dim, rot, tc.pairing);
  std::mt19937_64 rng(tc.tokens * 13 + tc.head_dim + rot);
  const std::vector<float> pos = big_positions(tc.tokens, rng);
  std::vector<float> cos(tc.tokens * half), sin(tc.tokens * half);
  ASSERT_HOPE_OK(hope_rope_cos_sin(&cfg, pos.data(), tc.tokens, cos.data(), sin.data()));
  std::vector<double> rc, rs;
  hope_ref::cos_sin(cfg, pos.data(), tc.tokens, &rc, &rs);

  const size_t elems = static_cast<size_t>(tc.tokens) * tc.heads * tc.head_dim;
  const Tensor x = hope_test::random_tensor(tc.dtype, elems, rng);
  Tensor out(tc.dtype, elems);
  out.poison();
  const hope_rope_apply_params_t p = cpu_apply_params(tc.dtype, tc.tokens, tc.heads, tc.head_dim, x.data(), out.data(),
                                                  cos.data(), sin.data(), tc.pairing, tc.rotary_dim);
  ASSERT_HOPE_OK(hope_rope_apply(&p, nullptr));
  const std::vector<double> xv = x.values();
  const std::vector<double> ref = hope_ref::rotate(xv, tc.tokens, tc.heads, tc.head_dim, rc, rs, tc.pairing, rot);
  EXPECT_TRUE(rotated_close(tc.dtype, out.values(), ref, hope_test::term_sizes(xv, tc.head_dim, tc.pairing, rot)));
  // Dims past rotary_dim are the input's bits.
  const size_t es = hope_test::dtype_size(tc.dtype);
  for (size_t row = 0; row < static_cast<size_t>(tc.tokens) * tc.heads; ++row)
    ASSERT_EQ(std::memcmp(&out.bytes[(row * tc.head_dim + rot) * es], &x.bytes[(row * tc.head_dim + rot) * es],
                          (tc.head_dim - rot) * es), 0) << "pass-through dims changed in row " << row;

  // In place gives the same bits.
  Tensor y = x;
  hope_rope_apply_params_t q = p;
  q.x = y.data();
  q.out = y.data();
  ASSERT_HOPE_OK(hope_rope_apply(&q, nullptr));
  EXPECT_EQ(y.bytes, out.bytes);
}

INSTANTIATE_TEST_SUITE_P(Variants, RopeApplyVariants, ::testing::ValuesIn(variant_cases()),
                         [](const ::testing::TestParamInfo<VariantCase> &info) { return variant_name(info.param); });

TEST(RopeApplyVariants, BadRotaryFieldsAreRefusedWithAMessage) {
  float x[8] = {0}, out[8], cs[4] = {1, 1, 1, 1}, sn[4] = {0};
  struct Bad {
    int pairing, rotary_dim;
    const char *needle;
  };
  const Bad bad[] = {{0, 5, "rotary_dim 5 must be even"}, {0, 10, "must be <= head_dim 8"},
                     {1, -4, "must be >= 2"},             {2, 0, "rope_pairing 2"},
                     {-1, 4, "rope_pairing -1"}};
  for (const Bad &b : bad) {
    const hope_rope_apply_params_t p =
        cpu_apply_params(HOPE_DTYPE_FLOAT32, 1, 1, 8, x, out, cs, sn, b.pairing, b.rotary_dim);
    EXPECT_HOPE_FAIL(hope_rope_apply(&p, nullptr), HOPE_ERROR_INVALID_VALUE);
    expect_message_has(b.needle);
  }
}

// ---- hope_kv_append on the CPU -------------------------------------------------------------------------------

TEST(KvAppendVariants, RotatesKeysWithPairingAndRotaryDim) {
  for (int dtype : {HOPE_DTYPE_FLOAT32, HOPE_DTYPE_BFLOAT16, HOPE_DTYPE_FLOAT16})
    for (int pairing : {HOPE_PAIRING_ROTATE_HALF, HOPE_PAIRING_INTERLEAVED})
      for (int rot : {64, 128, 2}) {
        SCOPED_TRACE(std::string(hope_test::dtype_name(dtype)) + " " + pairing_name(pairing) + " r" +
                     std::to_string(rot));
        const int d = 128, hk = 2, half = rot / 2, page = 5, pages = 4;
        const int64_t tokens = 9;
        const hope_rope_config_t cfg = partial_config_of(HOPE_ROPE_HOPE, d, rot, pairing);
        std::mt19937_64 rng(rot + pairing * 1000 + dtype);
        const std::vector<float> pos = big_positions(tokens, rng);
        std::vector<float> cos(tokens * half), sin(tokens * half);
        ASSERT_HOPE_OK(hope_rope_cos_sin(&cfg, pos.data(), tokens, cos.data(), sin.data()));
        std::vector<double> rc, rs;
        hope_ref::cos_sin(cfg, pos.data(), tokens, &rc, &rs);
        const size_t row = static_cast<size_t>(hk) * d;
        const Tensor k = hope_test::random_tensor(dtype, tokens * row, rng);
        const Tensor v = hope_test::random_tensor(dtype, tokens * row, rng);
        Tensor kp(dtype, pages * page * row), vp(dtype, pages * page * row);
        kp.poison();
        vp.poison();
        std::vector<int64_t> slots(tokens);
        for (int64_t t = 0; t < tokens; ++t) slots[t] = t == 4 ? -1 : (tokens - 1 - t) * 2;  // token 4 skipped
        hope_kv_append_params_t p;
        std::memset(&p, 0, sizeof p);
        p.backend = HOPE_BACKEND_CPU;
        p.cache.dtype = dtype;
        p.cache.num_pages = pages;
        p.cache.page_size = page;
        p.cache.num_kv_heads = hk;
        p.cache.head_dim = d;
        p.cache.k_pages = kp.data();
        p.cache.v_pages = vp.data();
        p.num_tokens = tokens;
        p.k = k.data();
        p.v = v.data();
        p.slot_mapping = slots.data();
        p.cos_k = cos.data();
        p.sin_k = sin.data();
        p.rope_pairing = pairing;
        p.rotary_dim = rot;
        ASSERT_HOPE_OK(hope_kv_append(&p, nullptr));
        const std::vector<double> kv = k.values();
        const std::vector<double> ref = hope_ref::rotate(kv, tokens, hk, d, rc, rs, pairing, rot);
        const std::vector<double> terms = hope_test::term_sizes(kv, d, pairing, rot);
        const size_t es = hope_test::dtype_size(dtype);
        for (int64_t t = 0; t < tokens; ++t) {
          if (slots[t] < 0) continue;
          const size_t dst = static_cast<size_t>(slots[t]) * row, src = static_cast<size_t>(t) * row;
          std::vector<double> got(row), want(ref.begin() + src, ref.begin() + src + row),
              tw(terms.begin() + src, terms.begin() + src + row);
          for (size_t e = 0; e < row; ++e) got[e] = kp.get(dst + e);
          ASSERT_TRUE(rotated_close(dtype, got, want, tw)) << "token " << t;
          for (int h = 0; h < hk; ++h)  // dims past rotary_dim: the input's bits
            ASSERT_EQ(std::memcmp(&kp.bytes[(dst + h * d + rot) * es], &k.bytes[(src + h * d + rot) * es],
                                  (d - rot) * es), 0) << "token " << t;
          ASSERT_EQ(std::memcmp(&vp.bytes[dst * es], &v.bytes[src * es], row * es), 0) << "value of token " << t;
        }
      }
}

TEST(KvAppendVariants, BadRotaryFieldsAreRefusedWithAMessage) {
  std::vector<float> pages(2 * 4 * 8, 0.f), k(8, 0.f), v(8, 0.f);
  const int64_t slot = 0;
  hope_kv_append_params_t p;
  std::memset(&p, 0, sizeof p);
  p.backend = HOPE_BACKEND_CPU;
  p.cache.dtype = HOPE_DTYPE_FLOAT32;
  p.cache.num_pages = 2;
  p.cache.page_size = 4;
  p.cache.num_kv_heads = 1;
  p.cache.head_dim = 8;
  p.cache.k_pages = pages.data();
  p.cache.v_pages = pages.data() + 32;
  p.num_tokens = 1;
  p.k = k.data();
  p.v = v.data();
  p.slot_mapping = &slot;
  p.rotary_dim = 7;
  EXPECT_HOPE_FAIL(hope_kv_append(&p, nullptr), HOPE_ERROR_INVALID_VALUE);
  expect_message_has("rotary_dim 7 must be even");
  p.rotary_dim = 16;
  EXPECT_HOPE_FAIL(hope_kv_append(&p, nullptr), HOPE_ERROR_INVALID_VALUE);
  expect_message_has("must be <= head_dim 8");
  p.rotary_dim = 0;
  p.rope_pairing = 3;
  EXPECT_HOPE_FAIL(hope_kv_append(&p, nullptr), HOPE_ERROR_INVALID_VALUE);
  expect_message_has("rope_pairing 3");
}

// ---- hope_attention_forward on the CPU: the models' layouts against float64 -----------------------------------

using hope_test::rotary::AttnCase;
using hope_test::rotary::AttnProblem;
using hope_test::rotary::AttnResult;
using hope_test::rotary::attn_case;

// rotary_dim 48 of head_dim 80: a rotary width that is no multiple of 16 with a pass-through tail of 32.
const hope_test::rotary::Layout kHalf48{"rothalf48", HOPE_ROPE_MROPE, {6, 9, 9}, HOPE_PAIRING_ROTATE_HALF, 48, 1e6};

// Runs the CPU attention of `pr` (host inputs) into poisoned outputs; k_rotated requested or not.
void run_cpu_attention(const AttnProblem &pr, bool with_krot, AttnResult *r) {
  const AttnCase &c = pr.c;
  r->out = Tensor(c.dtype, static_cast<size_t>(pr.total_q) * c.hq * c.head_dim);
  r->krot = Tensor(c.dtype, static_cast<size_t>(pr.total_k) * c.hk * c.head_dim);
  r->out.poison();
  r->krot.poison();
  r->lse.assign(static_cast<size_t>(pr.total_q) * c.hq, std::nanf(""));
  const hope_attention_params_t p = hope_test::rotary::attention_params_of(
      pr, HOPE_BACKEND_CPU,
      {pr.q.data(), pr.k.data(), pr.v.data(), pr.cu_q.data(), pr.cu_k.data(), pr.cos_q.data(), pr.sin_q.data(),
       pr.cos_k.data(), pr.sin_k.data(), r->out.data(), r->lse.data(), with_krot ? r->krot.data() : nullptr});
  ASSERT_HOPE_OK(hope_attention_forward(&p, nullptr));
}

class RotaryAttentionCpu : public ::testing::TestWithParam<AttnCase> {};

TEST_P(RotaryAttentionCpu, MatchesFloat64WithAndWithoutKRotated) {
  AttnProblem pr;
  ASSERT_NO_FATAL_FAILURE(hope_test::rotary::build_attention(GetParam(), 6100u + GetParam().head_dim, &pr));
  AttnResult with, without;
  ASSERT_NO_FATAL_FAILURE(run_cpu_attention(pr, true, &with));
  ASSERT_NO_FATAL_FAILURE(run_cpu_attention(pr, false, &without));
  ASSERT_NO_FATAL_FAILURE(hope_test::rotary::expect_attention_matches(pr, with, "CPU, k_rotated"));
  ASSERT_NO_FATAL_FAILURE(hope_test::rotary::expect_attention_matches(pr, without, "CPU, no k_rotated"));
  hope_test::rotary::expect_krot_matches(pr, with, "CPU");
  EXPECT_EQ(with.out.bytes, without.out.bytes) << "k_rotated changed the attention output";
  for (uint8_t b : without.krot.bytes) ASSERT_EQ(b, 0xff) << "k_rotated written without being requested";
}

std::vector<AttnCase> cpu_attention_cases() {
  using namespace hope_test::rotary;  // NOLINT: the layouts
  const int f32 = HOPE_DTYPE_FLOAT32, bf16 = HOPE_DTYPE_BFLOAT16, f16 = HOPE_DTYPE_FLOAT16;
  // Lengths 1, 7, 129 and odd ones, an empty sequence, queries without keys, Nq > Nk under the causal mask.
  return {
      attn_case(kGlm128, f32, 128, 4, 2, true, {1, 7, 0, 129, 5}, {1, 7, 3, 150, 0}),
      attn_case(kGlm128, bf16, 128, 7, 1, false, {37, 1}, {70, 130}),
      attn_case(kErnie128, bf16, 128, 4, 1, true, {70, 1, 33}, {20, 9, 129}),
      attn_case(kErnie128, f32, 128, 2, 2, false, {7, 129}, {150, 7}),
      attn_case(kInter34, f32, 64, 6, 2, true, {37, 1, 0}, {70, 1, 5}),
      attn_case(kInter34, bf16, 64, 3, 3, false, {9}, {17}),
      attn_case(kHalf48, bf16, 80, 4, 2, true, {65, 3}, {65, 40}),
      attn_case(kHalf48, f32, 80, 2, 1, false, {1, 31}, {9, 31}),
      attn_case(kHalf2, f16, 96, 2, 2, true, {7, 129}, {150, 7}),
      attn_case(kGlm256, bf16, 256, 2, 1, true, {33, 1}, {65, 1}),
      attn_case(kDefault, f32, 64, 4, 2, true, {7, 65}, {30, 65}),
  };
}

INSTANTIATE_TEST_SUITE_P(Models, RotaryAttentionCpu, ::testing::ValuesIn(cpu_attention_cases()),
                         [](const ::testing::TestParamInfo<AttnCase> &info) { return info.param.name; });

// ---- kv_append then hope_decode_forward on the CPU over the paged cache -----------------------------------------

struct DecodeCase {
  std::string name;
  hope_test::rotary::Layout layout;
  hope_ref::PagedDecodeCase paged;
};
void PrintTo(const DecodeCase &c, std::ostream *os) { *os << c.name; }

DecodeCase decode_case(const hope_test::rotary::Layout &l, int dtype, int hq, int hk, int d, int page_size,
                       std::vector<int32_t> nq, std::vector<int32_t> lens, bool causal, int splits, bool lse = true) {
  DecodeCase c{std::string(l.name) + "_" + hope_test::dtype_name(dtype) + "_d" + std::to_string(d) + "_gqa" +
                   std::to_string(hq / hk) + (causal ? "_causal" : "_full") + "_split" + std::to_string(splits) +
                   (lse ? "" : "_nolse"),
               l, {}};
  c.paged = hope_test::make_paged_case(c.name, dtype, hq, hk, d, page_size, std::move(nq), std::move(lens), causal,
                                       splits, false, 0, lse);
  return c;
}

class RotaryDecodeCpu : public ::testing::TestWithParam<DecodeCase> {};

// hope_kv_append rotates the keys into poisoned pages with the layout, hope_decode_forward rotates q the same way
// and attends over those pages: both against the float64 rotation and decode.
TEST_P(RotaryDecodeCpu, AppendAndDecodeMatchFloat64) {
  const hope_test::rotary::Layout &l = GetParam().layout;
  const hope_ref::PagedDecodeCase &c = GetParam().paged;
  const hope_ref::PagedDecodeData d = hope_ref::make_paged_decode(c, 5300 + c.hq * 7 + c.head_dim);
  const int dt = c.dtype, hd = c.head_dim;
  std::vector<float> cos_q, sin_q, cos_k, sin_k;
  hope_test::rotary::decode_cos_sin(l, c, d, &cos_q, &sin_q, &cos_k, &sin_k);
  const Tensor k = hope_test::to_tensor(dt, d.k), v = hope_test::to_tensor(dt, d.v), q = hope_test::to_tensor(dt, d.q);
  const size_t page_elems = static_cast<size_t>(d.num_pages) * c.page_size * c.hk * hd;
  Tensor kp(dt, page_elems), vp(dt, page_elems);
  kp.poison();
  vp.poison();
  hope_kv_append_params_t ap;
  std::memset(&ap, 0, sizeof ap);
  ap.backend = HOPE_BACKEND_CPU;
  ap.cache = hope_test::paged_kv(dt, d.num_pages, c.page_size, c.hk, hd, kp.data(), vp.data());
  ap.num_tokens = d.total_k;
  ap.k = k.data();
  ap.v = v.data();
  ap.slot_mapping = d.slots.data();
  ap.cos_k = cos_k.data();
  ap.sin_k = sin_k.data();
  ap.rope_pairing = l.pairing;
  ap.rotary_dim = l.rotary_dim;
  ASSERT_HOPE_OK(hope_kv_append(&ap, nullptr));
  const std::vector<double> k_pages = kp.values(), v_pages = vp.values(), k_in = k.values();
  EXPECT_TRUE(hope_test::rotary::rotated_rows_match(
      l, dt, hd, hope_ref::gather_pages(k_pages, c, d), k_in,
      hope_test::rotary::rotate_ref(l, k_in, d.total_k, c.hk, hd, cos_k, sin_k)))
      << "appended keys";

  Tensor out(dt, static_cast<size_t>(d.total_q) * c.hq * hd);
  out.poison();
  std::vector<float> lse(static_cast<size_t>(c.hq) * d.total_q);
  std::memset(lse.data(), 0xff, lse.size() * 4);
  hope_decode_params_t p = hope_test::decode_params(HOPE_BACKEND_CPU, c, d, ap.cache, d.cu_q.data(), c.lens.data(),
                                                    d.page_table.data(), q.data(), out.data());
  p.lse = c.with_lse ? lse.data() : nullptr;
  p.cos_q = cos_q.data();
  p.sin_q = sin_q.data();
  p.rope_pairing = l.pairing;
  p.rotary_dim = l.rotary_dim;
  size_t ws_bytes = 0;
  ASSERT_HOPE_OK(hope_decode_workspace_size(&p, &ws_bytes));
  std::vector<uint8_t> ws(std::max<size_t>(ws_bytes, 1));
  ASSERT_HOPE_OK(hope_decode_forward(&p, ws_bytes ? ws.data() : nullptr, ws_bytes, nullptr));
  hope_test::rotary::expect_decode_matches(l, c, d, q, cos_q, sin_q, k_pages, v_pages, out, lse);
}

std::vector<DecodeCase> cpu_decode_cases() {
  using namespace hope_test::rotary;  // NOLINT: the layouts
  const int f32 = HOPE_DTYPE_FLOAT32, bf16 = HOPE_DTYPE_BFLOAT16;
  return {
      decode_case(kGlm128, bf16, 8, 2, 128, 16, {1, 8, 3}, {1, 130, 37}, true, 0),
      decode_case(kGlm128, f32, 4, 1, 128, 7, {2, 1}, {77, 300}, true, 3),
      decode_case(kErnie128, f32, 7, 1, 128, 16, {2, 1}, {77, 300}, true, 3),
      decode_case(kErnie128, bf16, 4, 2, 128, 16, {1}, {129}, false, 1),
      decode_case(kInter34, bf16, 16, 1, 64, 8, {3, 3}, {70, 3}, true, 0, false),
      decode_case(kHalf48, f32, 4, 4, 80, 16, {5, 0, 1}, {40, 9, 1}, true, 0),
      decode_case(kHalf48, bf16, 6, 2, 80, 5, {1, 2}, {1037, 2}, false, 2),
      decode_case(kDefault, bf16, 4, 2, 128, 16, {2}, {50}, true, 3),
  };
}

INSTANTIATE_TEST_SUITE_P(Models, RotaryDecodeCpu, ::testing::ValuesIn(cpu_decode_cases()),
                         [](const ::testing::TestParamInfo<DecodeCase> &info) { return info.param.name; });

// ---- bad rotary fields on every entry point that takes them ------------------------------------------------------

struct BadRotary {
  int pairing, rotary_dim;
  const char *needle;
};
// head_dim 64 everywhere below.
const BadRotary kBadRotary[] = {{0, 33, "rotary_dim 33 must be even"}, {0, 66, "must be <= head_dim 64"},
                                {0, -2, "must be >= 2"},                {2, 0, "rope_pairing 2"},
                                {-1, 32, "rope_pairing -1"}};

TEST(RotaryFieldsRefused, AttentionEntryPointsOnBothBackends) {
  // A valid call (batch 0: a no-op) made invalid by one bad rotary field: INVALID_VALUE before anything else, on
  // both backends (the CUDA backend checks the params before it looks for a device).
  for (int backend : {HOPE_BACKEND_CPU, HOPE_BACKEND_CUDA})
    for (const BadRotary &b : kBadRotary) {
      SCOPED_TRACE(std::string(backend == HOPE_BACKEND_CPU ? "CPU " : "CUDA ") + b.needle);
      hope_attention_params_t a;
      std::memset(&a, 0, sizeof a);
      a.backend = backend;
      a.dtype = HOPE_DTYPE_BFLOAT16;
      a.num_q_heads = a.num_kv_heads = 1;
      a.head_dim = 64;
      ASSERT_HOPE_OK(hope_attention_forward(&a, nullptr));  // the valid call
      a.rope_pairing = b.pairing;
      a.rotary_dim = b.rotary_dim;
      size_t bytes = 0;
      EXPECT_HOPE_FAIL(hope_attention_forward(&a, nullptr), HOPE_ERROR_INVALID_VALUE);
      expect_message_has(b.needle);
      expect_message_has("hope_attention_forward");
      EXPECT_HOPE_FAIL(hope_attention_unfused_workspace_size(&a, &bytes), HOPE_ERROR_INVALID_VALUE);
      expect_message_has(b.needle);
      EXPECT_HOPE_FAIL(hope_attention_forward_unfused(&a, nullptr, 0, nullptr), HOPE_ERROR_INVALID_VALUE);
      expect_message_has(b.needle);
    }
}

// (On the CUDA backend decode checks for a device and where the cache lives first; its refusals of these fields
// are the same hopei_rotary_resolve call, reached on a GPU.)
TEST(RotaryFieldsRefused, DecodeEntryPoints) {
  float page[64] = {0};
  for (const BadRotary &b : kBadRotary) {
      SCOPED_TRACE(b.needle);
      hope_decode_params_t d;
      std::memset(&d, 0, sizeof d);
      d.backend = HOPE_BACKEND_CPU;
      d.cache = hope_test::paged_kv(HOPE_DTYPE_BFLOAT16, 1, 1, 1, 64, page, page + 32);
      d.num_q_heads = 1;
      d.rope_pairing = b.pairing;
      d.rotary_dim = b.rotary_dim;
      size_t bytes = 0;
      EXPECT_HOPE_FAIL(hope_decode_workspace_size(&d, &bytes), HOPE_ERROR_INVALID_VALUE);
      expect_message_has(b.needle);
      expect_message_has("hope_decode_workspace_size");
      EXPECT_HOPE_FAIL(hope_decode_forward(&d, nullptr, 0, nullptr), HOPE_ERROR_INVALID_VALUE);
      expect_message_has(b.needle);
    }
}

}  // namespace
