// test_attention_cpu.cc — hope_attention_forward on the CPU backend against the float64 reference (SPEC §5).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "hope_attn.h"
#include "cpu_isa_util.h"
#include "reference/reference.h"
#include "test_util.h"

namespace {

using hope_test::cu_seqlens;
using hope_test::Tensor;

struct AttnCase {
  int dtype = HOPE_DTYPE_FLOAT32;
  int head_dim = 64;
  int hq = 4, hk = 4;
  bool causal = true;
  std::vector<int> lens_q, lens_k;  // per sequence
  bool rotate = true;
  float scale = 0.0f;               // <= 0: default
  bool with_lse = true;
  bool fused_qkv = false;           // q, k, v are slices of one [tokens][(hq + 2hk) d] buffer (needs lens_q == lens_k)
  bool k_rotated = false;
  std::string tag;                  // short description of the lengths
};

std::string case_name(const AttnCase &c) {
  std::string n = std::string(hope_test::dtype_name(c.dtype)) + "_d" + std::to_string(c.head_dim) +
                  (c.causal ? "_causal" : "_full");
  if (c.hk == 1) n += "_mqa" + std::to_string(c.hq);
  else n += "_gqa" + std::to_string(c.hq / c.hk) + "h" + std::to_string(c.hq);
  n += "_" + c.tag;
  if (!c.rotate) n += "_norot";
  if (c.scale > 0.0f) n += "_scale" + std::to_string(static_cast<int>(c.scale * 1000)) + "m";
  if (!c.with_lse) n += "_nolse";
  if (c.fused_qkv) n += "_fusedqkv";
  if (c.k_rotated) n += "_krot";
  return n;
}

struct Tolerance {
  double rel, lse, krot_rel;
};
Tolerance tolerance(int dtype) {
  if (dtype == HOPE_DTYPE_FLOAT16) return {2e-3, 5e-3, 1.0 / 1024};
  if (dtype == HOPE_DTYPE_BFLOAT16) return {1e-2, 2e-2, 1.0 / 128};
  return {1e-5, 1e-4, 1e-6};
}

// cos/sin [tokens][d/2] of RoPE angles at positions above 100 000 (angles in double, stored as float).
void make_cos_sin(int64_t tokens, int head_dim, std::mt19937_64 &rng, std::vector<float> *cos_f,
                  std::vector<float> *sin_f) {
  const int half = head_dim / 2;
  std::uniform_real_distribution<double> pos_dist(100000.0, 300000.0);
  cos_f->resize(static_cast<size_t>(tokens * half));
  sin_f->resize(static_cast<size_t>(tokens * half));
  for (int64_t t = 0; t < tokens; ++t) {
    const double pos = std::floor(pos_dist(rng));
    for (int i = 0; i < half; ++i) {
      const double a = pos * std::pow(1e6, -2.0 * i / head_dim);
      (*cos_f)[static_cast<size_t>(t * half + i)] = static_cast<float>(std::cos(a));
      (*sin_f)[static_cast<size_t>(t * half + i)] = static_cast<float>(std::sin(a));
    }
  }
}

// Packed float64 copy of a [tokens][heads*d] slice whose rows are `stride` elements apart, starting at `offset`.
std::vector<double> gather(const Tensor &t, int64_t tokens, int64_t width, int64_t stride, int64_t offset) {
  std::vector<double> out(static_cast<size_t>(tokens * width));
  for (int64_t r = 0; r < tokens; ++r)
    for (int64_t c = 0; c < width; ++c) out[static_cast<size_t>(r * width + c)] = t.get(offset + r * stride + c);
  return out;
}

std::vector<double> rotate_like_library(const std::vector<double> &x, int64_t tokens, int heads, int d,
                                        const std::vector<float> &cos_f, const std::vector<float> &sin_f,
                                        int dtype) {
  std::vector<double> c(cos_f.begin(), cos_f.end()), s(sin_f.begin(), sin_f.end());
  std::vector<double> r = hope_ref::rotate(x, tokens, heads, d, c, s);
  // SPEC §4: in a float16/bfloat16 attention the rotated q and k are rounded to the dtype.
  if (dtype != HOPE_DTYPE_FLOAT32)
    for (double &e : r) e = hope_test::round_to(dtype, static_cast<float>(e));
  return r;
}

void run_case(const AttnCase &c, uint64_t seed) {
  ASSERT_EQ(c.lens_q.size(), c.lens_k.size());
  if (c.fused_qkv) {
    ASSERT_EQ(c.lens_q, c.lens_k);
  }
  std::mt19937_64 rng(seed);
  const int d = c.head_dim, batch = static_cast<int>(c.lens_q.size());
  const std::vector<int32_t> cu_q = cu_seqlens(c.lens_q), cu_k = cu_seqlens(c.lens_k);
  const int64_t total_q = cu_q.back(), total_k = cu_k.back();
  const int64_t qw = static_cast<int64_t>(c.hq) * d, kw = static_cast<int64_t>(c.hk) * d;
  int max_q = 0, max_k = 0;
  for (int i = 0; i < batch; ++i) max_q = std::max(max_q, c.lens_q[i]), max_k = std::max(max_k, c.lens_k[i]);

  // Inputs, drawn N(0,1) and stored in the dtype.
  Tensor qt, kt, vt;
  int64_t q_off = 0, k_off = 0, v_off = 0, q_ld = qw, k_ld = kw, v_ld = kw;
  if (c.fused_qkv) {
    const int64_t w = qw + 2 * kw;
    qt = hope_test::random_tensor(c.dtype, static_cast<size_t>(total_q * w), rng);
    q_ld = k_ld = v_ld = w;
    k_off = qw;
    v_off = qw + kw;
  } else {
    // At least one element each: the library takes no NULL tensor, even an empty one.
    qt = hope_test::random_tensor(c.dtype, static_cast<size_t>(std::max<int64_t>(total_q * qw, 1)), rng);
    kt = hope_test::random_tensor(c.dtype, static_cast<size_t>(std::max<int64_t>(total_k * kw, 1)), rng);
    vt = hope_test::random_tensor(c.dtype, static_cast<size_t>(std::max<int64_t>(total_k * kw, 1)), rng);
  }
  const Tensor &ks = c.fused_qkv ? qt : kt;
  const Tensor &vs = c.fused_qkv ? qt : vt;
  std::vector<float> cos_q, sin_q, cos_k, sin_k;
  if (c.rotate) {
    make_cos_sin(total_q, d, rng, &cos_q, &sin_q);
    make_cos_sin(total_k, d, rng, &cos_k, &sin_k);
  }

  Tensor out(c.dtype, static_cast<size_t>(std::max<int64_t>(total_q * qw, 1)));
  out.poison();
  std::vector<float> lse(static_cast<size_t>(c.hq * total_q), std::numeric_limits<float>::quiet_NaN());
  Tensor krot(c.dtype, static_cast<size_t>(std::max<int64_t>(total_k * kw, 1)));
  krot.poison();

  hope_attention_params_t p{};
  std::memset(&p, 0, sizeof p);
  p.backend = HOPE_BACKEND_CPU;
  p.dtype = c.dtype;
  p.batch = batch;
  p.num_q_heads = c.hq;
  p.num_kv_heads = c.hk;
  p.head_dim = d;
  p.cu_seqlens_q = cu_q.data();
  p.cu_seqlens_k = cu_k.data();
  p.max_seqlen_q = max_q;
  p.max_seqlen_k = max_k;
  const size_t esz = hope_test::dtype_size(c.dtype);
  p.q = static_cast<const uint8_t *>(qt.data()) + q_off * esz;
  p.k = static_cast<const uint8_t *>(ks.data()) + k_off * esz;
  p.v = static_cast<const uint8_t *>(vs.data()) + v_off * esz;
  p.out = out.data();
  p.lse = c.with_lse ? lse.data() : nullptr;
  if (c.rotate) {
    p.cos_q = cos_q.data();
    p.sin_q = sin_q.data();
    p.cos_k = cos_k.data();
    p.sin_k = sin_k.data();
  }
  p.softmax_scale = c.scale;
  p.causal = c.causal ? 1 : 0;
  if (c.fused_qkv) p.q_row_stride = p.k_row_stride = p.v_row_stride = q_ld;
  p.k_rotated = c.k_rotated ? krot.data() : nullptr;

  // Reference on the inputs as the library sees them (already dtype values), rotated then rounded.
  std::vector<double> q = gather(qt, total_q, qw, q_ld, q_off);
  std::vector<double> k = gather(ks, total_k, kw, k_ld, k_off);
  std::vector<double> v = gather(vs, total_k, kw, v_ld, v_off);
  if (c.rotate) {
    q = rotate_like_library(q, total_q, c.hq, d, cos_q, sin_q, c.dtype);
    k = rotate_like_library(k, total_k, c.hk, d, cos_k, sin_k, c.dtype);
  }
  hope_ref::AttentionProblem prob;
  prob.batch = batch;
  prob.num_q_heads = c.hq;
  prob.num_kv_heads = c.hk;
  prob.head_dim = d;
  prob.cu_seqlens_q = cu_q;
  prob.cu_seqlens_k = cu_k;
  prob.softmax_scale = c.scale;
  prob.causal = c.causal;
  std::vector<double> ref_out, ref_lse;
  hope_ref::attention(prob, q, k, v, &ref_out, &ref_lse);
  const Tolerance tol = tolerance(c.dtype);

  // Every instruction-set path this machine can run, each on freshly poisoned outputs.
  for (const std::string &isa : hope_test::cpu_isa_paths()) {
    SCOPED_TRACE("HOPE_CPU_ISA=" + isa);
    hope_test::ScopedEnv env("HOPE_CPU_ISA", isa.c_str());
    out.poison();
    krot.poison();
    std::fill(lse.begin(), lse.end(), std::numeric_limits<float>::quiet_NaN());
    ASSERT_HOPE_OK(hope_attention_forward(&p, nullptr));

    std::vector<double> got = out.values();
    got.resize(static_cast<size_t>(total_q * qw));
    const double rel = hope_test::relative_error(got, ref_out);
    EXPECT_LE(rel, tol.rel) << "relative error of out (inf means a NaN/Inf or unwritten element)";
    EXPECT_TRUE(hope_test::keyless_rows_are_zero(got, ref_lse, total_q, c.hq, d));
    if (c.with_lse) {
      std::vector<double> lse_d(lse.begin(), lse.end());
      EXPECT_TRUE(hope_test::all_close(lse_d, ref_lse, tol.lse)) << "lse";
    } else {
      for (float x : lse) ASSERT_TRUE(std::isnan(x)) << "lse written although NULL was passed";
    }
    if (c.k_rotated) {
      // The K the attention used: rotated (and rounded) k, or k itself without rotation.
      std::vector<double> kr = krot.values();
      kr.resize(k.size());
      EXPECT_TRUE(hope_test::all_close(kr, k, 1e-6, tol.krot_rel)) << "k_rotated";
    }
  }
}

class AttentionCpu : public ::testing::TestWithParam<AttnCase> {};

TEST_P(AttentionCpu, MatchesFloat64) { run_case(GetParam(), 0x5eed0000u + std::hash<std::string>()(case_name(GetParam()))); }

std::vector<AttnCase> make_cases() {
  std::vector<AttnCase> cases;
  auto add = [&](AttnCase c) { cases.push_back(c); };
  for (int dt : {HOPE_DTYPE_FLOAT32, HOPE_DTYPE_FLOAT16, HOPE_DTYPE_BFLOAT16}) {
    AttnCase c;
    c.dtype = dt;
    // The standard shape: d128, causal, GQA 4.
    c.head_dim = 128, c.hq = 8, c.hk = 2, c.causal = true, c.lens_q = c.lens_k = {129}, c.tag = "len129";
    add(c);
    // Odd lengths in one varlen batch, MQA, not causal.
    c = AttnCase();
    c.dtype = dt, c.head_dim = 64, c.hq = 3, c.hk = 1, c.causal = false;
    c.lens_q = c.lens_k = {1, 7, 129, 1037}, c.tag = "len1_7_129_1037";
    add(c);
    // Same batch, causal, with lse and k_rotated.
    c.causal = true, c.hq = 2, c.k_rotated = true;
    add(c);
    // Nq != Nk, bottom-right causal; Nq > Nk gives all-masked rows; empty sequences.
    c = AttnCase();
    c.dtype = dt, c.head_dim = 64, c.hq = 4, c.hk = 4, c.causal = true;
    c.lens_q = {7, 129, 0, 5, 3, 40}, c.lens_k = {129, 7, 4, 0, 0, 40}, c.tag = "q7k129_q129k7_empties";
    add(c);
    c.causal = false, c.tag = "q7k129_q129k7_empties";
    add(c);
    // GQA 7, custom scale, no lse.
    c = AttnCase();
    c.dtype = dt, c.head_dim = 96, c.hq = 14, c.hk = 2, c.causal = true, c.scale = 0.3f, c.with_lse = false;
    c.lens_q = {33, 1}, c.lens_k = {70, 1}, c.tag = "q33_1k70_1";
    add(c);
    // Strided q/k/v slices of one fused QKV buffer, with k_rotated.
    c = AttnCase();
    c.dtype = dt, c.head_dim = 64, c.hq = 8, c.hk = 2, c.causal = true, c.fused_qkv = true, c.k_rotated = true;
    c.lens_q = c.lens_k = {17, 65}, c.tag = "len17_65";
    add(c);
    // No rotation: q/k used as given (k_rotated then is a copy of k).
    c = AttnCase();
    c.dtype = dt, c.head_dim = 32, c.hq = 4, c.hk = 1, c.causal = true, c.rotate = false, c.k_rotated = true;
    c.lens_q = {9, 31}, c.lens_k = {20, 31}, c.tag = "q9_31k20_31";
    add(c);
  }
  // Head dims at the edges and not a multiple of 8; GQA 1 with many heads.
  AttnCase c;
  c.dtype = HOPE_DTYPE_FLOAT32, c.head_dim = 2, c.hq = 2, c.hk = 2, c.lens_q = c.lens_k = {7, 1}, c.tag = "len7_1";
  add(c);
  c.head_dim = 6, c.dtype = HOPE_DTYPE_FLOAT16;
  add(c);
  c = AttnCase();
  c.dtype = HOPE_DTYPE_BFLOAT16, c.head_dim = 256, c.hq = 2, c.hk = 1, c.lens_q = c.lens_k = {130}, c.tag = "len130";
  add(c);
  c = AttnCase();
  c.dtype = HOPE_DTYPE_FLOAT16, c.head_dim = 1024, c.hq = 1, c.hk = 1, c.lens_q = {3}, c.lens_k = {70};
  c.tag = "q3k70";
  add(c);
  c = AttnCase();
  c.dtype = HOPE_DTYPE_FLOAT32, c.head_dim = 128, c.hq = 16, c.hk = 16, c.causal = false, c.lens_q = {1};
  c.lens_k = {300}, c.tag = "q1k300_decode";
  add(c);
  // A GQA group wider than one work item's rows (130 query heads per kv head).
  c = AttnCase();
  c.dtype = HOPE_DTYPE_BFLOAT16, c.head_dim = 32, c.hq = 130, c.hk = 1, c.causal = true, c.lens_q = {3, 1};
  c.lens_k = {20, 1}, c.tag = "q3_1k20_1";
  add(c);
  // Every sequence empty of keys: all rows masked.
  c = AttnCase();
  c.dtype = HOPE_DTYPE_BFLOAT16, c.head_dim = 64, c.hq = 4, c.hk = 2, c.causal = false, c.lens_q = {5, 2};
  c.lens_k = {0, 0}, c.tag = "q5_2k0_0";
  add(c);
  return cases;
}

INSTANTIATE_TEST_SUITE_P(, AttentionCpu, ::testing::ValuesIn(make_cases()),
                         [](const ::testing::TestParamInfo<AttnCase> &info) { return case_name(info.param); });

// SPEC §4: in a float16 / bfloat16 attention the rotated q and k are rounded to the dtype before the products.
// The output's own rounding hides that at the §6 tolerances, but the float32 lse shows it: the CPU backend
// computes in float32 from exactly the rounded values, so its lse agrees with the reference to ~1e-6, while
// unrounded q/k would move it by ~1e-3.
TEST(AttentionCpuRounding, RotatedQkRoundedToDtype) {
  for (int dt : {HOPE_DTYPE_FLOAT16, HOPE_DTYPE_BFLOAT16}) {
    SCOPED_TRACE(hope_test::dtype_name(dt));
    const int d = 128, h = 2, n = 65;
    std::mt19937_64 rng(dt + 11);
    Tensor q = hope_test::random_tensor(dt, static_cast<size_t>(n) * h * d, rng);
    Tensor k = hope_test::random_tensor(dt, static_cast<size_t>(n) * h * d, rng);
    Tensor v = hope_test::random_tensor(dt, static_cast<size_t>(n) * h * d, rng);
    std::vector<float> cs, sn;
    make_cos_sin(n, d, rng, &cs, &sn);
    Tensor out(dt, static_cast<size_t>(n) * h * d);
    out.poison();
    std::vector<float> lse(static_cast<size_t>(h) * n, std::numeric_limits<float>::quiet_NaN());
    const std::vector<int32_t> cu = {0, n};
    hope_attention_params_t p{};
    std::memset(&p, 0, sizeof p);
    p.backend = HOPE_BACKEND_CPU;
    p.dtype = dt;
    p.batch = 1;
    p.num_q_heads = p.num_kv_heads = h;
    p.head_dim = d;
    p.cu_seqlens_q = p.cu_seqlens_k = cu.data();
    p.max_seqlen_q = p.max_seqlen_k = n;
    p.q = q.data(), p.k = k.data(), p.v = v.data(), p.out = out.data(), p.lse = lse.data();
    p.cos_q = p.cos_k = cs.data();
    p.sin_q = p.sin_k = sn.data();
    p.causal = 0;
    hope_ref::AttentionProblem prob;
    prob.num_q_heads = prob.num_kv_heads = h, prob.head_dim = d;
    prob.cu_seqlens_q = prob.cu_seqlens_k = cu;
    std::vector<double> ref_out, ref_lse;
    hope_ref::attention(prob, rotate_like_library(q.values(), n, h, d, cs, sn, dt),
                        rotate_like_library(k.values(), n, h, d, cs, sn, dt), v.values(), &ref_out, &ref_lse);
    for (const std::string &isa : hope_test::cpu_isa_paths()) {
      SCOPED_TRACE("HOPE_CPU_ISA=" + isa);
      hope_test::ScopedEnv env("HOPE_CPU_ISA", isa.c_str());
      out.poison();
      std::fill(lse.begin(), lse.end(), std::numeric_limits<float>::quiet_NaN());
      ASSERT_HOPE_OK(hope_attention_forward(&p, nullptr));
      EXPECT_TRUE(hope_test::all_close(std::vector<double>(lse.begin(), lse.end()), ref_lse, 1e-4));
      EXPECT_LE(hope_test::relative_error(out.values(), ref_out), tolerance(dt).rel);
    }
  }
}

// The embedded default must handle a long causal prefill quickly. The reference only checks the last rows:
// with bottom-right alignment, the last m queries against all keys form a problem of their own.
TEST(AttentionCpuLong, CausalPrefill4096SuffixMatches) {
  const int d = 128, hq = 8, hk = 8, n = 4096, tail = 8;
  const int dt = HOPE_DTYPE_BFLOAT16;
  std::mt19937_64 rng(77);
  Tensor q = hope_test::random_tensor(dt, static_cast<size_t>(n) * hq * d, rng);
  Tensor k = hope_test::random_tensor(dt, static_cast<size_t>(n) * hk * d, rng);
  Tensor v = hope_test::random_tensor(dt, static_cast<size_t>(n) * hk * d, rng);
  std::vector<float> cos_q, sin_q;
  make_cos_sin(n, d, rng, &cos_q, &sin_q);
  Tensor out(dt, static_cast<size_t>(n) * hq * d);
  out.poison();
  std::vector<float> lse(static_cast<size_t>(hq) * n, std::numeric_limits<float>::quiet_NaN());
  const std::vector<int32_t> cu = {0, n};

  hope_attention_params_t p{};
  std::memset(&p, 0, sizeof p);
  p.backend = HOPE_BACKEND_CPU;
  p.dtype = dt;
  p.batch = 1;
  p.num_q_heads = hq;
  p.num_kv_heads = hk;
  p.head_dim = d;
  p.cu_seqlens_q = p.cu_seqlens_k = cu.data();
  p.max_seqlen_q = p.max_seqlen_k = n;
  p.q = q.data(), p.k = k.data(), p.v = v.data(), p.out = out.data(), p.lse = lse.data();
  p.cos_q = p.cos_k = cos_q.data();  // same positions for q and k
  p.sin_q = p.sin_k = sin_q.data();
  p.causal = 1;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_HOPE_OK(hope_attention_forward(&p, nullptr));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  RecordProperty("seconds", std::to_string(secs));
  std::printf("[ info ] 4096-token causal prefill, 8 heads, d128, bf16: %.2f s\n", secs);
  EXPECT_LT(secs, 30.0) << "far slower than expected (a few seconds on 2 cores)";

  // Every element written and finite.
  const std::vector<double> got = out.values();
  for (size_t i = 0; i < got.size(); ++i) ASSERT_TRUE(std::isfinite(got[i])) << "out[" << i << "]";
  for (size_t i = 0; i < lse.size(); ++i) ASSERT_TRUE(std::isfinite(lse[i])) << "lse[" << i << "]";

  // Reference for the last `tail` rows.
  std::vector<double> qv = rotate_like_library(gather(q, n, hq * d, hq * d, 0), n, hq, d, cos_q, sin_q, dt);
  std::vector<double> kv = rotate_like_library(gather(k, n, hk * d, hk * d, 0), n, hk, d, cos_q, sin_q, dt);
  std::vector<double> q_tail(qv.end() - static_cast<ptrdiff_t>(tail) * hq * d, qv.end());
  hope_ref::AttentionProblem prob;
  prob.num_q_heads = hq, prob.num_kv_heads = hk, prob.head_dim = d, prob.causal = true;
  prob.cu_seqlens_q = {0, tail};
  prob.cu_seqlens_k = {0, n};
  std::vector<double> ref_out, ref_lse;
  hope_ref::attention(prob, q_tail, kv, v.values(), &ref_out, &ref_lse);
  std::vector<double> got_tail(got.end() - static_cast<ptrdiff_t>(tail) * hq * d, got.end());
  EXPECT_LE(hope_test::relative_error(got_tail, ref_out), 1e-2);
  std::vector<double> lse_tail;
  for (int j = 0; j < hq; ++j)
    for (int i = n - tail; i < n; ++i) lse_tail.push_back(lse[static_cast<size_t>(j) * n + i]);
  std::vector<double> ref_lse_ordered;
  for (int j = 0; j < hq; ++j)
    for (int i = 0; i < tail; ++i) ref_lse_ordered.push_back(ref_lse[static_cast<size_t>(j) * tail + i]);
  EXPECT_TRUE(hope_test::all_close(lse_tail, ref_lse_ordered, 2e-2));
  // Row 0 sees only key 0: its output is v[0] exactly (up to the output rounding).
  for (int j = 0; j < hq; ++j)
    for (int i = 0; i < d; ++i)
      ASSERT_EQ(got[static_cast<size_t>(j) * d + i], v.get(static_cast<size_t>(j / (hq / hk)) * d + i));
}

// Threads must not change the answer: with 1, 2, 3 and 7 threads the bytes of out and lse are identical, on
// every ISA path and in both compute modes, for a varlen batch whose rows span several key blocks and query
// blocks (the split of work over threads must never reach the per-row reduction order).
TEST(AttentionCpuThreads, BitIdenticalForAnyThreadCount) {
  const int d = 64, hq = 4, hk = 2;
  const std::vector<int32_t> cu_q = {0, 700, 701, 1001}, cu_k = {0, 1100, 1101, 1401};
  for (int dt : {HOPE_DTYPE_FLOAT32, HOPE_DTYPE_BFLOAT16}) {
    std::mt19937_64 rng(3 + dt);
    Tensor q = hope_test::random_tensor(dt, 1001u * hq * d, rng);
    Tensor k = hope_test::random_tensor(dt, 1401u * hk * d, rng);
    Tensor v = hope_test::random_tensor(dt, 1401u * hk * d, rng);
    std::vector<float> cs, sn;
    make_cos_sin(1401, d, rng, &cs, &sn);
    hope_attention_params_t p{};
    std::memset(&p, 0, sizeof p);
    p.backend = HOPE_BACKEND_CPU;
    p.dtype = dt;
    p.batch = 3;
    p.num_q_heads = hq;
    p.num_kv_heads = hk;
    p.head_dim = d;
    p.cu_seqlens_q = cu_q.data();
    p.cu_seqlens_k = cu_k.data();
    p.max_seqlen_q = 700;
    p.max_seqlen_k = 1100;
    p.q = q.data(), p.k = k.data(), p.v = v.data();
    p.cos_q = p.cos_k = cs.data();
    p.sin_q = p.sin_k = sn.data();
    p.causal = 1;
    for (const std::string &isa : hope_test::cpu_isa_paths()) {
      SCOPED_TRACE(std::string(hope_test::dtype_name(dt)) + " HOPE_CPU_ISA=" + isa);
      hope_test::ScopedEnv env_isa("HOPE_CPU_ISA", isa.c_str());
      Tensor first(dt, 1001u * hq * d);
      std::vector<float> first_lse(1001u * hq);
      for (const char *threads : {"1", "2", "3", "7"}) {
        hope_test::ScopedEnv env_threads("HOPE_NUM_THREADS", threads);
        Tensor out(dt, 1001u * hq * d);
        out.poison();
        std::vector<float> lse(1001u * hq, std::numeric_limits<float>::quiet_NaN());
        p.out = out.data();
        p.lse = lse.data();
        ASSERT_HOPE_OK(hope_attention_forward(&p, nullptr));
        if (std::string(threads) == "1") {
          for (size_t i = 0; i < out.size(); ++i) ASSERT_TRUE(std::isfinite(out.get(i))) << i;
          first = out;
          first_lse = lse;
          continue;
        }
        EXPECT_EQ(out.bytes, first.bytes) << threads << " threads";
        EXPECT_EQ(0, std::memcmp(lse.data(), first_lse.data(), lse.size() * sizeof(float))) << threads << " threads";
      }
    }
  }
}

// Empty sequences with a huge head count: nothing to compute, so nothing proportional to the heads is allocated
// (a fuzzer finding: the per-thread scratch once grew with the GQA group).
TEST(AttentionCpuEdges, EmptySequencesWithManyHeads) {
  const std::vector<int32_t> cu = {0, 0, 0, 0};
  float dummy[4] = {0.f, 0.f, 0.f, 0.f};
  hope_attention_params_t p{};
  std::memset(&p, 0, sizeof p);
  p.backend = HOPE_BACKEND_CPU;
  p.dtype = HOPE_DTYPE_FLOAT16;
  p.batch = 3;
  p.num_q_heads = 50387196;
  p.num_kv_heads = 1;
  p.head_dim = 32;
  p.cu_seqlens_q = p.cu_seqlens_k = cu.data();
  p.q = p.k = p.v = dummy;
  p.out = dummy;
  EXPECT_HOPE_OK(hope_attention_forward(&p, nullptr));
}

// HOPE_CPU_ISA names a path: anything else is refused with a message, never ignored.
TEST(AttentionCpuIsa, UnknownPathIsInvalidValue) {
  const int d = 32;
  std::vector<float> x(4 * d, 0.5f), out(4 * d);
  const std::vector<int32_t> cu = {0, 4};
  hope_attention_params_t p{};
  std::memset(&p, 0, sizeof p);
  p.backend = HOPE_BACKEND_CPU;
  p.dtype = HOPE_DTYPE_FLOAT32;
  p.batch = 1;
  p.num_q_heads = p.num_kv_heads = 1;
  p.head_dim = d;
  p.cu_seqlens_q = p.cu_seqlens_k = cu.data();
  p.max_seqlen_q = p.max_seqlen_k = 4;
  p.q = p.k = p.v = x.data();
  p.out = out.data();
  {
    hope_test::ScopedEnv env("HOPE_CPU_ISA", "sse9");
    EXPECT_HOPE_FAIL(hope_attention_forward(&p, nullptr), HOPE_ERROR_INVALID_VALUE);
    EXPECT_NE(std::string(hope_last_error()).find("HOPE_CPU_ISA=sse9"), std::string::npos) << hope_last_error();
  }
  for (const char *isa : {"", "portable"}) {  // empty: chosen from the CPU
    hope_test::ScopedEnv env("HOPE_CPU_ISA", isa);
    EXPECT_HOPE_OK(hope_attention_forward(&p, nullptr));
  }
}

}  // namespace
