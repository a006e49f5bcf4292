// paged_test_util.h — the paged decode problem builder and the paged-cache description shared by the CPU and GPU serving tests
// (test_serving_cpu.cc, test_serving_gpu.cc); the problem data itself comes from reference/paged_ref.h.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "hope_attn.h"
#include "reference/paged_ref.h"

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

}  // namespace hope_test
