// test_rotary_variants_gpu.cc — SPEC §8's pairing and rotary dimension on the CUDA paths that rotate q or k inside
// another operation (hope_rope_apply's cases are in test_rope_gpu.cc): hope_kv_append, the q rotation of
// hope_decode_forward, the fused attention kernel with both of its K paths (the k_rotated pre-pass and K tiles
// rotated in shared memory) and the unfused cuBLAS path, each against the float64 reference (tests/reference/).
// The layouts are the models': GLM-4.xV (M-RoPE sections (8, 12, 12), interleaved pairs, rotary_dim = head_dim / 2),
// ERNIE-4.5-VL (the VideoRoPE allocation (20, 22, 22), interleaved pairs over the whole head), a partial
// rotate-half, rotary dims that are not a multiple of 16 (which the fused kernel refuses), and the default layout
// as a check of the harness itself. Outputs are poisoned before every run; sequences have odd, empty and
// key-less lengths; GQA; causal and not. Sizes stay small: every case runs on the emulated GPU under four thread
// schedules in CI. Every test skips without a GPU (hope_test::GpuTest).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "gpu_util.h"
#include "hope_attn.h"
#include "kv_append_gpu_util.h"
#include "paged_test_util.h"
#include "reference/paged_ref.h"
#include "reference/reference.h"
#include "rope_test_util.h"
#include "rotary_variants_util.h"
#include "test_util.h"

namespace {

using hope_test::DeviceBuffer;
using hope_test::Tensor;
using hope_test::to_double;
using namespace hope_test::rotary;  // NOLINT: the layouts and the attention problem

struct AttnDevice {
  DeviceBuffer q, k, v, cu_q, cu_k, cos_q, sin_q, cos_k, sin_k, out, lse, krot;
};

// Uploads the inputs and allocates poisoned outputs (0xff: NaN in every dtype, followed by guard bytes).
void upload_attention(const AttnProblem &pr, AttnDevice *dv) {
  const size_t es = hope_test::dtype_size(pr.c.dtype);
  ASSERT_CUDA(dv->q.alloc_upload(pr.q.data(), pr.q.bytes.size()));
  ASSERT_CUDA(dv->k.alloc_upload(pr.k.data(), pr.k.bytes.size()));
  ASSERT_CUDA(dv->v.alloc_upload(pr.v.data(), pr.v.bytes.size()));
  ASSERT_CUDA(dv->cu_q.alloc_upload(pr.cu_q.data(), pr.cu_q.size() * 4));
  ASSERT_CUDA(dv->cu_k.alloc_upload(pr.cu_k.data(), pr.cu_k.size() * 4));
  ASSERT_CUDA(dv->cos_q.alloc_upload(pr.cos_q.data(), pr.cos_q.size() * 4));
  ASSERT_CUDA(dv->sin_q.alloc_upload(pr.sin_q.data(), pr.sin_q.size() * 4));
  ASSERT_CUDA(dv->cos_k.alloc_upload(pr.cos_k.data(), pr.cos_k.size() * 4));
  ASSERT_CUDA(dv->sin_k.alloc_upload(pr.sin_k.data(), pr.sin_k.size() * 4));
  ASSERT_CUDA(dv->out.alloc(static_cast<size_t>(pr.total_q) * pr.c.hq * pr.c.head_dim * es));
  ASSERT_CUDA(dv->lse.alloc(static_cast<size_t>(pr.total_q) * pr.c.hq * 4));
  ASSERT_CUDA(dv->krot.alloc(static_cast<size_t>(pr.total_k) * pr.c.hk * pr.c.head_dim * es));
}

hope_attention_params_t attention_params(const AttnProblem &pr, const AttnDevice &dv, bool with_krot) {
  return attention_params_of(pr, HOPE_BACKEND_CUDA,
                             {dv.q.get(), dv.k.get(), dv.v.get(), dv.cu_q.as<int32_t>(), dv.cu_k.as<int32_t>(),
                              dv.cos_q.as<float>(), dv.sin_q.as<float>(), dv.cos_k.as<float>(), dv.sin_k.as<float>(),
                              dv.out.get(), dv.lse.as<float>(), with_krot ? dv.krot.get() : nullptr});
}

// Re-poisons the outputs, runs `run` (which calls the library on the null stream), synchronises and downloads.
template <typename Run>
void run_attention(const AttnProblem &pr, AttnDevice *dv, Run run, AttnResult *r) {
  for (DeviceBuffer *b : {&dv->out, &dv->lse, &dv->krot}) ASSERT_CUDA(b->poison());
  ASSERT_NO_FATAL_FAILURE(run());
  ASSERT_CUDA(cudaDeviceSynchronize());
  ASSERT_CUDA(cudaGetLastError());
  r->out = Tensor(pr.c.dtype, dv->out.bytes() / hope_test::dtype_size(pr.c.dtype));
  r->krot = Tensor(pr.c.dtype, dv->krot.bytes() / hope_test::dtype_size(pr.c.dtype));
  r->lse.assign(dv->lse.bytes() / 4, 0.f);
  ASSERT_CUDA(dv->out.download(r->out.data(), r->out.bytes.size()));
  ASSERT_CUDA(dv->krot.download(r->krot.data(), r->krot.bytes.size()));
  ASSERT_CUDA(dv->lse.download(r->lse.data(), r->lse.size() * 4));
  EXPECT_TRUE(dv->out.guard_intact() && dv->lse.guard_intact() && dv->krot.guard_intact()) << "a write past an output";
}


// ---- the fused kernel: both K paths against the reference and each other ----------------------------------

class RotaryFusedAttentionGpu : public hope_test::GpuTestWithParam<AttnCase> {};

TEST_P(RotaryFusedAttentionGpu, BothKPathsMatchFloat64) {
  AttnProblem pr;
  ASSERT_NO_FATAL_FAILURE(build_attention(GetParam(), 7000u + GetParam().head_dim + GetParam().dtype, &pr));
  AttnDevice dv;
  ASSERT_NO_FATAL_FAILURE(upload_attention(pr, &dv));
  AttnResult prepass, inkernel;
  ASSERT_NO_FATAL_FAILURE(run_attention(pr, &dv, [&] {
    const hope_attention_params_t p = attention_params(pr, dv, true);
    ASSERT_HOPE_OK(hope_attention_forward(&p, nullptr));
  }, &prepass));
  ASSERT_NO_FATAL_FAILURE(run_attention(pr, &dv, [&] {
    const hope_attention_params_t p = attention_params(pr, dv, false);
    ASSERT_HOPE_OK(hope_attention_forward(&p, nullptr));
  }, &inkernel));
  ASSERT_NO_FATAL_FAILURE(expect_attention_matches(pr, prepass, "fused, k_rotated pre-pass"));
  ASSERT_NO_FATAL_FAILURE(expect_attention_matches(pr, inkernel, "fused, K rotated in shared memory"));
  expect_krot_matches(pr, prepass, "fused pre-pass");
  // Both K paths apply the same float32 arithmetic to the same pairs: bit-identical outputs.
  EXPECT_EQ(prepass.out.bytes, inkernel.out.bytes) << "pre-pass and in-kernel K rotation differ";
  EXPECT_EQ(0, std::memcmp(prepass.lse.data(), inkernel.lse.data(), prepass.lse.size() * 4)) << "lse differs";
  // The in-kernel run leaves k_rotated alone.
  for (uint8_t b : inkernel.krot.bytes) ASSERT_EQ(b, 0xff) << "k_rotated written without being requested";
}

std::vector<AttnCase> fused_cases() {
  const int f16 = HOPE_DTYPE_FLOAT16, bf16 = HOPE_DTYPE_BFLOAT16;
  // Lengths: 1, 7, 129 and 150 (no tile multiple), an empty sequence, queries without keys, Nq > Nk (under the
  // causal mask the first rows see no key), Nq < Nk over several key tiles.
  return {
      attn_case(kGlm128, bf16, 128, 4, 2, true, {1, 7, 0, 129, 5}, {1, 7, 3, 150, 0}),
      attn_case(kGlm128, f16, 128, 7, 1, false, {37, 1}, {70, 130}),
      attn_case(kErnie128, f16, 128, 4, 1, true, {70, 1, 33}, {20, 9, 129}),
      attn_case(kErnie128, bf16, 128, 2, 2, false, {7, 129}, {150, 7}),
      attn_case(kGlm256, bf16, 256, 2, 1, true, {33, 1}, {65, 1}),
      attn_case(kHalf32, f16, 64, 6, 2, true, {129, 7}, {200, 7}),
      attn_case(kHalf16, bf16, 256, 3, 1, true, {9, 1}, {40, 1}),
      attn_case(kDefault, f16, 64, 4, 2, true, {7, 65}, {30, 65}),
      // 2 query tiles x 66 heads = 132 CTAs of the 128-row tile: as many as the emulated device (and an H100) has
      // SMs, so the planner keeps the wide tile (256 threads) instead of the 64-row one the cases above get.
      attn_case(kGlm128, bf16, 128, 66, 6, true, {129}, {129}),
  };
}

INSTANTIATE_TEST_SUITE_P(Models, RotaryFusedAttentionGpu, ::testing::ValuesIn(fused_cases()),
                         [](const ::testing::TestParamInfo<AttnCase> &info) { return info.param.name; });

class RotaryAttentionGpu : public hope_test::GpuTest {};

// A rotary_dim that is not a multiple of 16: the fused kernel answers NOT_SUPPORTED, names the unfused path and
// writes nothing; without cos/sin nothing rotates and it runs (the rotary dimension is then irrelevant).
TEST_F(RotaryAttentionGpu, FusedRefusesRotaryDimNotAMultipleOf16) {
  AttnProblem pr;
  ASSERT_NO_FATAL_FAILURE(build_attention(attn_case(kInter34, HOPE_DTYPE_BFLOAT16, 64, 2, 1, true, {9}, {9}), 5u, &pr));
  AttnDevice dv;
  ASSERT_NO_FATAL_FAILURE(upload_attention(pr, &dv));
  for (bool with_krot : {false, true}) {
    const hope_attention_params_t p = attention_params(pr, dv, with_krot);
    EXPECT_HOPE_FAIL(hope_attention_forward(&p, nullptr), HOPE_ERROR_NOT_SUPPORTED);
    EXPECT_NE(std::string(hope_last_error()).find("multiple of 16"), std::string::npos) << hope_last_error();
    EXPECT_NE(std::string(hope_last_error()).find("unfused"), std::string::npos) << hope_last_error();
  }
  ASSERT_CUDA(cudaDeviceSynchronize());
  std::vector<uint8_t> out(dv.out.bytes()), krot(dv.krot.bytes());
  ASSERT_CUDA(dv.out.download(out.data(), out.size()));
  ASSERT_CUDA(dv.krot.download(krot.data(), krot.size()));
  for (uint8_t b : out) ASSERT_EQ(b, 0xff) << "out written by a refused call";
  for (uint8_t b : krot) ASSERT_EQ(b, 0xff) << "k_rotated written by a refused call";

  // No cos/sin: q and k as given, k_rotated an exact copy.
  hope_attention_params_t p = attention_params(pr, dv, true);
  p.cos_q = p.sin_q = p.cos_k = p.sin_k = nullptr;
  ASSERT_HOPE_OK(hope_attention_forward(&p, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  Tensor k_copy(pr.c.dtype, pr.k.size());
  ASSERT_CUDA(dv.krot.download(k_copy.data(), k_copy.bytes.size()));
  EXPECT_EQ(k_copy.bytes, pr.k.bytes) << "k_rotated without rotation";
  Tensor out_t(pr.c.dtype, dv.out.bytes() / 2);
  ASSERT_CUDA(dv.out.download(out_t.data(), out_t.bytes.size()));
  std::vector<double> ref_out, ref_lse;
  hope_ref::attention(hope_ref::varlen_problem(2, 1, 64, pr.cu_q, pr.cu_k, true), pr.q.values(), pr.k.values(),
                      pr.v.values(), &ref_out, &ref_lse);
  EXPECT_LE(hope_test::relative_error(out_t.values(), ref_out), out_tol(pr.c.dtype)) << "unrotated attention";
}

// ---- the unfused path ------------------------------------------------------------------------------------------

class RotaryUnfusedAttentionGpu : public hope_test::GpuTestWithParam<AttnCase> {};

TEST_P(RotaryUnfusedAttentionGpu, MatchesFloat64) {
  AttnProblem pr;
  ASSERT_NO_FATAL_FAILURE(build_attention(GetParam(), 8000u + GetParam().head_dim + GetParam().dtype, &pr));
  AttnDevice dv;
  ASSERT_NO_FATAL_FAILURE(upload_attention(pr, &dv));
  const hope_attention_params_t p = attention_params(pr, dv, true);
  size_t ws_bytes = 0;
  ASSERT_HOPE_OK(hope_attention_unfused_workspace_size(&p, &ws_bytes));
  DeviceBuffer ws(ws_bytes);
  ASSERT_TRUE(ws.ok());
  AttnResult r;
  ASSERT_NO_FATAL_FAILURE(run_attention(pr, &dv, [&] {
    ASSERT_HOPE_OK(hope_attention_forward_unfused(&p, ws.get(), ws_bytes, nullptr));
  }, &r));
  ASSERT_NO_FATAL_FAILURE(expect_attention_matches(pr, r, "unfused"));
  expect_krot_matches(pr, r, "unfused");
}

std::vector<AttnCase> unfused_cases() {
  const int f16 = HOPE_DTYPE_FLOAT16, bf16 = HOPE_DTYPE_BFLOAT16, f32 = HOPE_DTYPE_FLOAT32;
  return {
      attn_case(kGlm128, f32, 128, 4, 2, true, {1, 7, 0, 129, 5}, {1, 7, 3, 150, 0}),
      attn_case(kErnie128, bf16, 128, 4, 1, true, {70, 1, 33}, {20, 9, 129}),
      attn_case(kInter34, f16, 64, 7, 1, true, {37, 1, 0}, {70, 1, 5}),
      attn_case(kHalf2, bf16, 96, 2, 2, false, {7, 129}, {150, 7}),
      attn_case(kGlm256, f16, 256, 2, 1, true, {33, 1}, {65, 1}),
  };
}

INSTANTIATE_TEST_SUITE_P(Models, RotaryUnfusedAttentionGpu, ::testing::ValuesIn(unfused_cases()),
                         [](const ::testing::TestParamInfo<AttnCase> &info) { return info.param.name; });

// ---- kv_append on its own: strides, negative slots, head_dims the vector path does not take ------------------

struct AppendCase {
  std::string name;
  Layout layout;
  int dtype, hk, d, page_size, num_pages, tokens;
  bool rope;
  int k_pad;  // extra elements per k row (k_row_stride = hk * d + k_pad)
};
void PrintTo(const AppendCase &c, std::ostream *os) { *os << c.name; }

// The pages a CUDA append wrote (host copies gk, gv) against the CPU backend's append of the same host inputs
// (SPEC §8 there since phase 1), bit for bit; and every slot no kept token maps to still poisoned.
void expect_append_like_cpu(const hope_kv_append_params_t &gpu, const void *k, const void *v, const int64_t *slots,
                            const float *cos, const float *sin, const Tensor &gk, const Tensor &gv) {
  const int64_t num_slots = static_cast<int64_t>(gpu.cache.num_pages) * gpu.cache.page_size;
  const size_t slot_bytes =
      static_cast<size_t>(gpu.cache.num_kv_heads) * gpu.cache.head_dim * hope_test::dtype_size(gpu.cache.dtype);
  std::vector<bool> used(static_cast<size_t>(num_slots), false);
  for (int64_t t = 0; t < gpu.num_tokens; ++t)
    if (slots[t] >= 0) used[static_cast<size_t>(slots[t])] = true;
  for (int64_t s = 0; s < num_slots; ++s)
    if (!used[static_cast<size_t>(s)])
      for (size_t b = s * slot_bytes; b < (s + 1) * slot_bytes; ++b)
        ASSERT_TRUE(gk.bytes[b] == 0xff && gv.bytes[b] == 0xff) << "slot " << s << " written, but no token maps to it";
  Tensor ck, cv;
  ASSERT_NO_FATAL_FAILURE(hope_test::cpu_append(gpu, k, v, slots, cos, sin, &ck, &cv));
  EXPECT_EQ(gk.bytes, ck.bytes) << "GPU and CPU appended keys differ";
  EXPECT_EQ(gv.bytes, cv.bytes) << "GPU and CPU appended values differ";
}

class RotaryKvAppendGpu : public hope_test::GpuTestWithParam<AppendCase> {};

TEST_P(RotaryKvAppendGpu, MatchesFloat64AndCpuBackend) {
  const AppendCase &c = GetParam();
  std::mt19937_64 rng(17 + c.d + c.tokens);
  const int64_t num_slots = static_cast<int64_t>(c.num_pages) * c.page_size;
  std::vector<int64_t> all(num_slots);
  for (int64_t i = 0; i < num_slots; ++i) all[i] = i;
  std::shuffle(all.begin(), all.end(), rng);
  std::vector<int64_t> slots(all.begin(), all.begin() + c.tokens);
  for (int i = 0; i < c.tokens; i += 5) slots[i] = -1 - i;  // skipped tokens
  const int64_t row = static_cast<int64_t>(c.hk) * c.d, k_stride = row + c.k_pad;
  const Tensor k = hope_test::random_tensor(c.dtype, static_cast<size_t>(c.tokens * k_stride), rng);
  const Tensor v = hope_test::random_tensor(c.dtype, static_cast<size_t>(c.tokens * row), rng);
  std::vector<double> pos(c.tokens);
  for (int t = 0; t < c.tokens; ++t) pos[t] = 250000.0 + 3 * t;
  std::vector<float> cs, sn;
  layout_cos_sin(c.layout, c.d, pos, &cs, &sn);

  const size_t es = hope_test::dtype_size(c.dtype), page_bytes = static_cast<size_t>(num_slots * row) * es;
  hope_test::DeviceAppend dev(k, v, slots, cs, sn, page_bytes);
  ASSERT_NO_FATAL_FAILURE(
      dev.upload(k, v, slots, cs, sn, c.dtype, c.num_pages, c.page_size, c.hk, c.d, c.k_pad ? k_stride : 0, c.rope));
  hope_kv_append_params_t &p = dev.params;
  DeviceBuffer &kp = dev.kp, &vp = dev.vp;
  p.rope_pairing = c.layout.pairing;
  p.rotary_dim = c.layout.rotary_dim;
  ASSERT_HOPE_OK(hope_kv_append(&p, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  Tensor gk(c.dtype, static_cast<size_t>(num_slots * row)), gv(c.dtype, gk.size());
  ASSERT_CUDA(kp.download(gk.data(), page_bytes));
  ASSERT_CUDA(vp.download(gv.data(), page_bytes));
  EXPECT_TRUE(kp.guard_intact() && vp.guard_intact()) << "append wrote past the cache";

  // The kept tokens' slots against the float64 rotation (or the input itself without cos/sin).
  const std::vector<double> k_rows = hope_test::strided_rows(k, c.tokens, row, k_stride), v_rows = v.values();
  const std::vector<double> k_ref = c.rope ? rotate_ref(c.layout, k_rows, c.tokens, c.hk, c.d, cs, sn) : k_rows;
  std::vector<double> got_k, in_k, ref_k, got_v, in_v;
  for (int t = 0; t < c.tokens; ++t) {
    if (slots[t] < 0) continue;
    for (int64_t e = 0; e < row; ++e) {
      got_k.push_back(gk.get(slots[t] * row + e));
      got_v.push_back(gv.get(slots[t] * row + e));
      in_k.push_back(k_rows[t * row + e]);
      ref_k.push_back(k_ref[t * row + e]);
      in_v.push_back(v_rows[t * row + e]);
    }
  }
  if (c.rope) EXPECT_TRUE(rotated_rows_match(c.layout, c.dtype, c.d, got_k, in_k, ref_k)) << "keys";
  else EXPECT_EQ(got_k, in_k) << "keys stored as given without cos/sin";
  EXPECT_EQ(got_v, in_v) << "values";
  expect_append_like_cpu(p, k.data(), v.data(), slots.data(), c.rope ? cs.data() : nullptr,
                         c.rope ? sn.data() : nullptr, gk, gv);
}

std::vector<AppendCase> append_cases() {
  const int f16 = HOPE_DTYPE_FLOAT16, bf16 = HOPE_DTYPE_BFLOAT16;
  return {
      {"glm_bf16_hk4_d128_page16_stride8", kGlm128, bf16, 4, 128, 16, 9, 129, true, 8},
      {"inter34_f16_hk3_d34_page5_stride6", kInter34, f16, 3, 34, 5, 7, 31, true, 6},
      {"rothalf2_bf16_hk2_d34_page7_stride3", kHalf2, bf16, 2, 34, 7, 5, 20, true, 3},
      {"ernie_f16_hk1_d128_page3", kErnie128, f16, 1, 128, 3, 13, 37, true, 0},
      {"glm_bf16_hk2_d128_norope_vector_copy", kGlm128, bf16, 2, 128, 16, 4, 45, false, 0},
  };
}

INSTANTIATE_TEST_SUITE_P(Models, RotaryKvAppendGpu, ::testing::ValuesIn(append_cases()),
                         [](const ::testing::TestParamInfo<AppendCase> &info) { return info.param.name; });

// ---- kv_append and decode ------------------------------------------------------------------------------------

struct DecodeCase {
  std::string name;
  Layout layout;
  hope_ref::PagedDecodeCase paged;  // shapes; its rope flag is off (cos/sin come from the layout here)
};
void PrintTo(const DecodeCase &c, std::ostream *os) { *os << c.name; }

DecodeCase decode_case(const Layout &l, int dtype, int hq, int hk, int d, int page_size, std::vector<int32_t> nq,
                       std::vector<int32_t> lens, bool causal, int splits, bool with_lse = true) {
  DecodeCase c;
  c.layout = l;
  c.paged = hope_test::make_paged_case("", dtype, hq, hk, d, page_size, std::move(nq), std::move(lens), causal,
                                       splits, false, 0, with_lse);
  c.name = std::string(l.name) + "_" + dtype_tag(dtype) + "_d" + std::to_string(d) + "_r" +
           std::to_string(rot_of(l, d)) + (l.pairing ? "_interleaved" : "_rotatehalf") + "_gqa" +
           std::to_string(hq / hk) + "_page" + std::to_string(page_size) + (causal ? "_causal" : "_full") +
           (splits ? "_split" + std::to_string(splits) : "_planned") + (with_lse ? "" : "_nolse");
  c.paged.name = c.name;
  return c;
}

class RotaryDecodeGpu : public hope_test::GpuTestWithParam<DecodeCase> {};

// hope_kv_append rotates the keys into the pages with the layout (against the float64 rotation and the CPU
// backend, bit for bit), then hope_decode_forward rotates q the same way and attends over those pages.
TEST_P(RotaryDecodeGpu, AppendAndDecodeMatchFloat64) {
  const Layout &l = GetParam().layout;
  const hope_ref::PagedDecodeCase &c = GetParam().paged;
  const hope_ref::PagedDecodeData d = hope_ref::make_paged_decode(c, 9100 + c.hq * 7 + c.head_dim);
  const int dt = c.dtype, hd = c.head_dim;
  const size_t es = hope_test::dtype_size(dt);
  std::vector<float> cos_q, sin_q, cos_k, sin_k;
  decode_cos_sin(l, c, d, &cos_q, &sin_q, &cos_k, &sin_k);

  const Tensor k = hope_test::to_tensor(dt, d.k), v = hope_test::to_tensor(dt, d.v), q = hope_test::to_tensor(dt, d.q);
  const int64_t num_slots = static_cast<int64_t>(d.num_pages) * c.page_size;
  const size_t row = static_cast<size_t>(c.hk) * hd, page_elems = static_cast<size_t>(num_slots) * row;
  const size_t out_elems = static_cast<size_t>(d.total_q) * c.hq * hd, lse_elems = static_cast<size_t>(c.hq) * d.total_q;
  auto at_least_1 = [](size_t n) { return std::max<size_t>(n, 1); };
  DeviceBuffer kp(page_elems * es), vp(page_elems * es), dk(at_least_1(k.bytes.size())),
      dv(at_least_1(v.bytes.size())), dq(at_least_1(q.bytes.size())), dslots(at_least_1(d.slots.size() * 8)),
      dcos_k(at_least_1(cos_k.size() * 4)), dsin_k(at_least_1(sin_k.size() * 4)),
      dcos_q(at_least_1(cos_q.size() * 4)), dsin_q(at_least_1(sin_q.size() * 4)), dcu(d.cu_q.size() * 4),
      dlens(at_least_1(c.lens.size() * 4)), dtable(at_least_1(d.page_table.size() * 4)),
      dout(at_least_1(out_elems * es)), dlse(at_least_1(lse_elems * 4));
  for (const DeviceBuffer *b : {&kp, &vp, &dk, &dv, &dq, &dslots, &dcos_k, &dsin_k, &dcos_q, &dsin_q, &dcu, &dlens,
                                &dtable, &dout, &dlse})
    ASSERT_TRUE(b->ok());
  ASSERT_CUDA(dk.upload(k.data(), k.bytes.size()));
  ASSERT_CUDA(dv.upload(v.data(), v.bytes.size()));
  ASSERT_CUDA(dq.upload(q.data(), q.bytes.size()));
  ASSERT_CUDA(dslots.upload(d.slots.data(), d.slots.size() * 8));
  ASSERT_CUDA(dcos_k.upload(cos_k.data(), cos_k.size() * 4));
  ASSERT_CUDA(dsin_k.upload(sin_k.data(), sin_k.size() * 4));
  ASSERT_CUDA(dcos_q.upload(cos_q.data(), cos_q.size() * 4));
  ASSERT_CUDA(dsin_q.upload(sin_q.data(), sin_q.size() * 4));
  ASSERT_CUDA(dcu.upload(d.cu_q.data(), d.cu_q.size() * 4));
  ASSERT_CUDA(dlens.upload(c.lens.data(), c.lens.size() * 4));
  ASSERT_CUDA(dtable.upload(d.page_table.data(), d.page_table.size() * 4));

  // 1. Append into poisoned pages.
  hope_kv_append_params_t ap;
  std::memset(&ap, 0, sizeof ap);
  ap.backend = HOPE_BACKEND_CUDA;
  ap.cache = hope_test::paged_kv(dt, d.num_pages, c.page_size, c.hk, hd, kp.get(), vp.get());
  ap.num_tokens = d.total_k;
  ap.k = dk.get();
  ap.v = dv.get();
  ap.slot_mapping = dslots.as<int64_t>();
  ap.cos_k = dcos_k.as<float>();
  ap.sin_k = dsin_k.as<float>();
  ap.rope_pairing = l.pairing;
  ap.rotary_dim = l.rotary_dim;
  ASSERT_HOPE_OK(hope_kv_append(&ap, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  Tensor gk(dt, page_elems), gv(dt, page_elems);
  ASSERT_CUDA(kp.download(gk.data(), gk.bytes.size()));
  ASSERT_CUDA(vp.download(gv.data(), gv.bytes.size()));
  EXPECT_TRUE(kp.guard_intact() && vp.guard_intact()) << "append wrote past the cache";
  const std::vector<double> gk_values = gk.values(), gv_values = gv.values();
  const std::vector<double> k_in = k.values();
  EXPECT_TRUE(rotated_rows_match(l, dt, hd, hope_ref::gather_pages(gk_values, c, d), k_in,
                                 rotate_ref(l, k_in, d.total_k, c.hk, hd, cos_k, sin_k)))
      << "appended keys";
  EXPECT_EQ(hope_ref::gather_pages(gv_values, c, d), v.values()) << "appended values";
  expect_append_like_cpu(ap, k.data(), v.data(), d.slots.data(), cos_k.data(), sin_k.data(), gk, gv);

  // 2. Decode over those pages.
  hope_decode_params_t p = hope_test::decode_params(HOPE_BACKEND_CUDA, c, d, ap.cache, dcu.as<int32_t>(),
                                                    dlens.as<int32_t>(), dtable.as<int32_t>(), dq.get(), dout.get());
  p.lse = c.with_lse ? dlse.as<float>() : nullptr;
  p.cos_q = dcos_q.as<float>();
  p.sin_q = dsin_q.as<float>();
  p.rope_pairing = l.pairing;
  p.rotary_dim = l.rotary_dim;
  size_t ws_bytes = 0;
  ASSERT_HOPE_OK(hope_decode_workspace_size(&p, &ws_bytes));
  DeviceBuffer ws(std::max<size_t>(ws_bytes, 1));
  ASSERT_TRUE(ws.ok());
  ASSERT_HOPE_OK(hope_decode_forward(&p, ws_bytes ? ws.get() : nullptr, ws_bytes, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  ASSERT_CUDA(cudaGetLastError());
  Tensor out(dt, out_elems);
  std::vector<float> lse(lse_elems);
  ASSERT_CUDA(dout.download(out.data(), out.bytes.size()));
  ASSERT_CUDA(dlse.download(lse.data(), lse.size() * 4));
  EXPECT_TRUE(dout.guard_intact() && dlse.guard_intact()) << "decode wrote past out or lse";

  expect_decode_matches(l, c, d, q, cos_q, sin_q, gk_values, gv_values, out, lse);
}

std::vector<DecodeCase> decode_cases() {
  const int f16 = HOPE_DTYPE_FLOAT16, bf16 = HOPE_DTYPE_BFLOAT16;
  return {
      decode_case(kGlm128, bf16, 8, 2, 128, 16, {1, 8, 3}, {1, 130, 37}, true, 0),
      decode_case(kErnie128, f16, 7, 1, 128, 16, {2, 1}, {77, 300}, true, 3),
      decode_case(kGlm256, bf16, 4, 1, 256, 32, {1}, {129}, false, 3),
      decode_case(kHalf32, f16, 4, 4, 64, 16, {5, 0, 1}, {40, 9, 1}, true, 0),
      decode_case(kInter34, bf16, 16, 1, 64, 8, {3, 3}, {70, 3}, true, 0, false),
      decode_case(kHalf2, f16, 2, 2, 64, 5, {1}, {9}, false, 1),
      decode_case(kDefault, bf16, 4, 2, 128, 16, {2}, {50}, true, 3),
  };
}

INSTANTIATE_TEST_SUITE_P(Models, RotaryDecodeGpu, ::testing::ValuesIn(decode_cases()),
                         [](const ::testing::TestParamInfo<DecodeCase> &info) { return info.param.name; });

}  // namespace
