// GPU tests of the rotary pieces (skip without a GPU through hope_test::GpuTest): device cos/sin caches filled
// from host and device positions against the host double tables, and hope_rope_apply on the CUDA backend
// against the float64 reference (every kind and dtype, positions above 100 000, strides, in place, odd token
// counts, the unaligned fallback), with poisoned outputs and guard checks. Speed is measured by
// benchmarks/hope_bench (rope_apply against a device-to-device copy), not here.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "gpu_util.h"
#include "reference/reference.h"
#include "rope_test_util.h"
#include "test_util.h"

namespace {

using hope_test::big_positions;
using hope_test::config_of;
using hope_test::DeviceBuffer;
using hope_test::packed;
using hope_test::rotated_close;
using hope_test::Tensor;
using hope_test::term_sizes;
using hope_test::to_double;
using hope_test::ulp_of;

const char *kind_name(int kind) {
  const char *names[] = {"vanilla", "mrope", "mrope_interleaved", "videorope", "hope"};
  return names[kind];
}

// [3][ld] positions: the hard values of SPEC §3 first, then uniform in [-2^20, 2^20]; padding NaN.
std::vector<float> hard_positions(int64_t n, int64_t ld, uint64_t seed) {
  const float special[] = {0.0f, 1.0f, 1048576.0f, 1048575.5f, 131071.0f, -1.0f, -131071.0f, -1048576.0f,
                           100000.25f, 262144.0f, 999999.0f, 0.5f, 65535.75f, 524287.5f};
  const int64_t ns = sizeof special / sizeof special[0];
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1048576.0f, 1048576.0f);
  std::vector<float> p(3 * ld, NAN);
  for (int r = 0; r < 3; ++r)
    for (int64_t k = 0; k < n; ++k) p[r * ld + k] = k < ns ? special[(k + 3 * r) % ns] : dist(rng);
  return p;
}

// ---- device caches ---------------------------------------------------------------------------------------

class RopeCacheGpu : public hope_test::GpuTestWithParam<int> {};

// Fills a device cache in chunks (host positions with ld > n; device positions with ld > n; a single row),
// then checks every row against the host double tables and the long-double reference within 2e-6.
TEST_P(RopeCacheGpu, FillMatchesHostTablesUpTo2Pow20) {
  const int kind = GetParam();
  const hope_rope_config_t cfg = config_of(kind, 128);
  const int half = 64;
  const int64_t capacity = 1037;
  hope_rope_cache_t cache = nullptr;
  ASSERT_HOPE_OK(hope_rope_cache_create(&cfg, capacity, HOPE_MEMORY_DEVICE, &cache));
  const float *dcos = nullptr, *dsin = nullptr;
  hope_memory_t mem = HOPE_MEMORY_HOST;
  int64_t cap = 0;
  ASSERT_HOPE_OK(hope_rope_cache_get(cache, &dcos, &dsin, &cap, &mem));
  EXPECT_EQ(mem, HOPE_MEMORY_DEVICE);
  EXPECT_EQ(cap, capacity);
  // Poison the tables so an unwritten row fails.
  ASSERT_CUDA(cudaMemset(const_cast<float *>(dcos), 0xff, capacity * half * sizeof(float)));
  ASSERT_CUDA(cudaMemset(const_cast<float *>(dsin), 0xff, capacity * half * sizeof(float)));

  cudaStream_t stream;
  ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  struct Chunk { int64_t offset, n, ld; bool device; };
  const Chunk chunks[] = {{0, 500, 517, false}, {500, 1, 0, false}, {501, 400, 433, true}, {901, 136, 0, true}};
  std::vector<float> all_pos(3 * capacity);
  uint64_t seed = 100 + kind;
  for (const Chunk &ch : chunks) {
    const int64_t ld = ch.ld == 0 ? ch.n : ch.ld;
    std::vector<float> p = hard_positions(ch.n, ld, seed++);
    const std::vector<float> q = packed(p, ch.n, ld);
    for (int r = 0; r < 3; ++r)
      std::copy(q.begin() + r * ch.n, q.begin() + (r + 1) * ch.n, all_pos.begin() + r * capacity + ch.offset);
    if (ch.device) {
      DeviceBuffer dp;
      ASSERT_CUDA(dp.alloc_upload(p.data(), p.size() * sizeof(float)));
      ASSERT_HOPE_OK(hope_rope_cache_fill(cache, ch.offset, dp.as<float>(), ch.n, ch.ld, HOPE_MEMORY_DEVICE,
                                          stream));
      ASSERT_CUDA(cudaStreamSynchronize(stream));
    } else {
      ASSERT_HOPE_OK(hope_rope_cache_fill(cache, ch.offset, p.data(), ch.n, ch.ld, HOPE_MEMORY_HOST, stream));
      std::fill(p.begin(), p.end(), -7.0f);  // the host array may be reused at once
    }
  }
  ASSERT_CUDA(cudaStreamSynchronize(stream));
  ASSERT_CUDA(cudaStreamDestroy(stream));
  std::vector<float> gcos(capacity * half), gsin(capacity * half);
  ASSERT_CUDA(cudaMemcpy(gcos.data(), dcos, gcos.size() * sizeof(float), cudaMemcpyDeviceToHost));
  ASSERT_CUDA(cudaMemcpy(gsin.data(), dsin, gsin.size() * sizeof(float), cudaMemcpyDeviceToHost));

  std::vector<float> hcos(capacity * half), hsin(capacity * half);
  ASSERT_HOPE_OK(hope_rope_cos_sin(&cfg, all_pos.data(), capacity, hcos.data(), hsin.data()));
  EXPECT_TRUE(hope_test::all_close(to_double(gcos), to_double(hcos), 2e-6)) << "cos vs host tables";
  EXPECT_TRUE(hope_test::all_close(to_double(gsin), to_double(hsin), 2e-6)) << "sin vs host tables";
  std::vector<double> rc, rs;
  hope_ref::cos_sin(cfg, all_pos.data(), capacity, &rc, &rs);
  EXPECT_TRUE(hope_test::all_close(to_double(gcos), rc, 2e-6)) << "cos vs reference";
  EXPECT_TRUE(hope_test::all_close(to_double(gsin), rs, 2e-6)) << "sin vs reference";
  EXPECT_HOPE_OK(hope_rope_cache_destroy(cache));
}

// A host cache fed device positions copies them back and computes on the host: identical to cos_sin.
TEST_P(RopeCacheGpu, HostCacheFromDevicePositions) {
  const hope_rope_config_t cfg = config_of(GetParam(), 64);
  const int64_t n = 129, ld = 140;
  hope_rope_cache_t cache = nullptr;
  ASSERT_HOPE_OK(hope_rope_cache_create(&cfg, 200, HOPE_MEMORY_HOST, &cache));
  const std::vector<float> p = hard_positions(n, ld, 7);
  DeviceBuffer dp;
  ASSERT_CUDA(dp.alloc_upload(p.data(), p.size() * sizeof(float)));
  ASSERT_HOPE_OK(hope_rope_cache_fill(cache, 71, dp.as<float>(), n, ld, HOPE_MEMORY_DEVICE, nullptr));
  const float *cos = nullptr, *sin = nullptr;
  ASSERT_HOPE_OK(hope_rope_cache_get(cache, &cos, &sin, nullptr, nullptr));
  const std::vector<float> q = packed(p, n, ld);
  std::vector<float> hc(n * 32), hs(n * 32);
  ASSERT_HOPE_OK(hope_rope_cos_sin(&cfg, q.data(), n, hc.data(), hs.data()));
  EXPECT_EQ(std::memcmp(cos + 71 * 32, hc.data(), hc.size() * 4), 0);
  EXPECT_EQ(std::memcmp(sin + 71 * 32, hs.data(), hs.size() * 4), 0);
  EXPECT_HOPE_OK(hope_rope_cache_destroy(cache));
}

INSTANTIATE_TEST_SUITE_P(RopeKinds, RopeCacheGpu,
                         ::testing::Values(HOPE_ROPE_VANILLA, HOPE_ROPE_MROPE, HOPE_ROPE_MROPE_INTERLEAVED,
                                           HOPE_ROPE_VIDEOROPE, HOPE_ROPE_HOPE),
                         [](const ::testing::TestParamInfo<int> &info) { return std::string(kind_name(info.param)); });

class RopeCacheGpuMisc : public hope_test::GpuTest {};

TEST_F(RopeCacheGpuMisc, PinnedHostPositionsMayBeReusedAtOnce) {
  const hope_rope_config_t cfg = config_of(HOPE_ROPE_HOPE, 128);
  const int64_t n = 1000;
  hope_rope_cache_t cache = nullptr;
  ASSERT_HOPE_OK(hope_rope_cache_create(&cfg, n, HOPE_MEMORY_DEVICE, &cache));
  float *pinned = nullptr;
  ASSERT_CUDA(cudaMallocHost(reinterpret_cast<void **>(&pinned), 3 * n * sizeof(float)));
  const std::vector<float> p = hard_positions(n, n, 3);
  std::copy(p.begin(), p.end(), pinned);
  const hope_status_t s = hope_rope_cache_fill(cache, 0, pinned, n, 0, HOPE_MEMORY_HOST, nullptr);
  std::fill(pinned, pinned + 3 * n, 12345.0f);  // reused before the device has run anything
  EXPECT_EQ(s, HOPE_SUCCESS) << hope_last_error();
  const float *dcos = nullptr;
  ASSERT_HOPE_OK(hope_rope_cache_get(cache, &dcos, nullptr, nullptr, nullptr));
  std::vector<float> g(n * 64), hc(n * 64), hs(n * 64);
  ASSERT_CUDA(cudaMemcpy(g.data(), dcos, g.size() * 4, cudaMemcpyDeviceToHost));
  ASSERT_HOPE_OK(hope_rope_cos_sin(&cfg, p.data(), n, hc.data(), hs.data()));
  EXPECT_TRUE(hope_test::all_close(to_double(g), to_double(hc), 2e-6));
  ASSERT_CUDA(cudaFreeHost(pinned));
  EXPECT_HOPE_OK(hope_rope_cache_destroy(cache));
}

TEST_F(RopeCacheGpuMisc, RejectsMismatchedPositionMemory) {
  const hope_rope_config_t cfg = config_of(HOPE_ROPE_MROPE, 64);
  hope_rope_cache_t dev = nullptr, host = nullptr;
  ASSERT_HOPE_OK(hope_rope_cache_create(&cfg, 16, HOPE_MEMORY_DEVICE, &dev));
  ASSERT_HOPE_OK(hope_rope_cache_create(&cfg, 16, HOPE_MEMORY_HOST, &host));
  const std::vector<float> p(3 * 16, 3.0f);
  DeviceBuffer dp;
  ASSERT_CUDA(dp.alloc_upload(p.data(), p.size() * sizeof(float)));
  // Host array declared as device, device array declared as host.
  EXPECT_HOPE_FAIL(hope_rope_cache_fill(dev, 0, p.data(), 16, 0, HOPE_MEMORY_DEVICE, nullptr),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_rope_cache_fill(host, 0, p.data(), 16, 0, HOPE_MEMORY_DEVICE, nullptr),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_rope_cache_fill(dev, 0, dp.as<float>(), 16, 0, HOPE_MEMORY_HOST, nullptr),
                   HOPE_ERROR_INVALID_VALUE);
  // Bounds on a device cache: nothing launched, nothing written.
  EXPECT_HOPE_FAIL(hope_rope_cache_fill(dev, 10, dp.as<float>(), 7, 0, HOPE_MEMORY_DEVICE, nullptr),
                   HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_OK(hope_rope_cache_fill(dev, 16, nullptr, 0, 0, HOPE_MEMORY_DEVICE, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  EXPECT_HOPE_OK(hope_rope_cache_destroy(dev));
  EXPECT_HOPE_OK(hope_rope_cache_destroy(host));
}

TEST_F(RopeCacheGpuMisc, TooLargeDeviceCacheIsOutOfMemory) {
  // 2^36 tokens * 512 pairs * 4 bytes = 128 TiB: more than any GPU has.
  hope_rope_config_t cfg = config_of(HOPE_ROPE_VANILLA, 1024);
  hope_rope_cache_t cache = reinterpret_cast<hope_rope_cache_t>(0x1);
  EXPECT_HOPE_FAIL(hope_rope_cache_create(&cfg, int64_t{1} << 36, HOPE_MEMORY_DEVICE, &cache),
                   HOPE_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(cache, nullptr);
  // The failed allocation leaves no error behind.
  ASSERT_CUDA(cudaGetLastError());
  ASSERT_HOPE_OK(hope_rope_cache_create(&cfg, 4, HOPE_MEMORY_DEVICE, &cache));
  EXPECT_HOPE_OK(hope_rope_cache_destroy(cache));
}

// ---- rotation on the GPU ---------------------------------------------------------------------------------


struct GpuApplyCase {
  int dtype, kind;
  int64_t tokens;
  int heads, head_dim;
  int64_t x_pad, out_pad;  // extra elements per row (odd: unaligned rows, the scalar fallback)
  int64_t x_shift;         // x starts this many elements into its buffer (1: unaligned pointer)
  bool in_place;
  int pairing = 0, rotary_dim = 0;  // SPEC §8
};

std::string gpu_case_name(const GpuApplyCase &c) {
  std::string s = std::string(hope_test::dtype_name(c.dtype)) + "_" + kind_name(c.kind) + "_tokens" +
                  std::to_string(c.tokens) + "_heads" + std::to_string(c.heads) + "_d" + std::to_string(c.head_dim);
  if (c.x_pad || c.out_pad) s += "_pad" + std::to_string(c.x_pad) + "x" + std::to_string(c.out_pad);
  if (c.x_shift) s += "_shift" + std::to_string(c.x_shift);
  if (c.in_place) s += "_inplace";
  if (c.pairing) s += "_interleaved";
  if (c.rotary_dim) s += "_r" + std::to_string(c.rotary_dim);
  return s;
}

class RopeApplyGpu : public hope_test::GpuTestWithParam<GpuApplyCase> {};

TEST_P(RopeApplyGpu, MatchesFloat64Reference) {
  const GpuApplyCase &tc = GetParam();
  const int rot = tc.rotary_dim != 0 ? tc.rotary_dim : tc.head_dim;
  const hope_rope_config_t cfg = hope_test::partial_config_of(tc.kind, tc.head_dim, rot, tc.pairing);
  const int half = rot / 2;
  const int64_t row = static_cast<int64_t>(tc.heads) * tc.head_dim;
  const int64_t xs = row + tc.x_pad, os = tc.in_place ? xs : row + tc.out_pad;
  const size_t es = hope_test::dtype_size(tc.dtype);
  std::mt19937_64 rng(31 + tc.tokens + tc.head_dim * 3 + tc.kind);

  const std::vector<float> pos = big_positions(tc.tokens, 17 + tc.kind);
  std::vector<float> cos(tc.tokens * half), sin(tc.tokens * half);
  ASSERT_HOPE_OK(hope_rope_cos_sin(&cfg, pos.data(), tc.tokens, cos.data(), sin.data()));
  std::vector<double> rc, rs;
  hope_ref::cos_sin(cfg, pos.data(), tc.tokens, &rc, &rs);

  // x with its padding (random too: it must not leak into the output) and a guard region after the output.
  const int64_t x_elems = tc.x_shift + tc.tokens * xs;
  const Tensor x = hope_test::random_tensor(tc.dtype, x_elems, rng);
  const int64_t guard = 64;
  const int64_t out_elems = tc.in_place ? x_elems : tc.tokens * os + guard;
  Tensor out(tc.dtype, out_elems);
  out.poison();

  DeviceBuffer dx, dout, dcos, dsin;
  ASSERT_CUDA(dx.alloc_upload(x.data(), x.bytes.size()));
  if (!tc.in_place) {
    ASSERT_CUDA(dout.alloc(out.bytes.size()));
    ASSERT_CUDA(cudaMemset(dout.get(), 0xff, out.bytes.size()));
  }
  ASSERT_CUDA(dcos.alloc_upload(cos.data(), cos.size() * 4));
  ASSERT_CUDA(dsin.alloc_upload(sin.data(), sin.size() * 4));

  hope_rope_apply_params_t p{};
  std::memset(&p, 0, sizeof p);
  p.backend = HOPE_BACKEND_CUDA;
  p.dtype = tc.dtype;
  p.num_tokens = tc.tokens;
  p.num_heads = tc.heads;
  p.head_dim = tc.head_dim;
  p.x = dx.as<uint8_t>() + tc.x_shift * es;
  p.x_row_stride = tc.x_pad ? xs : 0;
  p.out = tc.in_place ? const_cast<void *>(p.x) : dout.get();
  p.out_row_stride = tc.in_place ? p.x_row_stride : (tc.out_pad ? os : 0);
  p.cos = dcos.as<float>();
  p.sin = dsin.as<float>();
  p.rope_pairing = tc.pairing;
  p.rotary_dim = tc.rotary_dim;
  cudaStream_t stream;
  ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  ASSERT_HOPE_OK(hope_rope_apply(&p, stream));
  ASSERT_CUDA(cudaStreamSynchronize(stream));
  ASSERT_CUDA(cudaStreamDestroy(stream));
  ASSERT_CUDA(cudaGetLastError());
  if (tc.in_place) {
    ASSERT_CUDA(cudaMemcpy(out.data(), dx.get(), out.bytes.size(), cudaMemcpyDeviceToHost));
  } else {
    ASSERT_CUDA(cudaMemcpy(out.data(), dout.get(), out.bytes.size(), cudaMemcpyDeviceToHost));
  }

  const int64_t out_base = tc.in_place ? tc.x_shift : 0;
  std::vector<double> in, got;
  in.reserve(tc.tokens * row);
  got.reserve(tc.tokens * row);
  for (int64_t t = 0; t < tc.tokens; ++t) {
    for (int64_t e = 0; e < row; ++e) {
      in.push_back(x.get(tc.x_shift + t * xs + e));
      got.push_back(out.get(out_base + t * os + e));
    }
    // Row padding: untouched (poison out of place, the original x in place).
    for (int64_t e = row; e < os; ++e) {
      const size_t i = (out_base + t * os + e) * es;
      if (tc.in_place) {
        ASSERT_EQ(std::memcmp(&out.bytes[i], &x.bytes[i], es), 0) << "padding of token " << t << " changed";
      } else {
        for (size_t b = 0; b < es; ++b) ASSERT_EQ(out.bytes[i + b], 0xff) << "padding of token " << t << " written";
      }
    }
  }
  if (!tc.in_place) {
    for (int64_t i = tc.tokens * os * es; i < out_elems * static_cast<int64_t>(es); ++i)
      ASSERT_EQ(out.bytes[i], 0xff) << "guard byte " << i << " after the output was written";
  }
  const std::vector<double> terms = term_sizes(in, tc.head_dim, tc.pairing, rot);
  EXPECT_TRUE(rotated_close(tc.dtype, got,
                            hope_ref::rotate(in, tc.tokens, tc.heads, tc.head_dim, rc, rs, tc.pairing, rot), terms));
  for (int64_t t = 0; t < tc.tokens; ++t)  // dims past rotary_dim: the input's bits
    for (int h = 0; h < tc.heads; ++h)
      ASSERT_EQ(std::memcmp(&out.bytes[(out_base + t * os + h * tc.head_dim + rot) * es],
                            &x.bytes[(tc.x_shift + t * xs + h * tc.head_dim + rot) * es], (tc.head_dim - rot) * es), 0)
          << "pass-through dims of token " << t << " head " << h;

  // The CPU backend on the same inputs agrees to within one ulp of the dtype as well.
  Tensor cpu_out(tc.dtype, tc.tokens * row);
  cpu_out.poison();
  hope_rope_apply_params_t c = p;
  c.backend = HOPE_BACKEND_CPU;
  c.x = x.bytes.data() + tc.x_shift * es;
  c.out = cpu_out.data();
  c.out_row_stride = 0;
  c.cos = cos.data();
  c.sin = sin.data();
  ASSERT_HOPE_OK(hope_rope_apply(&c, nullptr));
  const std::vector<double> cpu = cpu_out.values();
  for (size_t i = 0; i < cpu.size(); ++i)
    ASSERT_LE(std::fabs(cpu[i] - got[i]),
              (tc.dtype == HOPE_DTYPE_FLOAT32 ? 0.0 : ulp_of(tc.dtype, cpu[i])) + 0x1p-22 * terms[i])
        << "GPU and CPU differ at element " << i;
}

std::vector<GpuApplyCase> gpu_cases() {
  std::vector<GpuApplyCase> cases;
  for (int dtype : {HOPE_DTYPE_FLOAT16, HOPE_DTYPE_BFLOAT16, HOPE_DTYPE_FLOAT32}) {
    for (int kind = HOPE_ROPE_VANILLA; kind <= HOPE_ROPE_HOPE; ++kind)
      cases.push_back({dtype, kind, 1037, 5, 128, 0, 0, 0, false});
    for (int64_t tokens : {1, 7}) cases.push_back({dtype, HOPE_ROPE_HOPE, tokens, 3, 128, 0, 0, 0, false});
    cases.push_back({dtype, HOPE_ROPE_MROPE, 7, 2, 64, 0, 0, 0, true});                 // in place
    cases.push_back({dtype, HOPE_ROPE_HOPE, 129, 6, 128, 2 * 128 + 8, 8, 0, true});    // fused QKV in place
    cases.push_back({dtype, HOPE_ROPE_VIDEOROPE, 129, 4, 64, 64, 16, 0, false});       // aligned strides
    cases.push_back({dtype, HOPE_ROPE_MROPE, 129, 3, 64, 1, 3, 0, false});             // unaligned strides
    cases.push_back({dtype, HOPE_ROPE_HOPE, 7, 2, 128, 0, 0, 1, false});               // unaligned pointer
    cases.push_back({dtype, HOPE_ROPE_MROPE_INTERLEAVED, 37, 3, 12, 0, 0, 0, false});  // half 6: scalar
    cases.push_back({dtype, HOPE_ROPE_VANILLA, 7, 1, 2, 0, 0, 0, false});              // head_dim 2
    cases.push_back({dtype, HOPE_ROPE_HOPE, 7, 2, 1024, 0, 0, 0, false});              // head_dim 1024
    cases.push_back({dtype, HOPE_ROPE_MROPE, 1037, 1, 8, 0, 0, 0, true});              // f32 vector, bf16 scalar
    // SPEC §8: interleaved pairs, partial rotary (GLM: 64 of 128), both, unaligned and in place.
    cases.push_back({dtype, HOPE_ROPE_MROPE, 129, 4, 128, 0, 0, 0, false, 1, 64});
    cases.push_back({dtype, HOPE_ROPE_VIDEOROPE, 129, 3, 128, 0, 0, 0, false, 1, 0});
    cases.push_back({dtype, HOPE_ROPE_HOPE, 37, 2, 96, 0, 0, 0, false, 0, 80});
    cases.push_back({dtype, HOPE_ROPE_MROPE, 37, 3, 64, 1, 3, 0, false, 1, 34});
    cases.push_back({dtype, HOPE_ROPE_MROPE_INTERLEAVED, 7, 2, 64, 0, 0, 0, true, 1, 2});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(RopeCases, RopeApplyGpu, ::testing::ValuesIn(gpu_cases()),
                         [](const ::testing::TestParamInfo<GpuApplyCase> &info) {
                           return gpu_case_name(info.param);
                         });

class RopeApplyGpuMisc : public hope_test::GpuTest {};

TEST_F(RopeApplyGpuMisc, ZeroTokensAndBadInput) {
  hope_rope_apply_params_t p{};
  std::memset(&p, 0, sizeof p);
  p.backend = HOPE_BACKEND_CUDA;
  p.dtype = HOPE_DTYPE_BFLOAT16;
  p.num_heads = 4;
  p.head_dim = 128;
  EXPECT_HOPE_OK(hope_rope_apply(&p, nullptr));  // 0 tokens, NULL pointers
  p.num_tokens = 3;
  EXPECT_HOPE_FAIL(hope_rope_apply(&p, nullptr), HOPE_ERROR_INVALID_VALUE);  // NULL x
  p.head_dim = 127;
  EXPECT_HOPE_FAIL(hope_rope_apply(&p, nullptr), HOPE_ERROR_INVALID_VALUE);
  ASSERT_CUDA(cudaDeviceSynchronize());
}

// The rotated tables of a device cache feed hope_rope_apply directly (the usual pipeline).
TEST_F(RopeApplyGpuMisc, DeviceCacheFeedsApply) {
  const hope_rope_config_t cfg = config_of(HOPE_ROPE_HOPE, 128);
  const int64_t tokens = 257;
  const int heads = 8, d = 128;
  hope_rope_cache_t cache = nullptr;
  ASSERT_HOPE_OK(hope_rope_cache_create(&cfg, 4096, HOPE_MEMORY_DEVICE, &cache));
  const std::vector<float> pos = big_positions(tokens, 5);
  ASSERT_HOPE_OK(hope_rope_cache_fill(cache, 1000, pos.data(), tokens, 0, HOPE_MEMORY_HOST, nullptr));
  const float *dcos = nullptr, *dsin = nullptr;
  ASSERT_HOPE_OK(hope_rope_cache_get(cache, &dcos, &dsin, nullptr, nullptr));
  std::mt19937_64 rng(8);
  const Tensor x = hope_test::random_tensor(HOPE_DTYPE_BFLOAT16, tokens * heads * d, rng);
  DeviceBuffer dx;
  ASSERT_CUDA(dx.alloc_upload(x.data(), x.bytes.size()));
  hope_rope_apply_params_t p{};
  std::memset(&p, 0, sizeof p);
  p.backend = HOPE_BACKEND_CUDA;
  p.dtype = HOPE_DTYPE_BFLOAT16;
  p.num_tokens = tokens;
  p.num_heads = heads;
  p.head_dim = d;
  p.x = dx.get();
  p.out = dx.get();
  p.cos = dcos + 1000 * 64;
  p.sin = dsin + 1000 * 64;
  ASSERT_HOPE_OK(hope_rope_apply(&p, nullptr));
  Tensor out(HOPE_DTYPE_BFLOAT16, tokens * heads * d);
  ASSERT_CUDA(cudaMemcpy(out.data(), dx.get(), out.bytes.size(), cudaMemcpyDeviceToHost));
  std::vector<double> rc, rs;
  hope_ref::cos_sin(cfg, pos.data(), tokens, &rc, &rs);
  const std::vector<double> xv = x.values();
  EXPECT_TRUE(rotated_close(HOPE_DTYPE_BFLOAT16, out.values(), hope_ref::rotate(xv, tokens, heads, d, rc, rs),
                            term_sizes(xv, d)));
  EXPECT_HOPE_OK(hope_rope_cache_destroy(cache));
}

}  // namespace
