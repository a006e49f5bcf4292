/* cpu/serving.c — the CPU backend of hope_kv_append, hope_decode_forward and hope_merge_states.
 *
 * Receives params validated and resolved by csrc/serving.c (strides non-zero, softmax_scale > 0, slots, page
 * table entries, seq_lens and cu_seqlens_q checked) and the decode plan. Arithmetic follows the CUDA kernels:
 * rotation in float32; a rotated q is rounded to the cache dtype before the dot products (as a tensor-core
 * path would); scores, softmax and the weighted sum of V in float32. With more than one split, every
 * (sequence, query head, split) writes a partial state into the caller's workspace and a second pass merges
 * them, exactly as the GPU does, so the split logic is tested on machines without a GPU. */
#include <math.h>
#include <string.h>

#include "../internal.h"
#include "serving/launch.h"

#define HOPEI_CPU_SERVING_MAX_HEAD_DIM 1024

/* The value a float32 takes once stored in `dtype` and read back. */
static inline float round_to_dtype(float x, int32_t dtype) {
  switch (dtype) {
    case HOPE_DTYPE_FLOAT16: return hopei_half_to_float(hopei_float_to_half(x));
    case HOPE_DTYPE_BFLOAT16: return hopei_bf16_to_float(hopei_float_to_bf16(x));
    default: return x;
  }
}

/* ---- hope_kv_append ------------------------------------------------------------------------------- */

/* Keys are rotated on their first rotary_dim dims with the pairs of rope_pairing (SPEC §4 and §8: pair i is dims
 * (i * step, i * step + partner)); the dims past rotary_dim, and every dim of a value, are stored as given. */
static void kv_append_range(void *ctx, int64_t begin, int64_t end) {
  const hope_kv_append_params_t *p = (const hope_kv_append_params_t *)ctx;
  const hope_paged_kv_t *c = &p->cache;
  const int32_t d = c->head_dim, rot = p->rotary_dim, half = rot / 2, hk = c->num_kv_heads, dt = c->dtype;
  const int32_t interleaved = p->rope_pairing == HOPE_PAIRING_INTERLEAVED;
  const int32_t step = interleaved ? 2 : 1, partner = interleaved ? 1 : half;
  for (int64_t t = begin; t < end; ++t) {
    const int64_t slot = p->slot_mapping[t];
    if (slot < 0) continue;
    for (int32_t h = 0; h < hk; ++h) {
      const int64_t src_k = t * p->k_row_stride + (int64_t)h * d;
      const int64_t src_v = t * p->v_row_stride + (int64_t)h * d;
      const int64_t dst = (slot * hk + h) * d;
      if (p->cos_k != NULL) {
        const float *cs = p->cos_k + t * half, *sn = p->sin_k + t * half;
        for (int32_t i = 0; i < half; ++i) {
          const int32_t a = i * step, b = a + partner;
          const float x1 = hopei_load(p->k, dt, src_k + a), x2 = hopei_load(p->k, dt, src_k + b);
          hopei_store(c->k_pages, dt, dst + a, x1 * cs[i] - x2 * sn[i]);
          hopei_store(c->k_pages, dt, dst + b, x2 * cs[i] + x1 * sn[i]);
        }
        for (int32_t i = rot; i < d; ++i) hopei_store(c->k_pages, dt, dst + i, hopei_load(p->k, dt, src_k + i));
      } else {
        for (int32_t i = 0; i < d; ++i) hopei_store(c->k_pages, dt, dst + i, hopei_load(p->k, dt, src_k + i));
      }
      for (int32_t i = 0; i < d; ++i) hopei_store(c->v_pages, dt, dst + i, hopei_load(p->v, dt, src_v + i));
    }
  }
}

hope_status_t hopei_kv_append_cpu(const hope_kv_append_params_t *p) {
  hopei_parallel_for(p->num_tokens, 64, kv_append_range, (void *)p);
  return HOPE_SUCCESS;
}

/* ---- hope_decode_forward -------------------------------------------------------------------------- */

typedef struct {
  const hope_decode_params_t *p;
  const hopei_decode_plan_t *plan;
  int64_t total_q;
  int64_t rows; /* batch * max_seqlen_q */
} decode_ctx_t;

/* One (sequence, query head, split): every query token of the sequence for that head. */
static void decode_task(const decode_ctx_t *ctx, int64_t task) {
  const hope_decode_params_t *p = ctx->p;
  const hopei_decode_plan_t *plan = ctx->plan;
  const hope_paged_kv_t *c = &p->cache;
  const int32_t d = c->head_dim, half = d / 2, hq = p->num_q_heads, hk = c->num_kv_heads, dt = c->dtype;
  const int32_t splits = plan->num_splits, ps = c->page_size;
  const int32_t s = (int32_t)(task % splits);
  const int32_t j = (int32_t)((task / splits) % hq);
  const int32_t b = (int32_t)(task / ((int64_t)splits * hq));
  const int32_t h = j / (hq / hk);
  const int64_t len = p->seq_lens[b];
  const int32_t q0 = p->cu_seqlens_q[b], nq = p->cu_seqlens_q[b + 1] - q0;
  const int64_t chunk = (len + splits - 1) / splits;
  int64_t start = (int64_t)s * chunk, end = start + chunk;
  if (start > len) start = len;
  if (end > len) end = len;
  /* page_table may be NULL when max_pages_per_seq is 0 (then len is 0 and no page is read) */
  const int32_t *table = p->page_table != NULL ? p->page_table + (int64_t)b * p->max_pages_per_seq : NULL;
  float q[HOPEI_CPU_SERVING_MAX_HEAD_DIM], acc[HOPEI_CPU_SERVING_MAX_HEAD_DIM];
  for (int32_t qi = 0; qi < nq; ++qi) {
    const int64_t token = (int64_t)q0 + qi;
    const int64_t qb = token * plan->q_row_stride + (int64_t)j * d;
    if (p->cos_q != NULL) {
      const float *cs = p->cos_q + token * half, *sn = p->sin_q + token * half;
      for (int32_t i = 0; i < half; ++i) {
        const float x1 = hopei_load(p->q, dt, qb + i), x2 = hopei_load(p->q, dt, qb + i + half);
        q[i] = round_to_dtype(x1 * cs[i] - x2 * sn[i], dt);
        q[i + half] = round_to_dtype(x2 * cs[i] + x1 * sn[i], dt);
      }
    } else {
      for (int32_t i = 0; i < d; ++i) q[i] = hopei_load(p->q, dt, qb + i);
    }
    int64_t limit = end;
    if (p->causal) {
      const int64_t causal_end = len - nq + qi + 1;
      if (causal_end < limit) limit = causal_end;
    }
    float m = -INFINITY, l = 0.f;
    for (int32_t i = 0; i < d; ++i) acc[i] = 0.f;
    for (int64_t n = start; n < limit; ++n) {
      const int64_t slot = (int64_t)table[n / ps] * ps + n % ps;
      const int64_t kb = (slot * hk + h) * d;
      float dot = 0.f;
      for (int32_t i = 0; i < d; ++i) dot += q[i] * hopei_load(c->k_pages, dt, kb + i);
      const float sc = dot * plan->softmax_scale;
      float pw;
      if (sc > m) {
        const float alpha = expf(m - sc); /* m = -inf: 0 */
        for (int32_t i = 0; i < d; ++i) acc[i] *= alpha;
        l *= alpha;
        m = sc;
        pw = 1.f;
      } else {
        pw = expf(sc - m);
      }
      l += pw;
      for (int32_t i = 0; i < d; ++i) acc[i] += pw * hopei_load(c->v_pages, dt, kb + i);
    }
    const float inv = l > 0.f ? 1.f / l : 0.f;
    const float lse = l > 0.f ? m + logf(l) : -INFINITY;
    if (splits == 1) {
      const int64_t ob = (token * hq + j) * d;
      for (int32_t i = 0; i < d; ++i) hopei_store(p->out, dt, ob + i, acc[i] * inv);
      if (p->lse != NULL) p->lse[(int64_t)j * ctx->total_q + token] = lse;
    } else {
      const int64_t row = ((int64_t)s * ctx->rows + (int64_t)b * p->max_seqlen_q + qi) * hq + j;
      float *po = plan->partial_o + row * d;
      for (int32_t i = 0; i < d; ++i) po[i] = acc[i] * inv;
      plan->partial_lse[row] = lse;
    }
  }
}

static void decode_range(void *vctx, int64_t begin, int64_t end) {
  for (int64_t t = begin; t < end; ++t) decode_task((const decode_ctx_t *)vctx, t);
}

/* Merges the splits of one (row = b * max_seqlen_q + qi, query head). */
static void decode_merge_range(void *vctx, int64_t begin, int64_t end) {
  const decode_ctx_t *ctx = (const decode_ctx_t *)vctx;
  const hope_decode_params_t *p = ctx->p;
  const hopei_decode_plan_t *plan = ctx->plan;
  const int32_t d = p->cache.head_dim, hq = p->num_q_heads, splits = plan->num_splits, dt = p->cache.dtype;
  for (int64_t item = begin; item < end; ++item) {
    const int32_t j = (int32_t)(item % hq);
    const int64_t row = item / hq;
    const int32_t b = (int32_t)(row / p->max_seqlen_q), qi = (int32_t)(row % p->max_seqlen_q);
    const int32_t q0 = p->cu_seqlens_q[b], nq = p->cu_seqlens_q[b + 1] - q0;
    if (qi >= nq) continue;
    const int64_t token = (int64_t)q0 + qi;
    float mx = -INFINITY;
    for (int32_t s = 0; s < splits; ++s) {
      const float v = plan->partial_lse[((int64_t)s * ctx->rows + row) * hq + j];
      if (v > mx) mx = v;
    }
    const int64_t ob = (token * hq + j) * d;
    if (mx == -INFINITY) {
      for (int32_t i = 0; i < d; ++i) hopei_store(p->out, dt, ob + i, 0.f);
      if (p->lse != NULL) p->lse[(int64_t)j * ctx->total_q + token] = -INFINITY;
      continue;
    }
    float acc[HOPEI_CPU_SERVING_MAX_HEAD_DIM];
    for (int32_t i = 0; i < d; ++i) acc[i] = 0.f;
    float wsum = 0.f;
    for (int32_t s = 0; s < splits; ++s) {
      const int64_t srow = ((int64_t)s * ctx->rows + row) * hq + j;
      const float v = plan->partial_lse[srow];
      if (v == -INFINITY) continue;
      const float w = expf(v - mx);
      wsum += w;
      const float *po = plan->partial_o + srow * d;
      for (int32_t i = 0; i < d; ++i) acc[i] += w * po[i];
    }
    const float inv = 1.f / wsum;
    for (int32_t i = 0; i < d; ++i) hopei_store(p->out, dt, ob + i, acc[i] * inv);
    if (p->lse != NULL) p->lse[(int64_t)j * ctx->total_q + token] = mx + logf(wsum);
  }
}

hope_status_t hopei_decode_cpu(const hope_decode_params_t *p, const hopei_decode_plan_t *plan) {
  if (p->cache.head_dim > HOPEI_CPU_SERVING_MAX_HEAD_DIM)
    return hopei_fail(HOPE_ERROR_INTERNAL, "hope_decode_forward: head_dim %d above the CPU limit",
                      p->cache.head_dim);
  decode_ctx_t ctx;
  ctx.p = p;
  ctx.plan = plan;
  ctx.total_q = p->cu_seqlens_q[p->batch];
  ctx.rows = (int64_t)p->batch * p->max_seqlen_q;
  const int64_t tasks = (int64_t)p->batch * p->num_q_heads * plan->num_splits;
  hopei_parallel_for(tasks, 1, decode_range, &ctx);
  if (plan->num_splits > 1) hopei_parallel_for(ctx.rows * p->num_q_heads, 16, decode_merge_range, &ctx);
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
