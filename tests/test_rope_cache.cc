// hope_rope_cache_* on the host: chunked fills at offsets agree with hope_rope_cos_sin, strided positions,
// bounds, and bad input. (Device caches: test_rope_gpu.cc.)
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "reference/reference.h"
#include "rope_test_util.h"
#include "test_util.h"

namespace {

using hope_test::packed;

hope_rope_config_t config_of(int kind) {
  hope_rope_config_t c{};
  c.kind = kind;
  c.head_dim = 128;
  c.sections[0] = kind == HOPE_ROPE_MROPE_INTERLEAVED ? 24 : 16;
  c.sections[1] = kind == HOPE_ROPE_MROPE_INTERLEAVED ? 20 : 24;
  c.sections[2] = kind == HOPE_ROPE_MROPE_INTERLEAVED ? 20 : 24;
  c.theta = 1e6;
  return c;
}

// [3][ld] positions whose rows differ; tokens [0, n) are meaningful, the rest of each row is NaN (never read).
std::vector<float> strided_positions(int64_t n, int64_t ld, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1048576.0f, 1048576.0f);
  std::vector<float> p(3 * ld, NAN);
  for (int r = 0; r < 3; ++r)
    for (int64_t k = 0; k < n; ++k) p[r * ld + k] = k == 0 ? 1048576.0f : k == 1 ? 1048575.5f : dist(rng);
  return p;
}

std::string kind_name(int kind) {
  static const char *const names[] = {"vanilla", "mrope", "mrope_interleaved", "videorope", "hope"};
  return names[kind];
}

class RopeCacheHost : public ::testing::TestWithParam<int> {};

TEST_P(RopeCacheHost, ChunkedFillsMatchCosSin) {
  const hope_rope_config_t c = config_of(GetParam());
  const int64_t capacity = 1037;
  hope_rope_cache_t cache = nullptr;
  ASSERT_HOPE_OK(hope_rope_cache_create(&c, capacity, HOPE_MEMORY_HOST, &cache));
  ASSERT_NE(cache, nullptr);
  const float *cos = nullptr, *sin = nullptr;
  int64_t cap = 0;
  hope_memory_t mem = HOPE_MEMORY_DEVICE;
  ASSERT_HOPE_OK(hope_rope_cache_get(cache, &cos, &sin, &cap, &mem));
  EXPECT_EQ(cap, capacity);
  EXPECT_EQ(mem, HOPE_MEMORY_HOST);
  ASSERT_NE(cos, nullptr);
  ASSERT_NE(sin, nullptr);

  // Three chunks at offsets 0, 300, 301 covering every row; the middle one is a single token; the positions
  // of the first chunk are strided (positions_ld > n).
  struct Chunk { int64_t offset, n, ld; };
  const Chunk chunks[] = {{0, 300, 311}, {300, 1, 0}, {301, 736, 736}};
  uint64_t seed = 11;
  for (const Chunk &ch : chunks) {
    const int64_t ld = ch.ld == 0 ? ch.n : ch.ld;
    const std::vector<float> p = strided_positions(ch.n, ld, seed++);
    ASSERT_HOPE_OK(hope_rope_cache_fill(cache, ch.offset, p.data(), ch.n, ch.ld, HOPE_MEMORY_HOST, nullptr));
    const std::vector<float> q = packed(p, ch.n, ld);
    std::vector<float> co(ch.n * 64), si(ch.n * 64);
    ASSERT_HOPE_OK(hope_rope_cos_sin(&c, q.data(), ch.n, co.data(), si.data()));
    for (int64_t k = 0; k < ch.n * 64; ++k) {
      ASSERT_EQ(cos[ch.offset * 64 + k], co[k]) << "offset " << ch.offset << " element " << k;
      ASSERT_EQ(sin[ch.offset * 64 + k], si[k]) << "offset " << ch.offset << " element " << k;
    }
    std::vector<double> rc, rs;
    hope_ref::cos_sin(c, q.data(), ch.n, &rc, &rs);
    EXPECT_TRUE(hope_test::all_close(std::vector<double>(cos + ch.offset * 64, cos + (ch.offset + ch.n) * 64),
                                     rc, 2e-6));
    EXPECT_TRUE(hope_test::all_close(std::vector<double>(sin + ch.offset * 64, sin + (ch.offset + ch.n) * 64),
                                     rs, 2e-6));
  }
  EXPECT_HOPE_OK(hope_rope_cache_destroy(cache));
}

INSTANTIATE_TEST_SUITE_P(RopeKinds, RopeCacheHost,
                         ::testing::Values(HOPE_ROPE_VANILLA, HOPE_ROPE_MROPE, HOPE_ROPE_MROPE_INTERLEAVED,
                                           HOPE_ROPE_VIDEOROPE, HOPE_ROPE_HOPE),
                         [](const ::testing::TestParamInfo<int> &info) { return kind_name(info.param); });

TEST(RopeCache, FillBeyondCapacityFailsAndWritesNothing) {
  const hope_rope_config_t c = config_of(HOPE_ROPE_HOPE);
  hope_rope_cache_t cache = nullptr;
  ASSERT_HOPE_OK(hope_rope_cache_create(&c, 64, HOPE_MEMORY_HOST, &cache));
  const std::vector<float> p = strided_positions(64, 64, 3);
  ASSERT_HOPE_OK(hope_rope_cache_fill(cache, 0, p.data(), 64, 0, HOPE_MEMORY_HOST, nullptr));
  const float *cos = nullptr, *sin = nullptr;
  ASSERT_HOPE_OK(hope_rope_cache_get(cache, &cos, &sin, nullptr, nullptr));
  const std::vector<float> cos_before(cos, cos + 64 * 64), sin_before(sin, sin + 64 * 64);

  const std::vector<float> other = strided_positions(65, 65, 4);
  EXPECT_HOPE_FAIL(hope_rope_cache_fill(cache, 0, other.data(), 65, 0, HOPE_MEMORY_HOST, nullptr),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_rope_cache_fill(cache, 60, other.data(), 5, 65, HOPE_MEMORY_HOST, nullptr),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_rope_cache_fill(cache, 64, other.data(), 1, 65, HOPE_MEMORY_HOST, nullptr),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_rope_cache_fill(cache, INT64_MAX, other.data(), 1, 65, HOPE_MEMORY_HOST, nullptr),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_EQ(std::memcmp(cos, cos_before.data(), cos_before.size() * 4), 0);
  EXPECT_EQ(std::memcmp(sin, sin_before.data(), sin_before.size() * 4), 0);
  // The last row and an empty fill at the end are fine.
  EXPECT_HOPE_OK(hope_rope_cache_fill(cache, 63, other.data(), 1, 65, HOPE_MEMORY_HOST, nullptr));
  EXPECT_HOPE_OK(hope_rope_cache_fill(cache, 64, nullptr, 0, 0, HOPE_MEMORY_HOST, nullptr));
  EXPECT_HOPE_OK(hope_rope_cache_destroy(cache));
}

TEST(RopeCache, NonFinitePositionFailsAndWritesNothing) {
  const hope_rope_config_t c = config_of(HOPE_ROPE_MROPE);
  hope_rope_cache_t cache = nullptr;
  ASSERT_HOPE_OK(hope_rope_cache_create(&c, 8, HOPE_MEMORY_HOST, &cache));
  std::vector<float> p = strided_positions(8, 8, 5);
  ASSERT_HOPE_OK(hope_rope_cache_fill(cache, 0, p.data(), 8, 0, HOPE_MEMORY_HOST, nullptr));
  const float *cos = nullptr;
  ASSERT_HOPE_OK(hope_rope_cache_get(cache, &cos, nullptr, nullptr, nullptr));
  const std::vector<float> before(cos, cos + 8 * 64);
  std::vector<float> q = strided_positions(8, 8, 6);
  q[2 * 8 + 7] = NAN;
  EXPECT_HOPE_FAIL(hope_rope_cache_fill(cache, 0, q.data(), 8, 0, HOPE_MEMORY_HOST, nullptr),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_EQ(std::memcmp(cos, before.data(), before.size() * 4), 0);
  EXPECT_HOPE_OK(hope_rope_cache_destroy(cache));
}

TEST(RopeCache, CreateRejectsBadInput) {
  const hope_rope_config_t good = config_of(HOPE_ROPE_HOPE);
  hope_rope_cache_t cache = reinterpret_cast<hope_rope_cache_t>(0x1);
  EXPECT_HOPE_FAIL(hope_rope_cache_create(&good, 16, HOPE_MEMORY_HOST, nullptr), HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_rope_cache_create(nullptr, 16, HOPE_MEMORY_HOST, &cache), HOPE_ERROR_INVALID_VALUE);
  EXPECT_EQ(cache, nullptr);
  hope_rope_config_t bad = good;
  bad.sections[2] = 23;
  cache = reinterpret_cast<hope_rope_cache_t>(0x1);
  EXPECT_HOPE_FAIL(hope_rope_cache_create(&bad, 16, HOPE_MEMORY_HOST, &cache), HOPE_ERROR_INVALID_VALUE);
  EXPECT_EQ(cache, nullptr);
  bad = good;
  bad.head_dim = 127;
  EXPECT_HOPE_FAIL(hope_rope_cache_create(&bad, 16, HOPE_MEMORY_HOST, &cache), HOPE_ERROR_INVALID_VALUE);
  bad = good;
  bad.theta = NAN;
  EXPECT_HOPE_FAIL(hope_rope_cache_create(&bad, 16, HOPE_MEMORY_HOST, &cache), HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_rope_cache_create(&good, 0, HOPE_MEMORY_HOST, &cache), HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_rope_cache_create(&good, -5, HOPE_MEMORY_HOST, &cache), HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_rope_cache_create(&good, 16, static_cast<hope_memory_t>(2), &cache),
                   HOPE_ERROR_INVALID_VALUE);
  // capacity * head_dim/2 * 4 bytes overflows.
  EXPECT_HOPE_FAIL(hope_rope_cache_create(&good, INT64_MAX / 64, HOPE_MEMORY_HOST, &cache),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_rope_cache_create(&good, INT64_MAX, HOPE_MEMORY_HOST, &cache), HOPE_ERROR_INVALID_VALUE);
  EXPECT_EQ(cache, nullptr);
}

TEST(RopeCache, CreateTooLargeIsOutOfMemory) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // Sanitizer allocators abort on an impossible malloc unless told to return NULL (scripts/sanitize.sh does).
  const char *opts = std::getenv(
#if defined(__SANITIZE_ADDRESS__)
      "ASAN_OPTIONS"
#else
      "TSAN_OPTIONS"
#endif
  );
  if (opts == nullptr || std::strstr(opts, "allocator_may_return_null=1") == nullptr)
    GTEST_SKIP() << "the sanitizer's allocator would abort instead of returning NULL";
#endif
  // 2^40 tokens * 64 pairs * 4 bytes = 256 TiB: no malloc can give that (it does not overflow size_t).
  const hope_rope_config_t c = config_of(HOPE_ROPE_HOPE);
  hope_rope_cache_t cache = reinterpret_cast<hope_rope_cache_t>(0x1);
  EXPECT_HOPE_FAIL(hope_rope_cache_create(&c, int64_t{1} << 40, HOPE_MEMORY_HOST, &cache),
                   HOPE_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(cache, nullptr);
}

TEST(RopeCache, FillRejectsBadInput) {
  const hope_rope_config_t c = config_of(HOPE_ROPE_VIDEOROPE);
  hope_rope_cache_t cache = nullptr;
  ASSERT_HOPE_OK(hope_rope_cache_create(&c, 32, HOPE_MEMORY_HOST, &cache));
  const std::vector<float> p = strided_positions(16, 16, 9);
  EXPECT_HOPE_FAIL(hope_rope_cache_fill(nullptr, 0, p.data(), 16, 0, HOPE_MEMORY_HOST, nullptr),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_rope_cache_fill(cache, -1, p.data(), 16, 0, HOPE_MEMORY_HOST, nullptr),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_rope_cache_fill(cache, 0, p.data(), -1, 0, HOPE_MEMORY_HOST, nullptr),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_rope_cache_fill(cache, 0, nullptr, 16, 0, HOPE_MEMORY_HOST, nullptr),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_rope_cache_fill(cache, 0, p.data(), 16, 15, HOPE_MEMORY_HOST, nullptr),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_rope_cache_fill(cache, 0, p.data(), 16, -2, HOPE_MEMORY_HOST, nullptr),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_rope_cache_fill(cache, 0, p.data(), 16, INT64_MAX, HOPE_MEMORY_HOST, nullptr),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_rope_cache_fill(cache, 0, p.data(), 16, 0, static_cast<hope_memory_t>(7), nullptr),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_OK(hope_rope_cache_fill(cache, 5, nullptr, 0, 0, HOPE_MEMORY_HOST, nullptr));
  // The message gives offset and n as they are (it used to print n as "offset + n").
  EXPECT_HOPE_FAIL(hope_rope_cache_fill(cache, 20, p.data(), 16, 0, HOPE_MEMORY_HOST, nullptr),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_NE(std::strstr(hope_last_error(), "offset 20 and n 16"), nullptr) << hope_last_error();
  EXPECT_NE(std::strstr(hope_last_error(), "capacity 32"), nullptr) << hope_last_error();
  EXPECT_HOPE_OK(hope_rope_cache_destroy(cache));
}

TEST(RopeCache, GetAndDestroyEdgeCases) {
  const float *cos = nullptr;
  EXPECT_HOPE_FAIL(hope_rope_cache_get(nullptr, &cos, nullptr, nullptr, nullptr), HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_OK(hope_rope_cache_destroy(nullptr));
  const hope_rope_config_t c = config_of(HOPE_ROPE_VANILLA);
  hope_rope_cache_t cache = nullptr;
  ASSERT_HOPE_OK(hope_rope_cache_create(&c, 1, HOPE_MEMORY_HOST, &cache));
  EXPECT_HOPE_OK(hope_rope_cache_get(cache, nullptr, nullptr, nullptr, nullptr));
  const float p[3] = {7.0f, 8.0f, 9.0f};
  ASSERT_HOPE_OK(hope_rope_cache_fill(cache, 0, p, 1, 0, HOPE_MEMORY_HOST, nullptr));
  const float *sin = nullptr;
  ASSERT_HOPE_OK(hope_rope_cache_get(cache, &cos, &sin, nullptr, nullptr));
  for (int i = 0; i < 64; ++i) {  // vanilla: every pair reads row t (7)
    EXPECT_NEAR(cos[i], std::cos(7.0 * std::pow(1e6, -2.0 * i / 128)), 1e-7) << i;
    EXPECT_NEAR(sin[i], std::sin(7.0 * std::pow(1e6, -2.0 * i / 128)), 1e-7) << i;
  }
  EXPECT_HOPE_OK(hope_rope_cache_destroy(cache));
}

// The inverse of the GPU fixture: runs only on a machine WITHOUT a usable GPU.
class RopeCacheNoDevice : public ::testing::Test {
 protected:
  void SetUp() override {
    int32_t n = 0;
    ASSERT_EQ(hope_cuda_device_count(&n), HOPE_SUCCESS);
    if (n > 0) GTEST_SKIP() << "a CUDA device is present: the no-device behaviour cannot be observed";
  }
};

TEST_F(RopeCacheNoDevice, DeviceCacheIsNoDevice) {
  const hope_rope_config_t c = config_of(HOPE_ROPE_HOPE);
  hope_rope_cache_t cache = reinterpret_cast<hope_rope_cache_t>(0x1);
  EXPECT_HOPE_FAIL(hope_rope_cache_create(&c, 16, HOPE_MEMORY_DEVICE, &cache), hope_test::no_gpu_status());
  EXPECT_EQ(cache, nullptr);
  // A host cache fed "device" positions needs a GPU too.
  ASSERT_HOPE_OK(hope_rope_cache_create(&c, 16, HOPE_MEMORY_HOST, &cache));
  const std::vector<float> p(3 * 16, 1.0f);
  EXPECT_HOPE_FAIL(hope_rope_cache_fill(cache, 0, p.data(), 16, 0, HOPE_MEMORY_DEVICE, nullptr),
                   hope_test::no_gpu_status());
  EXPECT_HOPE_OK(hope_rope_cache_destroy(cache));
}

}  // namespace
