// test_serving_cpu.cc — the serving path on the CPU backend: hope_kv_append, hope_decode_workspace_size,
// hope_decode_forward and hope_merge_states against the float64 reference (paged_ref, attention_ref), plus
// the argument checks of every entry point.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cpu_isa_util.h"
#include "paged_test_util.h"
#include "reference/paged_ref.h"
#include "reference/reference.h"
#include "test_util.h"

namespace {

using hope_ref::PagedDecodeCase;
using hope_ref::PagedDecodeData;
using hope_test::make_paged_case;
using hope_test::paged_kv;
using hope_test::Tensor;
using hope_test::to_double;
using hope_test::to_tensor;

constexpr double kInf = std::numeric_limits<double>::infinity();

double out_tol(int dtype) {
  return dtype == HOPE_DTYPE_FLOAT32 ? 1e-5 : dtype == HOPE_DTYPE_FLOAT16 ? 2e-3 : 1e-2;
}
double lse_tol(int dtype) {
  return dtype == HOPE_DTYPE_FLOAT32 ? 1e-4 : dtype == HOPE_DTYPE_FLOAT16 ? 5e-3 : 2e-2;
}
// Relative tolerance of one stored element computed in float32 then rounded (1 ulp of the dtype, plus a
// margin for the reference rounding a double instead of a float).
double elem_rtol(int dtype) {
  return dtype == HOPE_DTYPE_FLOAT32 ? 1e-6 : dtype == HOPE_DTYPE_FLOAT16 ? 1.0 / 1024 : 1.0 / 128;
}

std::vector<double> rounded(int dtype, std::vector<double> x) {
  for (auto &e : x) e = hope_test::round_to(dtype, static_cast<float>(e));
  return x;
}
bool all_bytes(const Tensor &t, size_t first_byte, size_t n, uint8_t value) {
  for (size_t i = 0; i < n; ++i)
    if (t.bytes[first_byte + i] != value) return false;
  return true;
}

// The cache tensors for a problem (poisoned) and its description.
struct CpuCache {
  Tensor k, v;
  hope_paged_kv_t desc{};
};
CpuCache make_cache(const PagedDecodeCase &c, const PagedDecodeData &d) {
  CpuCache cc;
  const size_t n = static_cast<size_t>(d.num_pages) * c.page_size * c.hk * c.head_dim;
  cc.k = Tensor(c.dtype, n);
  cc.v = Tensor(c.dtype, n);
  cc.k.poison();
  cc.v.poison();
  cc.desc = paged_kv(c.dtype, d.num_pages, c.page_size, c.hk, c.head_dim, cc.k.data(), cc.v.data());
  return cc;
}

// ---- decode ---------------------------------------------------------------------------------------------

std::string case_name(const ::testing::TestParamInfo<PagedDecodeCase> &info) { return info.param.name; }

// A decode problem ready to run on the CPU backend: the cache filled through hope_kv_append (rotating the keys), q
// rows q_row_stride apart with the padding poisoned (NaN, so a read of it would show), poisoned out and lse.
struct CpuDecodeProblem {
  PagedDecodeData d;
  CpuCache cache;
  Tensor q, out;
  std::vector<float> lse;
  hope_decode_params_t p{};
  size_t ws_bytes = 0;

  explicit CpuDecodeProblem(const PagedDecodeCase &c)
      : d(hope_ref::make_paged_decode(c, 1234 + c.hq * 7 + c.head_dim)), cache(make_cache(c, d)) {
    Tensor k = to_tensor(c.dtype, d.k), v = to_tensor(c.dtype, d.v);
    hope_kv_append_params_t ap{};
    ap.backend = HOPE_BACKEND_CPU;
    ap.cache = cache.desc;
    ap.num_tokens = d.total_k;
    ap.k = k.data();
    ap.v = v.data();
    ap.slot_mapping = d.slots.data();
    ap.cos_k = c.rope ? d.cos_k.data() : nullptr;
    ap.sin_k = c.rope ? d.sin_k.data() : nullptr;
    EXPECT_HOPE_OK(hope_kv_append(&ap, nullptr));

    const int64_t q_width = static_cast<int64_t>(c.hq) * c.head_dim, q_stride = q_width + c.q_pad;
    q = Tensor(c.dtype, static_cast<size_t>(d.total_q * q_stride));
    q.poison();
    for (int64_t t = 0; t < d.total_q; ++t)
      for (int64_t i = 0; i < q_width; ++i) q.set(static_cast<size_t>(t * q_stride + i), d.q[t * q_width + i]);
    out = Tensor(c.dtype, static_cast<size_t>(d.total_q) * c.hq * c.head_dim);
    lse.assign(static_cast<size_t>(c.hq) * d.total_q, std::nanf(""));
    p = hope_test::decode_params(HOPE_BACKEND_CPU, c, d, cache.desc, d.cu_q.data(), c.lens.data(),
                                 d.page_table.data(), q.data(), out.data());
    p.q_row_stride = c.q_pad ? q_stride : 0;
    p.lse = c.with_lse ? lse.data() : nullptr;
    p.cos_q = c.rope ? d.cos_q.data() : nullptr;
    p.sin_q = c.rope ? d.sin_q.data() : nullptr;
    EXPECT_HOPE_OK(hope_decode_workspace_size(&p, &ws_bytes));
  }

  // One call on freshly poisoned outputs and workspace.
  hope_status_t run() {
    out.poison();
    std::fill(lse.begin(), lse.end(), std::nanf(""));
    std::vector<double> ws(ws_bytes / sizeof(double) + 1, std::nan(""));
    return hope_decode_forward(&p, ws_bytes ? ws.data() : nullptr, ws_bytes, nullptr);
  }
};

class DecodeCpu : public ::testing::TestWithParam<PagedDecodeCase> {};

TEST_P(DecodeCpu, MatchesFloat64) {
  const PagedDecodeCase &c = GetParam();
  CpuDecodeProblem prob(c);
  const PagedDecodeData &d = prob.d;
  const size_t ws_bytes = prob.ws_bytes;
  if (c.num_splits == 1) EXPECT_EQ(ws_bytes, 0u);
  if (c.num_splits > 1 && d.batch > 0) EXPECT_GT(ws_bytes, 0u);

  // Reference: q rotated in double and rounded to the dtype, keys/values gathered from the pages as stored.
  std::vector<double> q_rot = hope_ref::rotate_rows(to_double(d.q), d.total_q, c.hq, c.head_dim,
                                                    c.rope ? d.cos_q.data() : nullptr,
                                                    c.rope ? d.sin_q.data() : nullptr);
  q_rot = rounded(c.dtype, q_rot);
  std::vector<double> ref_out, ref_lse;
  hope_ref::paged_decode(c, d, q_rot, prob.cache.k.values(), prob.cache.v.values(), 0.0, &ref_out, &ref_lse);

  // Every instruction-set path this machine can run, on freshly poisoned outputs and workspace.
  for (const std::string &isa : hope_test::cpu_isa_paths()) {
    SCOPED_TRACE("HOPE_CPU_ISA=" + isa);
    hope_test::ScopedEnv env("HOPE_CPU_ISA", isa.c_str());
    ASSERT_HOPE_OK(prob.run());

    const std::vector<double> got = prob.out.values();
    for (double x : got) ASSERT_TRUE(std::isfinite(x)) << "non-finite output";
    EXPECT_LE(hope_test::relative_error(got, ref_out), out_tol(c.dtype));
    EXPECT_TRUE(hope_test::all_close(got, ref_out, 8 * out_tol(c.dtype), 8 * out_tol(c.dtype)));
    if (c.with_lse)
      EXPECT_TRUE(hope_test::all_close(std::vector<double>(prob.lse.begin(), prob.lse.end()), ref_lse,
                                       lse_tol(c.dtype)));
    else
      for (float x : prob.lse) EXPECT_TRUE(std::isnan(x)) << "lse written although params.lse was NULL";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Decode, DecodeCpu,
    ::testing::Values(
        make_paged_case("bf16_d128_gqa7_q1_len1037_1_129_page16_causal_planned", HOPE_DTYPE_BFLOAT16, 28, 4, 128, 16,
                        {1, 1, 1}, {1037, 1, 129}, true, 0),
        make_paged_case("f16_d64_gqa4_q8_len8_130_517_page16_causal_split3", HOPE_DTYPE_FLOAT16, 4, 1, 64, 16,
                        {8, 8, 8}, {8, 130, 517}, true, 3),
        make_paged_case("f32_d128_gqa1_q3_len7_1037_page7_noncausal_split1", HOPE_DTYPE_FLOAT32, 8, 8, 128, 7, {3, 3},
                        {7, 1037}, false, 1),
        make_paged_case("bf16_d256_gqa7_q8_len1037_page32_causal_split3", HOPE_DTYPE_BFLOAT16, 7, 1, 256, 32, {8},
                        {1037}, true, 3),
        make_paged_case("f16_d64_gqa4_empty_sequences_split3", HOPE_DTYPE_FLOAT16, 8, 2, 64, 16, {1, 0, 2, 0},
                        {33, 0, 2, 17}, true, 3),
        make_paged_case("bf16_d128_gqa1_q1_len1_2_3_split3_more_splits_than_keys", HOPE_DTYPE_BFLOAT16, 2, 2, 128, 16,
                        {1, 1, 1}, {1, 2, 3}, true, 3),
        make_paged_case("f32_d64_gqa2_q2_page1_causal_planned", HOPE_DTYPE_FLOAT32, 4, 2, 64, 1, {2, 2}, {2, 33}, true,
                        0),
        make_paged_case("f16_d128_gqa7_q5_len129_norope_noncausal_split3", HOPE_DTYPE_FLOAT16, 7, 1, 128, 16, {5},
                        {129}, false, 3, false),
        make_paged_case("f32_d34_gqa3_q4_len77_page5_causal_split3", HOPE_DTYPE_FLOAT32, 6, 2, 34, 5, {4, 1},
                        {77, 4}, true, 3),
        make_paged_case("bf16_d64_mha_q1_len1037_planned", HOPE_DTYPE_BFLOAT16, 1, 1, 64, 16, {1}, {1037}, true, 0),
        make_paged_case("f16_d64_batch0", HOPE_DTYPE_FLOAT16, 4, 1, 64, 16, {}, {}, true, 0),
        make_paged_case("bf16_d128_gqa4_q2_qstride_nolse_split3", HOPE_DTYPE_BFLOAT16, 8, 2, 128, 16, {2, 1}, {45, 300},
                        true, 3, true, 40, false),
        // more query rows per kv head (16 heads x 8 tokens) than one pass of the CPU kernel takes; keys over
        // several blocks, a split boundary inside a page
        make_paged_case("bf16_d128_mqa16_q8_len1500_page16_causal_split3", HOPE_DTYPE_BFLOAT16, 16, 1, 128, 16, {8},
                        {1500}, true, 3),
        make_paged_case("f32_d96_gqa4_q1_len1_600_2100_page16_planned", HOPE_DTYPE_FLOAT32, 8, 2, 96, 16, {1, 1, 1},
                        {1, 600, 2100}, true, 0),
        // the kernels that read bfloat16 K/V rows in place (few rows per kv head): head_dim 256 (q in eight
        // registers), 80 and 34 (not a multiple of 32: masked loads), odd page sizes, all kv heads of a slot per task
        make_paged_case("bf16_d256_gqa2_q1_len1037_page7_causal_split3", HOPE_DTYPE_BFLOAT16, 4, 2, 256, 7, {1},
                        {1037}, true, 3),
        make_paged_case("bf16_d80_gqa4_q2_len300_77_page16_causal_planned", HOPE_DTYPE_BFLOAT16, 8, 2, 80, 16, {2, 1},
                        {300, 77}, true, 0),
        make_paged_case("bf16_d34_gqa1_q3_len129_page5_noncausal_split3", HOPE_DTYPE_BFLOAT16, 3, 3, 34, 5, {3},
                        {129}, false, 3),
        make_paged_case("bf16_d128_mha8_q1_len2100_page16_planned", HOPE_DTYPE_BFLOAT16, 8, 8, 128, 16, {1}, {2100},
                        true, 0),
        // 9 to 16 rows per kv head on the in-place kernels, the rows as a Q panel: 16 rows (head_dim 80: pairs
        // past d are padding; the second sequence's task has 4 rows: the row path), 12 rows at head_dim 34, 9 rows,
        // and 16 rows in a call planned for 32 (a sequence with 4 of max_seqlen_q 8 tokens: Q panel and panels)
        make_paged_case("bf16_d80_gqa4_q4_len300_77_page16_qpanel_causal_split3", HOPE_DTYPE_BFLOAT16, 8, 2, 80, 16,
                        {4, 1}, {300, 77}, true, 3),
        make_paged_case("bf16_d34_gqa4_q3_len129_page5_qpanel_noncausal_planned", HOPE_DTYPE_BFLOAT16, 4, 1, 34, 5,
                        {3}, {129}, false, 0),
        make_paged_case("bf16_d128_gqa9_q1_len1037_qpanel_split3", HOPE_DTYPE_BFLOAT16, 9, 1, 128, 16, {1}, {1037},
                        true, 3),
        make_paged_case("bf16_d256_gqa4_q8_q4_len700_9_page16_panels_and_qpanel_planned", HOPE_DTYPE_BFLOAT16, 8, 2,
                        256, 16, {8, 4}, {700, 9}, true, 0),
        // kv heads in groups that fit one task's rows (4 kv heads x 64 rows: two groups of two heads), and a kv
        // head whose 192 rows are cut into two row ranges
        make_paged_case("bf16_d64_gqa8_q8_hk4_len520_head_groups_planned", HOPE_DTYPE_BFLOAT16, 32, 4, 64, 16, {8},
                        {520}, true, 0),
        make_paged_case("f16_d64_mqa24_q8_len300_row_parts_split3", HOPE_DTYPE_FLOAT16, 24, 1, 64, 16, {8, 3},
                        {300, 40}, true, 3)),
    case_name);

// Threads must not change the answer: with the split count forced, 1, 2, 3 and 7 threads give identical bytes of
// out and lse on every ISA path, for the in-place row kernels (1-2 tokens: 4-8 rows per kv head), the Q panel
// (4 tokens: 16 rows) and the packed panels (8 tokens: 32 rows).
TEST(DecodeCpuThreads, BitIdenticalForAnyThreadCount) {
  const std::vector<PagedDecodeCase> cases = {
      make_paged_case("bf16_rows", HOPE_DTYPE_BFLOAT16, 8, 2, 128, 16, {2, 1, 2}, {1037, 1, 700}, true, 3),
      make_paged_case("bf16_qpanel", HOPE_DTYPE_BFLOAT16, 8, 2, 128, 16, {4, 4}, {1037, 700}, true, 3),
      make_paged_case("bf16_panels_and_qpanel", HOPE_DTYPE_BFLOAT16, 8, 2, 64, 7, {8, 4}, {900, 300}, true, 3),
      make_paged_case("f32_panels", HOPE_DTYPE_FLOAT32, 8, 2, 64, 16, {1, 8}, {600, 1037}, true, 2)};
  for (const PagedDecodeCase &c : cases) {
    CpuDecodeProblem prob(c);
    for (const std::string &isa : hope_test::cpu_isa_paths()) {
      SCOPED_TRACE(c.name + " HOPE_CPU_ISA=" + isa);
      hope_test::ScopedEnv env_isa("HOPE_CPU_ISA", isa.c_str());
      std::vector<uint8_t> first;
      std::vector<float> first_lse;
      for (const char *threads : {"1", "2", "3", "7"}) {
        hope_test::ScopedEnv env_threads("HOPE_NUM_THREADS", threads);
        ASSERT_HOPE_OK(prob.run());
        if (std::string(threads) == "1") {
          for (size_t i = 0; i < prob.out.size(); ++i) ASSERT_TRUE(std::isfinite(prob.out.get(i))) << i;
          first = prob.out.bytes;
          first_lse = prob.lse;
          continue;
        }
        EXPECT_EQ(prob.out.bytes, first) << threads << " threads";
        EXPECT_EQ(0, std::memcmp(prob.lse.data(), first_lse.data(), prob.lse.size() * sizeof(float)))
            << threads << " threads";
      }
    }
  }
}

TEST(DecodeCpuPlan, WorkspaceFollowsThePlan) {
  int32_t cu[2] = {0, 1}, lens[1] = {4096}, table[256] = {0};
  hope_decode_params_t p{};
  p.backend = HOPE_BACKEND_CPU;
  p.cache.dtype = HOPE_DTYPE_BFLOAT16;
  p.cache.num_pages = 256;
  p.cache.page_size = 16;
  p.cache.num_kv_heads = 4;
  p.cache.head_dim = 128;
  p.batch = 1;
  p.num_q_heads = 28;
  p.cu_seqlens_q = cu;
  p.max_seqlen_q = 1;
  p.seq_lens = lens;
  p.max_seqlen_k = 4096;
  p.page_table = table;
  p.max_pages_per_seq = 256;
  size_t ws = 1;
  p.num_splits = 1;
  ASSERT_HOPE_OK(hope_decode_workspace_size(&p, &ws));
  EXPECT_EQ(ws, 0u);
  p.num_splits = 3;
  ASSERT_HOPE_OK(hope_decode_workspace_size(&p, &ws));
  // partial o (3 x 1 row x 28 heads x 128 floats) and lse (3 x 28 floats)
  EXPECT_GE(ws, (3u * 28u * 128u + 3u * 28u) * sizeof(float));
  p.num_splits = 0;
  ASSERT_HOPE_OK(hope_decode_workspace_size(&p, &ws));  // planned; any size is fine, it must just succeed
  // A workspace smaller than asked for: OUT_OF_MEMORY naming the size, nothing written.
  p.num_splits = 3;
  ASSERT_HOPE_OK(hope_decode_workspace_size(&p, &ws));
  std::vector<double> small(ws / 16);
  uint16_t q[28 * 128] = {0}, out[28 * 128];
  std::vector<uint16_t> pages(static_cast<size_t>(256) * 16 * 4 * 128, 0);
  p.cache.k_pages = pages.data();
  p.cache.v_pages = pages.data();
  p.q = q;
  p.out = out;
  std::memset(out, 0xff, sizeof(out));
  EXPECT_HOPE_FAIL(hope_decode_forward(&p, small.data(), small.size() * sizeof(double), nullptr),
                   HOPE_ERROR_OUT_OF_MEMORY);
  EXPECT_NE(std::string(hope_last_error()).find(std::to_string(ws)), std::string::npos) << hope_last_error();
  EXPECT_HOPE_FAIL(hope_decode_forward(&p, nullptr, 0, nullptr), HOPE_ERROR_OUT_OF_MEMORY);
  for (uint16_t x : out) ASSERT_EQ(x, 0xffff) << "written despite the failure";
}

// ---- kv append ------------------------------------------------------------------------------------------

struct AppendCase {
  int dtype, hk, d, page_size, num_pages, tokens;
  bool rope;
  int k_pad;  // extra elements per k row (a fused QKV-like stride)
  std::string name;
};

void PrintTo(const AppendCase &c, std::ostream *os) { *os << c.name; }

class KvAppendCpu : public ::testing::TestWithParam<AppendCase> {};

TEST_P(KvAppendCpu, WritesRotatedKeysAndValuesIntoSlots) {
  const AppendCase &c = GetParam();
  std::mt19937_64 rng(99 + c.d);
  const int64_t num_slots = static_cast<int64_t>(c.num_pages) * c.page_size;
  ASSERT_LE(c.tokens, num_slots);
  std::vector<int64_t> all(num_slots);
  for (int64_t i = 0; i < num_slots; ++i) all[i] = i;
  std::shuffle(all.begin(), all.end(), rng);
  std::vector<int64_t> slots(all.begin(), all.begin() + c.tokens);
  for (int i = 0; i < c.tokens; i += 5) slots[i] = -1 - i;  // skipped tokens
  const int row = c.hk * c.d, half = c.d / 2;
  const int64_t k_stride = row + c.k_pad;
  Tensor k = hope_test::random_tensor(c.dtype, static_cast<size_t>(c.tokens) * k_stride, rng);
  Tensor v = hope_test::random_tensor(c.dtype, static_cast<size_t>(c.tokens) * row, rng);
  std::vector<float> cs(static_cast<size_t>(c.tokens) * half), sn(cs.size());
  for (size_t i = 0; i < cs.size(); ++i) {
    const double a = (150000.0 + static_cast<double>(i)) * std::pow(1e6, -2.0 * (i % half) / c.d);
    cs[i] = static_cast<float>(std::cos(a));
    sn[i] = static_cast<float>(std::sin(a));
  }
  Tensor kp(c.dtype, static_cast<size_t>(num_slots) * row), vp(c.dtype, kp.size());
  kp.poison();
  vp.poison();
  hope_kv_append_params_t p{};
  p.backend = HOPE_BACKEND_CPU;
  p.cache = paged_kv(c.dtype, c.num_pages, c.page_size, c.hk, c.d, kp.data(), vp.data());
  p.num_tokens = c.tokens;
  p.k = k.data();
  p.v = v.data();
  p.k_row_stride = c.k_pad ? k_stride : 0;
  p.slot_mapping = slots.data();
  p.cos_k = c.rope ? cs.data() : nullptr;
  p.sin_k = c.rope ? sn.data() : nullptr;
  ASSERT_HOPE_OK(hope_kv_append(&p, nullptr));

  // Expected: every written slot holds round(rotate(k)) and v exactly; every other slot is untouched.
  std::vector<bool> written(num_slots, false);
  const size_t es = hope_test::dtype_size(c.dtype);
  for (int t = 0; t < c.tokens; ++t) {
    if (slots[t] < 0) continue;
    written[slots[t]] = true;
    std::vector<double> kt(row), vt(row), got_k(row), got_v(row);
    for (int i = 0; i < row; ++i) {
      kt[i] = k.get(static_cast<size_t>(t) * k_stride + i);
      vt[i] = v.get(static_cast<size_t>(t) * row + i);
      got_k[i] = kp.get(static_cast<size_t>(slots[t]) * row + i);
      got_v[i] = vp.get(static_cast<size_t>(slots[t]) * row + i);
    }
    std::vector<double> want_k = hope_ref::rotate_rows(kt, 1, c.hk, c.d, c.rope ? cs.data() + t * half : nullptr,
                                                       c.rope ? sn.data() + t * half : nullptr);
    want_k = rounded(c.dtype, want_k);
    ASSERT_TRUE(hope_test::all_close(got_k, want_k, c.dtype == HOPE_DTYPE_FLOAT32 ? 1e-6 : 1e-3,
                                     elem_rtol(c.dtype)))
        << "k of token " << t;
    ASSERT_TRUE(hope_test::all_close(got_v, vt, 0.0)) << "v of token " << t;
  }
  for (int64_t s = 0; s < num_slots; ++s) {
    if (written[s]) continue;
    ASSERT_TRUE(all_bytes(kp, static_cast<size_t>(s) * row * es, row * es, 0xff)) << "k slot " << s << " written";
    ASSERT_TRUE(all_bytes(vp, static_cast<size_t>(s) * row * es, row * es, 0xff)) << "v slot " << s << " written";
  }
}

INSTANTIATE_TEST_SUITE_P(
    KvAppend, KvAppendCpu,
    ::testing::Values(AppendCase{HOPE_DTYPE_BFLOAT16, 4, 128, 16, 9, 129, true, 0, "bf16_hk4_d128_page16_rope"},
                      AppendCase{HOPE_DTYPE_FLOAT16, 3, 34, 5, 7, 31, true, 6, "f16_hk3_d34_page5_rope_kstride"},
                      AppendCase{HOPE_DTYPE_FLOAT32, 1, 64, 1, 40, 37, true, 0, "f32_hk1_d64_page1_rope"},
                      AppendCase{HOPE_DTYPE_BFLOAT16, 2, 64, 7, 3, 20, false, 128, "bf16_hk2_d64_page7_norope"}),
    [](const ::testing::TestParamInfo<AppendCase> &info) { return info.param.name; });

// ---- merge states ---------------------------------------------------------------------------------------

// CPU merge params for float32 [tokens][heads][d] states.
hope_merge_params_t cpu_merge(int64_t tokens, int32_t heads, int32_t d, const void *o_a, const void *o_b,
                              const float *lse_a, const float *lse_b, void *out, float *lse_out) {
  hope_merge_params_t p{};
  p.backend = HOPE_BACKEND_CPU;
  p.dtype = HOPE_DTYPE_FLOAT32;
  p.num_tokens = tokens;
  p.num_heads = heads;
  p.head_dim = d;
  p.o_a = o_a;
  p.o_b = o_b;
  p.lse_a = lse_a;
  p.lse_b = lse_b;
  p.out = out;
  p.lse_out = lse_out;
  return p;
}

class MergeStatesCpu : public ::testing::TestWithParam<int> {};

TEST_P(MergeStatesCpu, MatchesFloat64WithInfiniteSides) {
  const int dtype = GetParam();
  const int64_t tokens = 10;
  const int heads = 3, d = 65;
  std::mt19937_64 rng(7 + dtype);
  const size_t n_o = static_cast<size_t>(tokens) * heads * d, n_l = static_cast<size_t>(tokens) * heads;
  Tensor oa = hope_test::random_tensor(dtype, n_o, rng), ob = hope_test::random_tensor(dtype, n_o, rng);
  std::normal_distribution<float> nd(0.f, 3.f);
  std::vector<float> la(n_l), lb(n_l);
  for (size_t i = 0; i < n_l; ++i) {
    la[i] = nd(rng);
    lb[i] = nd(rng);
  }
  // Token 0: a side -inf; token 1: b side -inf; token 2: both; token 3: a side far below b; tokens 7, 8, 9: a NaN
  // lse on the a side, on the b side, and +inf on the b side (NaN out and lse, whichever side holds it).
  for (int h = 0; h < heads; ++h) {
    la[h * tokens + 0] = -INFINITY;
    lb[h * tokens + 1] = -INFINITY;
    la[h * tokens + 2] = lb[h * tokens + 2] = -INFINITY;
    la[h * tokens + 3] = lb[h * tokens + 3] - 200.f;
    la[h * tokens + 7] = std::nanf("");
    lb[h * tokens + 8] = std::nanf("");
    lb[h * tokens + 9] = INFINITY;
  }
  // The o of a -inf side is poisoned: it must contribute nothing. The reference gets zeros there.
  std::vector<double> ra = oa.values(), rb = ob.values();
  for (int64_t t = 0; t < tokens; ++t)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < d; ++i) {
        const size_t e = (static_cast<size_t>(t) * heads + h) * d + i;
        if (la[h * tokens + t] == -INFINITY) {
          oa.set(e, std::nanf(""));
          ra[e] = 0.0;
        }
        if (lb[h * tokens + t] == -INFINITY) {
          ob.set(e, std::nanf(""));
          rb[e] = 0.0;
        }
      }
  std::vector<double> ref_o, ref_l;
  hope_ref::merge_states(tokens, heads, d, ra, std::vector<double>(la.begin(), la.end()), rb,
                         std::vector<double>(lb.begin(), lb.end()), &ref_o, &ref_l);
  const double otol = dtype == HOPE_DTYPE_FLOAT32 ? 1e-6 : dtype == HOPE_DTYPE_FLOAT16 ? 2e-3 : 1.6e-2;

  for (int alias = 0; alias < 2; ++alias) {
    Tensor out(dtype, n_o);
    out.poison();
    Tensor a_copy = oa;
    std::vector<float> la_copy = la;  // alias 1 merges in place: out = o_a and lse_out = lse_a
    std::vector<float> lo_own(n_l, std::nanf(""));
    std::vector<float> &lo = alias ? la_copy : lo_own;
    hope_merge_params_t p{};
    p.backend = HOPE_BACKEND_CPU;
    p.dtype = dtype;
    p.num_tokens = tokens;
    p.num_heads = heads;
    p.head_dim = d;
    p.o_a = a_copy.data();
    p.o_b = ob.data();
    p.lse_a = la_copy.data();
    p.lse_b = lb.data();
    p.out = alias ? a_copy.data() : out.data();
    p.lse_out = lo.data();
    ASSERT_HOPE_OK(hope_merge_states(&p, nullptr));
    const std::vector<double> got = alias ? a_copy.values() : out.values();
    EXPECT_TRUE(hope_test::all_close(got, ref_o, otol, otol)) << "alias " << alias;
    EXPECT_TRUE(hope_test::all_close(std::vector<double>(lo.begin(), lo.end()), ref_l, 1e-5, 1e-6));
    for (int h = 0; h < heads; ++h) EXPECT_EQ(lo[h * tokens + 2], -INFINITY);
  }
}

INSTANTIATE_TEST_SUITE_P(Merge, MergeStatesCpu,
                         ::testing::Values(HOPE_DTYPE_FLOAT16, HOPE_DTYPE_BFLOAT16, HOPE_DTYPE_FLOAT32),
                         [](const ::testing::TestParamInfo<int> &info) {
                           return std::string(hope_test::dtype_name(info.param));
                         });

TEST(MergeStatesCpuApi, LseOutIsOptionalAndEmptyIsANoOp) {
  float oa[4] = {1, 2, 3, 4}, ob[4] = {5, 6, 7, 8}, out[4];
  float la[1] = {0.f}, lb[1] = {0.f};
  hope_merge_params_t p = cpu_merge(1, 1, 4, oa, ob, la, lb, out, nullptr);
  ASSERT_HOPE_OK(hope_merge_states(&p, nullptr));
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(out[i], 0.5f * (oa[i] + ob[i]));
  p.num_tokens = 0;
  p.o_a = p.o_b = nullptr;
  p.out = nullptr;
  EXPECT_HOPE_OK(hope_merge_states(&p, nullptr));
}

// A NaN lse used to give NaN on the a side and drop both sides (out 0, lse -inf) on the b side: the rule is now
// the same whichever side holds it, and merge(a, b) equals merge(b, a) bit for bit.
TEST(MergeStatesCpuApi, NanLseGivesNanWhicheverSideHoldsIt) {
  const float special[] = {std::nanf(""), INFINITY, -INFINITY, 0.5f};
  for (float bad : special) {
    for (float other : {1.0f, -INFINITY, std::nanf("")}) {
      float o1[4] = {1, 2, 3, 4}, o2[4] = {5, 6, 7, 8}, ab[4], ba[4], l_ab = 0.f, l_ba = 0.f;
      float la = bad, lb = other;
      hope_merge_params_t p = cpu_merge(1, 1, 4, o1, o2, &la, &lb, ab, &l_ab);
      ASSERT_HOPE_OK(hope_merge_states(&p, nullptr));
      p = cpu_merge(1, 1, 4, o2, o1, &lb, &la, ba, &l_ba);
      ASSERT_HOPE_OK(hope_merge_states(&p, nullptr));
      SCOPED_TRACE(std::to_string(bad) + " with " + std::to_string(other));
      const bool invalid = std::isnan(bad) || std::isnan(other) || bad == INFINITY;
      EXPECT_EQ(std::isnan(l_ab), invalid);
      EXPECT_TRUE(invalid ? std::isnan(l_ba) : l_ab == l_ba) << l_ab << " vs " << l_ba;
      for (int i = 0; i < 4; ++i) {
        EXPECT_EQ(std::isnan(ab[i]), invalid) << i;
        if (!invalid) EXPECT_FLOAT_EQ(ab[i], ba[i]) << i;
        else EXPECT_TRUE(std::isnan(ba[i])) << i;
      }
    }
  }
}

// ---- bad input --------------------------------------------------------------------------------------------

// A small valid setup of every entry point, on the CPU backend.
struct Valid {
  std::vector<uint16_t> kp = std::vector<uint16_t>(4 * 4 * 2 * 64, 0), vp = kp;
  std::vector<uint16_t> k = std::vector<uint16_t>(3 * 2 * 64, 0), v = k;
  std::vector<int64_t> slots = {0, 5, -1};
  std::vector<int32_t> cu = {0, 1, 3}, lens = {3, 6}, table = {2, 0, 1, 3};
  std::vector<uint16_t> q = std::vector<uint16_t>(3 * 4 * 64, 0), out = q;
  std::vector<float> lse = std::vector<float>(4 * 3, 0.f), cos = std::vector<float>(3 * 32, 1.f),
                     sin = std::vector<float>(3 * 32, 0.f);
  hope_paged_kv_t cache{};
  hope_kv_append_params_t append{};
  hope_decode_params_t decode{};
  Valid() {
    cache = paged_kv(HOPE_DTYPE_FLOAT16, 4, 4, 2, 64, kp.data(), vp.data());
    append.backend = HOPE_BACKEND_CPU;
    append.cache = cache;
    append.num_tokens = 3;
    append.k = k.data();
    append.v = v.data();
    append.slot_mapping = slots.data();
    append.cos_k = cos.data();
    append.sin_k = sin.data();
    decode.backend = HOPE_BACKEND_CPU;
    decode.cache = cache;
    decode.batch = 2;
    decode.num_q_heads = 4;
    decode.cu_seqlens_q = cu.data();
    decode.max_seqlen_q = 2;
    decode.seq_lens = lens.data();
    decode.max_seqlen_k = 6;
    decode.page_table = table.data();
    decode.max_pages_per_seq = 2;
    decode.q = q.data();
    decode.out = out.data();
    decode.lse = lse.data();
    decode.cos_q = cos.data();
    decode.sin_q = sin.data();
    decode.causal = 1;
    decode.num_splits = 1;
  }
};

TEST(ServingCpu, ValidSetupSucceeds) {
  Valid w;
  EXPECT_HOPE_OK(hope_kv_append(&w.append, nullptr));
  size_t ws = 1;
  EXPECT_HOPE_OK(hope_decode_workspace_size(&w.decode, &ws));
  EXPECT_EQ(ws, 0u);
  EXPECT_HOPE_OK(hope_decode_forward(&w.decode, nullptr, 0, nullptr));
}

TEST(ServingCpu, KvAppendRejectsBadInput) {
  EXPECT_HOPE_FAIL(hope_kv_append(nullptr, nullptr), HOPE_ERROR_INVALID_VALUE);
  auto expect_bad = [](void (*mutate)(Valid &), const char *what) {
    Valid w;
    mutate(w);
    SCOPED_TRACE(what);
    EXPECT_HOPE_FAIL(hope_kv_append(&w.append, nullptr), HOPE_ERROR_INVALID_VALUE);
  };
  expect_bad([](Valid &w) { w.append.backend = 7; }, "backend");
  expect_bad([](Valid &w) { w.append.cache.dtype = 9; }, "dtype");
  expect_bad([](Valid &w) { w.append.cache.num_pages = 0; }, "num_pages");
  expect_bad([](Valid &w) { w.append.cache.page_size = 0; }, "page_size");
  expect_bad([](Valid &w) { w.append.cache.num_kv_heads = 0; }, "num_kv_heads");
  expect_bad([](Valid &w) { w.append.cache.head_dim = 63; }, "odd head_dim");
  expect_bad([](Valid &w) { w.append.cache.head_dim = 0; }, "head_dim 0");
  expect_bad([](Valid &w) { w.append.cache.k_pages = nullptr; }, "k_pages");
  expect_bad([](Valid &w) { w.append.cache.v_pages = nullptr; }, "v_pages");
  expect_bad([](Valid &w) { w.append.num_tokens = -1; }, "num_tokens");
  expect_bad([](Valid &w) { w.append.k = nullptr; }, "k");
  expect_bad([](Valid &w) { w.append.v = nullptr; }, "v");
  expect_bad([](Valid &w) { w.append.slot_mapping = nullptr; }, "slot_mapping");
  expect_bad([](Valid &w) { w.append.k_row_stride = 64; }, "k_row_stride below a row");
  expect_bad([](Valid &w) { w.append.v_row_stride = -5; }, "negative v_row_stride");
  expect_bad([](Valid &w) { w.append.sin_k = nullptr; }, "cos without sin");
  expect_bad([](Valid &w) { w.slots[1] = 16; }, "slot == num_pages * page_size");
  // No tokens: nothing is read, NULL data is fine.
  Valid w;
  w.append.num_tokens = 0;
  w.append.k = w.append.v = nullptr;
  w.append.slot_mapping = nullptr;
  EXPECT_HOPE_OK(hope_kv_append(&w.append, nullptr));
}

TEST(ServingCpu, DecodeRejectsBadInput) {
  size_t ws = 0;
  EXPECT_HOPE_FAIL(hope_decode_forward(nullptr, nullptr, 0, nullptr), HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_decode_workspace_size(nullptr, &ws), HOPE_ERROR_INVALID_VALUE);
  {
    Valid w;
    EXPECT_HOPE_FAIL(hope_decode_workspace_size(&w.decode, nullptr), HOPE_ERROR_INVALID_VALUE);
  }
  // shape errors: both the workspace query and the forward reject them
  auto expect_bad_shape = [](void (*mutate)(Valid &), const char *what) {
    Valid w;
    mutate(w);
    SCOPED_TRACE(what);
    size_t bytes = 0;
    EXPECT_HOPE_FAIL(hope_decode_workspace_size(&w.decode, &bytes), HOPE_ERROR_INVALID_VALUE);
    EXPECT_HOPE_FAIL(hope_decode_forward(&w.decode, nullptr, 0, nullptr), HOPE_ERROR_INVALID_VALUE);
  };
  expect_bad_shape([](Valid &w) { w.decode.backend = -1; }, "backend");
  expect_bad_shape([](Valid &w) { w.decode.cache.dtype = 3; }, "dtype");
  expect_bad_shape([](Valid &w) { w.decode.cache.page_size = 0; }, "page_size");
  expect_bad_shape([](Valid &w) { w.decode.cache.num_pages = 0; }, "num_pages");
  expect_bad_shape([](Valid &w) { w.decode.cache.head_dim = 7; }, "odd head_dim");
  expect_bad_shape([](Valid &w) { w.decode.cache.head_dim = 2048; }, "huge head_dim");
  expect_bad_shape([](Valid &w) { w.decode.num_q_heads = 3; }, "num_q_heads % num_kv_heads");
  expect_bad_shape([](Valid &w) { w.decode.num_q_heads = 0; }, "num_q_heads 0");
  expect_bad_shape([](Valid &w) { w.decode.batch = -1; }, "batch");
  expect_bad_shape([](Valid &w) { w.decode.max_seqlen_q = 9; }, "max_seqlen_q 9");
  expect_bad_shape([](Valid &w) { w.decode.max_seqlen_q = 0; }, "max_seqlen_q 0 with batch 2");
  expect_bad_shape([](Valid &w) { w.decode.max_seqlen_k = -1; }, "max_seqlen_k");
  expect_bad_shape([](Valid &w) { w.decode.num_splits = -1; }, "num_splits -1");
  expect_bad_shape([](Valid &w) { w.decode.num_splits = 100000; }, "num_splits huge");
  expect_bad_shape([](Valid &w) { w.decode.q_row_stride = 5; }, "q_row_stride");
  expect_bad_shape([](Valid &w) { w.decode.softmax_scale = INFINITY; }, "softmax_scale inf");
  // data errors: the forward rejects them
  auto expect_bad = [](void (*mutate)(Valid &), const char *what) {
    Valid w;
    mutate(w);
    SCOPED_TRACE(what);
    EXPECT_HOPE_FAIL(hope_decode_forward(&w.decode, nullptr, 0, nullptr), HOPE_ERROR_INVALID_VALUE);
  };
  expect_bad([](Valid &w) { w.decode.cache.k_pages = nullptr; }, "k_pages");
  expect_bad([](Valid &w) { w.decode.cache.v_pages = nullptr; }, "v_pages");
  expect_bad([](Valid &w) { w.decode.q = nullptr; }, "q");
  expect_bad([](Valid &w) { w.decode.out = nullptr; }, "out");
  expect_bad([](Valid &w) { w.decode.cu_seqlens_q = nullptr; }, "cu_seqlens_q");
  expect_bad([](Valid &w) { w.decode.seq_lens = nullptr; }, "seq_lens");
  expect_bad([](Valid &w) { w.decode.page_table = nullptr; }, "page_table");
  expect_bad([](Valid &w) { w.decode.sin_q = nullptr; }, "cos without sin");
  expect_bad([](Valid &w) { w.cu[0] = 1; }, "cu_seqlens_q[0] != 0");
  expect_bad([](Valid &w) { w.cu[1] = 4; }, "cu_seqlens_q decreasing");
  expect_bad([](Valid &w) { w.cu = {0, 3, 3}; w.lens = {6, 6}; w.decode.cu_seqlens_q = w.cu.data();
                            w.decode.seq_lens = w.lens.data(); }, "more queries than max_seqlen_q");
  expect_bad([](Valid &w) { w.lens[1] = 7; }, "seq_len > max_seqlen_k");
  expect_bad([](Valid &w) { w.lens[1] = 9; w.decode.max_seqlen_k = 9; }, "seq_len > max_pages * page_size");
  expect_bad([](Valid &w) { w.lens[1] = 1; }, "seq_len < query count");
  expect_bad([](Valid &w) { w.lens[0] = -1; }, "negative seq_len");
  expect_bad([](Valid &w) { w.table[3] = 4; }, "page index == num_pages");
  expect_bad([](Valid &w) { w.table[0] = -1; }, "negative page index");
  // Unused page table entries are not read: -1 beyond the sequence's pages is fine.
  Valid w;
  w.lens[0] = 2;
  w.table[1] = -1;
  EXPECT_HOPE_OK(hope_decode_forward(&w.decode, nullptr, 0, nullptr));
  // batch 0 with max_seqlen_q 0 and no pointers is a no-op
  hope_decode_params_t e = w.decode;
  e.batch = 0;
  e.max_seqlen_q = 0;
  e.q = e.out = nullptr;
  e.cu_seqlens_q = e.seq_lens = e.page_table = nullptr;
  EXPECT_HOPE_OK(hope_decode_forward(&e, nullptr, 0, nullptr));
}

TEST(ServingCpu, MergeRejectsBadInput) {
  float o[8] = {0}, l[2] = {0};
  const hope_merge_params_t good = cpu_merge(2, 1, 4, o, o, l, l, o, nullptr);
  EXPECT_HOPE_OK(hope_merge_states(&good, nullptr));
  EXPECT_HOPE_FAIL(hope_merge_states(nullptr, nullptr), HOPE_ERROR_INVALID_VALUE);
  auto bad = [&](void (*mutate)(hope_merge_params_t &), const char *what) {
    hope_merge_params_t p = good;
    mutate(p);
    SCOPED_TRACE(what);
    EXPECT_HOPE_FAIL(hope_merge_states(&p, nullptr), HOPE_ERROR_INVALID_VALUE);
  };
  bad([](hope_merge_params_t &p) { p.backend = 2; }, "backend");
  bad([](hope_merge_params_t &p) { p.dtype = -1; }, "dtype");
  bad([](hope_merge_params_t &p) { p.num_tokens = -1; }, "num_tokens");
  bad([](hope_merge_params_t &p) { p.num_heads = 0; }, "num_heads");
  bad([](hope_merge_params_t &p) { p.head_dim = 0; }, "head_dim");
  bad([](hope_merge_params_t &p) { p.o_a = nullptr; }, "o_a");
  bad([](hope_merge_params_t &p) { p.o_b = nullptr; }, "o_b");
  bad([](hope_merge_params_t &p) { p.lse_a = nullptr; }, "lse_a");
  bad([](hope_merge_params_t &p) { p.lse_b = nullptr; }, "lse_b");
  bad([](hope_merge_params_t &p) { p.out = nullptr; }, "out");
}

// Only exact aliasing is an in-place merge: an output overlapping an argument anywhere else is refused, with a
// message naming both.
TEST(ServingCpu, MergeRefusesPartialOverlap) {
  float o[3 * 8] = {0}, l[6] = {0};
  const hope_merge_params_t good = cpu_merge(2, 1, 4, o, o + 8, l, l + 2, o + 16, l + 4);
  EXPECT_HOPE_OK(hope_merge_states(&good, nullptr));
  hope_merge_params_t p = good;
  p.out = o, p.lse_out = l;  // in place on the a side
  EXPECT_HOPE_OK(hope_merge_states(&p, nullptr));
  p.out = o + 8, p.lse_out = l + 2;  // and on the b side
  EXPECT_HOPE_OK(hope_merge_states(&p, nullptr));
  struct Case {
    const char *what, *named;
    void (*mutate)(hope_merge_params_t &, float *, float *);
  };
  const Case cases[] = {
      {"out one element into o_a", "params->o_a", [](hope_merge_params_t &q, float *o_, float *) { q.out = o_ + 1; }},
      {"out straddling o_a and o_b", "params->o_a", [](hope_merge_params_t &q, float *o_, float *) { q.out = o_ + 4; }},
      {"out over lse_a", "params->lse_a", [](hope_merge_params_t &q, float *, float *l_) { q.out = l_; }},
      {"lse_out one element into lse_a", "params->lse_a",
       [](hope_merge_params_t &q, float *, float *l_) { q.lse_out = l_ + 1; }},
      {"lse_out inside out", "params->out", [](hope_merge_params_t &q, float *o_, float *) { q.lse_out = o_ + 17; }},
      {"lse_out inside o_b", "params->o_b", [](hope_merge_params_t &q, float *o_, float *) { q.lse_out = o_ + 9; }},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.what);
    hope_merge_params_t q = good;
    c.mutate(q, o, l);
    EXPECT_HOPE_FAIL(hope_merge_states(&q, nullptr), HOPE_ERROR_INVALID_VALUE);
    EXPECT_NE(std::strstr(hope_last_error(), "overlap"), nullptr) << hope_last_error();
    EXPECT_NE(std::strstr(hope_last_error(), c.named), nullptr) << hope_last_error();
  }
}

TEST(ServingCpu, CudaBackendWithoutGpuIsNoDevice) {
  int32_t n = 0;
  ASSERT_HOPE_OK(hope_cuda_device_count(&n));
  if (n > 0) GTEST_SKIP() << "a GPU is present: covered by the GPU tests";
  Valid w;
  w.append.backend = HOPE_BACKEND_CUDA;
  EXPECT_HOPE_FAIL(hope_kv_append(&w.append, nullptr), hope_test::no_gpu_status());
  w.decode.backend = HOPE_BACKEND_CUDA;
  size_t ws = 0;
  EXPECT_HOPE_FAIL(hope_decode_workspace_size(&w.decode, &ws), hope_test::no_gpu_status());
  EXPECT_HOPE_FAIL(hope_decode_forward(&w.decode, nullptr, 0, nullptr), hope_test::no_gpu_status());
  hope_merge_params_t m{};
  m.backend = HOPE_BACKEND_CUDA;
  EXPECT_HOPE_FAIL(hope_merge_states(&m, nullptr), hope_test::no_gpu_status());
}

}  // namespace
