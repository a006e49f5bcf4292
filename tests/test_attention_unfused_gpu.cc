// test_attention_unfused_gpu.cc — hope_attention_forward_unfused (the cuBLAS reference path, SPEC §5) against
// the float64 reference and against the CPU backend. Every test derives from the GPU fixture and skips on a
// machine without a GPU. HOPE_TEST_QUICK=1 in the environment drops the longest sequences (used under
// compute-sanitizer by scripts/gpu-check.sh).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <thread>
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
using hope_test::quick_mode;
using hope_test::strided_rows;
using hope_test::Tensor;
using hope_test::to_double;

struct UnfusedCase {
  int dtype = HOPE_DTYPE_FLOAT32;
  int head_dim = 64;
  int hq = 4, hk = 4;
  bool causal = true;
  std::vector<int> lens_q, lens_k;
  bool rotate = true;
  float scale = 0.0f;    // <= 0: the default 1/sqrt(d)
  int64_t row_pad = 0;   // extra elements per q/k/v row (row stride = heads * d + row_pad)
  bool with_lse = true;
  bool k_rotated = true;
  std::string tag;
};

struct Tolerance {
  double rel, lse, krot_rel, krot_abs;
};
Tolerance tolerance(int dtype) {
  if (dtype == HOPE_DTYPE_FLOAT16) return {2e-3, 5e-3, 2.0 / 1024, 1e-4};
  if (dtype == HOPE_DTYPE_BFLOAT16) return {1e-2, 2e-2, 2.0 / 128, 1e-3};
  return {1e-5, 1e-4, 0.0, 1e-5};
}

// cos/sin [tokens][d/2] of RoPE angles at integer positions above 100 000 (angles in double, stored as float).
void make_cos_sin(int64_t tokens, int head_dim, std::mt19937_64 &rng, std::vector<float> *c, std::vector<float> *s) {
  const int half = head_dim / 2;
  std::uniform_int_distribution<int> pos_dist(100000, 400000);
  c->resize(static_cast<size_t>(tokens * half));
  s->resize(static_cast<size_t>(tokens * half));
  for (int64_t t = 0; t < tokens; ++t) {
    const double pos = pos_dist(rng);
    for (int i = 0; i < half; ++i) {
      const double a = pos * std::pow(1e6, -2.0 * i / head_dim);
      (*c)[static_cast<size_t>(t * half + i)] = static_cast<float>(std::cos(a));
      (*s)[static_cast<size_t>(t * half + i)] = static_cast<float>(std::sin(a));
    }
  }
}


// Host-side inputs of one problem and its float64 reference answer.
struct Problem {
  UnfusedCase c;
  std::vector<int32_t> cu_q, cu_k;
  int64_t total_q = 0, total_k = 0, q_stride = 0, kv_stride = 0;
  Tensor q, k, v;
  std::vector<float> cos_q, sin_q, cos_k, sin_k;
  std::vector<double> ref_out, ref_lse, ref_krot;
};

void build_problem(const UnfusedCase &c, uint64_t seed, Problem *pr) {
  std::mt19937_64 rng(seed);
  pr->c = c;
  pr->cu_q = cu_seqlens(c.lens_q);
  pr->cu_k = cu_seqlens(c.lens_k);
  pr->total_q = pr->cu_q.back();
  pr->total_k = pr->cu_k.back();
  const int d = c.head_dim;
  pr->q_stride = static_cast<int64_t>(c.hq) * d + c.row_pad;
  pr->kv_stride = static_cast<int64_t>(c.hk) * d + c.row_pad;
  pr->q = hope_test::random_tensor(c.dtype, static_cast<size_t>(pr->total_q * pr->q_stride), rng);
  pr->k = hope_test::random_tensor(c.dtype, static_cast<size_t>(pr->total_k * pr->kv_stride), rng);
  pr->v = hope_test::random_tensor(c.dtype, static_cast<size_t>(pr->total_k * pr->kv_stride), rng);
  std::vector<double> q = strided_rows(pr->q, pr->total_q, static_cast<int64_t>(c.hq) * d, pr->q_stride);
  std::vector<double> k = strided_rows(pr->k, pr->total_k, static_cast<int64_t>(c.hk) * d, pr->kv_stride);
  std::vector<double> v = strided_rows(pr->v, pr->total_k, static_cast<int64_t>(c.hk) * d, pr->kv_stride);
  if (c.rotate) {
    make_cos_sin(pr->total_q, d, rng, &pr->cos_q, &pr->sin_q);
    make_cos_sin(pr->total_k, d, rng, &pr->cos_k, &pr->sin_k);
    q = hope_ref::rotate(q, pr->total_q, c.hq, d, to_double(pr->cos_q), to_double(pr->sin_q));
    k = hope_ref::rotate(k, pr->total_k, c.hk, d, to_double(pr->cos_k), to_double(pr->sin_k));
  }
  pr->ref_krot = k;
  hope_ref::attention(hope_ref::varlen_problem(c.hq, c.hk, d, pr->cu_q, pr->cu_k, c.causal, c.scale), q, k, v,
                      &pr->ref_out, &pr->ref_lse);
}

// Device copies of a problem's inputs.
struct DeviceInputs {
  DeviceBuffer q, k, v, cu_q, cu_k, cos_q, sin_q, cos_k, sin_k;
};
void upload(const Problem &pr, DeviceInputs *di) {
  auto put = [](DeviceBuffer *dst, const void *src, size_t bytes) -> cudaError_t {
    const cudaError_t e = dst->alloc_or_null(bytes);
    if (e != cudaSuccess) return e;
    return dst->upload(src, bytes);
  };
  // q, k and v must be non-NULL whenever batch > 0 (the library cannot see device cu_seqlens), even when the
  // totals are 0: an empty tensor gets a 16-byte placeholder that nothing may read.
  auto put_tensor = [&put](DeviceBuffer *dst, const Tensor &t) -> cudaError_t {
    if (t.bytes.empty()) return dst->alloc(16);
    return put(dst, t.data(), t.bytes.size());
  };
  ASSERT_CUDA(put_tensor(&di->q, pr.q));
  ASSERT_CUDA(put_tensor(&di->k, pr.k));
  ASSERT_CUDA(put_tensor(&di->v, pr.v));
  ASSERT_CUDA(put(&di->cu_q, pr.cu_q.data(), pr.cu_q.size() * sizeof(int32_t)));
  ASSERT_CUDA(put(&di->cu_k, pr.cu_k.data(), pr.cu_k.size() * sizeof(int32_t)));
  ASSERT_CUDA(put(&di->cos_q, pr.cos_q.data(), pr.cos_q.size() * sizeof(float)));
  ASSERT_CUDA(put(&di->sin_q, pr.sin_q.data(), pr.sin_q.size() * sizeof(float)));
  ASSERT_CUDA(put(&di->cos_k, pr.cos_k.data(), pr.cos_k.size() * sizeof(float)));
  ASSERT_CUDA(put(&di->sin_k, pr.sin_k.data(), pr.sin_k.size() * sizeof(float)));
  ASSERT_CUDA(cudaDeviceSynchronize());  // callers may launch on a non-blocking stream next
}

hope_attention_params_t make_params(const Problem &pr, int backend) {
  const UnfusedCase &c = pr.c;
  hope_attention_params_t p{};
  std::memset(&p, 0, sizeof(p));
  p.backend = backend;
  p.dtype = c.dtype;
  p.batch = static_cast<int32_t>(c.lens_q.size());
  p.num_q_heads = c.hq;
  p.num_kv_heads = c.hk;
  p.head_dim = c.head_dim;
  p.max_seqlen_q = max_len(c.lens_q);
  p.max_seqlen_k = max_len(c.lens_k);
  p.softmax_scale = c.scale;
  p.causal = c.causal ? 1 : 0;
  p.q_row_stride = c.row_pad ? pr.q_stride : 0;
  p.k_row_stride = c.row_pad ? pr.kv_stride : 0;
  p.v_row_stride = c.row_pad ? pr.kv_stride : 0;
  return p;
}

// Results copied back from one device call.
struct Outputs {
  Tensor out, krot;
  std::vector<float> lse;
};

// Device outputs of one call, poisoned (0xff bytes: NaN in every dtype) before the call.
struct DeviceOutputs {
  DeviceBuffer out, lse, krot;
};
void alloc_poisoned(const Problem &pr, DeviceOutputs *dout) {
  const size_t es = hope_test::dtype_size(pr.c.dtype);
  // out must be non-NULL even when total_q is 0 (see upload): at least one element, poisoned like the rest.
  ASSERT_CUDA(dout->out.alloc(std::max<size_t>(static_cast<size_t>(pr.total_q) * pr.c.hq * pr.c.head_dim * es, es)));
  ASSERT_CUDA(dout->lse.alloc_or_null(pr.c.with_lse ? static_cast<size_t>(pr.total_q) * pr.c.hq * sizeof(float) : 0));
  ASSERT_CUDA(
      dout->krot.alloc_or_null(pr.c.k_rotated ? static_cast<size_t>(pr.total_k) * pr.c.hk * pr.c.head_dim * es : 0));
  for (DeviceBuffer *b : {&dout->out, &dout->lse, &dout->krot})
    ASSERT_CUDA(b->poison());
  ASSERT_CUDA(cudaDeviceSynchronize());  // the poison lands before a call on a non-blocking stream
}
void bind(const DeviceInputs &di, const DeviceOutputs &dout, const Problem &pr, hope_attention_params_t *p) {
  p->cu_seqlens_q = di.cu_q.as<int32_t>();
  p->cu_seqlens_k = di.cu_k.as<int32_t>();
  p->q = di.q.get();
  p->k = di.k.get();
  p->v = di.v.get();
  if (pr.c.rotate) {
    p->cos_q = di.cos_q.as<float>();
    p->sin_q = di.sin_q.as<float>();
    p->cos_k = di.cos_k.as<float>();
    p->sin_k = di.sin_k.as<float>();
  }
  p->out = dout.out.get();
  p->lse = dout.lse.as<float>();
  p->k_rotated = dout.krot.get();
}
void download(const Problem &pr, const DeviceOutputs &dout, Outputs *o) {
  o->out = Tensor(pr.c.dtype, static_cast<size_t>(pr.total_q) * pr.c.hq * pr.c.head_dim);
  if (!o->out.bytes.empty())
    ASSERT_CUDA(cudaMemcpy(o->out.data(), dout.out.get(), o->out.bytes.size(), cudaMemcpyDeviceToHost));
  o->lse.assign(dout.lse.bytes() / sizeof(float), 0.0f);
  if (!o->lse.empty())
    ASSERT_CUDA(cudaMemcpy(o->lse.data(), dout.lse.get(), dout.lse.bytes(), cudaMemcpyDeviceToHost));
  o->krot = Tensor(pr.c.dtype, dout.krot.bytes() / hope_test::dtype_size(pr.c.dtype));
  if (!o->krot.bytes.empty())
    ASSERT_CUDA(cudaMemcpy(o->krot.data(), dout.krot.get(), dout.krot.bytes(), cudaMemcpyDeviceToHost));
}

// Inputs uploaded, outputs allocated and poisoned, and the CUDA call's parameters bound to them.
void prepare(const Problem &pr, DeviceInputs *di, DeviceOutputs *dout, hope_attention_params_t *p) {
  ASSERT_NO_FATAL_FAILURE(upload(pr, di));
  ASSERT_NO_FATAL_FAILURE(alloc_poisoned(pr, dout));
  *p = make_params(pr, HOPE_BACKEND_CUDA);
  bind(*di, *dout, pr, p);
}

// One synchronous unfused call on `stream` with a workspace of exactly the queried size.
void run_unfused(const Problem &pr, cudaStream_t stream, Outputs *o) {
  DeviceInputs di;
  DeviceOutputs dout;
  hope_attention_params_t p{};
  ASSERT_NO_FATAL_FAILURE(prepare(pr, &di, &dout, &p));
  size_t ws_bytes = 0;
  ASSERT_HOPE_OK(hope_attention_unfused_workspace_size(&p, &ws_bytes));
  DeviceBuffer ws(ws_bytes);
  if (ws_bytes > 0) ASSERT_NE(ws.get(), nullptr);
  ASSERT_HOPE_OK(hope_attention_forward_unfused(&p, ws.get(), ws_bytes, stream));
  ASSERT_CUDA(cudaStreamSynchronize(stream));
  ASSERT_CUDA(cudaGetLastError());
  ASSERT_NO_FATAL_FAILURE(download(pr, dout, o));
}

// The CPU backend on the same inputs (host pointers).
void run_cpu(const Problem &pr, Outputs *o) {
  hope_attention_params_t p = make_params(pr, HOPE_BACKEND_CPU);
  p.cu_seqlens_q = pr.cu_q.data();
  p.cu_seqlens_k = pr.cu_k.data();
  p.q = pr.q.data();
  p.k = pr.k.data();
  p.v = pr.v.data();
  if (pr.c.rotate) {
    p.cos_q = pr.cos_q.data();
    p.sin_q = pr.sin_q.data();
    p.cos_k = pr.cos_k.data();
    p.sin_k = pr.sin_k.data();
  }
  o->out = Tensor(pr.c.dtype, static_cast<size_t>(pr.total_q) * pr.c.hq * pr.c.head_dim);
  o->out.poison();
  o->lse.assign(pr.c.with_lse ? static_cast<size_t>(pr.total_q) * pr.c.hq : 0, std::nanf(""));
  p.out = o->out.data();
  p.lse = pr.c.with_lse ? o->lse.data() : nullptr;
  ASSERT_HOPE_OK(hope_attention_forward(&p, nullptr));
}

// Checks device outputs against the float64 reference (and k_rotated against the rotated reference keys).
void expect_matches_reference(const Problem &pr, const Outputs &o, const char *who) {
  const Tolerance tol = tolerance(pr.c.dtype);
  const std::vector<double> got = o.out.values();
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_TRUE(std::isfinite(got[i])) << who << ": out[" << i << "] = " << got[i] << " is not finite";
  const double rel = hope_test::relative_error(got, pr.ref_out);
  EXPECT_LE(rel, tol.rel) << who << ": relative error of out";
  if (pr.c.with_lse) EXPECT_TRUE(hope_test::all_close(to_double(o.lse), pr.ref_lse, tol.lse)) << who << ": lse";
  // lse -inf is checked exactly by all_close above
  EXPECT_TRUE(hope_test::keyless_rows_are_zero(got, pr.ref_lse, pr.total_q, pr.c.hq, pr.c.head_dim)) << who;
}

void expect_krot_matches(const Problem &pr, const Outputs &o) {
  if (!pr.c.k_rotated) return;
  const Tolerance tol = tolerance(pr.c.dtype);
  std::vector<double> ref = pr.ref_krot;  // the device rounds the rotated keys to the dtype
  for (double &x : ref) x = hope_test::round_to(pr.c.dtype, static_cast<float>(x));
  EXPECT_TRUE(hope_test::all_close(o.krot.values(), ref, tol.krot_abs, tol.krot_rel)) << "k_rotated";
}

// Outputs of the two backends agree with each other as closely as each agrees with the reference.
void expect_backends_agree(const Problem &pr, const Outputs &gpu, const Outputs &cpu) {
  const Tolerance tol = tolerance(pr.c.dtype);
  EXPECT_LE(hope_test::relative_error(gpu.out.values(), cpu.out.values()), tol.rel) << "GPU unfused vs CPU backend";
  if (pr.c.with_lse)
    EXPECT_TRUE(hope_test::all_close(to_double(gpu.lse), to_double(cpu.lse), tol.lse)) << "lse GPU vs CPU";
}

// ---- the main sweep ----------------------------------------------------------------------------------------
struct SweepParam {
  int dtype;
  int group;  // Hq / Hk
  bool causal;
};

void PrintTo(const SweepParam &p, std::ostream *os) {
  *os << hope_test::dtype_name(p.dtype) << " gqa" << p.group << (p.causal ? " causal" : " full");
}

UnfusedCase sweep_case(const SweepParam &sp) {
  UnfusedCase c;
  c.dtype = sp.dtype;
  c.head_dim = 64;
  c.causal = sp.causal;
  if (sp.group == 1) c.hq = 2, c.hk = 2;
  else if (sp.group == 4) c.hq = 8, c.hk = 2;
  else c.hq = sp.group, c.hk = 1;
  // Odd lengths; an empty sequence; queries without keys; keys without queries; Nq > Nk (the first
  // rows see no key under the causal mask); Nq < Nk.
  c.lens_q = {1, 7, 0, 129, 5, 0, 7};
  c.lens_k = {1, 3, 0, 129, 0, 9, 200};
  if (!quick_mode()) {
    c.lens_q.push_back(1037);
    c.lens_k.push_back(1037);
  }
  return c;
}

class AttentionUnfusedGpuSweep : public hope_test::GpuTestWithParam<SweepParam> {};

TEST_P(AttentionUnfusedGpuSweep, MatchesFloat64AndCpuBackend) {
  const UnfusedCase c = sweep_case(GetParam());
  Problem pr;
  ASSERT_NO_FATAL_FAILURE(build_problem(c, 1234u + GetParam().group * 7 + GetParam().dtype, &pr));
  Outputs gpu, cpu;
  ASSERT_NO_FATAL_FAILURE(run_unfused(pr, nullptr, &gpu));
  ASSERT_NO_FATAL_FAILURE(expect_matches_reference(pr, gpu, "GPU unfused"));
  expect_krot_matches(pr, gpu);
  ASSERT_NO_FATAL_FAILURE(run_cpu(pr, &cpu));
  ASSERT_NO_FATAL_FAILURE(expect_matches_reference(pr, cpu, "CPU backend"));
  expect_backends_agree(pr, gpu, cpu);
}

std::string sweep_name(const ::testing::TestParamInfo<SweepParam> &info) {
  const SweepParam &p = info.param;
  return std::string(hope_test::dtype_name(p.dtype)) + "_gqa" + std::to_string(p.group) +
         (p.causal ? "_causal" : "_full") + "_lens1to1037";
}

std::vector<SweepParam> sweep_params() {
  std::vector<SweepParam> v;
  for (int dt : {HOPE_DTYPE_FLOAT32, HOPE_DTYPE_FLOAT16, HOPE_DTYPE_BFLOAT16})
    for (int g : {1, 4, 7})
      for (bool causal : {false, true}) v.push_back({dt, g, causal});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Varlen, AttentionUnfusedGpuSweep, ::testing::ValuesIn(sweep_params()), sweep_name);

// ---- head dims ------------------------------------------------------------------------------------------
class AttentionUnfusedGpuHeadDim : public hope_test::GpuTestWithParam<int> {};

TEST_P(AttentionUnfusedGpuHeadDim, MatchesFloat64) {
  UnfusedCase c;
  c.dtype = HOPE_DTYPE_BFLOAT16;
  c.head_dim = GetParam();
  c.hq = 4;
  c.hk = 2;
  c.causal = true;
  c.lens_q = {1, 33, 7};
  c.lens_k = {1, 33, 70};
  Problem pr;
  ASSERT_NO_FATAL_FAILURE(build_problem(c, 99u + GetParam(), &pr));
  Outputs gpu;
  ASSERT_NO_FATAL_FAILURE(run_unfused(pr, nullptr, &gpu));
  ASSERT_NO_FATAL_FAILURE(expect_matches_reference(pr, gpu, "GPU unfused"));
  expect_krot_matches(pr, gpu);
}

INSTANTIATE_TEST_SUITE_P(Bf16Causal, AttentionUnfusedGpuHeadDim, ::testing::Values(2, 96, 128, 256, 1024),
                         [](const ::testing::TestParamInfo<int> &info) { return "d" + std::to_string(info.param); });

// ---- single cases -----------------------------------------------------------------------------------------
class AttentionUnfusedGpu : public hope_test::GpuTest {};

// q, k, v with padded rows (as slices of a fused QKV buffer would be), no rotation, a custom scale, no lse.
TEST_F(AttentionUnfusedGpu, StridedInputsWithoutRotation) {
  for (int dtype : {HOPE_DTYPE_FLOAT16, HOPE_DTYPE_FLOAT32}) {
    UnfusedCase c;
    c.dtype = dtype;
    c.head_dim = 128;
    c.hq = 6;
    c.hk = 2;
    c.causal = false;
    c.rotate = false;
    c.scale = 0.05f;
    c.row_pad = 24;
    c.with_lse = false;
    c.lens_q = {129, 1, 7};
    c.lens_k = {129, 200, 7};
    Problem pr;
    ASSERT_NO_FATAL_FAILURE(build_problem(c, 7u + dtype, &pr));
    Outputs gpu, cpu;
    ASSERT_NO_FATAL_FAILURE(run_unfused(pr, nullptr, &gpu));
    ASSERT_NO_FATAL_FAILURE(expect_matches_reference(pr, gpu, "GPU unfused"));
    expect_krot_matches(pr, gpu);  // without cos/sin, k_rotated is k itself
    ASSERT_NO_FATAL_FAILURE(run_cpu(pr, &cpu));
    expect_backends_agree(pr, gpu, cpu);
  }
}

// Every sequence without keys (max_seqlen_k == 0): out 0, lse -inf, no GEMM at all.
TEST_F(AttentionUnfusedGpu, NoKeysAnywhereGivesZeroAndMinusInf) {
  UnfusedCase c;
  c.dtype = HOPE_DTYPE_BFLOAT16;
  c.hq = 4;
  c.hk = 1;
  c.lens_q = {3, 0, 5};
  c.lens_k = {0, 0, 0};
  Problem pr;
  ASSERT_NO_FATAL_FAILURE(build_problem(c, 5u, &pr));
  Outputs gpu;
  ASSERT_NO_FATAL_FAILURE(run_unfused(pr, nullptr, &gpu));
  ASSERT_NO_FATAL_FAILURE(expect_matches_reference(pr, gpu, "GPU unfused"));
  for (float l : gpu.lse) EXPECT_EQ(l, -std::numeric_limits<float>::infinity());
}

// Keys but no queries anywhere (max_seqlen_q == 0): only k_rotated is written.
TEST_F(AttentionUnfusedGpu, KeysWithoutQueriesStillWriteKRotated) {
  UnfusedCase c;
  c.dtype = HOPE_DTYPE_FLOAT16;
  c.hq = 2;
  c.hk = 2;
  c.lens_q = {0, 0};
  c.lens_k = {7, 129};
  Problem pr;
  ASSERT_NO_FATAL_FAILURE(build_problem(c, 6u, &pr));
  Outputs gpu;
  ASSERT_NO_FATAL_FAILURE(run_unfused(pr, nullptr, &gpu));
  ASSERT_EQ(gpu.krot.size(), static_cast<size_t>(136 * 2 * 64));
  expect_krot_matches(pr, gpu);
}

// A workspace one byte short: OUT_OF_MEMORY with a message, and not one output byte written.
TEST_F(AttentionUnfusedGpu, WorkspaceTooSmallIsOutOfMemoryAndWritesNothing) {
  UnfusedCase c;
  c.dtype = HOPE_DTYPE_BFLOAT16;
  c.hq = 4;
  c.hk = 2;
  c.lens_q = {7, 129};
  c.lens_k = {9, 129};
  Problem pr;
  ASSERT_NO_FATAL_FAILURE(build_problem(c, 8u, &pr));
  DeviceInputs di;
  DeviceOutputs dout;
  hope_attention_params_t p{};
  ASSERT_NO_FATAL_FAILURE(prepare(pr, &di, &dout, &p));
  size_t need = 0;
  ASSERT_HOPE_OK(hope_attention_unfused_workspace_size(&p, &need));
  ASSERT_GT(need, 0u);
  // The documented size: O(Hq * batch * max_q * max_k) floats at least.
  EXPECT_GE(need, static_cast<size_t>(4) * 2 * 129 * 129 * sizeof(float));
  DeviceBuffer ws(need);
  ASSERT_NE(ws.get(), nullptr);
  EXPECT_HOPE_FAIL(hope_attention_forward_unfused(&p, ws.get(), need - 1, nullptr), HOPE_ERROR_OUT_OF_MEMORY);
  EXPECT_NE(std::string(hope_last_error()).find("workspace"), std::string::npos) << hope_last_error();
  EXPECT_HOPE_FAIL(hope_attention_forward_unfused(&p, ws.get(), 0, nullptr), HOPE_ERROR_OUT_OF_MEMORY);
  ASSERT_CUDA(cudaDeviceSynchronize());
  for (const DeviceBuffer *b : {&dout.out, &dout.lse, &dout.krot}) {
    ASSERT_GT(b->bytes(), 0u);
    std::vector<uint8_t> bytes(b->bytes());
    ASSERT_CUDA(cudaMemcpy(bytes.data(), b->get(), b->bytes(), cudaMemcpyDeviceToHost));
    size_t touched = 0;
    for (uint8_t x : bytes) touched += x != 0xff;
    EXPECT_EQ(touched, 0u) << "a failed call wrote " << touched << " bytes of an output";
  }
  // The same call with the full workspace then succeeds.
  EXPECT_HOPE_OK(hope_attention_forward_unfused(&p, ws.get(), need, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
}

// A workspace pointer that is not 256-byte aligned works when the queried size is given.
TEST_F(AttentionUnfusedGpu, UnalignedWorkspaceWorks) {
  UnfusedCase c;
  c.dtype = HOPE_DTYPE_FLOAT16;
  c.hq = 2;
  c.hk = 1;
  c.lens_q = {33};
  c.lens_k = {47};
  Problem pr;
  ASSERT_NO_FATAL_FAILURE(build_problem(c, 9u, &pr));
  DeviceInputs di;
  DeviceOutputs dout;
  hope_attention_params_t p{};
  ASSERT_NO_FATAL_FAILURE(prepare(pr, &di, &dout, &p));
  size_t need = 0;
  ASSERT_HOPE_OK(hope_attention_unfused_workspace_size(&p, &need));
  DeviceBuffer ws(need + 64);
  ASSERT_NE(ws.get(), nullptr);
  ASSERT_HOPE_OK(hope_attention_forward_unfused(&p, ws.as<char>() + 16, need, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  Outputs o;
  ASSERT_NO_FATAL_FAILURE(download(pr, dout, &o));
  ASSERT_NO_FATAL_FAILURE(expect_matches_reference(pr, o, "GPU unfused"));
}

// The call is asynchronous and allocation-free after the first one: it can be captured in a CUDA graph.
TEST_F(AttentionUnfusedGpu, CapturesInCudaGraph) {
  UnfusedCase c;
  c.dtype = HOPE_DTYPE_BFLOAT16;
  c.hq = 8;
  c.hk = 2;
  c.lens_q = {7, 129};
  c.lens_k = {20, 129};
  Problem pr;
  ASSERT_NO_FATAL_FAILURE(build_problem(c, 10u, &pr));
  DeviceInputs di;
  DeviceOutputs dout;
  hope_attention_params_t p{};
  ASSERT_NO_FATAL_FAILURE(prepare(pr, &di, &dout, &p));
  size_t need = 0;
  ASSERT_HOPE_OK(hope_attention_unfused_workspace_size(&p, &need));
  DeviceBuffer ws(need);
  ASSERT_NE(ws.get(), nullptr);
  cudaStream_t stream = nullptr;
  ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  // Warm-up outside the capture (the first call on a device creates the cuBLAS handle).
  EXPECT_HOPE_OK(hope_attention_forward_unfused(&p, ws.get(), need, stream));
  ASSERT_CUDA(cudaStreamSynchronize(stream));
  for (DeviceBuffer *b : {&dout.out, &dout.lse, &dout.krot}) ASSERT_CUDA(b->poison());
  ASSERT_CUDA(cudaDeviceSynchronize());
  cudaGraph_t graph = nullptr;
  ASSERT_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const hope_status_t st = hope_attention_forward_unfused(&p, ws.get(), need, stream);
  const std::string msg = hope_last_error();
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  EXPECT_EQ(st, HOPE_SUCCESS) << msg;
  ASSERT_EQ(end, cudaSuccess) << cudaGetErrorString(end);
  cudaGraphExec_t exec = nullptr;
  ASSERT_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  ASSERT_CUDA(cudaGraphLaunch(exec, stream));
  ASSERT_CUDA(cudaStreamSynchronize(stream));
  Outputs o;
  ASSERT_NO_FATAL_FAILURE(download(pr, dout, &o));
  ASSERT_CUDA(cudaGraphExecDestroy(exec));
  ASSERT_CUDA(cudaGraphDestroy(graph));
  ASSERT_CUDA(cudaStreamDestroy(stream));
  ASSERT_NO_FATAL_FAILURE(expect_matches_reference(pr, o, "GPU unfused (graph)"));
  expect_krot_matches(pr, o);
}

// Several host threads, each on its own stream with its own buffers, share the per-device cuBLAS handle.
TEST_F(AttentionUnfusedGpu, ConcurrentCallsFromThreads) {
  UnfusedCase c;
  c.dtype = HOPE_DTYPE_FLOAT16;
  c.hq = 4;
  c.hk = 4;
  c.lens_q = {65, 3};
  c.lens_k = {65, 90};
  Problem pr;
  ASSERT_NO_FATAL_FAILURE(build_problem(c, 11u, &pr));
  constexpr int kThreads = 4;
  std::vector<Outputs> outs(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      cudaStream_t stream = nullptr;
      if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) {
        ADD_FAILURE() << "cudaStreamCreate";
        return;
      }
      for (int rep = 0; rep < 3; ++rep) run_unfused(pr, stream, &outs[t]);
      EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
    });
  for (std::thread &th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) {
    SCOPED_TRACE("thread " + std::to_string(t));
    ASSERT_NO_FATAL_FAILURE(expect_matches_reference(pr, outs[t], "GPU unfused"));
  }
}

// Bad arguments: a status and a message, never a crash.
TEST_F(AttentionUnfusedGpu, BadArgumentsFailWithMessage) {
  size_t bytes = 0;
  EXPECT_HOPE_FAIL(hope_attention_unfused_workspace_size(nullptr, &bytes), HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_attention_forward_unfused(nullptr, nullptr, 0, nullptr), HOPE_ERROR_INVALID_VALUE);
  UnfusedCase c;
  c.lens_q = {3};
  c.lens_k = {3};
  Problem pr;
  ASSERT_NO_FATAL_FAILURE(build_problem(c, 12u, &pr));
  hope_attention_params_t p = make_params(pr, HOPE_BACKEND_CUDA);
  EXPECT_HOPE_FAIL(hope_attention_unfused_workspace_size(&p, nullptr), HOPE_ERROR_INVALID_VALUE);
  hope_attention_params_t bad = p;
  bad.num_q_heads = 3;
  bad.num_kv_heads = 2;
  EXPECT_HOPE_FAIL(hope_attention_unfused_workspace_size(&bad, &bytes), HOPE_ERROR_INVALID_VALUE);
  bad = p;
  bad.head_dim = 63;
  EXPECT_HOPE_FAIL(hope_attention_unfused_workspace_size(&bad, &bytes), HOPE_ERROR_INVALID_VALUE);
  bad = p;
  bad.dtype = 9;
  EXPECT_HOPE_FAIL(hope_attention_unfused_workspace_size(&bad, &bytes), HOPE_ERROR_INVALID_VALUE);
  bad = p;
  bad.backend = HOPE_BACKEND_CPU;  // the unfused path is CUDA-only
  const hope_status_t s = hope_attention_unfused_workspace_size(&bad, &bytes);
  EXPECT_NE(s, HOPE_SUCCESS);
  EXPECT_STRNE(hope_last_error(), "");
  // NULL device pointers with a real batch.
  EXPECT_HOPE_FAIL(hope_attention_forward_unfused(&p, nullptr, 0, nullptr), HOPE_ERROR_INVALID_VALUE);
}

}  // namespace
