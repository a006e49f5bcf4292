// test_attention_args.cc — bad inputs to hope_attention_forward, hope_attention_unfused_workspace_size and
// hope_attention_forward_unfused: each check gives its status, a non-empty message, and writes nothing.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "hope_attn.h"
#include "test_util.h"

namespace {

// A small valid CPU call (batch 2, Hq 4, Hk 2, d 8, float32) whose buffers outlive the params.
struct Fixture {
  static constexpr int kHq = 4, kHk = 2, kD = 8;
  std::vector<int32_t> cu_q{0, 3, 5}, cu_k{0, 4, 6};
  std::vector<float> q = std::vector<float>(5 * kHq * kD, 0.25f);
  std::vector<float> k = std::vector<float>(6 * kHk * kD, 0.5f);
  std::vector<float> v = std::vector<float>(6 * kHk * kD, 1.0f);
  std::vector<float> cos_q = std::vector<float>(5 * kD / 2, 1.0f), sin_q = std::vector<float>(5 * kD / 2, 0.0f);
  std::vector<float> cos_k = std::vector<float>(6 * kD / 2, 1.0f), sin_k = std::vector<float>(6 * kD / 2, 0.0f);
  std::vector<uint8_t> out, lse, krot;  // poisoned bytes
  hope_attention_params_t p{};

  explicit Fixture(int backend = HOPE_BACKEND_CPU) {
    std::memset(&p, 0, sizeof p);
    p.backend = backend;
    p.dtype = HOPE_DTYPE_FLOAT32;
    p.batch = 2;
    p.num_q_heads = kHq;
    p.num_kv_heads = kHk;
    p.head_dim = kD;
    p.cu_seqlens_q = cu_q.data();
    p.cu_seqlens_k = cu_k.data();
    p.max_seqlen_q = 3;
    p.max_seqlen_k = 4;
    p.q = q.data();
    p.k = k.data();
    p.v = v.data();
    out.assign(5 * kHq * kD * sizeof(float), 0xA5);
    lse.assign(kHq * 5 * sizeof(float), 0xA5);
    krot.assign(6 * kHk * kD * sizeof(float), 0xA5);
    p.out = out.data();
    p.lse = reinterpret_cast<float *>(lse.data());
    p.k_rotated = krot.data();
    p.cos_q = cos_q.data();
    p.sin_q = sin_q.data();
    p.cos_k = cos_k.data();
    p.sin_k = sin_k.data();
    p.causal = 1;
  }
  bool untouched() const {
    auto clean = [](const std::vector<uint8_t> &b) {
      for (uint8_t x : b)
        if (x != 0xA5) return false;
      return true;
    };
    return clean(out) && clean(lse) && clean(krot);
  }
};

struct BadInput {
  std::string name;
  std::function<void(hope_attention_params_t *)> mutate;
};

// Checks every backend can reject on the host (device cu_seqlens are never read).
std::vector<BadInput> host_checks() {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  return {
      {"backend", [](hope_attention_params_t *p) { p->backend = 7; }},
      {"dtype", [](hope_attention_params_t *p) { p->dtype = 9; }},
      {"dtype_negative", [](hope_attention_params_t *p) { p->dtype = -1; }},
      {"batch_negative", [](hope_attention_params_t *p) { p->batch = -1; }},
      {"num_q_heads_zero", [](hope_attention_params_t *p) { p->num_q_heads = 0; }},
      {"num_kv_heads_zero", [](hope_attention_params_t *p) { p->num_kv_heads = 0; }},
      {"heads_not_multiple", [](hope_attention_params_t *p) { p->num_kv_heads = 3; }},
      {"head_dim_odd", [](hope_attention_params_t *p) { p->head_dim = 7; }},
      {"head_dim_zero", [](hope_attention_params_t *p) { p->head_dim = 0; }},
      {"head_dim_too_large", [](hope_attention_params_t *p) { p->head_dim = 1026; }},
      {"q_null", [](hope_attention_params_t *p) { p->q = nullptr; }},
      {"k_null", [](hope_attention_params_t *p) { p->k = nullptr; }},
      {"v_null", [](hope_attention_params_t *p) { p->v = nullptr; }},
      {"out_null", [](hope_attention_params_t *p) { p->out = nullptr; }},
      {"cu_seqlens_q_null", [](hope_attention_params_t *p) { p->cu_seqlens_q = nullptr; }},
      {"cu_seqlens_k_null", [](hope_attention_params_t *p) { p->cu_seqlens_k = nullptr; }},
      {"sin_q_missing", [](hope_attention_params_t *p) { p->sin_q = nullptr; }},
      {"cos_q_missing", [](hope_attention_params_t *p) { p->cos_q = nullptr; }},
      {"sin_k_missing", [](hope_attention_params_t *p) { p->sin_k = nullptr; }},
      {"cos_k_missing", [](hope_attention_params_t *p) { p->cos_k = nullptr; }},
      {"q_row_stride_small", [](hope_attention_params_t *p) { p->q_row_stride = 31; }},
      {"q_row_stride_negative", [](hope_attention_params_t *p) { p->q_row_stride = -32; }},
      {"k_row_stride_small", [](hope_attention_params_t *p) { p->k_row_stride = 15; }},
      {"v_row_stride_small", [](hope_attention_params_t *p) { p->v_row_stride = 8; }},
      {"q_row_stride_overflows", [](hope_attention_params_t *p) { p->q_row_stride = INT64_MAX / 2; }},
      {"v_row_stride_overflows", [](hope_attention_params_t *p) { p->v_row_stride = INT64_MAX / 3; }},
      {"max_seqlen_q_negative", [](hope_attention_params_t *p) { p->max_seqlen_q = -1; }},
      {"max_seqlen_k_negative", [](hope_attention_params_t *p) { p->max_seqlen_k = -1; }},
      {"softmax_scale_nan", [nan](hope_attention_params_t *p) { p->softmax_scale = nan; }},
      {"softmax_scale_inf", [inf](hope_attention_params_t *p) { p->softmax_scale = inf; }},
      {"softmax_scale_minus_inf", [inf](hope_attention_params_t *p) { p->softmax_scale = -inf; }},
  };
}

// Checks of host cu_seqlens (CPU backend only).
std::vector<BadInput> cpu_seqlen_checks() {
  return {
      {"cu_seqlens_q_nonzero_start", [](hope_attention_params_t *p) {
         static const int32_t cu[] = {1, 3, 5};
         p->cu_seqlens_q = cu;
       }},
      {"cu_seqlens_k_nonzero_start", [](hope_attention_params_t *p) {
         static const int32_t cu[] = {-1, 4, 6};
         p->cu_seqlens_k = cu;
       }},
      {"cu_seqlens_q_decreasing", [](hope_attention_params_t *p) {
         static const int32_t cu[] = {0, 3, 2};
         p->cu_seqlens_q = cu;
       }},
      {"cu_seqlens_k_decreasing", [](hope_attention_params_t *p) {
         static const int32_t cu[] = {0, 4, 1};
         p->cu_seqlens_k = cu;
       }},
      {"seqlen_q_above_max", [](hope_attention_params_t *p) { p->max_seqlen_q = 2; }},
      {"seqlen_k_above_max", [](hope_attention_params_t *p) { p->max_seqlen_k = 3; }},
  };
}

using Entry = std::function<hope_status_t(const hope_attention_params_t *)>;
struct EntryPoint {
  const char *name;
  Entry call;
};
std::vector<EntryPoint> entry_points() {
  return {
      {"hope_attention_forward", [](const hope_attention_params_t *p) { return hope_attention_forward(p, nullptr); }},
      {"hope_attention_unfused_workspace_size",
       [](const hope_attention_params_t *p) {
         size_t bytes = 12345;
         hope_status_t s = hope_attention_unfused_workspace_size(p, &bytes);
         if (s != HOPE_SUCCESS) {
           EXPECT_EQ(bytes, 12345u) << "workspace size written on failure";
         }
         return s;
       }},
      {"hope_attention_forward_unfused",
       [](const hope_attention_params_t *p) {
         static float ws[16];
         return hope_attention_forward_unfused(p, ws, sizeof ws, nullptr);
       }},
  };
}

void expect_rejected(int backend, const std::vector<BadInput> &checks) {
  for (const EntryPoint &e : entry_points()) {
    for (const BadInput &b : checks) {
      SCOPED_TRACE(std::string(e.name) + " / " + b.name + (backend == HOPE_BACKEND_CPU ? " / cpu" : " / cuda"));
      Fixture f(backend);
      b.mutate(&f.p);
      EXPECT_HOPE_FAIL(e.call(&f.p), HOPE_ERROR_INVALID_VALUE);
      EXPECT_NE(std::strstr(hope_last_error(), e.name), nullptr) << "message should name the function: "
                                                                  << hope_last_error();
      EXPECT_TRUE(f.untouched());
    }
  }
}

TEST(AttentionArgs, ValidCpuCallSucceeds) {
  Fixture f;
  ASSERT_HOPE_OK(hope_attention_forward(&f.p, nullptr));
  EXPECT_FALSE(f.untouched());
  // The fixture's cos = 1, sin = 0: k_rotated is k itself.
  for (size_t i = 0; i < f.k.size(); ++i) {
    float x;
    std::memcpy(&x, &f.krot[i * 4], 4);
    ASSERT_EQ(x, f.k[i]) << i;
  }
}

TEST(AttentionArgs, HostChecksRejectedOnCpuBackend) { expect_rejected(HOPE_BACKEND_CPU, host_checks()); }

TEST(AttentionArgs, HostChecksRejectedOnCudaBackendBeforeTheDevice) {
  expect_rejected(HOPE_BACKEND_CUDA, host_checks());
}

TEST(AttentionArgs, CpuSeqlenChecksNameTheSequence) {
  expect_rejected(HOPE_BACKEND_CPU, cpu_seqlen_checks());
  Fixture f;
  f.p.max_seqlen_k = 3;  // sequence 0 has 4 keys
  EXPECT_HOPE_FAIL(hope_attention_forward(&f.p, nullptr), HOPE_ERROR_INVALID_VALUE);
  EXPECT_NE(std::strstr(hope_last_error(), "sequence 0"), nullptr) << hope_last_error();
  static const int32_t cu[] = {0, 3, 2};
  Fixture g;
  g.p.cu_seqlens_q = cu;
  EXPECT_HOPE_FAIL(hope_attention_forward(&g.p, nullptr), HOPE_ERROR_INVALID_VALUE);
  EXPECT_NE(std::strstr(hope_last_error(), "sequence 1"), nullptr) << hope_last_error();
  EXPECT_TRUE(g.untouched());
}

TEST(AttentionArgs, NullParamsRejected) {
  for (const EntryPoint &e : entry_points()) {
    SCOPED_TRACE(e.name);
    EXPECT_HOPE_FAIL(e.call(nullptr), HOPE_ERROR_INVALID_VALUE);
  }
  Fixture f(HOPE_BACKEND_CUDA);
  EXPECT_HOPE_FAIL(hope_attention_unfused_workspace_size(&f.p, nullptr), HOPE_ERROR_INVALID_VALUE);
  EXPECT_HOPE_FAIL(hope_attention_forward_unfused(&f.p, nullptr, 64, nullptr), HOPE_ERROR_INVALID_VALUE);
  EXPECT_TRUE(f.untouched());
}

// The CUDA backend cannot read cu_seqlens, so it bounds the token counts by batch * max_seqlen: a stride
// whose product with that bound leaves int64 is rejected on the host.
TEST(AttentionArgs, CudaExtentOverflowRejected) {
  for (const EntryPoint &e : entry_points()) {
    SCOPED_TRACE(e.name);
    Fixture f(HOPE_BACKEND_CUDA);
    f.p.max_seqlen_q = 1 << 26;
    f.p.q_row_stride = int64_t{1} << 40;  // 2^27 tokens * 2^40 > 2^63
    EXPECT_HOPE_FAIL(e.call(&f.p), HOPE_ERROR_INVALID_VALUE);
    EXPECT_NE(std::strstr(hope_last_error(), "q"), nullptr) << hope_last_error();
    EXPECT_TRUE(f.untouched());
  }
}

// On the CPU backend max_seqlen_* only has to bound the true lengths.
TEST(AttentionArgs, MaxSeqlenIsOnlyABound) {
  Fixture f(HOPE_BACKEND_CPU);
  f.p.max_seqlen_q = 1 << 26;
  f.p.max_seqlen_k = 1 << 26;
  EXPECT_HOPE_OK(hope_attention_forward(&f.p, nullptr));
  EXPECT_FALSE(f.untouched());
}

TEST(AttentionArgs, UnfusedOnCpuBackendNotSupported) {
  Fixture f;
  size_t bytes = 99;
  EXPECT_HOPE_FAIL(hope_attention_unfused_workspace_size(&f.p, &bytes), HOPE_ERROR_NOT_SUPPORTED);
  EXPECT_NE(std::strstr(hope_last_error(), "hope_attention_forward"), nullptr) << hope_last_error();
  EXPECT_EQ(bytes, 99u);
  float ws[4];
  EXPECT_HOPE_FAIL(hope_attention_forward_unfused(&f.p, ws, sizeof ws, nullptr), HOPE_ERROR_NOT_SUPPORTED);
  EXPECT_NE(std::strstr(hope_last_error(), "hope_attention_forward"), nullptr) << hope_last_error();
  EXPECT_TRUE(f.untouched());
}

TEST(AttentionArgs, BatchZeroIsANoOp) {
  for (int backend : {HOPE_BACKEND_CPU, HOPE_BACKEND_CUDA}) {
    hope_attention_params_t p{};
    std::memset(&p, 0, sizeof p);
    p.backend = backend;
    p.dtype = HOPE_DTYPE_BFLOAT16;
    p.num_q_heads = p.num_kv_heads = 1;
    p.head_dim = 64;
    EXPECT_HOPE_OK(hope_attention_forward(&p, nullptr));
    if (backend == HOPE_BACKEND_CUDA) {
      size_t bytes = 7;
      EXPECT_HOPE_OK(hope_attention_unfused_workspace_size(&p, &bytes));
      EXPECT_EQ(bytes, 0u);
      EXPECT_HOPE_OK(hope_attention_forward_unfused(&p, nullptr, 0, nullptr));
    }
    // A bad field is still an error with batch 0.
    p.head_dim = 63;
    EXPECT_HOPE_FAIL(hope_attention_forward(&p, nullptr), HOPE_ERROR_INVALID_VALUE);
  }
}

TEST(AttentionArgs, CudaBackendWithoutGpuIsNoDevice) {
  int32_t n = -1;
  ASSERT_HOPE_OK(hope_cuda_device_count(&n));
  if (n != 0) GTEST_SKIP() << "a CUDA device is present";
  for (const EntryPoint &e : entry_points()) {
    SCOPED_TRACE(e.name);
    Fixture f(HOPE_BACKEND_CUDA);
    EXPECT_HOPE_FAIL(e.call(&f.p), hope_test::no_gpu_status());
    EXPECT_TRUE(f.untouched());
  }
}

}  // namespace
