/* launch.h — the serving path (paged KV append, decode, state merging): the plan shared by the host side
 * (csrc/serving.c), the CUDA launchers (the .cu files beside this header) and the CPU backend (csrc/cpu/serving.c).
 *
 * Every function here receives params already validated and resolved by csrc/serving.c: strides non-zero,
 * softmax_scale > 0, backend matching the function, a device present for the CUDA ones. Each CUDA launcher
 * catches everything, checks every CUDA call and the last error after each launch, and returns a status
 * (message through hopei_fail). None allocates or synchronises. */
#ifndef HOPE_KERNELS_SERVING_LAUNCH_H_
#define HOPE_KERNELS_SERVING_LAUNCH_H_

#include <stddef.h>
#include <stdint.h>

#include "hope_attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest split count (planned or forced). */
#define HOPEI_DECODE_MAX_SPLITS 256
/* Query rows ((query token, query head) pairs of one kv head) that one decode CTA handles. */
#define HOPEI_DECODE_ROWS_PER_CTA 8

/* The one decode plan: hope_decode_workspace_size and hope_decode_forward both come from it.
 * Split s of sequence b covers keys [s * chunk_b, min(L_b, (s + 1) * chunk_b)), chunk_b = ceil(L_b / num_splits).
 * With num_splits > 1 the partial states go to the workspace:
 *   partial_o   float [num_splits][batch * max_seqlen_q][num_q_heads][head_dim]  (normalised per split)
 *   partial_lse float [num_splits][batch * max_seqlen_q][num_q_heads]            (log2 on CUDA, ln on CPU)
 * where row b * max_seqlen_q + i is query token i of sequence b. */
typedef struct {
  int32_t num_splits;      /* >= 1 */
  int32_t row_blocks;      /* CUDA: ceil(max_seqlen_q * group / HOPEI_DECODE_ROWS_PER_CTA) */
  float softmax_scale;     /* resolved, > 0 */
  int64_t q_row_stride;    /* resolved, > 0 */
  size_t partial_o_offset, partial_lse_offset; /* bytes into the workspace */
  size_t workspace_bytes;  /* 0 when num_splits == 1 */
  float *partial_o, *partial_lse; /* set by hope_decode_forward when num_splits > 1, else NULL */
} hopei_decode_plan_t;

/* ---- CUDA (kernels/serving/) ------------------------------------------------------------------------- */

/* K/V append; params resolved (strides non-zero), cache dtype float16 or bfloat16. */
hope_status_t hopei_kv_append_cuda(const hope_kv_append_params_t *p, void *stream);
/* Whether the decode kernel covers this head_dim/dtype (no launch). */
int hopei_decode_cuda_supported(int32_t dtype, int32_t head_dim);
hope_status_t hopei_decode_cuda(const hope_decode_params_t *p, const hopei_decode_plan_t *plan, void *stream);
hope_status_t hopei_merge_states_cuda(const hope_merge_params_t *p, void *stream);

/* ---- CPU (csrc/cpu/serving.c, csrc/cpu/decode.c) ----------------------------------------------------- */

hope_status_t hopei_kv_append_cpu(const hope_kv_append_params_t *p);
/* CPU decode tasks per (sequence, split): the groups of kv heads (or row ranges of one) that one read of the
 * keys serves. The planner's unit of work on the CPU. */
int64_t hopei_decode_cpu_tasks_per_split(int32_t num_q_heads, int32_t num_kv_heads, int32_t max_seqlen_q);
hope_status_t hopei_decode_cpu(const hope_decode_params_t *p, const hopei_decode_plan_t *plan);
hope_status_t hopei_merge_states_cpu(const hope_merge_params_t *p);

#ifdef __cplusplus
}
#endif

#endif
