// reference.h — the independent float64 implementation of ../shared/SPEC.md that every test compares with.
// Written from the SPEC alone, sharing no code with csrc/ or kernels/. Each part lives in its own file:
// positions_ref.cc (§1, §2), rope_ref.cc (§3, §4), attention_ref.cc (§5 and state merging), paged_ref.cc.
#pragma once

#include <cstdint>
#include <vector>

#include "hope_attn.h"

namespace hope_ref {

// ---- §1 positions: rows t, h, w as double (the tests compare after rounding to float) -----------------
struct Positions {
  std::vector<double> t, h, w;
  double next_position = 0.0;
};
Positions build_positions(const std::vector<hope_segment_t> &segments, hope_layout_t layout,
                          double default_temporal_scale, double start);

// ---- §2 scale selection -------------------------------------------------------------------------------
uint64_t splitmix64_next(uint64_t *state);  // the documented generator
// Scale chosen per vision segment (index aligned with `segments`; text entries are 0).
std::vector<double> select_scales(const hope_scale_params_t &params, const std::vector<hope_segment_t> &segments);

// ---- §3 frequencies -----------------------------------------------------------------------------------
// c(i) for i < head_dim/2 as HOPE_COMPONENT_{T,H,W,NONE}.
std::vector<int> components(const hope_rope_config_t &config);
// cos/sin [n][head_dim/2] in double from positions [3][n] (float, as the library takes them).
void cos_sin(const hope_rope_config_t &config, const float *positions, int64_t n, std::vector<double> *cos_out,
             std::vector<double> *sin_out);

// ---- §4 rotation: x [tokens][heads][d] (row stride heads*d), cos/sin [tokens][d/2] --------------------
std::vector<double> rotate(const std::vector<double> &x, int64_t tokens, int heads, int head_dim,
                           const std::vector<double> &cos, const std::vector<double> &sin);

// ---- §5 attention on q, k (already rotated), v packed [tokens][heads][d] ------------------------------
struct AttentionProblem {
  int batch = 1, num_q_heads = 1, num_kv_heads = 1, head_dim = 64;
  std::vector<int32_t> cu_seqlens_q, cu_seqlens_k;  // [batch + 1]
  double softmax_scale = 0.0;                       // <= 0: 1/sqrt(head_dim)
  bool causal = false;
};
// out [total_q][Hq][d]; lse [Hq][total_q] (natural log; -inf for a row with no visible key, whose out is 0).
void attention(const AttentionProblem &p, const std::vector<double> &q, const std::vector<double> &k,
               const std::vector<double> &v, std::vector<double> *out, std::vector<double> *lse);

// ---- state merging: o [tokens][heads][d], lse [heads][tokens] ------------------------------------------
// A -inf side contributes nothing (both: out 0, lse -inf); a NaN or +inf lse on either side gives NaN out and lse.
void merge_states(int64_t tokens, int heads, int head_dim, const std::vector<double> &o_a,
                  const std::vector<double> &lse_a, const std::vector<double> &o_b,
                  const std::vector<double> &lse_b, std::vector<double> *out, std::vector<double> *lse);

}  // namespace hope_ref
