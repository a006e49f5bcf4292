/* cpu/rope_apply.c — the CPU backend of hope_rope_apply (SPEC §4 and §8): the first rotary_dim dims of each head
 * rotated in float32 with rotate-half pairs (i, i + rotary_dim/2) or interleaved pairs (2i, 2i + 1), the dims past
 * rotary_dim copied unchanged, everything stored rounded to the dtype (nearest even). Tokens are spread over
 * hopei_parallel_for threads. In place is safe: both elements of a pair are loaded before either is stored. */
#include <string.h>

#include "../internal.h"
#include "rope/rope_host.h"

typedef struct {
  const hope_rope_apply_params_t *p;
} apply_job_t;

static void rotate_range(void *ctx, int64_t begin, int64_t end) {
  const hope_rope_apply_params_t *p = ((const apply_job_t *)ctx)->p;
  const int32_t d = p->head_dim, rot = p->rotary_dim, half = rot / 2;
  /* Pair i rotates dims (i * step, i * step + partner): rotate-half (i, i + half), interleaved (2i, 2i + 1). */
  const int32_t interleaved = p->rope_pairing == HOPE_PAIRING_INTERLEAVED;
  const int32_t step = interleaved ? 2 : 1, partner = interleaved ? 1 : half;
  const int32_t dtype = p->dtype;
  const size_t elem = hopei_dtype_size(dtype);
  for (int64_t t = begin; t < end; ++t) {
    const float *c = p->cos + t * half;
    const float *s = p->sin + t * half;
    for (int32_t h = 0; h < p->num_heads; ++h) {
      const int64_t xi = t * p->x_row_stride + (int64_t)h * d;
      const int64_t oi = t * p->out_row_stride + (int64_t)h * d;
      if (dtype == HOPE_DTYPE_FLOAT32) { /* the common float32 case without the dtype switch */
        const float *x = (const float *)p->x + xi;
        float *o = (float *)p->out + oi;
        for (int32_t i = 0; i < half; ++i) {
          const int32_t a = i * step, b = a + partner;
          const float x0 = x[a], x1 = x[b];
          o[a] = x0 * c[i] - x1 * s[i];
          o[b] = x1 * c[i] + x0 * s[i];
        }
      } else {
        for (int32_t i = 0; i < half; ++i) {
          const int32_t a = i * step, b = a + partner;
          const float x0 = hopei_load(p->x, dtype, xi + a);
          const float x1 = hopei_load(p->x, dtype, xi + b);
          hopei_store(p->out, dtype, oi + a, x0 * c[i] - x1 * s[i]);
          hopei_store(p->out, dtype, oi + b, x1 * c[i] + x0 * s[i]);
        }
      }
      /* The dims past rotary_dim pass through (bit for bit: a copy, not a round trip through float). */
      if (rot < d && p->out != p->x)
        memcpy((char *)p->out + (size_t)(oi + rot) * elem, (const char *)p->x + (size_t)(xi + rot) * elem,
               (size_t)(d - rot) * elem);
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
