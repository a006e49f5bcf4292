// test_resources.cc — resource failures: impossible allocations come back as a status with a message and leak
// nothing (LeakSanitizer checks that in scripts/sanitize.sh's ASan build), a too-small workspace is refused
// before anything is written, and on a machine with no usable GPU every CUDA entry point returns
// HOPE_ERROR_NO_DEVICE with a message — HOPE_ERROR_NOT_SUPPORTED from a library built without CUDA
// (hope_test::no_gpu_status()) — (NoDevice.*: skipped where a GPU is present; CMakeLists.txt also runs them with
// every GPU hidden via CUDA_VISIBLE_DEVICES=-1).
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "test_util.h"

// Under AddressSanitizer an impossible malloc aborts the process unless the allocator may return NULL, as
// glibc's malloc does: these tests need the library to see that NULL. (Only read by an ASan runtime; the
// ASAN_OPTIONS environment variable still overrides it.)
extern "C" const char *__asan_default_options() { return "allocator_may_return_null=1"; }

namespace {

using hope_test::Tensor;

hope_rope_config_t hope_config(int head_dim) {
  hope_rope_config_t c{};
  std::memset(&c, 0, sizeof c);
  c.kind = HOPE_ROPE_HOPE;
  c.head_dim = head_dim;
  c.sections[0] = head_dim / 4;
  c.sections[1] = head_dim / 8;
  c.sections[2] = head_dim / 2 - head_dim / 4 - head_dim / 8;
  c.theta = 1e6;
  return c;
}

bool no_gpu() {
  int32_t n = -1;
  EXPECT_EQ(hope_cuda_device_count(&n), HOPE_SUCCESS);
  return n == 0;
}

// ---- allocation failures ---------------------------------------------------------------------------------

TEST(Resources, RopeCacheImpossibleCapacityIsAStatusNotACrash) {
  const hope_rope_config_t config = hope_config(128);
  // 2^40 tokens x 64 pairs x 4 bytes x 2 tables = 512 TiB: no machine has it; INT64_MAX overflows the byte count.
  for (int64_t capacity : {int64_t(1) << 40, int64_t(1) << 44, int64_t(1) << 57, INT64_MAX}) {
    SCOPED_TRACE("capacity " + std::to_string(capacity));
    hope_rope_cache_t cache = reinterpret_cast<hope_rope_cache_t>(uintptr_t(0x1234));
    const hope_status_t s = hope_rope_cache_create(&config, capacity, HOPE_MEMORY_HOST, &cache);
    EXPECT_TRUE(s == HOPE_ERROR_OUT_OF_MEMORY || s == HOPE_ERROR_INVALID_VALUE) << hope_status_string(s);
    EXPECT_STRNE(hope_last_error(), "");
    EXPECT_EQ(cache, nullptr) << "*cache must be NULL after a failed create";
  }
  // The library is still usable afterwards (nothing half-initialised was left behind).
  hope_rope_cache_t cache = nullptr;
  ASSERT_HOPE_OK(hope_rope_cache_create(&config, 16, HOPE_MEMORY_HOST, &cache));
  std::vector<float> pos(3 * 16, 7.0f);
  EXPECT_HOPE_OK(hope_rope_cache_fill(cache, 0, pos.data(), 16, 0, HOPE_MEMORY_HOST, nullptr));
  EXPECT_HOPE_OK(hope_rope_cache_destroy(cache));
}

TEST(Resources, RopeCacheOutOfMemoryNamesTheFunction) {
  const hope_rope_config_t config = hope_config(64);
  hope_rope_cache_t cache = nullptr;
  const hope_status_t s = hope_rope_cache_create(&config, int64_t(1) << 40, HOPE_MEMORY_HOST, &cache);
  ASSERT_NE(s, HOPE_SUCCESS);
  EXPECT_NE(std::string(hope_last_error()).find("hope_rope_cache_create"), std::string::npos) << hope_last_error();
  EXPECT_EQ(cache, nullptr);
}

TEST(Resources, DestroyNullIsANoOp) { EXPECT_HOPE_OK(hope_rope_cache_destroy(nullptr)); }

// A decode with forced splits needs a workspace; one byte short is OUT_OF_MEMORY and writes nothing.
TEST(Resources, DecodeWorkspaceTooSmallIsRefusedBeforeWriting) {
  const int pages = 4, page_size = 8, hk = 2, d = 16, hq = 4, batch = 2;
  std::mt19937_64 rng(7);
  Tensor k = hope_test::random_tensor(HOPE_DTYPE_FLOAT32, size_t(pages) * page_size * hk * d, rng);
  Tensor v = hope_test::random_tensor(HOPE_DTYPE_FLOAT32, size_t(pages) * page_size * hk * d, rng);
  std::vector<int32_t> cu = {0, 1, 2}, lens = {9, 16}, table = {0, 1, 2, 3};
  Tensor q = hope_test::random_tensor(HOPE_DTYPE_FLOAT32, size_t(2) * hq * d, rng);
  Tensor out(HOPE_DTYPE_FLOAT32, size_t(2) * hq * d);
  out.poison();
  const std::vector<uint8_t> before = out.bytes;
  hope_decode_params_t p{};
  std::memset(&p, 0, sizeof p);
  p.backend = HOPE_BACKEND_CPU;
  p.cache = {HOPE_DTYPE_FLOAT32, pages, page_size, hk, d, k.data(), v.data()};
  p.batch = batch;
  p.num_q_heads = hq;
  p.cu_seqlens_q = cu.data();
  p.max_seqlen_q = 1;
  p.seq_lens = lens.data();
  p.max_seqlen_k = 16;
  p.page_table = table.data();
  p.max_pages_per_seq = 2;
  p.q = q.data();
  p.out = out.data();
  p.num_splits = 4;
  size_t ws = 0;
  ASSERT_HOPE_OK(hope_decode_workspace_size(&p, &ws));
  ASSERT_GT(ws, 0u) << "4 forced splits need a workspace";
  std::vector<uint8_t> workspace(ws + 64);
  void *aligned = workspace.data() + ((16 - reinterpret_cast<uintptr_t>(workspace.data()) % 16) % 16);
  EXPECT_HOPE_FAIL(hope_decode_forward(&p, aligned, ws - 1, nullptr), HOPE_ERROR_OUT_OF_MEMORY);
  EXPECT_HOPE_FAIL(hope_decode_forward(&p, nullptr, 0, nullptr), HOPE_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(out.bytes, before) << "a refused decode wrote its output";
  EXPECT_HOPE_OK(hope_decode_forward(&p, aligned, ws, nullptr));
  for (size_t i = 0; i < out.size(); ++i) ASSERT_TRUE(std::isfinite(out.get(i))) << "out[" << i << "]";
}

// ---- no GPU: every CUDA entry point says so ---------------------------------------------------------------

class NoDevice : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!no_gpu()) GTEST_SKIP() << "a CUDA device is present: the no-GPU contract is checked where none is";
  }
};

TEST_F(NoDevice, DeviceCountIsZeroAndNotAnError) {
  int32_t n = -1;
  EXPECT_HOPE_OK(hope_cuda_device_count(&n));
  EXPECT_EQ(n, 0);
  EXPECT_HOPE_FAIL(hope_cuda_device_count(nullptr), HOPE_ERROR_INVALID_VALUE);
}

TEST_F(NoDevice, RopeCacheOnDevice) {
  const hope_rope_config_t config = hope_config(64);
  hope_rope_cache_t cache = reinterpret_cast<hope_rope_cache_t>(uintptr_t(0x1234));
  EXPECT_HOPE_FAIL(hope_rope_cache_create(&config, 64, HOPE_MEMORY_DEVICE, &cache),
                   hope_test::no_gpu_status());
  EXPECT_EQ(cache, nullptr);
  // A host cache filled from "device" positions needs the device too.
  ASSERT_HOPE_OK(hope_rope_cache_create(&config, 8, HOPE_MEMORY_HOST, &cache));
  std::vector<float> pos(3 * 8, 1.0f);
  EXPECT_HOPE_FAIL(hope_rope_cache_fill(cache, 0, pos.data(), 8, 0, HOPE_MEMORY_DEVICE, nullptr),
                   hope_test::no_gpu_status());
  EXPECT_HOPE_OK(hope_rope_cache_destroy(cache));
}

TEST_F(NoDevice, RopeApply) {
  const int tokens = 3, heads = 2, d = 64;
  std::vector<float> x(size_t(tokens) * heads * d, 1.0f), out(x.size()), cs(size_t(tokens) * d / 2, 1.0f),
      sn(cs.size(), 0.0f);
  hope_rope_apply_params_t p{};
  std::memset(&p, 0, sizeof p);
  p.backend = HOPE_BACKEND_CUDA;
  p.dtype = HOPE_DTYPE_FLOAT32;
  p.num_tokens = tokens;
  p.num_heads = heads;
  p.head_dim = d;
  p.x = x.data();
  p.out = out.data();
  p.cos = cs.data();
  p.sin = sn.data();
  EXPECT_HOPE_FAIL(hope_rope_apply(&p, nullptr), hope_test::no_gpu_status());
}

hope_attention_params_t attention_params(std::vector<uint16_t> *buf, std::vector<int32_t> *cu, std::vector<float> *lse) {
  hope_attention_params_t p{};
  std::memset(&p, 0, sizeof p);
  p.backend = HOPE_BACKEND_CUDA;
  p.dtype = HOPE_DTYPE_FLOAT16;
  p.batch = 1;
  p.num_q_heads = 4;
  p.num_kv_heads = 2;
  p.head_dim = 64;
  *cu = {0, 5};
  p.cu_seqlens_q = cu->data();
  p.cu_seqlens_k = cu->data();
  p.max_seqlen_q = 5;
  p.max_seqlen_k = 5;
  buf->assign(size_t(5) * 4 * 64 * 4, 0);
  p.q = buf->data();
  p.k = buf->data() + 5 * 4 * 64;
  p.v = buf->data() + 5 * 4 * 64 * 2;
  p.out = buf->data() + 5 * 4 * 64 * 3;
  lse->assign(size_t(4) * 5, 0.0f);
  p.lse = lse->data();
  p.causal = 1;
  return p;
}

TEST_F(NoDevice, AttentionFusedAndUnfused) {
  std::vector<uint16_t> buf;
  std::vector<int32_t> cu;
  std::vector<float> lse;
  const hope_attention_params_t p = attention_params(&buf, &cu, &lse);
  EXPECT_HOPE_FAIL(hope_attention_forward(&p, nullptr), hope_test::no_gpu_status());
  size_t ws = 0;
  EXPECT_HOPE_FAIL(hope_attention_unfused_workspace_size(&p, &ws), hope_test::no_gpu_status());
  std::vector<uint8_t> workspace(1 << 20);
  EXPECT_HOPE_FAIL(hope_attention_forward_unfused(&p, workspace.data(), workspace.size(), nullptr),
                   hope_test::no_gpu_status());
}

TEST_F(NoDevice, KvAppendDecodeMerge) {
  const int pages = 2, page_size = 4, hk = 1, d = 64, hq = 2;
  std::vector<uint16_t> k_pages(size_t(pages) * page_size * hk * d), v_pages(k_pages.size());
  const hope_paged_kv_t cache = {HOPE_DTYPE_FLOAT16, pages, page_size, hk, d, k_pages.data(), v_pages.data()};

  std::vector<uint16_t> k(size_t(2) * hk * d), v(k.size());
  std::vector<int64_t> slots = {0, 5};
  hope_kv_append_params_t a{};
  std::memset(&a, 0, sizeof a);
  a.backend = HOPE_BACKEND_CUDA;
  a.cache = cache;
  a.num_tokens = 2;
  a.k = k.data();
  a.v = v.data();
  a.slot_mapping = slots.data();
  EXPECT_HOPE_FAIL(hope_kv_append(&a, nullptr), hope_test::no_gpu_status());

  std::vector<int32_t> cu = {0, 1}, lens = {6}, table = {0, 1};
  std::vector<uint16_t> q(size_t(hq) * d), out(q.size());
  hope_decode_params_t p{};
  std::memset(&p, 0, sizeof p);
  p.backend = HOPE_BACKEND_CUDA;
  p.cache = cache;
  p.batch = 1;
  p.num_q_heads = hq;
  p.cu_seqlens_q = cu.data();
  p.max_seqlen_q = 1;
  p.seq_lens = lens.data();
  p.max_seqlen_k = 6;
  p.page_table = table.data();
  p.max_pages_per_seq = 2;
  p.q = q.data();
  p.out = out.data();
  size_t ws = 0;
  EXPECT_HOPE_FAIL(hope_decode_workspace_size(&p, &ws), hope_test::no_gpu_status());
  std::vector<uint8_t> workspace(1 << 16);
  EXPECT_HOPE_FAIL(hope_decode_forward(&p, workspace.data(), workspace.size(), nullptr),
                   hope_test::no_gpu_status());

  std::vector<uint16_t> oa(size_t(3) * 2 * d), ob(oa.size()), om(oa.size());
  std::vector<float> la(6, 0.0f), lb(6, 0.0f);
  hope_merge_params_t m;
  std::memset(&m, 0, sizeof m);
  m.backend = HOPE_BACKEND_CUDA;
  m.dtype = HOPE_DTYPE_FLOAT16;
  m.num_tokens = 3;
  m.num_heads = 2;
  m.head_dim = d;
  m.o_a = oa.data();
  m.o_b = ob.data();
  m.lse_a = la.data();
  m.lse_b = lb.data();
  m.out = om.data();
  EXPECT_HOPE_FAIL(hope_merge_states(&m, nullptr), hope_test::no_gpu_status());
}

// The message of a NO_DEVICE failure names the entry point, so a user knows which call needed the GPU; without
// CUDA in the build it also says so.
TEST_F(NoDevice, MessageNamesTheEntryPoint) {
  std::vector<uint16_t> buf;
  std::vector<int32_t> cu;
  std::vector<float> lse;
  const hope_attention_params_t p = attention_params(&buf, &cu, &lse);
  ASSERT_EQ(hope_attention_forward(&p, nullptr), hope_test::no_gpu_status());
  EXPECT_NE(std::string(hope_last_error()).find("hope_attention_forward"), std::string::npos) << hope_last_error();
  if (!hope_test::library_has_cuda())
    EXPECT_NE(std::string(hope_last_error()).find("built without CUDA"), std::string::npos) << hope_last_error();
}

}  // namespace
