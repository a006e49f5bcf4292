// test_serving_gpu.cc — the serving path on the CUDA backend: hope_kv_append, hope_decode_forward (planned
// and forced split-KV) and hope_merge_states against the float64 reference and against the CPU backend, with
// outputs poisoned and guard bytes after every output. Every test skips without a GPU (hope_test::GpuTest).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gpu_util.h"
#include "kv_append_gpu_util.h"
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

using hope_test::DeviceBuffer;

double out_tol(int dtype) { return dtype == HOPE_DTYPE_FLOAT16 ? 2e-3 : 1e-2; }
double lse_tol(int dtype) { return dtype == HOPE_DTYPE_FLOAT16 ? 5e-3 : 2e-2; }


// ---- decode -----------------------------------------------------------------------------------------------

class DecodeGpu : public hope_test::GpuTestWithParam<PagedDecodeCase> {};

TEST_P(DecodeGpu, MatchesFloat64AndCpuBackend) {
  const PagedDecodeCase &c = GetParam();
  const PagedDecodeData d = hope_ref::make_paged_decode(c, 4321 + c.hq * 7 + c.head_dim);
  const size_t es = hope_test::dtype_size(c.dtype);
  const size_t page_elems = static_cast<size_t>(d.num_pages) * c.page_size * c.hk * c.head_dim;
  const size_t out_elems = static_cast<size_t>(d.total_q) * c.hq * c.head_dim;
  const size_t lse_elems = static_cast<size_t>(c.hq) * d.total_q;
  Tensor k = to_tensor(c.dtype, d.k), v = to_tensor(c.dtype, d.v);
  // q rows q_row_stride apart, the padding poisoned (NaN) so a read of it would show
  const int64_t q_width = static_cast<int64_t>(c.hq) * c.head_dim, q_stride = q_width + c.q_pad;
  Tensor q(c.dtype, static_cast<size_t>(d.total_q * q_stride));
  q.poison();
  for (int64_t t = 0; t < d.total_q; ++t)
    for (int64_t i = 0; i < q_width; ++i) q.set(static_cast<size_t>(t * q_stride + i), d.q[t * q_width + i]);

  // Device inputs.
  DeviceBuffer kp(page_elems * es), vp(page_elems * es), dk(std::max<size_t>(k.bytes.size(), 1)),
      dv(std::max<size_t>(v.bytes.size(), 1)), dq(std::max<size_t>(q.bytes.size(), 1)),
      dslots(std::max<size_t>(d.slots.size() * 8, 1)), dcos_k(std::max<size_t>(d.cos_k.size() * 4, 1)),
      dsin_k(std::max<size_t>(d.sin_k.size() * 4, 1)), dcos_q(std::max<size_t>(d.cos_q.size() * 4, 1)),
      dsin_q(std::max<size_t>(d.sin_q.size() * 4, 1)), dcu(d.cu_q.size() * 4),
      dlens(std::max<size_t>(c.lens.size() * 4, 1)), dtable(std::max<size_t>(d.page_table.size() * 4, 1)),
      dout(std::max<size_t>(out_elems * es, 1)), dlse(std::max<size_t>(lse_elems * 4, 1));
  for (const DeviceBuffer *b : {&kp, &vp, &dk, &dv, &dq, &dslots, &dcos_k, &dsin_k, &dcos_q, &dsin_q, &dcu, &dlens,
                                &dtable, &dout, &dlse})
    ASSERT_TRUE(b->ok()) << "cudaMalloc failed";
  ASSERT_CUDA(dk.upload(k.data(), k.bytes.size()));
  ASSERT_CUDA(dv.upload(v.data(), v.bytes.size()));
  ASSERT_CUDA(dq.upload(q.data(), q.bytes.size()));
  ASSERT_CUDA(dslots.upload(d.slots.data(), d.slots.size() * 8));
  ASSERT_CUDA(dcos_k.upload(d.cos_k.data(), d.cos_k.size() * 4));
  ASSERT_CUDA(dsin_k.upload(d.sin_k.data(), d.sin_k.size() * 4));
  ASSERT_CUDA(dcos_q.upload(d.cos_q.data(), d.cos_q.size() * 4));
  ASSERT_CUDA(dsin_q.upload(d.sin_q.data(), d.sin_q.size() * 4));
  ASSERT_CUDA(dcu.upload(d.cu_q.data(), d.cu_q.size() * 4));
  ASSERT_CUDA(dlens.upload(c.lens.data(), c.lens.size() * 4));
  ASSERT_CUDA(dtable.upload(d.page_table.data(), d.page_table.size() * 4));

  // Append on the GPU and on the CPU; the pages must agree.
  hope_paged_kv_t gcache{};
  gcache = paged_kv(c.dtype, d.num_pages, c.page_size, c.hk, c.head_dim, kp.get(), vp.get());
  hope_kv_append_params_t ap{};
  ap.backend = HOPE_BACKEND_CUDA;
  ap.cache = gcache;
  ap.num_tokens = d.total_k;
  ap.k = dk.get();
  ap.v = dv.get();
  ap.slot_mapping = dslots.as<int64_t>();
  ap.cos_k = c.rope ? dcos_k.as<float>() : nullptr;
  ap.sin_k = c.rope ? dsin_k.as<float>() : nullptr;
  ASSERT_HOPE_OK(hope_kv_append(&ap, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());

  Tensor ck, cv;
  ASSERT_NO_FATAL_FAILURE(hope_test::cpu_append(ap, k.data(), v.data(), d.slots.data(),
                                                c.rope ? d.cos_k.data() : nullptr, c.rope ? d.sin_k.data() : nullptr,
                                                &ck, &cv));
  Tensor gk(c.dtype, page_elems), gv(c.dtype, page_elems);
  ASSERT_CUDA(kp.download(gk.data(), gk.bytes.size()));
  ASSERT_CUDA(vp.download(gv.data(), gv.bytes.size()));
  EXPECT_TRUE(hope_test::all_close(gk.values(), ck.values(), 1e-3, c.dtype == HOPE_DTYPE_FLOAT16 ? 1.0 / 1024 : 1.0 / 128))
      << "GPU and CPU appended keys differ";
  EXPECT_TRUE(hope_test::all_close(gv.values(), cv.values(), 0.0)) << "GPU and CPU appended values differ";
  EXPECT_TRUE(kp.guard_intact() && vp.guard_intact()) << "append wrote past the cache";

  // Decode on the GPU.
  hope_decode_params_t p = hope_test::decode_params(HOPE_BACKEND_CUDA, c, d, gcache, dcu.as<int32_t>(),
                                                    dlens.as<int32_t>(), dtable.as<int32_t>(), dq.get(), dout.get());
  p.q_row_stride = c.q_pad ? q_stride : 0;
  p.lse = c.with_lse ? dlse.as<float>() : nullptr;
  p.cos_q = c.rope ? dcos_q.as<float>() : nullptr;
  p.sin_q = c.rope ? dsin_q.as<float>() : nullptr;
  size_t ws_bytes = 0;
  ASSERT_HOPE_OK(hope_decode_workspace_size(&p, &ws_bytes));
  if (c.num_splits == 1) EXPECT_EQ(ws_bytes, 0u);
  DeviceBuffer ws(std::max<size_t>(ws_bytes, 1));
  ASSERT_TRUE(ws.ok());
  ASSERT_HOPE_OK(hope_decode_forward(&p, ws_bytes ? ws.get() : nullptr, ws_bytes, nullptr));
  ASSERT_CUDA(cudaGetLastError());
  ASSERT_CUDA(cudaDeviceSynchronize());
  Tensor out(c.dtype, out_elems);
  std::vector<float> lse(lse_elems);
  ASSERT_CUDA(dout.download(out.data(), out.bytes.size()));
  ASSERT_CUDA(dlse.download(lse.data(), lse.size() * 4));
  EXPECT_TRUE(dout.guard_intact()) << "decode wrote past out";
  EXPECT_TRUE(dlse.guard_intact()) << "decode wrote past lse";

  // Float64 reference over the pages as the GPU stored them.
  std::vector<double> q_rot = hope_ref::rotate_rows(to_double(d.q), d.total_q, c.hq, c.head_dim,
                                                    c.rope ? d.cos_q.data() : nullptr,
                                                    c.rope ? d.sin_q.data() : nullptr);
  for (auto &x : q_rot) x = hope_test::round_to(c.dtype, static_cast<float>(x));
  std::vector<double> ref_out, ref_lse;
  hope_ref::paged_decode(c, d, q_rot, gk.values(), gv.values(), 0.0, &ref_out, &ref_lse);
  const std::vector<double> got = out.values();
  for (double x : got) ASSERT_TRUE(std::isfinite(x)) << "non-finite output";
  EXPECT_LE(hope_test::relative_error(got, ref_out), out_tol(c.dtype));
  EXPECT_TRUE(hope_test::all_close(got, ref_out, 8 * out_tol(c.dtype), 8 * out_tol(c.dtype)));
  const std::vector<double> got_lse(lse.begin(), lse.end());
  if (c.with_lse) {
    EXPECT_TRUE(hope_test::all_close(got_lse, ref_lse, lse_tol(c.dtype)));
  } else {
    std::vector<uint8_t> raw(lse.size() * 4);
    std::memcpy(raw.data(), lse.data(), raw.size());
    EXPECT_TRUE(std::all_of(raw.begin(), raw.end(), [](uint8_t b) { return b == 0xff; }))
        << "lse written although params.lse was NULL";
  }

  // The CPU backend on the same pages.
  Tensor cout_(c.dtype, out_elems);
  cout_.poison();
  std::vector<float> clse(lse_elems, std::nanf(""));
  hope_decode_params_t cp = p;
  cp.backend = HOPE_BACKEND_CPU;
  cp.cache.k_pages = gk.data();
  cp.cache.v_pages = gv.data();
  cp.cu_seqlens_q = d.cu_q.data();
  cp.seq_lens = c.lens.data();
  cp.page_table = d.page_table.data();
  cp.q = q.data();
  cp.out = cout_.data();
  cp.lse = clse.data();
  cp.cos_q = c.rope ? d.cos_q.data() : nullptr;
  cp.sin_q = c.rope ? d.sin_q.data() : nullptr;
  size_t cws_bytes = 0;
  ASSERT_HOPE_OK(hope_decode_workspace_size(&cp, &cws_bytes));
  std::vector<double> cws(cws_bytes / 8 + 1);
  ASSERT_HOPE_OK(hope_decode_forward(&cp, cws.data(), cws_bytes, nullptr));
  EXPECT_LE(hope_test::relative_error(got, cout_.values()), 2 * out_tol(c.dtype)) << "GPU vs CPU backend";
  if (c.with_lse)
    EXPECT_TRUE(hope_test::all_close(got_lse, std::vector<double>(clse.begin(), clse.end()), 2 * lse_tol(c.dtype)));
}

INSTANTIATE_TEST_SUITE_P(
    Decode, DecodeGpu,
    ::testing::Values(
        make_paged_case("bf16_d128_gqa7_q1_len1037_1_129_page16_causal_planned", HOPE_DTYPE_BFLOAT16, 28, 4, 128, 16,
                        {1, 1, 1}, {1037, 1, 129}, true, 0),
        make_paged_case("f16_d64_gqa4_q8_len8_130_517_page16_causal_split3", HOPE_DTYPE_FLOAT16, 4, 1, 64, 16,
                        {8, 8, 8}, {8, 130, 517}, true, 3),
        make_paged_case("bf16_d256_gqa7_q8_len1037_page32_causal_split3", HOPE_DTYPE_BFLOAT16, 7, 1, 256, 32, {8},
                        {1037}, true, 3),
        make_paged_case("f16_d64_gqa4_empty_sequences_split3", HOPE_DTYPE_FLOAT16, 8, 2, 64, 16, {1, 0, 2, 0},
                        {33, 0, 2, 17}, true, 3),
        make_paged_case("bf16_d128_gqa1_q1_len1_2_3_split3_more_splits_than_keys", HOPE_DTYPE_BFLOAT16, 2, 2, 128, 16,
                        {1, 1, 1}, {1, 2, 3}, true, 3),
        make_paged_case("f16_d128_gqa7_q5_len129_norope_noncausal_split3", HOPE_DTYPE_FLOAT16, 7, 1, 128, 16, {5},
                        {129}, false, 3, false),
        make_paged_case("bf16_d128_gqa7_q1_len32768_page16_planned", HOPE_DTYPE_BFLOAT16, 28, 4, 128, 16, {1}, {32768},
                        true, 0),
        make_paged_case("f16_d128_gqa4_q8_len4099_page16_noncausal_split1", HOPE_DTYPE_FLOAT16, 32, 8, 128, 16, {8, 2},
                        {4099, 2}, false, 1),
        make_paged_case("bf16_d64_gqa16_q3_len700_3_page8_causal_planned", HOPE_DTYPE_BFLOAT16, 16, 1, 64, 8, {3, 3},
                        {700, 3}, true, 0),
        make_paged_case("f16_d256_gqa1_q2_len129_page1_causal_split3", HOPE_DTYPE_FLOAT16, 2, 2, 256, 1, {2}, {129},
                        true, 3),
        make_paged_case("bf16_d128_gqa4_q2_qstride_nolse_split3", HOPE_DTYPE_BFLOAT16, 8, 2, 128, 16, {2, 1}, {45, 300},
                        true, 3, true, 40, false),
        make_paged_case("bf16_d128_gqa7_q1_batch64_len1_to_1037_planned", HOPE_DTYPE_BFLOAT16, 28, 4, 128, 16,
                        std::vector<int32_t>(64, 1),
                        [] {
                    std::vector<int32_t> l(64);
                    for (int i = 0; i < 64; ++i) l[i] = 1 + (i * 331) % 1037;
                    return l;
                        }(),
                        true, 0)),
    [](const ::testing::TestParamInfo<PagedDecodeCase> &info) { return info.param.name; });

// ---- kv append ----------------------------------------------------------------------------------------------

struct AppendCase {
  int dtype, hk, d, page_size, num_pages, tokens;
  bool rope;
  int k_pad;
  std::string name;
};
void PrintTo(const AppendCase &c, std::ostream *os) { *os << c.name; }

class KvAppendGpu : public hope_test::GpuTestWithParam<AppendCase> {};

TEST_P(KvAppendGpu, MatchesCpuBackendAndSkipsNegativeSlots) {
  const AppendCase &c = GetParam();
  std::mt19937_64 rng(5 + c.d);
  const int64_t num_slots = static_cast<int64_t>(c.num_pages) * c.page_size;
  std::vector<int64_t> all(num_slots);
  for (int64_t i = 0; i < num_slots; ++i) all[i] = i;
  std::shuffle(all.begin(), all.end(), rng);
  std::vector<int64_t> slots(all.begin(), all.begin() + c.tokens);
  for (int i = 0; i < c.tokens; i += 5) slots[i] = -1 - i;
  const int row = c.hk * c.d, half = c.d / 2;
  const int64_t k_stride = row + c.k_pad;
  Tensor k = hope_test::random_tensor(c.dtype, static_cast<size_t>(c.tokens) * k_stride, rng);
  Tensor v = hope_test::random_tensor(c.dtype, static_cast<size_t>(c.tokens) * row, rng);
  std::vector<float> cs(static_cast<size_t>(c.tokens) * half), sn(cs.size());
  for (size_t i = 0; i < cs.size(); ++i) {
    const double a = (250000.0 + static_cast<double>(i)) * std::pow(1e6, -2.0 * (i % half) / c.d);
    cs[i] = static_cast<float>(std::cos(a));
    sn[i] = static_cast<float>(std::sin(a));
  }
  const size_t es = hope_test::dtype_size(c.dtype), page_bytes = static_cast<size_t>(num_slots) * row * es;
  hope_test::DeviceAppend dev(k, v, slots, cs, sn, page_bytes);
  ASSERT_NO_FATAL_FAILURE(
      dev.upload(k, v, slots, cs, sn, c.dtype, c.num_pages, c.page_size, c.hk, c.d, c.k_pad ? k_stride : 0, c.rope));
  const hope_kv_append_params_t &p = dev.params;
  DeviceBuffer &kp = dev.kp, &vp = dev.vp;
  ASSERT_HOPE_OK(hope_kv_append(&p, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  Tensor gk(c.dtype, static_cast<size_t>(num_slots) * row), gv(c.dtype, gk.size());
  ASSERT_CUDA(kp.download(gk.data(), page_bytes));
  ASSERT_CUDA(vp.download(gv.data(), page_bytes));
  EXPECT_TRUE(kp.guard_intact() && vp.guard_intact());

  Tensor ck, cv;
  ASSERT_NO_FATAL_FAILURE(hope_test::cpu_append(p, k.data(), v.data(), slots.data(), c.rope ? cs.data() : nullptr,
                                                c.rope ? sn.data() : nullptr, &ck, &cv));
  // Poisoned (NaN) slots must stay NaN on the GPU too: all_close requires NaN where the CPU left NaN.
  EXPECT_TRUE(hope_test::all_close(gk.values(), ck.values(), 1e-6, c.dtype == HOPE_DTYPE_FLOAT16 ? 1.0 / 1024 : 1.0 / 128));
  EXPECT_TRUE(hope_test::all_close(gv.values(), cv.values(), 0.0));
  EXPECT_EQ(std::memcmp(gv.data(), cv.data(), page_bytes), 0) << "values (and untouched slots) must be bit-equal";
}

INSTANTIATE_TEST_SUITE_P(
    KvAppend, KvAppendGpu,
    ::testing::Values(AppendCase{HOPE_DTYPE_BFLOAT16, 4, 128, 16, 9, 129, true, 0, "bf16_hk4_d128_page16_rope_vec"},
                      AppendCase{HOPE_DTYPE_FLOAT16, 8, 64, 16, 300, 4097, true, 0, "f16_hk8_d64_page16_rope_vec_4097"},
                      AppendCase{HOPE_DTYPE_FLOAT16, 3, 34, 5, 7, 31, true, 6, "f16_hk3_d34_page5_rope_scalar"},
                      AppendCase{HOPE_DTYPE_BFLOAT16, 2, 128, 7, 3, 20, true, 4, "bf16_hk2_d128_unaligned_stride"},
                      AppendCase{HOPE_DTYPE_BFLOAT16, 2, 64, 7, 3, 20, false, 128, "bf16_hk2_d64_page7_norope"}),
    [](const ::testing::TestParamInfo<AppendCase> &info) { return info.param.name; });

// ---- merge states -------------------------------------------------------------------------------------------

class MergeStatesGpu : public hope_test::GpuTestWithParam<int> {};

TEST_P(MergeStatesGpu, MatchesFloat64WithInfiniteSides) {
  const int dtype = GetParam();
  const int64_t tokens = 129;
  const int heads = 3, d = 128;
  std::mt19937_64 rng(11 + dtype);
  const size_t n_o = static_cast<size_t>(tokens) * heads * d, n_l = static_cast<size_t>(tokens) * heads;
  Tensor oa = hope_test::random_tensor(dtype, n_o, rng), ob = hope_test::random_tensor(dtype, n_o, rng);
  std::normal_distribution<float> nd(0.f, 3.f);
  std::vector<float> la(n_l), lb(n_l);
  for (size_t i = 0; i < n_l; ++i) {
    la[i] = nd(rng);
    lb[i] = nd(rng);
  }
  for (int h = 0; h < heads; ++h) {
    la[h * tokens + 0] = -INFINITY;
    lb[h * tokens + 1] = -INFINITY;
    la[h * tokens + 2] = lb[h * tokens + 2] = -INFINITY;
    la[h * tokens + 3] = std::nanf("");  // NaN or +inf on either side: NaN out and lse, as on the CPU backend
    lb[h * tokens + 4] = std::nanf("");
    lb[h * tokens + 5] = INFINITY;
  }
  std::vector<double> ra = oa.values(), rb = ob.values();
  for (int64_t t = 0; t < 3; ++t)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < d; ++i) {
        const size_t e = (static_cast<size_t>(t) * heads + h) * d + i;
        if (la[h * tokens + t] == -INFINITY) { oa.set(e, std::nanf("")); ra[e] = 0.0; }
        if (lb[h * tokens + t] == -INFINITY) { ob.set(e, std::nanf("")); rb[e] = 0.0; }
      }
  std::vector<double> ref_o, ref_l;
  hope_ref::merge_states(tokens, heads, d, ra, std::vector<double>(la.begin(), la.end()), rb,
                         std::vector<double>(lb.begin(), lb.end()), &ref_o, &ref_l);
  const double otol = dtype == HOPE_DTYPE_FLOAT32 ? 1e-6 : dtype == HOPE_DTYPE_FLOAT16 ? 2e-3 : 1.6e-2;
  for (int alias = 0; alias < 2; ++alias) {
    DeviceBuffer da(oa.bytes.size()), db(ob.bytes.size()), dla(n_l * 4), dlb(n_l * 4), dout(oa.bytes.size()),
        dlo(n_l * 4);
    for (const DeviceBuffer *b : {&da, &db, &dla, &dlb, &dout, &dlo}) ASSERT_TRUE(b->ok());
    ASSERT_CUDA(da.upload(oa.data(), oa.bytes.size()));
    ASSERT_CUDA(db.upload(ob.data(), ob.bytes.size()));
    ASSERT_CUDA(dla.upload(la.data(), n_l * 4));
    ASSERT_CUDA(dlb.upload(lb.data(), n_l * 4));
    hope_merge_params_t p{};
    p.backend = HOPE_BACKEND_CUDA;
    p.dtype = dtype;
    p.num_tokens = tokens;
    p.num_heads = heads;
    p.head_dim = d;
    p.o_a = da.get();
    p.o_b = db.get();
    p.lse_a = dla.as<float>();
    p.lse_b = dlb.as<float>();
    p.out = alias ? da.get() : dout.get();  // alias 1 merges in place: out = o_a and lse_out = lse_a
    p.lse_out = alias ? dla.as<float>() : dlo.as<float>();
    ASSERT_HOPE_OK(hope_merge_states(&p, nullptr));
    ASSERT_CUDA(cudaDeviceSynchronize());
    Tensor got(dtype, n_o);
    std::vector<float> lo(n_l);
    ASSERT_CUDA((alias ? da : dout).download(got.data(), got.bytes.size()));
    ASSERT_CUDA((alias ? dla : dlo).download(lo.data(), n_l * 4));
    EXPECT_TRUE(hope_test::all_close(got.values(), ref_o, otol, otol)) << "alias " << alias;
    EXPECT_TRUE(hope_test::all_close(std::vector<double>(lo.begin(), lo.end()), ref_l, 1e-5, 1e-6));
    EXPECT_TRUE(dout.guard_intact() && dlo.guard_intact() && da.guard_intact() && dla.guard_intact());
  }
}

INSTANTIATE_TEST_SUITE_P(Merge, MergeStatesGpu,
                         ::testing::Values(HOPE_DTYPE_FLOAT16, HOPE_DTYPE_BFLOAT16, HOPE_DTYPE_FLOAT32),
                         [](const ::testing::TestParamInfo<int> &info) {
                           return std::string(hope_test::dtype_name(info.param));
                         });

// ---- unsupported and bad input on the CUDA backend -------------------------------------------------------

class ServingGpu : public hope_test::GpuTest {};

TEST_F(ServingGpu, RejectsUnsupportedAndBadInput) {
  DeviceBuffer pages(4 * 4 * 2 * 96 * 4), buf(1 << 16);
  ASSERT_TRUE(pages.ok() && buf.ok());
  hope_kv_append_params_t a{};
  a.backend = HOPE_BACKEND_CUDA;
  a.cache.dtype = HOPE_DTYPE_FLOAT32;
  a.cache.num_pages = 4;
  a.cache.page_size = 4;
  a.cache.num_kv_heads = 2;
  a.cache.head_dim = 64;
  a.cache.k_pages = a.cache.v_pages = pages.get();
  a.num_tokens = 1;
  a.k = a.v = buf.get();
  a.slot_mapping = buf.as<int64_t>();
  EXPECT_HOPE_FAIL(hope_kv_append(&a, nullptr), HOPE_ERROR_NOT_SUPPORTED);  // float32 cache on CUDA
  a.cache.dtype = HOPE_DTYPE_BFLOAT16;
  a.cache.head_dim = 63;
  EXPECT_HOPE_FAIL(hope_kv_append(&a, nullptr), HOPE_ERROR_INVALID_VALUE);
  a.cache.head_dim = 64;
  a.k_row_stride = 3;
  EXPECT_HOPE_FAIL(hope_kv_append(&a, nullptr), HOPE_ERROR_INVALID_VALUE);

  hope_decode_params_t p{};
  p.backend = HOPE_BACKEND_CUDA;
  p.cache = a.cache;
  p.batch = 1;
  p.num_q_heads = 4;
  p.cu_seqlens_q = p.seq_lens = p.page_table = buf.as<int32_t>();
  p.max_seqlen_q = 1;
  p.max_seqlen_k = 16;
  p.max_pages_per_seq = 4;
  p.q = p.out = buf.get();
  size_t ws = 0;
  p.cache.head_dim = 96;
  EXPECT_HOPE_FAIL(hope_decode_workspace_size(&p, &ws), HOPE_ERROR_NOT_SUPPORTED);
  EXPECT_HOPE_FAIL(hope_decode_forward(&p, nullptr, 0, nullptr), HOPE_ERROR_NOT_SUPPORTED);
  p.cache.head_dim = 64;
  p.cache.dtype = HOPE_DTYPE_FLOAT32;
  EXPECT_HOPE_FAIL(hope_decode_forward(&p, nullptr, 0, nullptr), HOPE_ERROR_NOT_SUPPORTED);
  p.cache.dtype = HOPE_DTYPE_FLOAT16;
  p.num_q_heads = 3;
  EXPECT_HOPE_FAIL(hope_decode_forward(&p, nullptr, 0, nullptr), HOPE_ERROR_INVALID_VALUE);
  p.num_q_heads = 4;
  p.max_seqlen_q = 9;
  EXPECT_HOPE_FAIL(hope_decode_forward(&p, nullptr, 0, nullptr), HOPE_ERROR_INVALID_VALUE);
  p.max_seqlen_q = 1;
  p.num_splits = 3;
  ASSERT_HOPE_OK(hope_decode_workspace_size(&p, &ws));
  EXPECT_GT(ws, 0u);
  EXPECT_HOPE_FAIL(hope_decode_forward(&p, buf.get(), ws - 1, nullptr), HOPE_ERROR_OUT_OF_MEMORY);

  hope_merge_params_t m{};
  m.backend = HOPE_BACKEND_CUDA;
  m.dtype = 5;
  m.num_tokens = 1;
  m.num_heads = 1;
  m.head_dim = 8;
  m.o_a = m.o_b = m.out = buf.get();
  m.lse_a = m.lse_b = buf.as<float>();
  EXPECT_HOPE_FAIL(hope_merge_states(&m, nullptr), HOPE_ERROR_INVALID_VALUE);
  m.dtype = HOPE_DTYPE_FLOAT16;
  m.o_b = nullptr;
  EXPECT_HOPE_FAIL(hope_merge_states(&m, nullptr), HOPE_ERROR_INVALID_VALUE);
}

// Append + decode capture into a CUDA graph: no allocation, synchronisation or host round trip inside.
TEST_F(ServingGpu, DecodeStepIsGraphCapturable) {
  PagedDecodeCase c = make_paged_case("graph", HOPE_DTYPE_BFLOAT16, 8, 2, 128, 16, {1, 1}, {300, 77}, true, 3);
  const PagedDecodeData d = hope_ref::make_paged_decode(c, 77);
  const size_t page_bytes = static_cast<size_t>(d.num_pages) * c.page_size * c.hk * c.head_dim * 2;
  DeviceBuffer kp(page_bytes), vp(page_bytes), dq(d.q.size() * 2), dcu(d.cu_q.size() * 4), dlens(c.lens.size() * 4),
      dtable(d.page_table.size() * 4), dout(d.q.size() * 2), dslots(8), dkv(c.hk * c.head_dim * 2);
  for (const DeviceBuffer *b : {&kp, &vp, &dq, &dcu, &dlens, &dtable, &dout, &dslots, &dkv}) ASSERT_TRUE(b->ok());
  ASSERT_CUDA(cudaMemset(kp.get(), 0, page_bytes));
  ASSERT_CUDA(cudaMemset(vp.get(), 0, page_bytes));
  ASSERT_CUDA(cudaMemset(dq.get(), 0, d.q.size() * 2));
  ASSERT_CUDA(cudaMemset(dkv.get(), 0, dkv.bytes()));
  ASSERT_CUDA(dcu.upload(d.cu_q.data(), d.cu_q.size() * 4));
  ASSERT_CUDA(dlens.upload(c.lens.data(), c.lens.size() * 4));
  ASSERT_CUDA(dtable.upload(d.page_table.data(), d.page_table.size() * 4));
  const int64_t slot = d.slots[0];
  ASSERT_CUDA(dslots.upload(&slot, 8));
  hope_kv_append_params_t a{};
  a.backend = HOPE_BACKEND_CUDA;
  a.cache = paged_kv(c.dtype, d.num_pages, c.page_size, c.hk, c.head_dim, kp.get(), vp.get());
  a.num_tokens = 1;
  a.k = a.v = dkv.get();
  a.slot_mapping = dslots.as<int64_t>();
  const hope_decode_params_t p = hope_test::decode_params(HOPE_BACKEND_CUDA, c, d, a.cache, dcu.as<int32_t>(),
                                                          dlens.as<int32_t>(), dtable.as<int32_t>(), dq.get(),
                                                          dout.get());  // causal, 3 splits
  size_t ws_bytes = 0;
  ASSERT_HOPE_OK(hope_decode_workspace_size(&p, &ws_bytes));
  DeviceBuffer ws(ws_bytes);
  ASSERT_TRUE(ws.ok());
  cudaStream_t stream;
  ASSERT_CUDA(cudaStreamCreate(&stream));
  ASSERT_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const hope_status_t s1 = hope_kv_append(&a, stream);
  const hope_status_t s2 = hope_decode_forward(&p, ws.get(), ws_bytes, stream);
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  EXPECT_EQ(s1, HOPE_SUCCESS) << hope_last_error();
  EXPECT_EQ(s2, HOPE_SUCCESS) << hope_last_error();
  EXPECT_EQ(end, cudaSuccess) << cudaGetErrorString(end);
  if (graph != nullptr) {
    cudaGraphExec_t exec = nullptr;
    EXPECT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
    if (exec != nullptr) {
      EXPECT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
      EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
      cudaGraphExecDestroy(exec);
    }
    cudaGraphDestroy(graph);
  }
  std::vector<uint16_t> out(d.q.size());
  ASSERT_CUDA(dout.download(out.data(), out.size() * 2));
  for (uint16_t x : out) ASSERT_EQ(x, 0u) << "zero q and v give a zero output";
  ASSERT_CUDA(cudaStreamDestroy(stream));
}

// Element offsets past 2^31: the sequences' pages sit above page 2^31 / (page_size * num_kv_heads * head_dim), so
// an int32 product anywhere in the page/slot/head indexing reads the wrong (poisoned) place. Needs about 9 GB of
// device memory; skipped when it is not free or under HOPE_TEST_QUICK (compute-sanitizer runs).
TEST_F(ServingGpu, DecodeIndexesPagesPast2To31Elements) {
  if (hope_test::quick_mode()) GTEST_SKIP() << "HOPE_TEST_QUICK: 9 GB cache skipped";
  PagedDecodeCase c = make_paged_case("offset", HOPE_DTYPE_BFLOAT16, 8, 1, 128, 16, {2, 1}, {300, 77}, true, 3);
  const PagedDecodeData d = hope_ref::make_paged_decode(c, 2024);
  const int64_t page_elems = static_cast<int64_t>(c.page_size) * c.hk * c.head_dim;
  const int64_t offset_pages = (int64_t{1} << 31) / page_elems + 1;
  const int64_t total_pages = offset_pages + d.num_pages;
  const size_t big_bytes = static_cast<size_t>(total_pages * page_elems) * 2;
  size_t free_bytes = 0, total_bytes = 0;
  ASSERT_CUDA(cudaMemGetInfo(&free_bytes, &total_bytes));
  if (free_bytes < 2 * big_bytes + (size_t{1} << 30)) GTEST_SKIP() << "not enough free device memory";

  // The compact cache (pages 0..num_pages) built by the CPU backend, then copied to pages offset_pages.. on the GPU.
  const size_t compact_elems = static_cast<size_t>(d.num_pages * page_elems);
  Tensor k = to_tensor(c.dtype, d.k), v = to_tensor(c.dtype, d.v), q = to_tensor(c.dtype, d.q);
  Tensor ck(c.dtype, compact_elems), cv(c.dtype, compact_elems);
  ck.poison();
  cv.poison();
  hope_kv_append_params_t ap{};
  ap.backend = HOPE_BACKEND_CPU;
  ap.cache = paged_kv(c.dtype, d.num_pages, c.page_size, c.hk, c.head_dim, ck.data(), cv.data());
  ap.num_tokens = d.total_k;
  ap.k = k.data();
  ap.v = v.data();
  ap.slot_mapping = d.slots.data();
  ap.cos_k = d.cos_k.data();
  ap.sin_k = d.sin_k.data();
  ASSERT_HOPE_OK(hope_kv_append(&ap, nullptr));

  DeviceBuffer kp(big_bytes), vp(big_bytes);
  ASSERT_TRUE(kp.ok() && vp.ok()) << "cudaMalloc of the large cache failed";
  const size_t at = static_cast<size_t>(offset_pages * page_elems) * 2;
  ASSERT_CUDA(cudaMemcpy(kp.as<char>() + at, ck.data(), ck.bytes.size(), cudaMemcpyHostToDevice));
  ASSERT_CUDA(cudaMemcpy(vp.as<char>() + at, cv.data(), cv.bytes.size(), cudaMemcpyHostToDevice));
  std::vector<int32_t> table = d.page_table;
  for (auto &e : table)
    if (e >= 0) e += static_cast<int32_t>(offset_pages);
  const size_t out_elems = static_cast<size_t>(d.total_q) * c.hq * c.head_dim;
  const size_t lse_elems = static_cast<size_t>(c.hq) * d.total_q;
  DeviceBuffer dq(q.bytes.size()), dcos(d.cos_q.size() * 4), dsin(d.sin_q.size() * 4), dcu(d.cu_q.size() * 4),
      dlens(c.lens.size() * 4), dtable(table.size() * 4), dout(out_elems * 2), dlse(lse_elems * 4);
  for (const DeviceBuffer *b : {&dq, &dcos, &dsin, &dcu, &dlens, &dtable, &dout, &dlse}) ASSERT_TRUE(b->ok());
  ASSERT_CUDA(dq.upload(q.data(), q.bytes.size()));
  ASSERT_CUDA(dcos.upload(d.cos_q.data(), d.cos_q.size() * 4));
  ASSERT_CUDA(dsin.upload(d.sin_q.data(), d.sin_q.size() * 4));
  ASSERT_CUDA(dcu.upload(d.cu_q.data(), d.cu_q.size() * 4));
  ASSERT_CUDA(dlens.upload(c.lens.data(), c.lens.size() * 4));
  ASSERT_CUDA(dtable.upload(table.data(), table.size() * 4));

  std::vector<double> q_rot =
      hope_ref::rotate_rows(to_double(d.q), d.total_q, c.hq, c.head_dim, d.cos_q.data(), d.sin_q.data());
  for (auto &x : q_rot) x = hope_test::round_to(c.dtype, static_cast<float>(x));
  std::vector<double> ref_out, ref_lse;
  hope_ref::paged_decode(c, d, q_rot, ck.values(), cv.values(), 0.0, &ref_out, &ref_lse);

  for (int splits : {1, 3}) {
    hope_paged_kv_t cache = ap.cache;
    cache.num_pages = static_cast<int32_t>(total_pages);
    cache.k_pages = kp.get();
    cache.v_pages = vp.get();
    hope_decode_params_t p = hope_test::decode_params(HOPE_BACKEND_CUDA, c, d, cache, dcu.as<int32_t>(),
                                                      dlens.as<int32_t>(), dtable.as<int32_t>(), dq.get(), dout.get());
    p.lse = dlse.as<float>();
    p.cos_q = dcos.as<float>();
    p.sin_q = dsin.as<float>();
    p.num_splits = splits;
    size_t ws_bytes = 0;
    ASSERT_HOPE_OK(hope_decode_workspace_size(&p, &ws_bytes));
    DeviceBuffer ws(std::max<size_t>(ws_bytes, 1));
    ASSERT_TRUE(ws.ok());
    ASSERT_CUDA(cudaMemset(dout.get(), 0xff, out_elems * 2));
    ASSERT_CUDA(cudaMemset(dlse.get(), 0xff, lse_elems * 4));
    ASSERT_HOPE_OK(hope_decode_forward(&p, ws_bytes ? ws.get() : nullptr, ws_bytes, nullptr));
    ASSERT_CUDA(cudaDeviceSynchronize());
    Tensor out(c.dtype, out_elems);
    std::vector<float> lse(lse_elems);
    ASSERT_CUDA(dout.download(out.data(), out.bytes.size()));
    ASSERT_CUDA(dlse.download(lse.data(), lse.size() * 4));
    const std::vector<double> got = out.values();
    EXPECT_LE(hope_test::relative_error(got, ref_out), out_tol(c.dtype)) << splits << " splits";
    EXPECT_TRUE(hope_test::all_close(std::vector<double>(lse.begin(), lse.end()), ref_lse, lse_tol(c.dtype)))
        << splits << " splits";
  }

  // hope_kv_append on the GPU into the same high pages (re-poisoned first) must reproduce the CPU's pages.
  DeviceBuffer dk(k.bytes.size()), dv(v.bytes.size()), dslots(d.slots.size() * 8), dcos_k(d.cos_k.size() * 4),
      dsin_k(d.sin_k.size() * 4);
  for (const DeviceBuffer *b : {&dk, &dv, &dslots, &dcos_k, &dsin_k}) ASSERT_TRUE(b->ok());
  std::vector<int64_t> slots = d.slots;
  for (auto &sl : slots) sl += offset_pages * c.page_size;
  ASSERT_CUDA(dk.upload(k.data(), k.bytes.size()));
  ASSERT_CUDA(dv.upload(v.data(), v.bytes.size()));
  ASSERT_CUDA(dslots.upload(slots.data(), slots.size() * 8));
  ASSERT_CUDA(dcos_k.upload(d.cos_k.data(), d.cos_k.size() * 4));
  ASSERT_CUDA(dsin_k.upload(d.sin_k.data(), d.sin_k.size() * 4));
  ASSERT_CUDA(cudaMemset(kp.as<char>() + at, 0xff, ck.bytes.size()));
  ASSERT_CUDA(cudaMemset(vp.as<char>() + at, 0xff, cv.bytes.size()));
  hope_kv_append_params_t gap = ap;
  gap.backend = HOPE_BACKEND_CUDA;
  gap.cache.num_pages = static_cast<int32_t>(total_pages);
  gap.cache.k_pages = kp.get();
  gap.cache.v_pages = vp.get();
  gap.k = dk.get();
  gap.v = dv.get();
  gap.slot_mapping = dslots.as<int64_t>();
  gap.cos_k = dcos_k.as<float>();
  gap.sin_k = dsin_k.as<float>();
  ASSERT_HOPE_OK(hope_kv_append(&gap, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  Tensor gk(c.dtype, compact_elems), gv(c.dtype, compact_elems);
  ASSERT_CUDA(cudaMemcpy(gk.data(), kp.as<char>() + at, gk.bytes.size(), cudaMemcpyDeviceToHost));
  ASSERT_CUDA(cudaMemcpy(gv.data(), vp.as<char>() + at, gv.bytes.size(), cudaMemcpyDeviceToHost));
  EXPECT_TRUE(hope_test::all_close(gk.values(), ck.values(), 1e-6, 1.0 / 128)) << "GPU append above 2^31 elements";
  EXPECT_EQ(std::memcmp(gv.data(), cv.data(), gv.bytes.size()), 0) << "GPU append of values above 2^31 elements";
}

}  // namespace
