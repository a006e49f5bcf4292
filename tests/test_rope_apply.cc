// hope_rope_apply on the CPU backend (SPEC §4): every dtype against the float64 reference, fused-QKV strides,
// in place, empty input and bad input. (GPU: test_rope_gpu.cc.)
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "reference/reference.h"
#include "rope_test_util.h"
#include "test_util.h"

namespace {

using hope_test::big_positions;
using hope_test::config_of;
using hope_test::rotated_close;
using hope_test::Tensor;
using hope_test::term_sizes;

hope_rope_apply_params_t cpu_params(int dtype, int64_t tokens, int heads, int head_dim, const void *x, void *out,
                                    const float *cos, const float *sin) {
  return hope_test::cpu_apply_params(dtype, tokens, heads, head_dim, x, out, cos, sin);
}

struct ApplyCase {
  int dtype, kind;
  int64_t tokens;
  int heads, head_dim;
};

std::string case_name(const ApplyCase &c) {
  const char *kinds[] = {"vanilla", "mrope", "mrope_interleaved", "videorope", "hope"};
  return std::string(hope_test::dtype_name(c.dtype)) + "_" + kinds[c.kind] + "_tokens" + std::to_string(c.tokens) +
         "_heads" + std::to_string(c.heads) + "_d" + std::to_string(c.head_dim);
}

class RopeApplyCpu : public ::testing::TestWithParam<ApplyCase> {};

TEST_P(RopeApplyCpu, MatchesFloat64Reference) {
  const ApplyCase &tc = GetParam();
  const hope_rope_config_t cfg = config_of(tc.kind, tc.head_dim);
  std::mt19937_64 rng(99 + tc.tokens * 7 + tc.head_dim);
  const int half = tc.head_dim / 2;
  const std::vector<float> pos = big_positions(tc.tokens, rng);
  std::vector<float> cos(tc.tokens * half), sin(tc.tokens * half);
  ASSERT_HOPE_OK(hope_rope_cos_sin(&cfg, pos.data(), tc.tokens, cos.data(), sin.data()));
  std::vector<double> rc, rs;
  hope_ref::cos_sin(cfg, pos.data(), tc.tokens, &rc, &rs);

  const size_t elems = static_cast<size_t>(tc.tokens) * tc.heads * tc.head_dim;
  const Tensor x = hope_test::random_tensor(tc.dtype, elems, rng);
  Tensor out(tc.dtype, elems);
  out.poison();
  const hope_rope_apply_params_t p =
      cpu_params(tc.dtype, tc.tokens, tc.heads, tc.head_dim, x.data(), out.data(), cos.data(), sin.data());
  ASSERT_HOPE_OK(hope_rope_apply(&p, nullptr));
  const std::vector<double> xv = x.values();
  const std::vector<double> ref = hope_ref::rotate(xv, tc.tokens, tc.heads, tc.head_dim, rc, rs);
  EXPECT_TRUE(rotated_close(tc.dtype, out.values(), ref, term_sizes(xv, tc.head_dim)));

  // In place gives the same bits as out of place.
  Tensor y = x;
  hope_rope_apply_params_t q = p;
  q.x = y.data();
  q.out = y.data();
  ASSERT_HOPE_OK(hope_rope_apply(&q, nullptr));
  EXPECT_EQ(y.bytes, out.bytes);
}

std::vector<ApplyCase> apply_cases() {
  std::vector<ApplyCase> cases;
  for (int dtype : {HOPE_DTYPE_FLOAT16, HOPE_DTYPE_BFLOAT16, HOPE_DTYPE_FLOAT32}) {
    for (int kind = HOPE_ROPE_VANILLA; kind <= HOPE_ROPE_HOPE; ++kind) cases.push_back({dtype, kind, 129, 3, 128});
    cases.push_back({dtype, HOPE_ROPE_HOPE, 1, 1, 2});
    cases.push_back({dtype, HOPE_ROPE_MROPE, 7, 2, 6});
    cases.push_back({dtype, HOPE_ROPE_VIDEOROPE, 7, 1, 1024});
    cases.push_back({dtype, HOPE_ROPE_MROPE_INTERLEAVED, 1037, 4, 64});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(RopeCases, RopeApplyCpu, ::testing::ValuesIn(apply_cases()),
                         [](const ::testing::TestParamInfo<ApplyCase> &info) { return case_name(info.param); });

class RopeApplyCpuDtype : public ::testing::TestWithParam<int> {};

TEST_P(RopeApplyCpuDtype, FusedQkvRotatesOnlyQAndK) {
  // A fused QKV buffer [tokens][(Hq + 2 Hk) * d]: rotate the Hq + Hk q and k heads in place, leave v alone.
  const int dtype = GetParam(), hq = 4, hk = 2, d = 64, half = d / 2;
  const int64_t tokens = 37, row = (hq + 2 * hk) * d;
  const hope_rope_config_t cfg = config_of(HOPE_ROPE_HOPE, d);
  std::mt19937_64 rng(5);
  const std::vector<float> pos = big_positions(tokens, rng);
  std::vector<float> cos(tokens * half), sin(tokens * half);
  ASSERT_HOPE_OK(hope_rope_cos_sin(&cfg, pos.data(), tokens, cos.data(), sin.data()));
  std::vector<double> rc, rs;
  hope_ref::cos_sin(cfg, pos.data(), tokens, &rc, &rs);
  const Tensor original = hope_test::random_tensor(dtype, tokens * row, rng);
  Tensor qkv = original;
  hope_rope_apply_params_t p = cpu_params(dtype, tokens, hq + hk, d, qkv.data(), qkv.data(), cos.data(), sin.data());
  p.x_row_stride = row;
  p.out_row_stride = row;
  ASSERT_HOPE_OK(hope_rope_apply(&p, nullptr));

  std::vector<double> qk_in, qk_out;
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t e = 0; e < row; ++e) {
      const size_t i = t * row + e;
      if (e < (hq + hk) * d) {
        qk_in.push_back(original.get(i));
        qk_out.push_back(qkv.get(i));
      } else {
        ASSERT_EQ(std::memcmp(&qkv.bytes[i * qkv.bytes.size() / qkv.size()],
                              &original.bytes[i * original.bytes.size() / original.size()],
                              hope_test::dtype_size(dtype)),
                  0)
            << "v element " << e << " of token " << t << " changed";
      }
    }
  EXPECT_TRUE(rotated_close(dtype, qk_out, hope_ref::rotate(qk_in, tokens, hq + hk, d, rc, rs), term_sizes(qk_in, d)));
}

TEST_P(RopeApplyCpuDtype, OutOfPlaceStridesLeavePaddingUntouched) {
  const int dtype = GetParam(), heads = 3, d = 16, half = d / 2;
  const int64_t tokens = 7, row = heads * d, xs = row + 3, os = row + 5;
  const hope_rope_config_t cfg = config_of(HOPE_ROPE_MROPE, d);
  std::mt19937_64 rng(6);
  const std::vector<float> pos = big_positions(tokens, rng);
  std::vector<float> cos(tokens * half), sin(tokens * half);
  ASSERT_HOPE_OK(hope_rope_cos_sin(&cfg, pos.data(), tokens, cos.data(), sin.data()));
  std::vector<double> rc, rs;
  hope_ref::cos_sin(cfg, pos.data(), tokens, &rc, &rs);
  const Tensor x = hope_test::random_tensor(dtype, tokens * xs, rng);
  Tensor out(dtype, tokens * os);
  out.poison();
  hope_rope_apply_params_t p = cpu_params(dtype, tokens, heads, d, x.data(), out.data(), cos.data(), sin.data());
  p.x_row_stride = xs;
  p.out_row_stride = os;
  ASSERT_HOPE_OK(hope_rope_apply(&p, nullptr));
  std::vector<double> in, got;
  const size_t es = hope_test::dtype_size(dtype);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t e = 0; e < row; ++e) {
      in.push_back(x.get(t * xs + e));
      got.push_back(out.get(t * os + e));
    }
    for (int64_t e = row; e < os; ++e)
      for (size_t b = 0; b < es; ++b)
        ASSERT_EQ(out.bytes[(t * os + e) * es + b], 0xff) << "padding of token " << t << " was written";
  }
  EXPECT_TRUE(rotated_close(dtype, got, hope_ref::rotate(in, tokens, heads, d, rc, rs), term_sizes(in, d)));
}

INSTANTIATE_TEST_SUITE_P(RopeDtypes, RopeApplyCpuDtype,
                         ::testing::Values(HOPE_DTYPE_FLOAT16, HOPE_DTYPE_BFLOAT16, HOPE_DTYPE_FLOAT32),
                         [](const ::testing::TestParamInfo<int> &info) {
                           return std::string(hope_test::dtype_name(info.param));
                         });

TEST(RopeApply, ZeroTokensIsANoOp) {
  hope_rope_apply_params_t p = cpu_params(HOPE_DTYPE_BFLOAT16, 0, 8, 128, nullptr, nullptr, nullptr, nullptr);
  EXPECT_HOPE_OK(hope_rope_apply(&p, nullptr));
}

TEST(RopeApply, RejectsBadInput) {
  const int d = 8, heads = 2;
  const int64_t tokens = 4;
  std::vector<float> x(tokens * heads * d, 1.0f), out(tokens * heads * d), cos(tokens * d / 2, 1.0f),
      sin(tokens * d / 2, 0.0f);
  const hope_rope_apply_params_t good =
      cpu_params(HOPE_DTYPE_FLOAT32, tokens, heads, d, x.data(), out.data(), cos.data(), sin.data());
  EXPECT_HOPE_OK(hope_rope_apply(&good, nullptr));
  EXPECT_HOPE_FAIL(hope_rope_apply(nullptr, nullptr), HOPE_ERROR_INVALID_VALUE);
  auto expect_bad = [&](const char *what, auto mutate) {
    SCOPED_TRACE(what);
    hope_rope_apply_params_t p = good;
    mutate(p);
    EXPECT_HOPE_FAIL(hope_rope_apply(&p, nullptr), HOPE_ERROR_INVALID_VALUE);
  };
  expect_bad("backend", [](hope_rope_apply_params_t &p) { p.backend = 2; });
  expect_bad("dtype", [](hope_rope_apply_params_t &p) { p.dtype = 3; });
  expect_bad("dtype negative", [](hope_rope_apply_params_t &p) { p.dtype = -1; });
  expect_bad("head_dim odd", [](hope_rope_apply_params_t &p) { p.head_dim = 7; });
  expect_bad("head_dim 0", [](hope_rope_apply_params_t &p) { p.head_dim = 0; });
  expect_bad("head_dim 1026", [](hope_rope_apply_params_t &p) { p.head_dim = 1026; });
  expect_bad("num_heads 0", [](hope_rope_apply_params_t &p) { p.num_heads = 0; });
  expect_bad("num_tokens -1", [](hope_rope_apply_params_t &p) { p.num_tokens = -1; });
  expect_bad("x stride short", [](hope_rope_apply_params_t &p) { p.x_row_stride = 15; });
  expect_bad("out stride short", [](hope_rope_apply_params_t &p) { p.out_row_stride = 15; });
  expect_bad("x stride negative", [](hope_rope_apply_params_t &p) { p.x_row_stride = -16; });
  expect_bad("x NULL", [](hope_rope_apply_params_t &p) { p.x = nullptr; });
  expect_bad("out NULL", [](hope_rope_apply_params_t &p) { p.out = nullptr; });
  expect_bad("cos NULL", [](hope_rope_apply_params_t &p) { p.cos = nullptr; });
  expect_bad("sin NULL", [](hope_rope_apply_params_t &p) { p.sin = nullptr; });
  expect_bad("index overflow", [](hope_rope_apply_params_t &p) {
    p.num_tokens = int64_t{1} << 40;
    p.x_row_stride = int64_t{1} << 30;
  });
  expect_bad("overlap", [&](hope_rope_apply_params_t &p) { p.out = x.data() + 3; });
  expect_bad("overlap before", [&](hope_rope_apply_params_t &p) {
    p.num_tokens = 2;
    p.x = x.data() + 8;
    p.out = x.data();
  });
  expect_bad("in place, other stride", [&](hope_rope_apply_params_t &p) {
    p.num_tokens = 2;
    p.out = x.data();
    p.out_row_stride = 17;
  });
  // A call larger than its buffers says so, instead of reporting an overlap: past any address space it names the
  // count / stride; within it, separate buffers that seem to overlap get that explanation in the message.
  {
    hope_rope_apply_params_t p = good;
    p.num_tokens = int64_t{1} << 40;
    p.x_row_stride = int64_t{1} << 17;  // 2^57 floats: 2^59 bytes
    EXPECT_HOPE_FAIL(hope_rope_apply(&p, nullptr), HOPE_ERROR_INVALID_VALUE);
    EXPECT_NE(std::strstr(hope_last_error(), "past the end of any address space"), nullptr) << hope_last_error();
    EXPECT_EQ(std::strstr(hope_last_error(), "overlap"), nullptr) << hope_last_error();
    p.x_row_stride = 0;
    p.num_tokens = int64_t{1} << 36;  // 2^40 floats: within the address space, so x and out seem to overlap
    EXPECT_HOPE_FAIL(hope_rope_apply(&p, nullptr), HOPE_ERROR_INVALID_VALUE);
    EXPECT_NE(std::strstr(hope_last_error(), "a count or row stride larger than they are"), nullptr)
        << hope_last_error();
  }
  // Adjacent, non-overlapping buffers are fine.
  hope_rope_apply_params_t adj = good;
  adj.num_tokens = 2;
  adj.out = x.data() + 2 * heads * d;
  EXPECT_HOPE_OK(hope_rope_apply(&adj, nullptr));
}

// Runs only on a machine WITHOUT a usable GPU.
class RopeApplyNoDevice : public ::testing::Test {
 protected:
  void SetUp() override {
    int32_t n = 0;
    ASSERT_EQ(hope_cuda_device_count(&n), HOPE_SUCCESS);
    if (n > 0) GTEST_SKIP() << "a CUDA device is present: the no-device behaviour cannot be observed";
  }
};

TEST_F(RopeApplyNoDevice, CudaBackendIsNoDevice) {
  std::vector<float> x(2 * 8, 1.0f), out(2 * 8), cos(2 * 4, 1.0f), sin(2 * 4, 0.0f);
  hope_rope_apply_params_t p = cpu_params(HOPE_DTYPE_FLOAT32, 2, 1, 8, x.data(), out.data(), cos.data(), sin.data());
  p.backend = HOPE_BACKEND_CUDA;
  EXPECT_HOPE_FAIL(hope_rope_apply(&p, nullptr), hope_test::no_gpu_status());
  p.num_tokens = 0;
  EXPECT_HOPE_FAIL(hope_rope_apply(&p, nullptr), hope_test::no_gpu_status());
}

}  // namespace
