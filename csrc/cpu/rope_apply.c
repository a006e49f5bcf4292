/* cpu/rope_apply.c — the CPU backend of hope_rope_apply (SPEC §4): rotate-half in float32, stored rounded to
 * the dtype (nearest even). Tokens are spread over hopei_parallel_for threads. In place is safe: both elements
 * of a pair are loaded before either is stored. */
#include "../internal.h"
#include "rope/rope_host.h"

typedef struct {
  const hope_rope_apply_params_t *p;
} apply_job_t;

static void rotate_range(void *ctx, int64_t begin, int64_t end) {
  const hope_rope_apply_params_t *p = ((const apply_job_t *)ctx)->p;
  const int32_t half = p->head_dim / 2;
  const int32_t dtype = p->dtype;
  for (int64_t t = begin; t < end; ++t) {
    const float *c = p->cos + t * half;
    const float *s = p->sin + t * half;
    for (int32_t h = 0; h < p->num_heads; ++h) {
      const int64_t xi = t * p->x_row_stride + (int64_t)h * p->head_dim;
      const int64_t oi = t * p->out_row_stride + (int64_t)h * p->head_dim;
      if (dtype == HOPE_DTYPE_FLOAT32) { /* the common float32 case without the dtype switch */
        const float *x = (const float *)p->x + xi;
        float *o = (float *)p->out + oi;
        for (int32_t i = 0; i < half; ++i) {
          const float x0 = x[i], x1 = x[i + half];
          o[i] = x0 * c[i] - x1 * s[i];
          o[i + half] = x1 * c[i] + x0 * s[i];
        }
        continue;
      }
      for (int32_t i = 0; i < half; ++i) {
        const float x0 = hopei_load(p->x, dtype, xi + i);
        const float x1 = hopei_load(p->x, dtype, xi + i + half);
        hopei_store(p->out, dtype, oi + i, x0 * c[i] - x1 * s[i]);
        hopei_store(p->out, dtype, oi + i + half, x1 * c[i] + x0 * s[i]);
      }
    }
  }
}

void hopei_rope_apply_cpu(const hope_rope_apply_params_t *p) {
  apply_job_t job = {p};
  /* ~16K pairs per chunk at least, so small calls stay on the calling thread. */
  int64_t per_token = (int64_t)p->num_heads * (p->head_dim / 2);
  int64_t min_chunk = (16384 + per_token - 1) / per_token;
  hopei_parallel_for(p->num_tokens, min_chunk, rotate_range, &job);
}
