// paged_ref.h — float64 helpers for the serving tests (paged KV cache, decode): a random decode problem
// (inputs already rounded to the dtype the library sees), rotation in double, gathering a sequence's keys
// and values out of pages, and the decode reference built on hope_ref::attention.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "hope_attn.h"
#include "reference/reference.h"

namespace hope_ref {

// The shape of one paged decode problem.
struct PagedDecodeCase {
  int dtype = HOPE_DTYPE_BFLOAT16;
  int hq = 4, hk = 1, head_dim = 64, page_size = 16;
  std::vector<int32_t> nq;    // query tokens per sequence (0..8)
  std::vector<int32_t> lens;  // keys per sequence, the new tokens included (>= nq)
  bool causal = true;
  int num_splits = 0;         // passed to hope_decode_params_t::num_splits
  bool rope = true;           // q and k rotated from cos/sin (else used as given)
  int extra_pages = 3;        // unused pages in the cache (stay poisoned)
  int max_seqlen_k_slack = 0; // max_seqlen_k = max(lens) + this
  int q_pad = 0;              // extra (poisoned) elements after each q row: q_row_stride = hq * d + q_pad
  bool with_lse = true;       // false: params.lse = NULL
  std::string name;
};

// gtest prints a parameter by its name.
inline void PrintTo(const PagedDecodeCase &c, std::ostream *os) { *os << c.name; }

// Everything a test passes to the library, as float32 values exactly representable in the dtype.
struct PagedDecodeData {
  int batch = 0, num_pages = 0, max_pages = 0, max_q = 0, max_k = 0;
  int64_t total_q = 0, total_k = 0;
  std::vector<int32_t> cu_q;        // [batch + 1]
  std::vector<int32_t> cu_k;        // [batch + 1] offsets of each sequence's keys in k/v below
  std::vector<int32_t> page_table;  // [batch][max_pages]; pages in shuffled order, unused entries -1
  std::vector<int64_t> slots;       // [total_k] slot of key n of sequence b (n-major within b)
  std::vector<float> q;             // [total_q][hq][d]
  std::vector<float> k, v;          // [total_k][hk][d], unrotated
  std::vector<float> cos_q, sin_q;  // [total_q][d/2] (empty when !rope)
  std::vector<float> cos_k, sin_k;  // [total_k][d/2] (empty when !rope)
};

// A random problem (inputs N(0,1) rounded to the dtype; positions above 100 000, HoPE-like components).
PagedDecodeData make_paged_decode(const PagedDecodeCase &c, uint64_t seed);

// Rotate-half of x [tokens][heads][d] with float cos/sin [tokens][d/2], in double. NULL cos: a copy.
std::vector<double> rotate_rows(const std::vector<double> &x, int64_t tokens, int heads, int head_dim,
                                const float *cos, const float *sin);

// Concatenates the first lens[b] tokens of each sequence out of pages [num_pages][page_size][hk][d]
// following the page table: [total_k][hk][d] in the order of cu_k.
std::vector<double> gather_pages(const std::vector<double> &pages, const PagedDecodeCase &c,
                                 const PagedDecodeData &data);

// The decode in float64: q_rot [total_q][hq][d] (already rotated and rounded as the library does), keys and
// values gathered from the pages; out [total_q][hq][d], lse [hq][total_q].
void paged_decode(const PagedDecodeCase &c, const PagedDecodeData &data, const std::vector<double> &q_rot,
                  const std::vector<double> &k_pages, const std::vector<double> &v_pages, double softmax_scale,
                  std::vector<double> *out, std::vector<double> *lse);

}  // namespace hope_ref
