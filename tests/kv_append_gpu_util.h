// kv_append_gpu_util.h — one hope_kv_append call on the CUDA backend over device copies of its inputs, shared by
// the kv_append GPU tests (test_serving_gpu.cc) and their SPEC §8 variants (test_rotary_variants_gpu.cc).
#pragma once

#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "gpu_util.h"
#include "hope_attn.h"
#include "paged_test_util.h"
#include "test_util.h"

namespace hope_test {

// A paged cache of `page_bytes` per K and V on the device, the append's inputs uploaded (K rows k_stride apart,
// V rows packed, the slot mapping, cos/sin), and the CUDA params over them. The caller sets what its test varies
// (pairing, rotary_dim) and calls hope_kv_append.
struct DeviceAppend {
  DeviceAppend(const Tensor &k, const Tensor &v, const std::vector<int64_t> &slots, const std::vector<float> &cs,
               const std::vector<float> &sn, size_t page_bytes)
      : kp(page_bytes), vp(page_bytes), dk(k.bytes.size()), dv(v.bytes.size()), ds(slots.size() * 8),
        dc(cs.size() * 4), dsn(sn.size() * 4) {}

  // Uploads the inputs and fills params (cos/sin only when `rope`; k_row_stride 0 when K rows are packed). Call
  // through ASSERT_NO_FATAL_FAILURE.
  void upload(const Tensor &k, const Tensor &v, const std::vector<int64_t> &slots, const std::vector<float> &cs,
              const std::vector<float> &sn, int32_t dtype, int32_t num_pages, int32_t page_size, int32_t hk,
              int32_t d, int64_t k_row_stride, bool rope) {
    for (const DeviceBuffer *b : {&kp, &vp, &dk, &dv, &ds, &dc, &dsn}) ASSERT_TRUE(b->ok());
    ASSERT_CUDA(dk.upload(k.data(), k.bytes.size()));
    ASSERT_CUDA(dv.upload(v.data(), v.bytes.size()));
    ASSERT_CUDA(ds.upload(slots.data(), slots.size() * 8));
    ASSERT_CUDA(dc.upload(cs.data(), cs.size() * 4));
    ASSERT_CUDA(dsn.upload(sn.data(), sn.size() * 4));
    params = hope_kv_append_params_t{};
    params.backend = HOPE_BACKEND_CUDA;
    params.cache = paged_kv(dtype, num_pages, page_size, hk, d, kp.get(), vp.get());
    params.num_tokens = static_cast<int64_t>(slots.size());
    params.k = dk.get();
    params.v = dv.get();
    params.k_row_stride = k_row_stride;
    params.slot_mapping = ds.as<int64_t>();
    params.cos_k = rope ? dc.as<float>() : nullptr;
    params.sin_k = rope ? dsn.as<float>() : nullptr;
  }

  DeviceBuffer kp, vp, dk, dv, ds, dc, dsn;
  hope_kv_append_params_t params{};
};

}  // namespace hope_test
