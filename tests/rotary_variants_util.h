// rotary_variants_util.h — SPEC §8 test layouts of the models (GLM-4.xV, ERNIE-4.5-VL, partial rotate-half, rotary
// dims that are no multiple of 16, the default), their cos/sin from the float64 reference, and one attention
// problem with its float64 answer: shared by the CPU (test_rotary_variants.cc) and GPU (test_rotary_variants_gpu.cc)
// tests of the paths that rotate inside attention, kv_append and decode.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "hope_attn.h"
#include "reference/paged_ref.h"
#include "reference/reference.h"
#include "rope_test_util.h"
#include "test_util.h"

namespace hope_test {
namespace rotary {

// ---- rotary layouts and their cos/sin ------------------------------------------------------------------------

struct Layout {
  const char *name;
  int kind;
  int sections[3];  // sum == rotary_dim / 2
  int pairing;
  int rotary_dim;   // 0: head_dim
  double theta;
};

// GLM-4.1V/4.5V/4.6V at head_dim 128 (partial_rotary_factor 0.5) and the same proportions at head_dim 256.
const Layout kGlm128{"glm", HOPE_ROPE_MROPE, {8, 12, 12}, HOPE_PAIRING_INTERLEAVED, 64, 1e4};
const Layout kGlm256{"glm", HOPE_ROPE_MROPE, {16, 24, 24}, HOPE_PAIRING_INTERLEAVED, 128, 1e4};
// ERNIE-4.5-VL at head_dim 128: mrope_section [22, 22, 20] lists (h, w, t).
const Layout kErnie128{"ernie", HOPE_ROPE_VIDEOROPE, {20, 22, 22}, HOPE_PAIRING_INTERLEAVED, 0, 5e5};
// Rotate-half over part of the head: rotary_dim 32 of 64 (chunk c pairs with c + 2), 16 of 256 (one chunk pair).
const Layout kHalf32{"rothalf32", HOPE_ROPE_VIDEOROPE, {4, 6, 6}, HOPE_PAIRING_ROTATE_HALF, 32, 1e6};
const Layout kHalf16{"rothalf16", HOPE_ROPE_MROPE, {2, 3, 3}, HOPE_PAIRING_ROTATE_HALF, 16, 1e6};
// Not a multiple of 16 (17 pairs; a single pair): the unfused path, kv_append and decode take them.
const Layout kInter34{"inter34", HOPE_ROPE_MROPE, {5, 6, 6}, HOPE_PAIRING_INTERLEAVED, 34, 1e6};
const Layout kHalf2{"rothalf2", HOPE_ROPE_VANILLA, {0, 0, 0}, HOPE_PAIRING_ROTATE_HALF, 2, 1e6};
// The default (rotate-half over the whole head; sections filled in per head_dim).
const Layout kDefault{"default", HOPE_ROPE_HOPE, {0, 0, 0}, HOPE_PAIRING_ROTATE_HALF, 0, 1e6};

inline int rot_of(const Layout &l, int head_dim) { return l.rotary_dim != 0 ? l.rotary_dim : head_dim; }

inline hope_rope_config_t config_for(const Layout &l, int head_dim) {
  if (l.kind == HOPE_ROPE_HOPE && l.sections[0] + l.sections[1] + l.sections[2] == 0) {
    hope_rope_config_t c = hope_test::config_of(l.kind, head_dim);
    c.theta = l.theta;
    return c;
  }
  hope_rope_config_t c{};
  c.kind = l.kind;
  c.head_dim = head_dim;
  std::copy(l.sections, l.sections + 3, c.sections);
  c.theta = l.theta;
  c.pairing = l.pairing;
  c.rotary_dim = l.rotary_dim;
  return c;
}

// cos/sin [n][rotary_dim/2] (float32, as the library takes them) from the reference at token positions pos[n]:
// row t at pos, h at pos + 3, w at pos - 2.
inline void layout_cos_sin(const Layout &l, int head_dim, const std::vector<double> &pos, std::vector<float> *c,
                    std::vector<float> *s) {
  const int64_t n = static_cast<int64_t>(pos.size());
  std::vector<float> rows(static_cast<size_t>(3 * n));
  for (int64_t k = 0; k < n; ++k) {
    rows[k] = static_cast<float>(pos[k]);
    rows[n + k] = static_cast<float>(pos[k] + 3.0);
    rows[2 * n + k] = static_cast<float>(pos[k] - 2.0);
  }
  std::vector<double> cd, sd;
  hope_ref::cos_sin(config_for(l, head_dim), rows.data(), n, &cd, &sd);
  c->assign(cd.begin(), cd.end());
  s->assign(sd.begin(), sd.end());
}

// Rotation of x [tokens][heads][d] by float cos/sin in float64 with the layout's pairs (dims past rotary_dim as
// given).
inline std::vector<double> rotate_ref(const Layout &l, const std::vector<double> &x, int64_t tokens, int heads,
                                      int head_dim,
                               const std::vector<float> &cos, const std::vector<float> &sin) {
  return hope_ref::rotate(x, tokens, heads, head_dim, to_double(cos), to_double(sin), l.pairing, rot_of(l, head_dim));
}

// Rotated rows got [tokens][heads][d] against the float64 rotation of x: the rotary dims within one ulp of the
// dtype (plus the float32 rounding of the rotation), the dims past rotary_dim bit for bit the input's.
inline ::testing::AssertionResult rotated_rows_match(const Layout &l, int dtype, int head_dim,
                                                     const std::vector<double> &got,
                                              const std::vector<double> &x, const std::vector<double> &ref) {
  const int rot = rot_of(l, head_dim);
  const ::testing::AssertionResult close =
      hope_test::rotated_close(dtype, got, ref, hope_test::term_sizes(x, head_dim, l.pairing, rot));
  if (!close) return close;
  for (size_t i = 0; i < got.size(); ++i)
    if (static_cast<int>(i % head_dim) >= rot && !(got[i] == x[i]))
      return ::testing::AssertionFailure() << "pass-through element " << i << " (dim " << i % head_dim << ") is "
                                           << got[i] << ", the input was " << x[i];
  return ::testing::AssertionSuccess();
}

inline double out_tol(int dtype) {
  return dtype == HOPE_DTYPE_FLOAT16 ? 2e-3 : dtype == HOPE_DTYPE_BFLOAT16 ? 1e-2 : 1e-5;
}
inline double lse_tol(int dtype) {
  return dtype == HOPE_DTYPE_FLOAT16 ? 5e-3 : dtype == HOPE_DTYPE_BFLOAT16 ? 2e-2 : 1e-4;
}

// ---- attention: one problem and its float64 answer -------------------------------------------------------------

struct AttnCase {
  std::string name;
  Layout layout;
  int dtype, head_dim, hq, hk;
  bool causal;
  std::vector<int> lens_q, lens_k;
};
inline void PrintTo(const AttnCase &c, std::ostream *os) { *os << c.name; }

struct AttnProblem {
  AttnCase c;
  std::vector<int32_t> cu_q, cu_k;
  int64_t total_q = 0, total_k = 0;
  Tensor q, k, v;
  std::vector<float> cos_q, sin_q, cos_k, sin_k;
  std::vector<double> ref_out, ref_lse, ref_krot;  // ref_krot: the rotated keys before rounding
};

inline void build_attention(const AttnCase &c, uint64_t seed, AttnProblem *pr) {
  std::mt19937_64 rng(seed);
  pr->c = c;
  pr->cu_q = hope_test::cu_seqlens(c.lens_q);
  pr->cu_k = hope_test::cu_seqlens(c.lens_k);
  pr->total_q = pr->cu_q.back();
  pr->total_k = pr->cu_k.back();
  const int d = c.head_dim;
  pr->q = hope_test::random_tensor(c.dtype, static_cast<size_t>(pr->total_q * c.hq * d), rng);
  pr->k = hope_test::random_tensor(c.dtype, static_cast<size_t>(pr->total_k * c.hk * d), rng);
  pr->v = hope_test::random_tensor(c.dtype, static_cast<size_t>(pr->total_k * c.hk * d), rng);
  std::uniform_int_distribution<int> pos(100000, 400000);
  std::vector<double> pos_q(pr->total_q), pos_k(pr->total_k);
  for (double &p : pos_q) p = pos(rng);
  for (double &p : pos_k) p = pos(rng);
  layout_cos_sin(c.layout, d, pos_q, &pr->cos_q, &pr->sin_q);
  layout_cos_sin(c.layout, d, pos_k, &pr->cos_k, &pr->sin_k);
  std::vector<double> q = rotate_ref(c.layout, pr->q.values(), pr->total_q, c.hq, d, pr->cos_q, pr->sin_q);
  std::vector<double> k = rotate_ref(c.layout, pr->k.values(), pr->total_k, c.hk, d, pr->cos_k, pr->sin_k);
  pr->ref_krot = k;
  // SPEC §4: the rotated q and k are rounded to the dtype before the products.
  for (double &x : q) x = hope_test::round_to(c.dtype, static_cast<float>(x));
  for (double &x : k) x = hope_test::round_to(c.dtype, static_cast<float>(x));
  hope_ref::attention(hope_ref::varlen_problem(c.hq, c.hk, d, pr->cu_q, pr->cu_k, c.causal), q, k, pr->v.values(),
                      &pr->ref_out, &pr->ref_lse);
}

struct AttnResult {
  Tensor out, krot;
  std::vector<float> lse;
};


// out and lse against the reference: all finite, relative error overall and per sequence, rows that see no key
// exactly 0 with lse -inf.
inline void expect_attention_matches(const AttnProblem &pr, const AttnResult &r, const std::string &who) {
  const std::vector<double> got = r.out.values();
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_TRUE(std::isfinite(got[i])) << who << ": out[" << i << "] = " << got[i] << " (never written?)";
  EXPECT_LE(hope_test::relative_error(got, pr.ref_out), out_tol(pr.c.dtype)) << who << ": all sequences";
  const int64_t width = static_cast<int64_t>(pr.c.hq) * pr.c.head_dim;
  for (size_t b = 0; b + 1 < pr.cu_q.size(); ++b) {
    const size_t lo = static_cast<size_t>(pr.cu_q[b] * width), hi = static_cast<size_t>(pr.cu_q[b + 1] * width);
    const std::vector<double> g(got.begin() + lo, got.begin() + hi);
    const std::vector<double> e(pr.ref_out.begin() + lo, pr.ref_out.begin() + hi);
    EXPECT_LE(hope_test::relative_error(g, e), out_tol(pr.c.dtype)) << who << ": sequence " << b;
  }
  EXPECT_TRUE(hope_test::keyless_rows_are_zero(got, pr.ref_lse, pr.total_q, pr.c.hq, pr.c.head_dim)) << who;
  EXPECT_TRUE(hope_test::all_close(to_double(r.lse), pr.ref_lse, lse_tol(pr.c.dtype))) << who << ": lse";
}

inline void expect_krot_matches(const AttnProblem &pr, const AttnResult &r, const std::string &who) {
  EXPECT_TRUE(rotated_rows_match(pr.c.layout, pr.c.dtype, pr.c.head_dim, r.krot.values(), pr.k.values(), pr.ref_krot))
      << who << ": k_rotated";
}

inline std::string dtype_tag(int dtype) { return hope_test::dtype_name(dtype); }

inline AttnCase attn_case(const Layout &l, int dtype, int d, int hq, int hk, bool causal, std::vector<int> lq,
                   std::vector<int> lk) {
  AttnCase c{"", l, dtype, d, hq, hk, causal, std::move(lq), std::move(lk)};
  c.name = std::string(l.name) + "_" + dtype_tag(dtype) + "_d" + std::to_string(d) + "_r" +
           std::to_string(rot_of(l, d)) + (l.pairing ? "_interleaved" : "_rotatehalf") + "_gqa" +
           std::to_string(hq / hk) + (causal ? "_causal" : "_full");
  return c;
}

// Where a problem's arrays live for one call (host or device copies).
struct AttnPointers {
  const void *q, *k, *v;
  const int32_t *cu_q, *cu_k;
  const float *cos_q, *sin_q, *cos_k, *sin_k;
  void *out;
  float *lse;
  void *k_rotated;  // nullptr: not requested
};

// The attention params of problem pr on `backend` over the arrays m: shapes, causal mask and the layout's pairing
// and rotary_dim from the case.
inline hope_attention_params_t attention_params_of(const AttnProblem &pr, int backend, const AttnPointers &m) {
  const AttnCase &c = pr.c;
  hope_attention_params_t p;
  std::memset(&p, 0, sizeof p);
  p.backend = backend;
  p.dtype = c.dtype;
  p.batch = static_cast<int32_t>(c.lens_q.size());
  p.num_q_heads = c.hq;
  p.num_kv_heads = c.hk;
  p.head_dim = c.head_dim;
  p.cu_seqlens_q = m.cu_q;
  p.cu_seqlens_k = m.cu_k;
  p.max_seqlen_q = hope_test::max_len(c.lens_q);
  p.max_seqlen_k = hope_test::max_len(c.lens_k);
  p.q = m.q;
  p.k = m.k;
  p.v = m.v;
  p.out = m.out;
  p.lse = m.lse;
  p.cos_q = m.cos_q;
  p.sin_q = m.sin_q;
  p.cos_k = m.cos_k;
  p.sin_k = m.sin_k;
  p.causal = c.causal ? 1 : 0;
  p.k_rotated = m.k_rotated;
  p.rope_pairing = c.layout.pairing;
  p.rotary_dim = c.layout.rotary_dim;
  return p;
}

// ---- decode: cos/sin of a paged problem and the check of its answer --------------------------------------------

// cos/sin of problem (c, d) with layout l: key n of sequence b at position base_b + n, the queries the sequence's
// last nq tokens.
inline void decode_cos_sin(const Layout &l, const hope_ref::PagedDecodeCase &c, const hope_ref::PagedDecodeData &d,
                           std::vector<float> *cos_q, std::vector<float> *sin_q, std::vector<float> *cos_k,
                           std::vector<float> *sin_k) {
  std::vector<double> pos_q, pos_k;
  for (int b = 0; b < d.batch; ++b) {
    const double base = 200000.0 + 7919.0 * b;
    for (int n = 0; n < c.lens[b]; ++n) pos_k.push_back(base + n);
    for (int i = 0; i < c.nq[b]; ++i) pos_q.push_back(base + (c.lens[b] - c.nq[b] + i));
  }
  layout_cos_sin(l, c.head_dim, pos_q, cos_q, sin_q);
  layout_cos_sin(l, c.head_dim, pos_k, cos_k, sin_k);
}

// A decode's out and lse (host copies) against the float64 decode of q rotated with layout l (rounded to the dtype)
// over the pages as the append stored them (k_pages, v_pages as values); without params.lse, lse still poisoned.
inline void expect_decode_matches(const Layout &l, const hope_ref::PagedDecodeCase &c,
                                  const hope_ref::PagedDecodeData &d,
                                  const Tensor &q, const std::vector<float> &cos_q, const std::vector<float> &sin_q,
                                  const std::vector<double> &k_pages, const std::vector<double> &v_pages,
                                  const Tensor &out, const std::vector<float> &lse) {
  const int dt = c.dtype;
  std::vector<double> q_rot = rotate_ref(l, q.values(), d.total_q, c.hq, c.head_dim, cos_q, sin_q);
  for (double &x : q_rot) x = hope_test::round_to(dt, static_cast<float>(x));
  std::vector<double> ref_out, ref_lse;
  hope_ref::paged_decode(c, d, q_rot, k_pages, v_pages, 0.0, &ref_out, &ref_lse);
  const std::vector<double> got = out.values();
  for (size_t i = 0; i < got.size(); ++i) ASSERT_TRUE(std::isfinite(got[i])) << "out[" << i << "] = " << got[i];
  EXPECT_LE(hope_test::relative_error(got, ref_out), out_tol(dt));
  EXPECT_TRUE(hope_test::all_close(got, ref_out, 8 * out_tol(dt), 8 * out_tol(dt)));
  if (c.with_lse) {
    EXPECT_TRUE(hope_test::all_close(to_double(lse), ref_lse, lse_tol(dt))) << "lse";
  } else {
    std::vector<uint8_t> raw(lse.size() * 4);
    std::memcpy(raw.data(), lse.data(), raw.size());
    for (uint8_t b : raw) ASSERT_EQ(b, 0xff) << "lse written although params.lse was NULL";
  }
}

}  // namespace rotary
}  // namespace hope_test
