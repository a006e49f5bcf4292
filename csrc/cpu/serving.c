/* cpu/serving.c — the CPU backend of hope_kv_append and hope_merge_states (hope_decode_forward is decode.c).
 *
 * Receives params validated and resolved by csrc/serving.c (strides non-zero, slots checked). */
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "serving/launch.h"

/* ---- hope_kv_append ------------------------------------------------------------------------------- */

static void kv_append_range(void *ctx, int64_t begin, int64_t end) {
  const hope_kv_append_params_t *p = (const hope_kv_append_params_t *)ctx;
  const hope_paged_kv_t *c = &p->cache;
  const int32_t d = c->head_dim, hk = c->num_kv_heads, dt = c->dtype;
  const int32_t half = (p->rotary_dim > 0 ? p->rotary_dim : d) / 2;
  const size_t esz = hopei_dtype_size(dt);
  float row[HOPEI_ATTN_CPU_MAX_HEAD_DIM];
  for (int64_t t = begin; t < end; ++t) {
    const int64_t slot = p->slot_mapping[t];
    if (slot < 0) continue;
    for (int32_t h = 0; h < hk; ++h) {
      const int64_t dst = (slot * hk + h) * d;
      const float *cs = p->cos_k != NULL ? p->cos_k + t * half : NULL;
      const float *sn = p->sin_k != NULL ? p->sin_k + t * half : NULL;
      hopei_cpu_rotate_row((const char *)p->k + (size_t)(t * p->k_row_stride + (int64_t)h * d) * esz, dt, d, cs, sn,
                           p->rope_pairing, p->rotary_dim, false, row);
      hopei_store_row(c->k_pages, dt, dst, row, d);
      memcpy((char *)c->v_pages + (size_t)dst * esz,
             (const char *)p->v + (size_t)(t * p->v_row_stride + (int64_t)h * d) * esz, (size_t)d * esz);
    }
  }
}

hope_status_t hopei_kv_append_cpu(const hope_kv_append_params_t *p) {
  hopei_parallel_for(p->num_tokens, 64, kv_append_range, (void *)p);
  return HOPE_SUCCESS;
}

/* ---- hope_merge_states ---------------------------------------------------------------------------- */

static void merge_range(void *ctx, int64_t begin, int64_t end) {
  const hope_merge_params_t *p = (const hope_merge_params_t *)ctx;
  const int32_t d = p->head_dim, dt = p->dtype;
  for (int64_t item = begin; item < end; ++item) {
    const int64_t t = item / p->num_heads;
    const int32_t h = (int32_t)(item % p->num_heads);
    const int64_t li = (int64_t)h * p->num_tokens + t;
    const float la = p->lse_a[li], lb = p->lse_b[li];
    const float m = la > lb ? la : lb;
    const int64_t ob = item * d; /* item = t * heads + h */
    if (!(la < INFINITY) || !(lb < INFINITY)) { /* a NaN or +inf lse on either side: NaN out and lse */
      for (int32_t i = 0; i < d; ++i) hopei_store(p->out, dt, ob + i, NAN);
      if (p->lse_out != NULL) p->lse_out[li] = NAN;
      continue;
    }
    if (m == -INFINITY) {
      for (int32_t i = 0; i < d; ++i) hopei_store(p->out, dt, ob + i, 0.f);
      if (p->lse_out != NULL) p->lse_out[li] = -INFINITY;
      continue;
    }
    const float wa = la == -INFINITY ? 0.f : expf(la - m);
    const float wb = lb == -INFINITY ? 0.f : expf(lb - m);
    const float sum = wa + wb, inv = 1.f / sum;
    for (int32_t i = 0; i < d; ++i) {
      float v = 0.f;
      if (wa > 0.f) v += wa * hopei_load(p->o_a, dt, ob + i);
      if (wb > 0.f) v += wb * hopei_load(p->o_b, dt, ob + i);
      hopei_store(p->out, dt, ob + i, v * inv);
    }
    if (p->lse_out != NULL) p->lse_out[li] = m + logf(sum);
  }
}

hope_status_t hopei_merge_states_cpu(const hope_merge_params_t *p) {
  hopei_parallel_for(p->num_tokens * p->num_heads, 256, merge_range, (void *)p);
  return HOPE_SUCCESS;
}
