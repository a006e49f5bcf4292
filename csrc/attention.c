/* attention.c — validation, defaults and backend dispatch of the attention entry points (SPEC §5).
 *
 * One validation function serves hope_attention_forward, hope_attention_unfused_workspace_size and
 * hope_attention_forward_unfused, so the three can never disagree on what is a valid call. It also resolves
 * the defaults (row strides, softmax_scale) into a copy of the params that the backends receive. */
#include <limits.h>
#include <string.h>

#include "attention/launch.h"
#include "internal.h"


/* Largest element index a backend may be asked to form from a token index and a row stride. The CPU backend
 * and both CUDA kernels (fwd_kernel.cuh, unfused.cu) form element offsets in int64; token indices fit int32
 * because cu_seqlens are int32. Lower this if a kernel ever indexes elements in 32 bits. */
#define HOPEI_ATTN_CUDA_MAX_INDEX INT64_MAX
#define HOPEI_ATTN_MAX_HEAD_DIM 1024

/* Checks and resolves one stride: 0 means heads * head_dim; anything else must be >= that. */
static hope_status_t resolve_stride(const char *fn, const char *name, int64_t *stride, int64_t min_stride) {
  if (*stride == 0) *stride = min_stride;
  HOPEI_CHECK(*stride >= min_stride,
              "%s: params->%s is %lld, but a row holds heads * head_dim = %lld elements (0 selects that)", fn,
              name, (long long)*stride, (long long)min_stride);
  return HOPE_SUCCESS;
}

/* Checks that a tensor of `tokens` rows `stride` elements apart (row width `width`) is addressable:
 * its last element index fits int64 and is at most `limit`. */
static hope_status_t check_extent(const char *fn, const char *name, int64_t tokens, int64_t stride, int64_t width,
                                  int64_t limit) {
  if (tokens == 0) return HOPE_SUCCESS;
  int64_t last;
  const bool ok = hopei_mul_i64(tokens - 1, stride, &last) && hopei_add_i64(last, width - 1, &last);
  HOPEI_CHECK(ok && last <= limit,
              "%s: %s spans up to %lld tokens %lld elements apart, whose element indices exceed %lld; split the "
              "call", fn, name, (long long)tokens, (long long)stride, (long long)limit);
  return HOPE_SUCCESS;
}

/* CPU backend only: cu_seqlens are host memory, so they are checked in full. Returns the total in *total. */
static hope_status_t check_cu_seqlens(const char *fn, const char *name, const int32_t *cu, int32_t batch,
                                      int32_t max_seqlen, const char *max_name, int64_t *total) {
  HOPEI_CHECK(cu[0] == 0, "%s: params->%s[0] is %d, must be 0", fn, name, cu[0]);
  for (int32_t b = 0; b < batch; ++b) {
    const int64_t len = (int64_t)cu[b + 1] - cu[b];
    HOPEI_CHECK(len >= 0, "%s: params->%s decreases at sequence %d (%d then %d); offsets must never decrease",
                fn, name, b, cu[b], cu[b + 1]);
    HOPEI_CHECK(len <= max_seqlen, "%s: sequence %d has length %lld in params->%s, above params->%s = %d", fn, b,
                (long long)len, name, max_name, max_seqlen);
  }
  *total = cu[batch];
  return HOPE_SUCCESS;
}

/* Validates *params for entry point `fn` and writes the resolved copy to *r. On SUCCESS with r->batch == 0
 * the call is a no-op. */
static hope_status_t validate(const char *fn, const hope_attention_params_t *params, hope_attention_params_t *r) {
  HOPEI_CHECK_NOT_NULL(fn, params);
  *r = *params;
  HOPEI_CHECK(r->backend == HOPE_BACKEND_CUDA || r->backend == HOPE_BACKEND_CPU,
              "%s: params->backend %d is not a hope_backend_t", fn, r->backend);
  HOPEI_CHECK(hopei_dtype_size(r->dtype) != 0, "%s: params->dtype %d is not a hope_dtype_t", fn, r->dtype);
  HOPEI_CHECK(r->batch >= 0, "%s: params->batch is %d, must be >= 0", fn, r->batch);
  HOPEI_CHECK(r->num_q_heads >= 1, "%s: params->num_q_heads is %d, must be >= 1", fn, r->num_q_heads);
  HOPEI_CHECK(r->num_kv_heads >= 1, "%s: params->num_kv_heads is %d, must be >= 1", fn, r->num_kv_heads);
  HOPEI_CHECK(r->num_q_heads % r->num_kv_heads == 0,
              "%s: params->num_q_heads (%d) must be a multiple of params->num_kv_heads (%d)", fn, r->num_q_heads,
              r->num_kv_heads);
  HOPEI_CHECK(r->head_dim >= 2 && r->head_dim % 2 == 0 && r->head_dim <= HOPEI_ATTN_MAX_HEAD_DIM,
              "%s: params->head_dim is %d, must be even and in [2, %d]", fn, r->head_dim, HOPEI_ATTN_MAX_HEAD_DIM);
  HOPEI_TRY(hopei_rotary_resolve(fn, "params->", "rope_pairing", r->rope_pairing, r->rotary_dim, r->head_dim,
                                 &r->rotary_dim));
  /* Every backend rotates SPEC §8's pairs (the fused CUDA kernel's rotary_dim % 16 rule is in its plan,
   * kernels/attention/fused_launch.cu). */
  HOPEI_CHECK(isfinite(r->softmax_scale), "%s: params->softmax_scale is not finite", fn);
  if (r->softmax_scale <= 0.f) r->softmax_scale = (float)(1.0 / sqrt((double)r->head_dim));
  HOPEI_CHECK(r->max_seqlen_q >= 0, "%s: params->max_seqlen_q is %d, must be >= 0", fn, r->max_seqlen_q);
  HOPEI_CHECK(r->max_seqlen_k >= 0, "%s: params->max_seqlen_k is %d, must be >= 0", fn, r->max_seqlen_k);
  const int64_t q_width = (int64_t)r->num_q_heads * r->head_dim;
  const int64_t kv_width = (int64_t)r->num_kv_heads * r->head_dim;
  HOPEI_TRY(resolve_stride(fn, "q_row_stride", &r->q_row_stride, q_width));
  HOPEI_TRY(resolve_stride(fn, "k_row_stride", &r->k_row_stride, kv_width));
  HOPEI_TRY(resolve_stride(fn, "v_row_stride", &r->v_row_stride, kv_width));
  if (r->batch == 0) return HOPE_SUCCESS; /* nothing to read or write */

  HOPEI_CHECK_NOT_NULL(fn, params->cu_seqlens_q);
  HOPEI_CHECK_NOT_NULL(fn, params->cu_seqlens_k);
  HOPEI_CHECK_NOT_NULL(fn, params->q);
  HOPEI_CHECK_NOT_NULL(fn, params->k);
  HOPEI_CHECK_NOT_NULL(fn, params->v);
  HOPEI_CHECK_NOT_NULL(fn, params->out);
  HOPEI_CHECK((r->cos_q == NULL) == (r->sin_q == NULL),
              "%s: params->cos_q and params->sin_q must both be NULL (no rotation) or both be set", fn);
  HOPEI_CHECK((r->cos_k == NULL) == (r->sin_k == NULL),
              "%s: params->cos_k and params->sin_k must both be NULL (no rotation) or both be set", fn);

  int64_t total_q, total_k, limit;
  if (r->backend == HOPE_BACKEND_CPU) {
    HOPEI_TRY(check_cu_seqlens(fn, "cu_seqlens_q", r->cu_seqlens_q, r->batch, r->max_seqlen_q, "max_seqlen_q",
                               &total_q));
    HOPEI_TRY(check_cu_seqlens(fn, "cu_seqlens_k", r->cu_seqlens_k, r->batch, r->max_seqlen_k, "max_seqlen_k",
                               &total_k));
    limit = INT64_MAX;
  } else {
    /* Device cu_seqlens are the caller's promise: bound the totals by batch * max_seqlen (and by int32,
     * the type of cu_seqlens). */
    total_q = (int64_t)r->batch * r->max_seqlen_q;
    total_k = (int64_t)r->batch * r->max_seqlen_k;
    if (total_q > INT32_MAX) total_q = INT32_MAX;
    if (total_k > INT32_MAX) total_k = INT32_MAX;
    limit = HOPEI_ATTN_CUDA_MAX_INDEX;
  }
  HOPEI_TRY(check_extent(fn, "q", total_q, r->q_row_stride, q_width, limit));
  HOPEI_TRY(check_extent(fn, "k", total_k, r->k_row_stride, kv_width, limit));
  HOPEI_TRY(check_extent(fn, "v", total_k, r->v_row_stride, kv_width, limit));
  HOPEI_TRY(check_extent(fn, "out", total_q, q_width, q_width, limit));
  HOPEI_TRY(check_extent(fn, "k_rotated", total_k, kv_width, kv_width, limit));
  HOPEI_TRY(check_extent(fn, "cos_q/sin_q", total_q, r->rotary_dim / 2, r->rotary_dim / 2, limit));
  HOPEI_TRY(check_extent(fn, "cos_k/sin_k", total_k, r->rotary_dim / 2, r->rotary_dim / 2, limit));
  HOPEI_TRY(check_extent(fn, "lse", r->num_q_heads, total_q, total_q, limit));
  if (r->backend == HOPE_BACKEND_CPU) {
    /* The CPU backend keeps packed float32 (or bfloat16) copies of q, k and v, head_dim padded to a multiple
     * of 32 and keys to a multiple of 16 per sequence: their byte sizes must fit as well. */
    const int64_t padded = (r->head_dim + 31) / 32 * 32;
    HOPEI_TRY(check_extent(fn, "the CPU backend's packed copies",
                           (total_q > total_k ? total_q : total_k) + 16 * (int64_t)r->batch,
                           4 * padded * (r->num_q_heads > r->num_kv_heads ? r->num_q_heads : r->num_kv_heads), 4,
                           limit));
  }
  return HOPE_SUCCESS;
}

hope_status_t hope_attention_forward(const hope_attention_params_t *params, void *stream) {
  HOPEI_NVTX_SCOPE(HOPEI_RANGE_ATTENTION_FORWARD);
  static const char *fn = "hope_attention_forward";
  hope_attention_params_t r;
  HOPEI_TRY(validate(fn, params, &r));
  if (r.batch == 0) return HOPE_SUCCESS;
  if (r.backend == HOPE_BACKEND_CPU) return hopei_attention_cpu(&r);
  HOPEI_TRY(hopei_require_device(fn));
  HOPEI_TRY(hopei_attention_fused_cuda(&r, 1, NULL)); /* NOT_SUPPORTED with the kernel's message */
  return hopei_attention_fused_cuda(&r, 0, stream);
}

static hope_status_t unfused_cpu_unsupported(const char *fn) {
  return hopei_fail(HOPE_ERROR_NOT_SUPPORTED,
                    "%s: the unfused path is a CUDA-backend reference; with HOPE_BACKEND_CPU use "
                    "hope_attention_forward", fn);
}

hope_status_t hope_attention_unfused_workspace_size(const hope_attention_params_t *params,
                                                    size_t *workspace_bytes) {
  HOPEI_NVTX_SCOPE(HOPEI_RANGE_ATTENTION_UNFUSED_WORKSPACE);
  static const char *fn = "hope_attention_unfused_workspace_size";
  HOPEI_CHECK_NOT_NULL(fn, workspace_bytes);
  hope_attention_params_t r;
  HOPEI_TRY(validate(fn, params, &r));
  if (r.backend == HOPE_BACKEND_CPU) return unfused_cpu_unsupported(fn);
  if (r.batch == 0) {
    *workspace_bytes = 0;
    return HOPE_SUCCESS;
  }
  HOPEI_TRY(hopei_require_device(fn));
  size_t bytes = 0;
  HOPEI_TRY(hopei_attention_unfused_workspace(&r, &bytes));
  *workspace_bytes = bytes;
  return HOPE_SUCCESS;
}

hope_status_t hope_attention_forward_unfused(const hope_attention_params_t *params, void *workspace,
                                             size_t workspace_bytes, void *stream) {
  HOPEI_NVTX_SCOPE(HOPEI_RANGE_ATTENTION_FORWARD_UNFUSED);
  static const char *fn = "hope_attention_forward_unfused";
  hope_attention_params_t r;
  HOPEI_TRY(validate(fn, params, &r));
  if (r.backend == HOPE_BACKEND_CPU) return unfused_cpu_unsupported(fn);
  if (r.batch == 0) return HOPE_SUCCESS;
  HOPEI_CHECK(workspace != NULL || workspace_bytes == 0,
              "%s: workspace is NULL but workspace_bytes is %zu", fn, workspace_bytes);
  HOPEI_TRY(hopei_require_device(fn));
  size_t need = 0;
  HOPEI_TRY(hopei_attention_unfused_workspace(&r, &need));
  if (workspace_bytes < need)
    return hopei_fail(HOPE_ERROR_OUT_OF_MEMORY,
                      "%s: the workspace holds %zu bytes but this call needs %zu (see "
                      "hope_attention_unfused_workspace_size)", fn, workspace_bytes, need);
  return hopei_attention_unfused_cuda(&r, workspace, workspace_bytes, stream);
}
