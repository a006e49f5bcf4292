// reference.h — the independent float64 implementation of ../shared/SPEC.md that every test compares with.
// Written from the SPEC alone, sharing no code with csrc/ or kernels/. Each part lives in its own file:
// positions_ref.cc (§1, §2), rope_ref.cc (§3, §4), attention_ref.cc (§5 and state merging), paged_ref.cc.
#pragma once

#include <cstdint>
#include <utility>
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
// §8 timed M-RoPE (Qwen2.5-VL): seconds_per_grid parallel to segments (read for videos only).
Positions build_positions_timed(const std::vector<hope_segment_t> &segments, const std::vector<float> &seconds_per_grid,
                                float tokens_per_second, double start);
// §8: the t offset of frame f, trunc(float32(float32(f * g) * r)), as PyTorch computes it in float32.
double timed_frame_offset(int64_t f, float g, float r);

// ---- §2 scale selection -------------------------------------------------------------------------------
uint64_t splitmix64_next(uint64_t *state);  // the documented generator
// Scale chosen per vision segment (index aligned with `segments`; text entries are 0).
std::vector<double> select_scales(const hope_scale_params_t &params, const std::vector<hope_segment_t> &segments);

// ---- §3 frequencies (with §8's rotary dimension and model-exact frequencies) ---------------------------
// The rotary dimension of a config (rotary_dim, or head_dim when it is 0).
int rotary_dim(const hope_rope_config_t &config);
// c(i) for i < rotary_dim/2 as HOPE_COMPONENT_{T,H,W,NONE}.
std::vector<int> components(const hope_rope_config_t &config);
// inv_i for i < rotary_dim/2: theta^(-2i/r) in long double, or (model_exact_freqs) the float32 value
// 1 / float32(float32(theta) ** float32(2i/r)).
std::vector<long double> inv_freq(const hope_rope_config_t &config);
// cos/sin [n][rotary_dim/2] in double from positions [3][n] (float, as the library takes them).
void cos_sin(const hope_rope_config_t &config, const float *positions, int64_t n, std::vector<double> *cos_out,
             std::vector<double> *sin_out);

// ---- §4 rotation: x [tokens][heads][d] (row stride heads*d), cos/sin [tokens][rotary_dim/2] ------------
// §8: pairing HOPE_PAIRING_ROTATE_HALF or _INTERLEAVED; rotary_dim 0 means head_dim; dims past it pass through.
std::vector<double> rotate(const std::vector<double> &x, int64_t tokens, int heads, int head_dim,
                           const std::vector<double> &cos, const std::vector<double> &sin, int pairing = 0,
                           int rotary_dim = 0);

// ---- §5 attention on q, k (already rotated), v packed [tokens][heads][d] ------------------------------
struct AttentionProblem {
  int batch = 1, num_q_heads = 1, num_kv_heads = 1, head_dim = 64;
  std::vector<int32_t> cu_seqlens_q, cu_seqlens_k;  // [batch + 1]
  double softmax_scale = 0.0;                       // <= 0: 1/sqrt(head_dim)
  bool causal = false;
};
// The problem of packed varlen sequences: batch from the cu_seqlens ([batch + 1] each).
inline AttentionProblem varlen_problem(int num_q_heads, int num_kv_heads, int head_dim, std::vector<int32_t> cu_seqlens_q,
                                       std::vector<int32_t> cu_seqlens_k, bool causal, double softmax_scale = 0.0) {
  AttentionProblem p;
  p.batch = static_cast<int>(cu_seqlens_q.size()) - 1;
  p.num_q_heads = num_q_heads;
  p.num_kv_heads = num_kv_heads;
  p.head_dim = head_dim;
  p.cu_seqlens_q = std::move(cu_seqlens_q);
  p.cu_seqlens_k = std::move(cu_seqlens_k);
  p.softmax_scale = softmax_scale;
  p.causal = causal;
  return p;
}
// out [total_q][Hq][d]; lse [Hq][total_q] (natural log; -inf for a row with no visible key, whose out is 0).
void attention(const AttentionProblem &p, const std::vector<double> &q, const std::vector<double> &k,
               const std::vector<double> &v, std::vector<double> *out, std::vector<double> *lse);

// ---- state merging: o [tokens][heads][d], lse [heads][tokens] ------------------------------------------
// A -inf side contributes nothing (both: out 0, lse -inf); a NaN or +inf lse on either side gives NaN out and lse.
void merge_states(int64_t tokens, int heads, int head_dim, const std::vector<double> &o_a,
                  const std::vector<double> &lse_a, const std::vector<double> &o_b,
                  const std::vector<double> &lse_b, std::vector<double> *out, std::vector<double> *lse);

}  // namespace hope_ref
