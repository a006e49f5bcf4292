// paged_test_util.h — the paged decode problem builder and the paged-cache description shared by the CPU and GPU serving tests
// (test_serving_cpu.cc, test_serving_gpu.cc), and the CPU backend's append that GPU appends are compared with; the
// problem data itself comes from reference/paged_ref.h.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "hope_attn.h"
#include "reference/paged_ref.h"
#include "test_util.h"

namespace hope_test {

// A named paged decode problem: dtype, heads (hq query, hk kv), head_dim d, page size ps, query tokens and
// cache lengths per sequence, causal mask, number of KV splits (0: planned), RoPE on q/k, q row padding and
// whether the log-sum-exp is requested.
inline hope_ref::PagedDecodeCase make_paged_case(const std::string &name, int dtype, int hq, int hk, int d, int ps,
                                                 std::vector<int32_t> nq, std::vector<int32_t> lens, bool causal,
                                                 int splits, bool rope = true, int q_pad = 0, bool with_lse = true) {
  hope_ref::PagedDecodeCase c;
  c.q_pad = q_pad;
  c.with_lse = with_lse;
  c.name = name;
  c.dtype = dtype;
  c.hq = hq;
  c.hk = hk;
  c.head_dim = d;
  c.page_size = ps;
  c.nq = std::move(nq);
  c.lens = std::move(lens);
  c.causal = causal;
  c.num_splits = splits;
  c.rope = rope;
  return c;
}

// A paged KV cache description (every field of hope_paged_kv_t).
inline hope_paged_kv_t paged_kv(int32_t dtype, int32_t num_pages, int32_t page_size, int32_t num_kv_heads,
                                int32_t head_dim, void *k_pages, void *v_pages) {
  hope_paged_kv_t kv{};
  kv.dtype = dtype;
  kv.num_pages = num_pages;
  kv.page_size = page_size;
  kv.num_kv_heads = num_kv_heads;
  kv.head_dim = head_dim;
  kv.k_pages = k_pages;
  kv.v_pages = v_pages;
  return kv;
}

// Decode params of problem (c, d) over `cache` on `backend`: the tables cu_q [batch + 1], seq_lens [batch], page_table
// [batch][max_pages], q and out in that backend's memory; causal and num_splits from c. No rotation, lse or q
// stride (the caller sets what it needs).
inline hope_decode_params_t decode_params(int32_t backend, const hope_ref::PagedDecodeCase &c,
                                          const hope_ref::PagedDecodeData &d, const hope_paged_kv_t &cache,
                                          const int32_t *cu_q, const int32_t *seq_lens, const int32_t *page_table,
                                          const void *q, void *out) {
  hope_decode_params_t p;
  std::memset(&p, 0, sizeof p);
  p.backend = backend;
  p.cache = cache;
  p.batch = d.batch;
  p.num_q_heads = c.hq;
  p.cu_seqlens_q = cu_q;
  p.max_seqlen_q = d.max_q;
  p.seq_lens = seq_lens;
  p.max_seqlen_k = d.max_k;
  p.page_table = page_table;
  p.max_pages_per_seq = d.max_pages;
  p.q = q;
  p.out = out;
  p.causal = c.causal ? 1 : 0;
  p.num_splits = c.num_splits;
  return p;
}

// hope_kv_append on the CPU backend with the cache shape, strides and rotary fields of `like` (a call made for the
// CUDA backend), on host copies of its inputs, into fresh pages poisoned with 0xff (NaN): what that call must write.
inline void cpu_append(const hope_kv_append_params_t &like, const void *k, const void *v, const int64_t *slots,
                       const float *cos, const float *sin, Tensor *k_pages, Tensor *v_pages) {
  const size_t elems = static_cast<size_t>(like.cache.num_pages) * like.cache.page_size * like.cache.num_kv_heads *
                       like.cache.head_dim;
  *k_pages = Tensor(like.cache.dtype, elems);
  *v_pages = Tensor(like.cache.dtype, elems);
  k_pages->poison();
  v_pages->poison();
  hope_kv_append_params_t p = like;
  p.backend = HOPE_BACKEND_CPU;
  p.cache.k_pages = k_pages->data();
  p.cache.v_pages = v_pages->data();
  p.k = k;
  p.v = v;
  p.slot_mapping = slots;
  p.cos_k = cos;
  p.sin_k = sin;
  ASSERT_HOPE_OK(hope_kv_append(&p, nullptr));
}

}  // namespace hope_test
