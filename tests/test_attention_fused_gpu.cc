// test_attention_fused_gpu.cc — the fused FlashAttention-style CUDA kernel (hope_attention_forward with
// HOPE_BACKEND_CUDA, SPEC §4-§6) against the float64 reference, against the unfused cuBLAS path, and against
// itself across its two K-rotation strategies (pre-pass into k_rotated vs rotation of K tiles in shared
// memory). Every test derives from the GPU fixture and skips on a machine without a GPU.
// HOPE_TEST_QUICK=1 drops the longest sequences (compute-sanitizer runs).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "hope_attn.h"
#include "gpu_util.h"
#include "reference/reference.h"
#include "test_util.h"

namespace {

using hope_test::cu_seqlens;
using hope_test::DeviceBuffer;
using hope_test::max_len;
using hope_test::strided_rows;
using hope_test::Tensor;
using hope_test::to_double;

// ---- one problem: inputs on the host and the float64 answer -------------------------------------------
struct FusedCase {
  int dtype = HOPE_DTYPE_BFLOAT16;
  int head_dim = 128;
  int hq = 4, hk = 1;
  bool causal = true;
  std::vector<int> lens_q, lens_k;
  bool rotate = true;
  int rope_kind = HOPE_ROPE_HOPE;  // which frequency map drives cos/sin (positions above 100 000)
  float scale = 0.f;               // <= 0: 1/sqrt(d)
  bool fused_qkv = false;          // q, k, v are column slices of one [tokens][(Hq + 2 Hk) d] buffer
  bool with_lse = true;
  int pairing = 0;                 // SPEC §8: HOPE_PAIRING_ROTATE_HALF or HOPE_PAIRING_INTERLEAVED
  int rotary_dim = 0;              // 0: head_dim
};

struct Problem {
  FusedCase c;
  std::vector<int32_t> cu_q, cu_k;
  int64_t total_q = 0, total_k = 0;
  int64_t q_stride = 0, k_stride = 0, v_stride = 0;  // element strides between tokens
  // Host inputs: either separate packed q, k, v, or one fused buffer qkv (q at column 0, k at Hq*d, v at
  // (Hq + Hk)*d).
  Tensor q, k, v, qkv;
  std::vector<float> cos_q, sin_q, cos_k, sin_k;
  std::vector<double> ref_out, ref_lse;
  std::vector<double> ref_krot;  // rotated keys (float64, not yet rounded), packed [total_k][Hk][d]
};

// cos/sin [tokens][rot/2] (rot: the rotary dimension, head_dim by default) from the reference frequency map at
// random integer positions in [100000, 400000] on each of the rows t, h, w.
void make_cos_sin(int kind, int head_dim, int rotary_dim, int64_t tokens, std::mt19937_64 &rng,
                  std::vector<float> *c, std::vector<float> *s) {
  const int half = (rotary_dim != 0 ? rotary_dim : head_dim) / 2;
  hope_rope_config_t cfg{};
  std::memset(&cfg, 0, sizeof(cfg));
  cfg.kind = kind;
  cfg.head_dim = head_dim;
  cfg.rotary_dim = rotary_dim;
  cfg.sections[0] = half / 4;
  cfg.sections[1] = (half - half / 4) / 2;
  cfg.sections[2] = half - cfg.sections[0] - cfg.sections[1];
  cfg.theta = 1e6;
  std::uniform_int_distribution<int> pos(100000, 400000);
  std::vector<float> positions(static_cast<size_t>(3 * tokens));
  for (float &p : positions) p = static_cast<float>(pos(rng));
  std::vector<double> cd, sd;
  hope_ref::cos_sin(cfg, positions.data(), tokens, &cd, &sd);
  c->assign(cd.begin(), cd.end());
  s->assign(sd.begin(), sd.end());
}

void build(const FusedCase &c, uint64_t seed, Problem *pr) {
  ASSERT_EQ(c.lens_q.size(), c.lens_k.size());
  std::mt19937_64 rng(seed);
  pr->c = c;
  pr->cu_q = cu_seqlens(c.lens_q);
  pr->cu_k = cu_seqlens(c.lens_k);
  pr->total_q = pr->cu_q.back();
  pr->total_k = pr->cu_k.back();
  const int d = c.head_dim;
  const int64_t qw = static_cast<int64_t>(c.hq) * d, kw = static_cast<int64_t>(c.hk) * d;
  std::vector<double> q, k, v;
  if (c.fused_qkv) {
    ASSERT_EQ(pr->total_q, pr->total_k) << "a fused QKV buffer has one row per token";
    const int64_t stride = qw + 2 * kw;
    pr->q_stride = pr->k_stride = pr->v_stride = stride;
    pr->qkv = hope_test::random_tensor(c.dtype, static_cast<size_t>(pr->total_q * stride), rng);
    q = strided_rows(pr->qkv, pr->total_q, qw, stride, 0);
    k = strided_rows(pr->qkv, pr->total_k, kw, stride, qw);
    v = strided_rows(pr->qkv, pr->total_k, kw, stride, qw + kw);
  } else {
    pr->q_stride = qw;
    pr->k_stride = pr->v_stride = kw;
    pr->q = hope_test::random_tensor(c.dtype, static_cast<size_t>(pr->total_q * qw), rng);
    pr->k = hope_test::random_tensor(c.dtype, static_cast<size_t>(pr->total_k * kw), rng);
    pr->v = hope_test::random_tensor(c.dtype, static_cast<size_t>(pr->total_k * kw), rng);
    q = pr->q.values();
    k = pr->k.values();
    v = pr->v.values();
  }
  if (c.rotate) {
    make_cos_sin(c.rope_kind, d, c.rotary_dim, pr->total_q, rng, &pr->cos_q, &pr->sin_q);
    make_cos_sin(c.rope_kind, d, c.rotary_dim, pr->total_k, rng, &pr->cos_k, &pr->sin_k);
    const std::vector<double> cq(pr->cos_q.begin(), pr->cos_q.end()), sq(pr->sin_q.begin(), pr->sin_q.end());
    const std::vector<double> ck(pr->cos_k.begin(), pr->cos_k.end()), sk(pr->sin_k.begin(), pr->sin_k.end());
    q = hope_ref::rotate(q, pr->total_q, c.hq, d, cq, sq, c.pairing, c.rotary_dim);
    k = hope_ref::rotate(k, pr->total_k, c.hk, d, ck, sk, c.pairing, c.rotary_dim);
  }
  pr->ref_krot = k;
  // SPEC §4: inside a float16/bfloat16 attention the rotated q and k are rounded to the dtype.
  for (double &x : q) x = hope_test::round_to(c.dtype, static_cast<float>(x));
  for (double &x : k) x = hope_test::round_to(c.dtype, static_cast<float>(x));
  hope_ref::AttentionProblem ap;
  ap.batch = static_cast<int>(c.lens_q.size());
  ap.num_q_heads = c.hq;
  ap.num_kv_heads = c.hk;
  ap.head_dim = d;
  ap.cu_seqlens_q = pr->cu_q;
  ap.cu_seqlens_k = pr->cu_k;
  ap.softmax_scale = c.scale;
  ap.causal = c.causal;
  hope_ref::attention(ap, q, k, v, &pr->ref_out, &pr->ref_lse);
}

// ---- device side ---------------------------------------------------------------------------------------
struct DevInputs {
  DeviceBuffer q, k, v, qkv, cu_q, cu_k, cos_q, sin_q, cos_k, sin_k;
};
void upload(const Problem &pr, DevInputs *di) {
  ASSERT_CUDA(di->q.alloc_upload(pr.q.data(), pr.q.bytes.size()));
  ASSERT_CUDA(di->k.alloc_upload(pr.k.data(), pr.k.bytes.size()));
  ASSERT_CUDA(di->v.alloc_upload(pr.v.data(), pr.v.bytes.size()));
  ASSERT_CUDA(di->qkv.alloc_upload(pr.qkv.data(), pr.qkv.bytes.size()));
  ASSERT_CUDA(di->cu_q.alloc_upload(pr.cu_q.data(), pr.cu_q.size() * sizeof(int32_t)));
  ASSERT_CUDA(di->cu_k.alloc_upload(pr.cu_k.data(), pr.cu_k.size() * sizeof(int32_t)));
  ASSERT_CUDA(di->cos_q.alloc_upload(pr.cos_q.data(), pr.cos_q.size() * sizeof(float)));
  ASSERT_CUDA(di->sin_q.alloc_upload(pr.sin_q.data(), pr.sin_q.size() * sizeof(float)));
  ASSERT_CUDA(di->cos_k.alloc_upload(pr.cos_k.data(), pr.cos_k.size() * sizeof(float)));
  ASSERT_CUDA(di->sin_k.alloc_upload(pr.sin_k.data(), pr.sin_k.size() * sizeof(float)));
  ASSERT_CUDA(cudaDeviceSynchronize());
}

struct DevOutputs {
  DeviceBuffer out, lse, krot;
};
// Allocates the outputs and poisons them with 0xff bytes (NaN in every dtype), so an unwritten element fails.
void alloc_poisoned(const Problem &pr, bool want_krot, DevOutputs *o) {
  const size_t es = hope_test::dtype_size(pr.c.dtype);
  ASSERT_CUDA(o->out.alloc(static_cast<size_t>(pr.total_q) * pr.c.hq * pr.c.head_dim * es));
  if (pr.c.with_lse) ASSERT_CUDA(o->lse.alloc(static_cast<size_t>(pr.total_q) * pr.c.hq * sizeof(float)));
  if (want_krot) ASSERT_CUDA(o->krot.alloc(static_cast<size_t>(pr.total_k) * pr.c.hk * pr.c.head_dim * es));
  for (DeviceBuffer *b : {&o->out, &o->lse, &o->krot})
    ASSERT_CUDA(b->poison());
  ASSERT_CUDA(cudaDeviceSynchronize());
}

hope_attention_params_t make_params(const Problem &pr, const DevInputs &di, const DevOutputs &o) {
  const FusedCase &c = pr.c;
  hope_attention_params_t p{};
  std::memset(&p, 0, sizeof(p));
  p.backend = HOPE_BACKEND_CUDA;
  p.dtype = c.dtype;
  p.batch = static_cast<int32_t>(c.lens_q.size());
  p.num_q_heads = c.hq;
  p.num_kv_heads = c.hk;
  p.head_dim = c.head_dim;
  p.cu_seqlens_q = di.cu_q.as<int32_t>();
  p.cu_seqlens_k = di.cu_k.as<int32_t>();
  p.max_seqlen_q = max_len(c.lens_q);
  p.max_seqlen_k = max_len(c.lens_k);
  if (c.fused_qkv) {
    const size_t es = hope_test::dtype_size(c.dtype);
    const size_t qw = static_cast<size_t>(c.hq) * c.head_dim, kw = static_cast<size_t>(c.hk) * c.head_dim;
    char *base = di.qkv.as<char>();
    p.q = base;
    p.k = base + qw * es;
    p.v = base + (qw + kw) * es;
    p.q_row_stride = pr.q_stride;
    p.k_row_stride = pr.k_stride;
    p.v_row_stride = pr.v_stride;
  } else {
    p.q = di.q.get();
    p.k = di.k.get();
    p.v = di.v.get();
  }
  p.out = o.out.get();
  p.lse = o.lse.as<float>();
  if (c.rotate) {
    p.cos_q = di.cos_q.as<float>();
    p.sin_q = di.sin_q.as<float>();
    p.cos_k = di.cos_k.as<float>();
    p.sin_k = di.sin_k.as<float>();
  }
  p.softmax_scale = c.scale;
  p.causal = c.causal ? 1 : 0;
  p.k_rotated = o.krot.get();
  p.rope_pairing = c.pairing;
  p.rotary_dim = c.rotary_dim;
  return p;
}

struct Result {
  Tensor out, krot;
  std::vector<float> lse;
};
void download(const Problem &pr, const DevOutputs &o, Result *r) {
  r->out = Tensor(pr.c.dtype, o.out.bytes() / hope_test::dtype_size(pr.c.dtype));
  if (o.out.bytes() > 0) ASSERT_CUDA(cudaMemcpy(r->out.data(), o.out.get(), o.out.bytes(), cudaMemcpyDeviceToHost));
  r->lse.assign(o.lse.bytes() / sizeof(float), 0.f);
  if (o.lse.bytes() > 0) ASSERT_CUDA(cudaMemcpy(r->lse.data(), o.lse.get(), o.lse.bytes(), cudaMemcpyDeviceToHost));
  r->krot = Tensor(pr.c.dtype, o.krot.bytes() / hope_test::dtype_size(pr.c.dtype));
  if (o.krot.bytes() > 0)
    ASSERT_CUDA(cudaMemcpy(r->krot.data(), o.krot.get(), o.krot.bytes(), cudaMemcpyDeviceToHost));
}

// One synchronous fused call (poisoned outputs; k_rotated requested or not) on `stream`.
void run_fused(const Problem &pr, bool want_krot, cudaStream_t stream, Result *r) {
  DevInputs di;
  ASSERT_NO_FATAL_FAILURE(upload(pr, &di));
  DevOutputs o;
  ASSERT_NO_FATAL_FAILURE(alloc_poisoned(pr, want_krot, &o));
  const hope_attention_params_t p = make_params(pr, di, o);
  ASSERT_HOPE_OK(hope_attention_forward(&p, stream));
  ASSERT_CUDA(cudaStreamSynchronize(stream));
  ASSERT_CUDA(cudaGetLastError());
  ASSERT_NO_FATAL_FAILURE(download(pr, o, r));
}

struct Tol {
  double rel, lse, krot_rel;
};
Tol tol_for(int dtype) {
  // SPEC §6; k_rotated may differ from the rounded float64 rotation by one unit in the last place.
  return dtype == HOPE_DTYPE_FLOAT16 ? Tol{2e-3, 5e-3, 1.0 / 1024} : Tol{1e-2, 2e-2, 1.0 / 128};
}


// Output against the reference: all finite, relative error per sequence and overall, rows without a visible
// key exactly 0, LSE (when requested) element-wise with -inf exact.
void expect_matches_reference(const Problem &pr, const Result &r, const std::string &who) {
  const Tol tol = tol_for(pr.c.dtype);
  const std::vector<double> got = r.out.values();
  ASSERT_EQ(got.size(), pr.ref_out.size()) << who;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_TRUE(std::isfinite(got[i])) << who << ": out[" << i << "] = " << got[i] << " (NaN/Inf or never written)";
  EXPECT_LE(hope_test::relative_error(got, pr.ref_out), tol.rel) << who << ": relative error of out, all sequences";
  const int64_t width = static_cast<int64_t>(pr.c.hq) * pr.c.head_dim;
  for (size_t b = 0; b + 1 < pr.cu_q.size(); ++b) {
    const size_t lo = static_cast<size_t>(pr.cu_q[b] * width), hi = static_cast<size_t>(pr.cu_q[b + 1] * width);
    if (lo == hi) continue;
    const std::vector<double> g(got.begin() + lo, got.begin() + hi), e(pr.ref_out.begin() + lo, pr.ref_out.begin() + hi);
    EXPECT_LE(hope_test::relative_error(g, e), tol.rel)
        << who << ": relative error of sequence " << b << " (Nq " << pr.c.lens_q[b] << ", Nk " << pr.c.lens_k[b] << ")";
  }
  EXPECT_TRUE(hope_test::keyless_rows_are_zero(got, pr.ref_lse, pr.total_q, pr.c.hq, pr.c.head_dim)) << who;
  if (pr.c.with_lse) {
    ASSERT_EQ(r.lse.size(), pr.ref_lse.size()) << who;
    EXPECT_TRUE(hope_test::all_close(to_double(r.lse), pr.ref_lse, tol.lse)) << who << ": lse";
  }
}

void expect_krot_matches(const Problem &pr, const Result &r) {
  std::vector<double> ref = pr.ref_krot;
  for (double &x : ref) x = hope_test::round_to(pr.c.dtype, static_cast<float>(x));
  const double rel = pr.c.rotate ? tol_for(pr.c.dtype).krot_rel : 0.0;  // an unrotated copy is exact
  EXPECT_TRUE(hope_test::all_close(r.krot.values(), ref, pr.c.rotate ? 1e-6 : 0.0, rel)) << "k_rotated";
}

// Two results bit-identical (output bytes and LSE bits).
void expect_identical(const Result &a, const Result &b, const std::string &what) {
  ASSERT_EQ(a.out.bytes.size(), b.out.bytes.size()) << what;
  size_t first = a.out.bytes.size();
  for (size_t i = 0; i < a.out.bytes.size() && first == a.out.bytes.size(); ++i)
    if (a.out.bytes[i] != b.out.bytes[i]) first = i;
  EXPECT_EQ(first, a.out.bytes.size()) << what << ": outputs differ first at byte " << first;
  ASSERT_EQ(a.lse.size(), b.lse.size()) << what;
  EXPECT_EQ(0, a.lse.empty() ? 0 : std::memcmp(a.lse.data(), b.lse.data(), a.lse.size() * sizeof(float)))
      << what << ": lse differs";
}

std::string dt(int dtype) { return hope_test::dtype_name(dtype); }

// ---- the main sweep: dtype x head_dim x GQA ratio x causal ------------------------------------------------
struct SweepParam {
  int dtype, head_dim, group;
  bool causal;
};

FusedCase sweep_case(const SweepParam &sp) {
  FusedCase c;
  c.dtype = sp.dtype;
  c.head_dim = sp.head_dim;
  c.causal = sp.causal;
  if (sp.group == 1) c.hq = 2, c.hk = 2;
  else c.hq = sp.group, c.hk = 1;
  c.with_lse = sp.group != 4;  // LSE off in a third of the cases
  c.rope_kind = sp.head_dim == 128 ? HOPE_ROPE_HOPE : sp.head_dim == 64 ? HOPE_ROPE_MROPE : HOPE_ROPE_VIDEOROPE;
  // Lengths 1, 7, 129, 1037 (none a tile multiple); an empty sequence; queries without keys (o 0, lse -inf);
  // Nq < Nk over several key tiles (300 keys: at least three tiles, so every K/V stage is reused); Nq > Nk (under the causal mask the first 50 rows see no key); Nq - Nk
  // above the query tile (causal: whole query tiles see no key although the sequence has keys, so they
  // load no K/V tile at all).
  c.lens_q = {1, 7, 0, 129, 5, 3, 70, 200};
  c.lens_k = {1, 7, 0, 300, 0, 9, 20, 10};
  if (!hope_test::quick_mode()) {
    c.lens_q.push_back(1037);
    c.lens_k.push_back(1037);
  }
  return c;
}

class AttentionFusedGpuSweep : public hope_test::GpuTestWithParam<SweepParam> {};

TEST_P(AttentionFusedGpuSweep, MatchesFloat64) {
  const SweepParam sp = GetParam();
  Problem pr;
  ASSERT_NO_FATAL_FAILURE(build(sweep_case(sp), 1000u + sp.dtype * 97 + sp.head_dim * 13 + sp.group * 3 + sp.causal, &pr));
  Result r;
  ASSERT_NO_FATAL_FAILURE(run_fused(pr, false, nullptr, &r));
  expect_matches_reference(pr, r, "fused, K rotated in-kernel");
}

std::vector<SweepParam> sweep_params() {
  std::vector<SweepParam> v;
  for (int dtype : {HOPE_DTYPE_FLOAT16, HOPE_DTYPE_BFLOAT16})
    for (int d : {64, 128, 256})
      for (int g : {1, 4, 7})
        for (bool causal : {false, true}) v.push_back({dtype, d, g, causal});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Varlen, AttentionFusedGpuSweep, ::testing::ValuesIn(sweep_params()),
                         [](const ::testing::TestParamInfo<SweepParam> &info) {
                           const SweepParam &p = info.param;
                           return dt(p.dtype) + "_d" + std::to_string(p.head_dim) + "_gqa" + std::to_string(p.group) +
                                  (p.causal ? "_causal" : "_full") + (p.group != 4 ? "_lse" : "_nolse") +
                                  "_lens1to1037";
                         });

// ---- K rotation: the pre-pass into k_rotated and the in-kernel rotation agree bit for bit ----------------
struct KRotParam {
  int dtype, head_dim;
};
class AttentionFusedGpuKRotation : public hope_test::GpuTestWithParam<KRotParam> {};

TEST_P(AttentionFusedGpuKRotation, PrepassMatchesReferenceAndInKernelPath) {
  FusedCase c;
  c.dtype = GetParam().dtype;
  c.head_dim = GetParam().head_dim;
  c.hq = 8;
  c.hk = 2;
  c.causal = true;
  c.rope_kind = HOPE_ROPE_VANILLA;  // every pair rotates
  c.lens_q = {129, 1, 0, 33};
  c.lens_k = {300, 1, 17, 33};
  Problem pr;
  ASSERT_NO_FATAL_FAILURE(build(c, 77u + c.dtype * 5 + c.head_dim, &pr));
  Result prepass, inkernel;
  ASSERT_NO_FATAL_FAILURE(run_fused(pr, true, nullptr, &prepass));
  ASSERT_NO_FATAL_FAILURE(run_fused(pr, false, nullptr, &inkernel));
  ASSERT_NO_FATAL_FAILURE(expect_matches_reference(pr, prepass, "fused with the k_rotated pre-pass"));
  ASSERT_NO_FATAL_FAILURE(expect_matches_reference(pr, inkernel, "fused with in-kernel K rotation"));
  expect_krot_matches(pr, prepass);
  expect_identical(prepass, inkernel, "pre-pass vs in-kernel K rotation");
}

INSTANTIATE_TEST_SUITE_P(Paths, AttentionFusedGpuKRotation,
                         ::testing::Values(KRotParam{HOPE_DTYPE_FLOAT16, 64}, KRotParam{HOPE_DTYPE_BFLOAT16, 64},
                                           KRotParam{HOPE_DTYPE_FLOAT16, 128}, KRotParam{HOPE_DTYPE_BFLOAT16, 128},
                                           KRotParam{HOPE_DTYPE_FLOAT16, 256}, KRotParam{HOPE_DTYPE_BFLOAT16, 256}),
                         [](const ::testing::TestParamInfo<KRotParam> &info) {
                           return dt(info.param.dtype) + "_d" + std::to_string(info.param.head_dim);
                         });

// ---- SPEC §8: interleaved pairs and partial rotary dimensions, both K paths -----------------------------------
struct RotaryParam {
  int dtype, head_dim, pairing, rotary_dim;
};
class AttentionFusedGpuRotary : public hope_test::GpuTestWithParam<RotaryParam> {};

// Dims past rotary_dim pass through; the pre-pass and the in-kernel rotation stay bit-identical, k_rotated
// included. Shifted query and key tiles, a row without keys and GQA, as in the K-rotation cases.
TEST_P(AttentionFusedGpuRotary, MatchesFloat64OnBothKPaths) {
  const RotaryParam &rp = GetParam();
  FusedCase c;
  c.dtype = rp.dtype;
  c.head_dim = rp.head_dim;
  c.pairing = rp.pairing;
  c.rotary_dim = rp.rotary_dim;
  c.hq = 4;
  c.hk = 2;
  c.causal = true;
  c.rope_kind = HOPE_ROPE_MROPE;
  c.lens_q = {129, 1, 40};
  c.lens_k = {200, 0, 40};
  Problem pr;
  ASSERT_NO_FATAL_FAILURE(build(c, 313u + rp.head_dim * 7 + rp.pairing * 3 + rp.rotary_dim, &pr));
  Result prepass, inkernel;
  ASSERT_NO_FATAL_FAILURE(run_fused(pr, true, nullptr, &prepass));
  ASSERT_NO_FATAL_FAILURE(run_fused(pr, false, nullptr, &inkernel));
  ASSERT_NO_FATAL_FAILURE(expect_matches_reference(pr, prepass, "k_rotated pre-pass"));
  ASSERT_NO_FATAL_FAILURE(expect_matches_reference(pr, inkernel, "in-kernel K rotation"));
  expect_krot_matches(pr, prepass);
  expect_identical(prepass, inkernel, "pre-pass vs in-kernel K rotation");
}

INSTANTIATE_TEST_SUITE_P(
    Variants, AttentionFusedGpuRotary,
    ::testing::Values(RotaryParam{HOPE_DTYPE_BFLOAT16, 64, HOPE_PAIRING_INTERLEAVED, 0},
                      RotaryParam{HOPE_DTYPE_FLOAT16, 64, HOPE_PAIRING_ROTATE_HALF, 32},
                      RotaryParam{HOPE_DTYPE_BFLOAT16, 128, HOPE_PAIRING_INTERLEAVED, 64},  // GLM-4.xV
                      RotaryParam{HOPE_DTYPE_FLOAT16, 128, HOPE_PAIRING_ROTATE_HALF, 96},
                      RotaryParam{HOPE_DTYPE_FLOAT16, 256, HOPE_PAIRING_INTERLEAVED, 112},
                      RotaryParam{HOPE_DTYPE_BFLOAT16, 256, HOPE_PAIRING_ROTATE_HALF, 128}),
    [](const ::testing::TestParamInfo<RotaryParam> &info) {
      const RotaryParam &p = info.param;
      return dt(p.dtype) + "_d" + std::to_string(p.head_dim) +
             (p.pairing == HOPE_PAIRING_INTERLEAVED ? "_interleaved" : "_rotate_half") + "_rot" +
             std::to_string(p.rotary_dim != 0 ? p.rotary_dim : p.head_dim);
    });

// ---- single cases ------------------------------------------------------------------------------------------
class AttentionFusedGpu : public hope_test::GpuTest {};

// q, k, v as column slices of one fused QKV buffer (row stride (Hq + 2 Hk) d), a custom scale, k_rotated.
TEST_F(AttentionFusedGpu, StridedFusedQkvInput) {
  for (int dtype : {HOPE_DTYPE_FLOAT16, HOPE_DTYPE_BFLOAT16}) {
    FusedCase c;
    c.dtype = dtype;
    c.head_dim = 128;
    c.hq = 8;
    c.hk = 2;
    c.causal = true;
    c.fused_qkv = true;
    c.scale = 0.05f;
    c.lens_q = c.lens_k = {129, 1, 7, 300};
    Problem pr;
    ASSERT_NO_FATAL_FAILURE(build(c, 4242u + dtype, &pr));
    Result r, rk;
    ASSERT_NO_FATAL_FAILURE(run_fused(pr, false, nullptr, &r));
    ASSERT_NO_FATAL_FAILURE(expect_matches_reference(pr, r, "fused QKV, " + dt(dtype)));
    ASSERT_NO_FATAL_FAILURE(run_fused(pr, true, nullptr, &rk));
    ASSERT_NO_FATAL_FAILURE(expect_matches_reference(pr, rk, "fused QKV with k_rotated, " + dt(dtype)));
    expect_krot_matches(pr, rk);
    expect_identical(r, rk, "fused QKV: pre-pass vs in-kernel");
  }
}

// Without cos/sin q and k are used as given; k_rotated then receives an exact copy of k.
TEST_F(AttentionFusedGpu, WithoutRotationKRotatedIsACopy) {
  FusedCase c;
  c.dtype = HOPE_DTYPE_BFLOAT16;
  c.head_dim = 64;
  c.hq = 4;
  c.hk = 4;
  c.causal = false;
  c.rotate = false;
  c.lens_q = {7, 129};
  c.lens_k = {130, 1};
  Problem pr;
  ASSERT_NO_FATAL_FAILURE(build(c, 11u, &pr));
  Result r;
  ASSERT_NO_FATAL_FAILURE(run_fused(pr, true, nullptr, &r));
  ASSERT_NO_FATAL_FAILURE(expect_matches_reference(pr, r, "fused without rotation"));
  expect_krot_matches(pr, r);
}

// No query rows anywhere (max_seqlen_q == 0): no attention launch, but k_rotated is still written.
TEST_F(AttentionFusedGpu, NoQueriesStillFillsKRotated) {
  FusedCase c;
  c.dtype = HOPE_DTYPE_FLOAT16;
  c.head_dim = 128;
  c.hq = 2;
  c.hk = 1;
  c.lens_q = {0, 0};
  c.lens_k = {5, 9};
  Problem pr;
  ASSERT_NO_FATAL_FAILURE(build(c, 12u, &pr));
  Result r;
  ASSERT_NO_FATAL_FAILURE(run_fused(pr, true, nullptr, &r));
  EXPECT_EQ(r.out.size(), 0u);
  expect_krot_matches(pr, r);
}

// Every sequence without keys: out 0 and lse -inf everywhere, no NaN.
TEST_F(AttentionFusedGpu, NoKeysAnywhereGivesZeroAndMinusInf) {
  for (bool causal : {false, true}) {
    FusedCase c;
    c.dtype = HOPE_DTYPE_BFLOAT16;
    c.head_dim = 256;
    c.hq = 3;
    c.hk = 1;
    c.causal = causal;
    c.lens_q = {3, 0, 130};
    c.lens_k = {0, 0, 0};
    Problem pr;
    ASSERT_NO_FATAL_FAILURE(build(c, 13u, &pr));
    Result r;
    ASSERT_NO_FATAL_FAILURE(run_fused(pr, false, nullptr, &r));
    ASSERT_NO_FATAL_FAILURE(expect_matches_reference(pr, r, causal ? "no keys, causal" : "no keys"));
    for (float l : r.lse) EXPECT_EQ(l, -std::numeric_limits<float>::infinity());
  }
}

// Many heads: the grid is large enough for the planner to keep the default 128-row query tile (hd 64 and
// 128) on any GPU with up to 288 SMs, so that variant is exercised even under HOPE_TEST_QUICK, where the
// sweep's shorter sequences make it choose the 64-row tile.
TEST_F(AttentionFusedGpu, ManyHeadsMatchFloat64) {
  for (int dtype : {HOPE_DTYPE_FLOAT16, HOPE_DTYPE_BFLOAT16})
    for (int d : {64, 128}) {
      FusedCase c;
      c.dtype = dtype;
      c.head_dim = d;
      c.hq = 32;
      c.hk = 8;
      c.causal = true;
      c.rope_kind = HOPE_ROPE_MROPE;
      c.lens_q = {300, 129, 1};
      c.lens_k = {300, 200, 1};
      Problem pr;
      ASSERT_NO_FATAL_FAILURE(build(c, 303u + dtype * 7 + d, &pr));
      Result r;
      ASSERT_NO_FATAL_FAILURE(run_fused(pr, false, nullptr, &r));
      ASSERT_NO_FATAL_FAILURE(expect_matches_reference(pr, r, "32 heads, " + dt(dtype) + " d" + std::to_string(d)));
    }
}

// gridDim.z is limited to 65535: a larger batch is split over several launches, and the sequences of the
// later launches must land in their own rows of out and lse.
TEST_F(AttentionFusedGpu, BatchAbove65535) {
  if (hope_test::quick_mode()) GTEST_SKIP() << "HOPE_TEST_QUICK: 70 000 CTAs are too slow under compute-sanitizer";
  FusedCase c;
  c.dtype = HOPE_DTYPE_BFLOAT16;
  c.head_dim = 64;
  c.hq = 2;
  c.hk = 1;
  c.causal = true;
  for (int i = 0; i < 70000; ++i) {
    c.lens_q.push_back(1 + i % 3);  // 1..3 queries
    c.lens_k.push_back(i % 4);      // 0..3 keys: some sequences have none, some rows see none
  }
  Problem pr;
  ASSERT_NO_FATAL_FAILURE(build(c, 65536u, &pr));
  Result r;
  ASSERT_NO_FATAL_FAILURE(run_fused(pr, false, nullptr, &r));
  // One overall comparison (a per-sequence report of 70 000 sequences would drown a failure).
  const std::vector<double> got = r.out.values();
  ASSERT_EQ(got.size(), pr.ref_out.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_TRUE(std::isfinite(got[i])) << "out[" << i << "] = " << got[i];
  EXPECT_LE(hope_test::relative_error(got, pr.ref_out), tol_for(c.dtype).rel);
  const int64_t tail = static_cast<int64_t>(pr.cu_q[65535]) * c.hq * c.head_dim;  // rows of sequences >= 65535
  const std::vector<double> g(got.begin() + tail, got.end()), e(pr.ref_out.begin() + tail, pr.ref_out.end());
  EXPECT_LE(hope_test::relative_error(g, e), tol_for(c.dtype).rel) << "sequences 65535 and later";
  EXPECT_TRUE(hope_test::all_close(to_double(r.lse), pr.ref_lse, tol_for(c.dtype).lse)) << "lse";
}

// The fused kernel and the unfused cuBLAS path agree on the same inputs.
TEST_F(AttentionFusedGpu, AgreesWithUnfusedPath) {
  for (int dtype : {HOPE_DTYPE_FLOAT16, HOPE_DTYPE_BFLOAT16}) {
    FusedCase c;
    c.dtype = dtype;
    c.head_dim = 128;
    c.hq = 7;
    c.hk = 1;
    c.causal = true;
    c.lens_q = {1, 129, 70, hope_test::quick_mode() ? 200 : 1037};
    c.lens_k = {1, 200, 20, hope_test::quick_mode() ? 200 : 1037};
    Problem pr;
    ASSERT_NO_FATAL_FAILURE(build(c, 31u + dtype, &pr));
    Result fused;
    ASSERT_NO_FATAL_FAILURE(run_fused(pr, false, nullptr, &fused));
    ASSERT_NO_FATAL_FAILURE(expect_matches_reference(pr, fused, "fused"));

    DevInputs di;
    ASSERT_NO_FATAL_FAILURE(upload(pr, &di));
    DevOutputs o;
    ASSERT_NO_FATAL_FAILURE(alloc_poisoned(pr, false, &o));
    const hope_attention_params_t p = make_params(pr, di, o);
    size_t ws_bytes = 0;
    ASSERT_HOPE_OK(hope_attention_unfused_workspace_size(&p, &ws_bytes));
    DeviceBuffer ws;
    ASSERT_CUDA(ws.alloc(ws_bytes));
    ASSERT_HOPE_OK(hope_attention_forward_unfused(&p, ws.get(), ws_bytes, nullptr));
    ASSERT_CUDA(cudaDeviceSynchronize());
    Result unfused;
    ASSERT_NO_FATAL_FAILURE(download(pr, o, &unfused));
    ASSERT_NO_FATAL_FAILURE(expect_matches_reference(pr, unfused, "unfused"));
    const Tol tol = tol_for(dtype);
    EXPECT_LE(hope_test::relative_error(fused.out.values(), unfused.out.values()), tol.rel) << "fused vs unfused";
    EXPECT_TRUE(hope_test::all_close(to_double(fused.lse), to_double(unfused.lse), tol.lse)) << "lse fused vs unfused";
  }
}

// The call is graph-capturable (no allocation, sync or host read-back): capture it on a stream — with and
// without the K pre-pass — instantiate, launch the graph onto poisoned outputs, compare.
TEST_F(AttentionFusedGpu, CudaGraphCaptureWorks) {
  for (bool want_krot : {false, true}) {
    FusedCase c;
    c.dtype = HOPE_DTYPE_BFLOAT16;
    c.head_dim = 128;
    c.hq = 8;
    c.hk = 2;
    c.causal = true;
    c.lens_q = {129, 7, 1};
    c.lens_k = {129, 70, 1};
    Problem pr;
    ASSERT_NO_FATAL_FAILURE(build(c, 55u + want_krot, &pr));
    DevInputs di;
    ASSERT_NO_FATAL_FAILURE(upload(pr, &di));
    DevOutputs o;
    ASSERT_NO_FATAL_FAILURE(alloc_poisoned(pr, want_krot, &o));
    const hope_attention_params_t p = make_params(pr, di, o);

    cudaStream_t stream = nullptr;
    ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    ASSERT_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    const hope_status_t s = hope_attention_forward(&p, stream);
    const cudaError_t end = cudaStreamEndCapture(stream, &graph);
    EXPECT_EQ(s, HOPE_SUCCESS) << hope_last_error();
    EXPECT_EQ(end, cudaSuccess) << cudaGetErrorString(end);
    if (s == HOPE_SUCCESS && end == cudaSuccess) {
      size_t nodes = 0;
      EXPECT_EQ(cudaGraphGetNodes(graph, nullptr, &nodes), cudaSuccess);
      EXPECT_EQ(nodes, want_krot ? 2u : 1u) << "kernels captured";
      EXPECT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
      // Nothing ran during capture: the outputs are still poisoned; re-poison anyway, then launch twice.
      for (DeviceBuffer *b : {&o.out, &o.lse, &o.krot})
        if (b->bytes() > 0) EXPECT_EQ(cudaMemsetAsync(b->get(), 0xff, b->bytes(), stream), cudaSuccess);
      EXPECT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
      EXPECT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
      EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    }
    if (exec != nullptr) EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
    if (graph != nullptr) EXPECT_EQ(cudaGraphDestroy(graph), cudaSuccess);
    EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
    ASSERT_CUDA(cudaGetLastError());
    ASSERT_FALSE(HasFailure());
    Result r;
    ASSERT_NO_FATAL_FAILURE(download(pr, o, &r));
    ASSERT_NO_FATAL_FAILURE(expect_matches_reference(pr, r, want_krot ? "graph with pre-pass" : "graph"));
    if (want_krot) expect_krot_matches(pr, r);
  }
}

// A non-default stream gives the same answer as the default stream, bit for bit.
TEST_F(AttentionFusedGpu, StreamDoesNotChangeResult) {
  FusedCase c;
  c.dtype = HOPE_DTYPE_FLOAT16;
  c.head_dim = 64;
  c.hq = 4;
  c.hk = 4;
  c.lens_q = {300, 1};
  c.lens_k = {300, 9};
  Problem pr;
  ASSERT_NO_FATAL_FAILURE(build(c, 66u, &pr));
  cudaStream_t stream = nullptr;
  ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  Result a, b;
  run_fused(pr, false, nullptr, &a);
  run_fused(pr, false, stream, &b);
  EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
  ASSERT_FALSE(HasFailure());
  ASSERT_NO_FATAL_FAILURE(expect_matches_reference(pr, a, "default stream"));
  expect_identical(a, b, "default vs non-blocking stream");
}

// ---- unsupported shapes: NOT_SUPPORTED with a message, nothing written ------------------------------------
// One small bf16 problem (2 q heads over 1 kv head, 9 tokens) uploaded, its outputs poisoned, its parameters
// ready: for the tests of refused calls (nothing may be written) followed by one that works.
struct SmallCall {
  Problem pr;
  DevInputs di;
  DevOutputs o;
  hope_attention_params_t p{};
};
void small_call(int head_dim, uint64_t seed, SmallCall *sc) {
  FusedCase c;
  c.dtype = HOPE_DTYPE_BFLOAT16;
  c.head_dim = head_dim;
  c.hq = 2;
  c.hk = 1;
  c.lens_q = {9};
  c.lens_k = {9};
  ASSERT_NO_FATAL_FAILURE(build(c, seed, &sc->pr));
  ASSERT_NO_FATAL_FAILURE(upload(sc->pr, &sc->di));
  ASSERT_NO_FATAL_FAILURE(alloc_poisoned(sc->pr, false, &sc->o));
  sc->p = make_params(sc->pr, sc->di, sc->o);
}
// Nothing was written into the poisoned output.
void expect_output_untouched(const SmallCall &sc) {
  ASSERT_CUDA(cudaDeviceSynchronize());
  Result r;
  ASSERT_NO_FATAL_FAILURE(download(sc.pr, sc.o, &r));
  for (size_t i = 0; i < r.out.size(); ++i) ASSERT_TRUE(std::isnan(r.out.get(i))) << "out[" << i << "] was written";
}

TEST_F(AttentionFusedGpu, UnsupportedShapesAreNotSupported) {
  SmallCall sc;
  ASSERT_NO_FATAL_FAILURE(small_call(128, 88u, &sc));
  const FusedCase &c = sc.pr.c;
  const Problem &pr = sc.pr;
  const DevOutputs &o = sc.o;
  const hope_attention_params_t good = sc.p;

  // head_dim 96 (the buffers are large enough for 96 < 128): the message names the supported ones.
  hope_attention_params_t p = good;
  p.head_dim = 96;
  p.cos_q = p.sin_q = p.cos_k = p.sin_k = nullptr;
  EXPECT_HOPE_FAIL(hope_attention_forward(&p, nullptr), HOPE_ERROR_NOT_SUPPORTED);
  EXPECT_NE(std::string(hope_last_error()).find("64, 128, 256"), std::string::npos) << hope_last_error();
  p.head_dim = 32;
  EXPECT_HOPE_FAIL(hope_attention_forward(&p, nullptr), HOPE_ERROR_NOT_SUPPORTED);

  // SPEC §8: a rotary dimension that is not a multiple of 16 (the kernels rotate whole 16-byte chunks).
  p = good;
  p.rotary_dim = 24;
  EXPECT_HOPE_FAIL(hope_attention_forward(&p, nullptr), HOPE_ERROR_NOT_SUPPORTED);
  EXPECT_NE(std::string(hope_last_error()).find("multiple of 16"), std::string::npos) << hope_last_error();

  // float32 goes to the CPU backend or the unfused path.
  p = good;
  p.dtype = HOPE_DTYPE_FLOAT32;
  EXPECT_HOPE_FAIL(hope_attention_forward(&p, nullptr), HOPE_ERROR_NOT_SUPPORTED);
  EXPECT_NE(std::string(hope_last_error()).find("unfused"), std::string::npos) << hope_last_error();

  // Rows not 16-byte aligned (stride of hq*d + 4 elements): cp.async cannot load them.
  p = good;
  p.q_row_stride = static_cast<int64_t>(c.hq) * c.head_dim + 4;
  p.max_seqlen_q = 1;  // one token row fits the buffer with the wider stride
  EXPECT_HOPE_FAIL(hope_attention_forward(&p, nullptr), HOPE_ERROR_NOT_SUPPORTED);
  EXPECT_NE(std::string(hope_last_error()).find("q_row_stride"), std::string::npos) << hope_last_error();
  p = good;
  p.k = static_cast<const char *>(good.k) + 2;  // misaligned pointer
  EXPECT_HOPE_FAIL(hope_attention_forward(&p, nullptr), HOPE_ERROR_NOT_SUPPORTED);

  // Nothing was written by any of these calls.
  ASSERT_NO_FATAL_FAILURE(expect_output_untouched(sc));

  // The same call with supported values works.
  ASSERT_HOPE_OK(hope_attention_forward(&good, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  Result r;
  ASSERT_NO_FATAL_FAILURE(download(pr, o, &r));
  ASSERT_NO_FATAL_FAILURE(expect_matches_reference(pr, r, "after the refusals"));
}

// ---- architecture families (HOPE_ATTN_KERNEL_FAMILY) --------------------------------------------------------
// Sets HOPE_ATTN_KERNEL_FAMILY for the scope (the library reads it on every call); restores the old value.
class ScopedFamily {
 public:
  explicit ScopedFamily(const char *value) {
    const char *old = std::getenv("HOPE_ATTN_KERNEL_FAMILY");
    had_ = old != nullptr;
    if (had_) old_ = old;
    if (value != nullptr) setenv("HOPE_ATTN_KERNEL_FAMILY", value, 1);
    else unsetenv("HOPE_ATTN_KERNEL_FAMILY");
  }
  ~ScopedFamily() {
    if (had_) setenv("HOPE_ATTN_KERNEL_FAMILY", old_.c_str(), 1);
    else unsetenv("HOPE_ATTN_KERNEL_FAMILY");
  }
  ScopedFamily(const ScopedFamily &) = delete;
  ScopedFamily &operator=(const ScopedFamily &) = delete;

 private:
  bool had_ = false;
  std::string old_;
};

int device_cc_major() {
  int dev = 0, major = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess)
    return 0;
  return major;
}

// On a compute capability 9.x device both families run: each matches the float64 reference on the same inputs
// (shifted tiles, GQA, causal rows without keys, several key tiles, both K-rotation paths), and so does the
// planner's own choice (sm90 there; bit-identical to the forced sm90 run). HOPE_TEST_QUICK (the emulated GPU)
// keeps one dtype per head_dim and leaves the planner's choice to KernelFamilyVariableIsChecked.
TEST_F(AttentionFusedGpu, BothKernelFamiliesMatchFloat64OnHopper) {
  if (device_cc_major() != 9) GTEST_SKIP() << "needs a compute capability 9.x device (both families run there)";
  if (!hope_test::library_has_sm90()) GTEST_SKIP() << "the library was built without the sm90 family";
  const bool quick = hope_test::quick_mode();
  for (int dtype : {HOPE_DTYPE_FLOAT16, HOPE_DTYPE_BFLOAT16})
    for (int d : {64, 128, 256}) {
      if (quick && (d == 128) == (dtype == HOPE_DTYPE_FLOAT16)) continue;  // f16 d64, bf16 d128, f16 d256
      FusedCase c;
      c.dtype = dtype;
      c.head_dim = d;
      c.hq = 7;
      c.hk = 1;
      c.causal = true;
      c.lens_q = {1, 129, 300, 40};
      c.lens_k = {5, 129, 420, 300};
      Problem pr;
      ASSERT_NO_FATAL_FAILURE(build(c, 9090u + dtype * 3 + d, &pr));
      Result sm90_inkernel;
      for (const char *family : {"sm80", "sm90", "auto"}) {
        if (quick && std::string(family) == "auto") continue;
        ScopedFamily scope(family);
        const std::string who = std::string(family) + " " + dt(dtype) + " d" + std::to_string(d);
        Result inkernel, prepass;
        ASSERT_NO_FATAL_FAILURE(run_fused(pr, false, nullptr, &inkernel));
        ASSERT_NO_FATAL_FAILURE(expect_matches_reference(pr, inkernel, who + ", K rotated in-kernel"));
        if (std::string(family) == "sm90") sm90_inkernel = inkernel;
        if (std::string(family) == "auto") {
          expect_identical(inkernel, sm90_inkernel, who + ": the planner's choice is the sm90 family");
          continue;
        }
        ASSERT_NO_FATAL_FAILURE(run_fused(pr, true, nullptr, &prepass));
        ASSERT_NO_FATAL_FAILURE(expect_matches_reference(pr, prepass, who + ", k_rotated pre-pass"));
        expect_krot_matches(pr, prepass);
        expect_identical(inkernel, prepass, who + ": pre-pass vs in-kernel K rotation");
      }
    }
}

// A value the library does not know is INVALID_VALUE naming the variable; sm90 where it cannot run is
// NOT_SUPPORTED; sm80 runs on every device from 8.0 on. Nothing is written by a refused call.
TEST_F(AttentionFusedGpu, KernelFamilyVariableIsChecked) {
  SmallCall sc;
  ASSERT_NO_FATAL_FAILURE(small_call(64, 4711u, &sc));
  const hope_attention_params_t &p = sc.p;
  {
    ScopedFamily scope("sm75");
    EXPECT_HOPE_FAIL(hope_attention_forward(&p, nullptr), HOPE_ERROR_INVALID_VALUE);
    EXPECT_NE(std::string(hope_last_error()).find("HOPE_ATTN_KERNEL_FAMILY"), std::string::npos) << hope_last_error();
  }
  if (device_cc_major() != 9 || !hope_test::library_has_sm90()) {
    ScopedFamily scope("sm90");
    EXPECT_HOPE_FAIL(hope_attention_forward(&p, nullptr), HOPE_ERROR_NOT_SUPPORTED);
    EXPECT_NE(std::string(hope_last_error()).find("sm90"), std::string::npos) << hope_last_error();
  }
  ASSERT_NO_FATAL_FAILURE(expect_output_untouched(sc));
  Result r80;
  {
    ScopedFamily scope("sm80");
    ASSERT_HOPE_OK(hope_attention_forward(&p, nullptr));
    ASSERT_CUDA(cudaDeviceSynchronize());
    ASSERT_NO_FATAL_FAILURE(download(sc.pr, sc.o, &r80));
    ASSERT_NO_FATAL_FAILURE(expect_matches_reference(sc.pr, r80, "forced sm80"));
  }
  // The planner's own choice: sm90 on 9.x when built in, sm80 elsewhere (bit-identical to that family forced).
  const bool hopper = device_cc_major() == 9 && hope_test::library_has_sm90();
  Result forced = r80;
  if (hopper) {
    ScopedFamily scope("sm90");
    ASSERT_HOPE_OK(hope_attention_forward(&p, nullptr));
    ASSERT_CUDA(cudaDeviceSynchronize());
    ASSERT_NO_FATAL_FAILURE(download(sc.pr, sc.o, &forced));
    ASSERT_NO_FATAL_FAILURE(expect_matches_reference(sc.pr, forced, "forced sm90"));
  }
  ScopedFamily scope(nullptr);
  ASSERT_HOPE_OK(hope_attention_forward(&p, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  Result chosen;
  ASSERT_NO_FATAL_FAILURE(download(sc.pr, sc.o, &chosen));
  expect_identical(chosen, forced, hopper ? "the planner chooses sm90 on 9.x" : "the planner chooses sm80");
}

}  // namespace
