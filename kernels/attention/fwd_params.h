// fwd_params.h — the plain parameter struct the fused attention kernel receives by value (host and device),
// and the declarations of the per-family launchers whose explicit instances live in kernels/instances/.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "hope_attn.h"

namespace hope {

// Everything the forward kernel reads, resolved on the host (no defaults left, no host-only pointers).
// Element strides; q/k/v rows may be slices of one fused QKV buffer. cos_k/sin_k are non-NULL only when
// K is rotated inside the kernel (the K pre-pass path passes the rotated copy as k and NULL here).
struct AttnFwdParams {
  const void *q, *k, *v;
  void *out;                     // [total_q][num_q_heads][head_dim], row stride o_row_stride
  float *lse;                    // optional [num_q_heads][total_q]
  const float *cos_q, *sin_q;    // [total_q][rot_half] or NULL
  const float *cos_k, *sin_k;    // [total_k][rot_half] or NULL
  const int32_t *cu_seqlens_q;   // device [batch + 1]
  const int32_t *cu_seqlens_k;   // device [batch + 1]
  int64_t q_row_stride, k_row_stride, v_row_stride, o_row_stride;
  int32_t batch, num_q_heads, num_kv_heads;
  int32_t batch_offset;          // sequence of blockIdx.z == 0: gridDim.z <= 65535, so the launcher splits
                                 // a larger batch into several launches (batch stays the full count)
  int32_t head_group;            // num_q_heads / num_kv_heads: q head j reads kv head j / head_group
  int32_t block_m;               // query tile of the planned variant (AttnTraits::kBlockM), picks the kernel
  int32_t num_m_blocks;          // ceil(max_seqlen_q / block_m): gridDim.x
  int32_t causal;
  float softmax_scale;           // natural-log scale (for the LSE)
  float scale_log2;              // softmax_scale * log2(e): the exponent scale of exp2f
  int32_t rot_half;              // SPEC §8: rotary_dim / 2 (a multiple of 8: whole 16-byte chunks); cos/sin width
  int32_t interleaved;           // pairs (2i, 2i + 1) instead of (i, i + rot_half)
  int32_t max_seqlen_q, max_seqlen_k;  // the caller's bounds (the sm90 tensor maps span batch * max rows)
};

// gridDim.z is limited to 65535: a larger batch takes several launches, each told its first sequence.
// Calls launch(chunk, grid) once per chunk of sequences (grid: num_m_blocks x num_q_heads x sequences) and
// returns the first failing status.
template <typename Launch>
hope_status_t for_each_batch_chunk(const AttnFwdParams &params, Launch &&launch) {
  constexpr int64_t kMaxGridZ = 65535;
  for (int64_t b0 = 0; b0 < params.batch; b0 += kMaxGridZ) {
    AttnFwdParams chunk = params;
    chunk.batch_offset = static_cast<int32_t>(b0);
    const int64_t nb = params.batch - b0 < kMaxGridZ ? params.batch - b0 : kMaxGridZ;
    const dim3 grid(static_cast<unsigned>(params.num_m_blocks), static_cast<unsigned>(params.num_q_heads),
                    static_cast<unsigned>(nb));
    const hope_status_t s = launch(chunk, grid);
    if (s != HOPE_SUCCESS) return s;
  }
  return HOPE_SUCCESS;
}

// The K pre-pass: rotates (cos/sin non-NULL) or copies K into the packed k_rotated buffer
// [total_k][num_kv_heads][head_dim]; total_k is read from cu_seqlens_k[batch] on the device.
struct KPrepassParams {
  const void *k;
  int64_t k_row_stride;
  void *k_rotated;
  const float *cos_k, *sin_k;
  const int32_t *cu_seqlens_k;
  int32_t batch, num_kv_heads, head_dim;
  int64_t max_tokens;            // batch * max_seqlen_k: bounds total_k (sizes the grid)
  int32_t grid_limit;            // most CTAs to launch (the grid loops over the rest)
  int32_t rot_half, interleaved; // as in AttnFwdParams
};

// Architecture family sm80 (mma.sync m16n8k16 + cp.async + ldmatrix; runs on sm_80 and later, Hopper
// included). Instances: kernels/instances/attn_fwd_hd<D>_<dtype>_sm80.cu.
template <int HEAD_DIM, typename T>
hope_status_t run_attn_fwd_sm80(const AttnFwdParams &params, cudaStream_t stream);

// Architecture family sm90 (warp-specialised wgmma + TMA + mbarriers; sm_90a only, compiled when the build
// has HOPE_WITH_SM90). Instances: kernels/instances/attn_fwd_hd<D>_<dtype>_sm90.cu.
template <int HEAD_DIM, typename T>
hope_status_t run_attn_fwd_sm90(const AttnFwdParams &params, cudaStream_t stream);

// kernels/attention/k_prepass.cu; dtype: HOPE_DTYPE_FLOAT16 or HOPE_DTYPE_BFLOAT16.
hope_status_t run_k_prepass(const KPrepassParams &params, int32_t dtype, cudaStream_t stream);

}  // namespace hope
