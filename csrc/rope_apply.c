/* rope_apply.c — hope_rope_apply (SPEC §4): argument checks, stride resolution, dispatch to the CPU
 * backend (cpu/rope_apply.c) or the CUDA kernel (kernels/rope/apply.cu). No allocation, no synchronisation. */
#include <stdint.h>

#include "internal.h"
#include "rope/launch.h"
#include "rope/rope_host.h"

hope_status_t hope_rope_apply(const hope_rope_apply_params_t *params, void *stream) {
  HOPEI_NVTX_SCOPE(HOPEI_RANGE_ROPE_APPLY);
  static const char kFn[] = "hope_rope_apply";
  HOPEI_CHECK_NOT_NULL(kFn, params);
  hope_rope_apply_params_t p = *params;
  HOPEI_CHECK(p.backend == HOPE_BACKEND_CUDA || p.backend == HOPE_BACKEND_CPU,
              "%s: params->backend %d is not a hope_backend_t (0 CUDA, 1 CPU)", kFn, (int)p.backend);
  const size_t elem = hopei_dtype_size(p.dtype);
  HOPEI_CHECK(elem != 0, "%s: params->dtype %d is not a hope_dtype_t (0 float16, 1 bfloat16, 2 float32)", kFn,
              (int)p.dtype);
  HOPEI_CHECK(p.head_dim >= 2 && p.head_dim <= HOPEI_ROPE_MAX_HEAD_DIM && p.head_dim % 2 == 0,
              "%s: params->head_dim %d must be even and in 2..%d", kFn, (int)p.head_dim, HOPEI_ROPE_MAX_HEAD_DIM);
  HOPEI_CHECK(p.num_heads >= 1, "%s: params->num_heads %d must be >= 1", kFn, (int)p.num_heads);
  HOPEI_TRY(hopei_rotary_resolve(kFn, "params->", "rope_pairing", p.rope_pairing, p.rotary_dim, p.head_dim,
                                 &p.rotary_dim));
  HOPEI_CHECK(p.num_tokens >= 0, "%s: params->num_tokens %lld must be >= 0", kFn, (long long)p.num_tokens);
  const int64_t row = (int64_t)p.num_heads * p.head_dim; /* < 2^41: no overflow */
  HOPEI_CHECK(p.x_row_stride == 0 || p.x_row_stride >= row,
              "%s: params->x_row_stride %lld must be 0 or >= num_heads * head_dim (%lld)", kFn,
              (long long)p.x_row_stride, (long long)row);
  HOPEI_CHECK(p.out_row_stride == 0 || p.out_row_stride >= row,
              "%s: params->out_row_stride %lld must be 0 or >= num_heads * head_dim (%lld)", kFn,
              (long long)p.out_row_stride, (long long)row);
  if (p.x_row_stride == 0) p.x_row_stride = row;
  if (p.out_row_stride == 0) p.out_row_stride = row;

  if (p.num_tokens > 0) {
    HOPEI_CHECK(p.x != NULL, "%s: params->x must not be NULL", kFn);
    HOPEI_CHECK(p.out != NULL, "%s: params->out must not be NULL", kFn);
    HOPEI_CHECK(p.cos != NULL, "%s: params->cos must not be NULL", kFn);
    HOPEI_CHECK(p.sin != NULL, "%s: params->sin must not be NULL", kFn);
    /* Every element index (and byte offset) of x, out, cos and sin must fit in int64. */
    const int64_t half = p.rotary_dim / 2;
    int64_t last = 0, x_end = 0, out_end = 0, cs = 0;
    bool ok = hopei_mul_i64(p.num_tokens - 1, p.x_row_stride, &last) && hopei_add_i64(last, row, &x_end) &&
              x_end <= INT64_MAX / (int64_t)elem && hopei_mul_i64(p.num_tokens - 1, p.out_row_stride, &last) &&
              hopei_add_i64(last, row, &out_end) && out_end <= INT64_MAX / (int64_t)elem &&
              hopei_mul_i64(p.num_tokens, half, &cs) && cs <= INT64_MAX / 4;
    HOPEI_CHECK(ok, "%s: num_tokens %lld with row strides (%lld, %lld) overflows the index range", kFn,
                (long long)p.num_tokens, (long long)p.x_row_stride, (long long)p.out_row_stride);
    /* Both spans must fit the address space (a larger one is a wrong num_tokens or stride, not an overlap);
     * out may equal x (then with the same layout), otherwise the two must not overlap. */
    HOPEI_TRY(hopei_check_span(kFn, "x (num_tokens rows, x_row_stride apart)", p.x, (uint64_t)x_end * elem));
    HOPEI_TRY(hopei_check_span(kFn, "out (num_tokens rows, out_row_stride apart)", p.out,
                               (uint64_t)out_end * elem));
    if (p.out == p.x) {
      HOPEI_CHECK(p.num_tokens == 1 || p.out_row_stride == p.x_row_stride,
                  "%s: in place (out == x) needs out_row_stride == x_row_stride (got %lld and %lld)", kFn,
                  (long long)p.out_row_stride, (long long)p.x_row_stride);
    } else {
      HOPEI_TRY(hopei_check_alias(kFn, "out", p.out, (uint64_t)out_end * elem, "x", p.x, (uint64_t)x_end * elem,
                                  true));
    }
  }

  if (p.backend == HOPE_BACKEND_CUDA) {
    HOPEI_TRY(hopei_require_device(kFn));
    if (p.num_tokens == 0) return HOPE_SUCCESS;
    return hopei_rope_apply_cuda(&p, stream);
  }
  if (p.num_tokens == 0) return HOPE_SUCCESS;
  hopei_rope_apply_cpu(&p);
  return HOPE_SUCCESS;
}
