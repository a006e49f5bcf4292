// test_long_sequences.cc — very long sequences and sizes beyond 32-bit indexing.
//  * A 1 048 576-token video prompt (8192 text + 512 frames of 48 x 42 tokens + 8192 text): every position equals
//    the float64 reference (SPEC §1, bit-equal float32) in all three layouts, next_position is right, and cos/sin
//    at the end of the sequence (positions near 2^20 in the sequential layout) are within 2e-6 of double, both from
//    hope_rope_cos_sin and from a host cache filled with positions_ld = the whole sequence.
//  * Token counts beyond 2^31 - 1 (including grids whose int64 product wraps to 0) are refused.
//  * Attention sizes beyond 32-bit element indices: the CUDA backend refuses them with a status (its kernels
//    index in int32) before touching memory; the CPU backend refuses what overflows int64, and really uses 64-bit
//    offsets below that (checked on rows 2^31 + 128 elements apart in a sparse 4 GiB mapping).
#include <sys/mman.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "reference/reference.h"
#include "test_util.h"

namespace {

using hope_test::Tensor;

constexpr int32_t kTextBefore = 8192, kFrames = 512, kGridH = 48, kGridW = 42, kTextAfter = 8192;
constexpr int64_t kTotal = int64_t(kTextBefore) + int64_t(kFrames) * kGridH * kGridW + kTextAfter;
static_assert(kTotal == (int64_t(1) << 20), "the prompt has exactly 2^20 tokens");

hope_segment_t text(int32_t n) {
  hope_segment_t s;
  std::memset(&s, 0, sizeof s);
  s.kind = HOPE_SEGMENT_TEXT;
  s.length = n;
  return s;
}
hope_segment_t video(int32_t t, int32_t h, int32_t w, float scale) {
  hope_segment_t s;
  std::memset(&s, 0, sizeof s);
  s.kind = HOPE_SEGMENT_VIDEO;
  s.grid_t = t;
  s.grid_h = h;
  s.grid_w = w;
  s.temporal_scale = scale;
  return s;
}

struct LayoutCase {
  hope_layout_t layout;
  hope_rope_config_t rope{};
  float video_scale;  // the segment's own scale (diagonal only matters)
  const char *name;
};

hope_rope_config_t rope(int kind, int st, int sh, int sw) {
  hope_rope_config_t c{};
  std::memset(&c, 0, sizeof c);
  c.kind = kind;
  c.head_dim = 128;
  c.sections[0] = st;
  c.sections[1] = sh;
  c.sections[2] = sw;
  c.theta = 1e6;
  return c;
}

class LongSequences : public ::testing::TestWithParam<LayoutCase> {};

TEST_P(LongSequences, MillionTokenVideoPromptPositionsAndCosSin) {
  const LayoutCase &lc = GetParam();
  const std::vector<hope_segment_t> segs = {text(kTextBefore), video(kFrames, kGridH, kGridW, lc.video_scale),
                                            text(kTextAfter)};
  int64_t n = 0;
  ASSERT_HOPE_OK(hope_positions_count(segs.data(), 3, &n));
  ASSERT_EQ(n, kTotal);
  std::vector<float> pos(size_t(3 * n));
  std::memset(pos.data(), 0xff, pos.size() * sizeof(float));  // poison: NaN
  float next = -1.0f;
  ASSERT_HOPE_OK(hope_positions_build(segs.data(), 3, lc.layout, 1.0f, 0.0f, pos.data(), n, &next));

  const hope_ref::Positions ref = hope_ref::build_positions(segs, lc.layout, 1.0, 0.0);
  ASSERT_EQ(int64_t(ref.t.size()), n);
  int64_t bad = 0, first_bad = -1;
  for (int64_t k = 0; k < n; ++k) {
    const bool ok = pos[k] == float(ref.t[k]) && pos[n + k] == float(ref.h[k]) && pos[2 * n + k] == float(ref.w[k]);
    if (!ok && bad++ == 0) first_bad = k;
  }
  EXPECT_EQ(bad, 0) << "first mismatch at token " << first_bad << ": got (" << pos[first_bad] << ", "
                    << pos[n + first_bad] << ", " << pos[2 * n + first_bad] << ")";
  EXPECT_EQ(next, float(ref.next_position));
  if (lc.layout == HOPE_LAYOUT_SEQUENTIAL) {
    EXPECT_EQ(pos[n - 1], float(kTotal - 1));  // the test reaches the SPEC's 2^20 accuracy bound
    EXPECT_EQ(next, float(kTotal));
  }

  // cos/sin of the last 4096 tokens and of the first 16, from hope_rope_cos_sin and from a host cache.
  const int64_t tail = 4096, head = 16, m = tail + head;
  std::vector<float> sub(size_t(3 * m));
  for (int r = 0; r < 3; ++r) {
    for (int64_t j = 0; j < head; ++j) sub[r * m + j] = pos[r * n + j];
    for (int64_t j = 0; j < tail; ++j) sub[r * m + head + j] = pos[r * n + (n - tail) + j];
  }
  std::vector<double> rc, rs;
  hope_ref::cos_sin(lc.rope, sub.data(), m, &rc, &rs);
  const size_t half = size_t(lc.rope.head_dim / 2);
  std::vector<float> cs(m * half), sn(m * half);
  ASSERT_HOPE_OK(hope_rope_cos_sin(&lc.rope, sub.data(), m, cs.data(), sn.data()));
  std::vector<double> got_c(cs.begin(), cs.end()), got_s(sn.begin(), sn.end());
  EXPECT_TRUE(hope_test::all_close(got_c, rc, 2e-6)) << "hope_rope_cos_sin cos";
  EXPECT_TRUE(hope_test::all_close(got_s, rs, 2e-6)) << "hope_rope_cos_sin sin";

  // A host cache of `tail` rows filled straight from the 1M-token rows (positions_ld = n).
  hope_rope_cache_t cache = nullptr;
  ASSERT_HOPE_OK(hope_rope_cache_create(&lc.rope, tail, HOPE_MEMORY_HOST, &cache));
  ASSERT_HOPE_OK(hope_rope_cache_fill(cache, 0, pos.data() + (n - tail), tail, n, HOPE_MEMORY_HOST, nullptr));
  const float *ctab = nullptr, *stab = nullptr;
  ASSERT_HOPE_OK(hope_rope_cache_get(cache, &ctab, &stab, nullptr, nullptr));
  std::vector<double> cache_c(ctab, ctab + tail * half), cache_s(stab, stab + tail * half);
  std::vector<double> ref_tail_c(rc.begin() + head * half, rc.end()), ref_tail_s(rs.begin() + head * half, rs.end());
  EXPECT_TRUE(hope_test::all_close(cache_c, ref_tail_c, 2e-6)) << "cache cos";
  EXPECT_TRUE(hope_test::all_close(cache_s, ref_tail_s, 2e-6)) << "cache sin";
  EXPECT_HOPE_OK(hope_rope_cache_destroy(cache));
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, LongSequences,
    ::testing::Values(LayoutCase{HOPE_LAYOUT_SEQUENTIAL, rope(HOPE_ROPE_VANILLA, 0, 0, 0), 0.0f, "sequential_vanilla"},
                      LayoutCase{HOPE_LAYOUT_MROPE, rope(HOPE_ROPE_MROPE, 16, 24, 24), 0.0f, "mrope_qwen2vl"},
                      LayoutCase{HOPE_LAYOUT_DIAGONAL, rope(HOPE_ROPE_HOPE, 16, 24, 24), 0.75f, "diagonal_hope_s075"},
                      LayoutCase{HOPE_LAYOUT_DIAGONAL, rope(HOPE_ROPE_VIDEOROPE, 16, 24, 24), 1.5f,
                                 "diagonal_videorope_s150"}),
    [](const ::testing::TestParamInfo<LayoutCase> &info) { return std::string(info.param.name); });

// ---- token counts beyond 2^31 - 1 -------------------------------------------------------------------------

TEST(LongSequencesLimits, TokenCountsBeyondInt32AreRefused) {
  struct Case {
    std::vector<hope_segment_t> segs;
    const char *what;
  };
  const std::vector<Case> cases = {
      {{video(1 << 21, 1 << 21, 1 << 22, 0.0f)}, "a grid whose int64 token product wraps to exactly 0"},
      {{video(INT32_MAX, INT32_MAX, INT32_MAX, 0.0f)}, "a grid of (2^31-1)^3 tokens"},
      {{video(1 << 15, 1 << 8, 1 << 8, 0.0f)}, "a grid of exactly 2^31 tokens"},
      {{text(INT32_MAX), text(1)}, "2^31 - 1 text tokens plus one"},
      {{video(1 << 14, 1 << 8, 1 << 8, 0.0f), video(1 << 14, 1 << 8, 1 << 8, 0.0f)}, "two videos of 2^30 tokens"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.what);
    int64_t n = -7;
    EXPECT_HOPE_FAIL(hope_positions_count(c.segs.data(), int32_t(c.segs.size()), &n), HOPE_ERROR_INVALID_VALUE);
    // build must refuse as well, before writing anything into the (tiny) positions buffer.
    std::vector<float> tiny(3, 42.0f);
    EXPECT_HOPE_FAIL(hope_positions_build(c.segs.data(), int32_t(c.segs.size()), HOPE_LAYOUT_DIAGONAL, 1.0f, 0.0f,
                                          tiny.data(), 1, nullptr),
                     HOPE_ERROR_INVALID_VALUE);
    EXPECT_EQ(tiny, std::vector<float>(3, 42.0f));
  }
  // Exactly 2^31 - 1 tokens is the largest valid sequence (counted, not built: it would need 24 GiB).
  const hope_segment_t max_text = text(INT32_MAX);
  int64_t n = 0;
  EXPECT_HOPE_OK(hope_positions_count(&max_text, 1, &n));
  EXPECT_EQ(n, int64_t(INT32_MAX));
}

// ---- attention sizes beyond 32-bit indexing ---------------------------------------------------------------

hope_attention_params_t huge_params(int backend, const int32_t *cu, int32_t max_len, int32_t heads, int32_t d,
                                    void *dummy) {
  hope_attention_params_t p{};
  std::memset(&p, 0, sizeof p);
  p.backend = backend;
  p.dtype = HOPE_DTYPE_FLOAT16;
  p.batch = 1;
  p.num_q_heads = heads;
  p.num_kv_heads = heads;
  p.head_dim = d;
  p.cu_seqlens_q = cu;
  p.cu_seqlens_k = cu;
  p.max_seqlen_q = max_len;
  p.max_seqlen_k = max_len;
  p.q = p.k = p.v = dummy;
  p.out = dummy;
  p.causal = 1;
  return p;
}

// The CUDA kernels index elements in int64 (HOPEI_ATTN_CUDA_MAX_INDEX), so 2^33 elements are a valid call there;
// what must be refused before any device memory is touched (the pointers here are 64 bytes of host memory) is a
// claim whose element indices overflow int64. (This test used to expect a refusal of 2^22 tokens x 16 heads x
// 128: on the emulated GPU that call ran the kernel over the dummy pointers and crashed, as it would have on a
// GPU.)
TEST(LongSequencesLimits, CudaAttentionClaimsOverflowingInt64AreRefused) {
  std::vector<uint8_t> dummy(64);
  const int32_t len = 1 << 30;
  const std::vector<int32_t> cu = {0, len};
  hope_attention_params_t p = huge_params(HOPE_BACKEND_CUDA, cu.data(), len, 2, 64, dummy.data());
  p.q_row_stride = int64_t(1) << 40;  // (2^30 - 1) * 2^40 does not fit int64
  const hope_status_t s = hope_attention_forward(&p, nullptr);
  // INVALID_VALUE from the size check; a library built without CUDA may answer NOT_SUPPORTED first.
  EXPECT_TRUE(s == HOPE_ERROR_INVALID_VALUE || s == HOPE_ERROR_NOT_SUPPORTED) << hope_status_string(s);
  EXPECT_STRNE(hope_last_error(), "");
  EXPECT_EQ(dummy, std::vector<uint8_t>(64, 0)) << "a refused call wrote into its output";
}

// On the CPU backend, claims whose element indices overflow int64 are refused before any memory is read.
TEST(LongSequencesLimits, CpuAttentionClaimsOverflowingInt64AreRefused) {
  std::vector<uint8_t> dummy(64);
  const std::vector<int32_t> cu = {0, 1 << 30};
  hope_attention_params_t p = huge_params(HOPE_BACKEND_CPU, cu.data(), 1 << 30, 2, 64, dummy.data());
  p.q_row_stride = int64_t(1) << 40;  // (2^30 - 1) * 2^40 does not fit int64
  EXPECT_HOPE_FAIL(hope_attention_forward(&p, nullptr), HOPE_ERROR_INVALID_VALUE);
  p.q_row_stride = 0;
  p.k_row_stride = INT64_MAX / 2;
  EXPECT_HOPE_FAIL(hope_attention_forward(&p, nullptr), HOPE_ERROR_INVALID_VALUE);
  // 2^31 - 1 tokens of 2^20 heads x 1024 (2^61 elements): indexable in int64, but no machine holds the
  // float32 scratch; refused by a size check or by the failing allocation, never by touching q.
  const std::vector<int32_t> cu2 = {0, INT32_MAX};
  hope_attention_params_t p2 = huge_params(HOPE_BACKEND_CPU, cu2.data(), INT32_MAX, 1 << 20, 1024, dummy.data());
  const hope_status_t s2 = hope_attention_forward(&p2, nullptr);
  EXPECT_TRUE(s2 == HOPE_ERROR_INVALID_VALUE || s2 == HOPE_ERROR_OUT_OF_MEMORY) << hope_status_string(s2);
  EXPECT_STRNE(hope_last_error(), "");
  EXPECT_EQ(dummy, std::vector<uint8_t>(64, 0)) << "a refused call wrote into its output";
}

// The CPU backend addresses q, k and v with 64-bit offsets: two tokens 2^31 + 128 elements apart (a 4 GiB
// sparse mapping of which only the touched pages get memory) give bit-identical results to the same tokens packed.
TEST(LongSequencesLimits, CpuAttentionUses64BitRowOffsets) {
  const int heads = 2, d = 64, width = heads * d, tokens = 2;
  const int64_t stride = (int64_t(1) << 31) + 128;  // elements; row 1 starts beyond INT32_MAX elements
  const size_t bytes = size_t(stride + 3 * width) * sizeof(uint16_t);
  void *map = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (map == MAP_FAILED) GTEST_SKIP() << "cannot reserve " << bytes << " bytes of address space here";
  uint16_t *base = static_cast<uint16_t *>(map);

  std::mt19937_64 rng(2026);
  Tensor q = hope_test::random_tensor(HOPE_DTYPE_FLOAT16, tokens * width, rng);
  Tensor k = hope_test::random_tensor(HOPE_DTYPE_FLOAT16, tokens * width, rng);
  Tensor v = hope_test::random_tensor(HOPE_DTYPE_FLOAT16, tokens * width, rng);
  // Row r of q at base + r*stride, of k at + width, of v at + 2*width (disjoint columns of one strided buffer).
  for (int r = 0; r < tokens; ++r) {
    std::memcpy(base + r * stride, q.bytes.data() + r * width * 2, width * 2);
    std::memcpy(base + r * stride + width, k.bytes.data() + r * width * 2, width * 2);
    std::memcpy(base + r * stride + 2 * width, v.bytes.data() + r * width * 2, width * 2);
  }
  const std::vector<int32_t> cu = {0, tokens};
  auto run = [&](const void *qp, const void *kp, const void *vp, int64_t s, Tensor *out, std::vector<float> *lse) {
    hope_attention_params_t p{};
    std::memset(&p, 0, sizeof p);
    p.backend = HOPE_BACKEND_CPU;
    p.dtype = HOPE_DTYPE_FLOAT16;
    p.batch = 1;
    p.num_q_heads = heads;
    p.num_kv_heads = heads;
    p.head_dim = d;
    p.cu_seqlens_q = cu.data();
    p.cu_seqlens_k = cu.data();
    p.max_seqlen_q = tokens;
    p.max_seqlen_k = tokens;
    p.q = qp;
    p.k = kp;
    p.v = vp;
    p.q_row_stride = p.k_row_stride = p.v_row_stride = s;
    out->poison();
    p.out = out->data();
    lse->assign(heads * tokens, NAN);
    p.lse = lse->data();
    return hope_attention_forward(&p, nullptr);
  };
  Tensor out_strided(HOPE_DTYPE_FLOAT16, tokens * width), out_packed(HOPE_DTYPE_FLOAT16, tokens * width);
  std::vector<float> lse_strided, lse_packed;
  const hope_status_t s = run(base, base + width, base + 2 * width, stride, &out_strided, &lse_strided);
  EXPECT_EQ(s, HOPE_SUCCESS) << hope_last_error();
  ASSERT_HOPE_OK(run(q.data(), k.data(), v.data(), 0, &out_packed, &lse_packed));
  munmap(map, bytes);
  if (s != HOPE_SUCCESS) return;
  EXPECT_EQ(out_strided.bytes, out_packed.bytes) << "rows 2^31 elements apart were read from the wrong place";
  EXPECT_EQ(std::memcmp(lse_strided.data(), lse_packed.data(), lse_packed.size() * sizeof(float)), 0);

  // And both agree with the float64 reference.
  hope_ref::AttentionProblem prob;
  prob.batch = 1;
  prob.num_q_heads = prob.num_kv_heads = heads;
  prob.head_dim = d;
  prob.cu_seqlens_q = prob.cu_seqlens_k = cu;
  prob.causal = false;
  std::vector<double> ref_o, ref_l;
  hope_ref::attention(prob, q.values(), k.values(), v.values(), &ref_o, &ref_l);
  EXPECT_LE(hope_test::relative_error(out_packed.values(), ref_o), 2e-3);
}

}  // namespace
