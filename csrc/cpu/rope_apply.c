/* cpu/rope_apply.c — the CPU backend of hope_rope_apply (SPEC §4): each row rotated in float32 by
 * hopei_cpu_rotate_row and stored rounded to the dtype (nearest even). Tokens are spread over
 * hopei_parallel_for threads. In place is safe: the rotation reads a whole row before anything is stored. */
#include <string.h>

#include "kernels.h"
#include "rope/rope_host.h"

static void rotate_range(void *ctx, int64_t begin, int64_t end) {
  const hope_rope_apply_params_t *p = (const hope_rope_apply_params_t *)ctx;
  const int32_t d = p->head_dim, half = (p->rotary_dim > 0 ? p->rotary_dim : d) / 2, dtype = p->dtype;
  const size_t esz = hopei_dtype_size(dtype);
  float row[HOPEI_ATTN_CPU_MAX_HEAD_DIM];
  for (int64_t t = begin; t < end; ++t) {
    for (int32_t h = 0; h < p->num_heads; ++h) {
      const int64_t xi = t * p->x_row_stride + (int64_t)h * d;
      const int64_t oi = t * p->out_row_stride + (int64_t)h * d;
      hopei_cpu_rotate_row((const char *)p->x + (size_t)xi * esz, dtype, d, p->cos + t * half, p->sin + t * half,
                           p->rope_pairing, p->rotary_dim, false, row);
      if (dtype == HOPE_DTYPE_FLOAT32) memcpy((float *)p->out + oi, row, (size_t)d * sizeof(float));
      else for (int32_t i = 0; i < d; ++i) hopei_store(p->out, dtype, oi + i, row[i]);
    }
  }
}

void hopei_rope_apply_cpu(const hope_rope_apply_params_t *p) {
  /* ~16K pairs per chunk at least, so small calls stay on the calling thread. */
  int64_t per_token = (int64_t)p->num_heads * (p->head_dim / 2);
  int64_t min_chunk = (16384 + per_token - 1) / per_token;
  hopei_parallel_for(p->num_tokens, min_chunk, rotate_range, (void *)p);
}
